import { strictMock } from '@debvisor/testing/strict-mock';
import { describe, expect, it } from 'vitest';
import type { Caller } from '../authz/caller';
import { testCaller } from '../../test/test-caller';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import type { ManagerConfig } from '../config/manager-config';
import type { ResourcesService } from '../resources/resources.service';
import { ConsoleTicketRepository } from './console-ticket.repository';
import { CONSOLE_TICKET_TTL_MS, ConsoleTicketService } from './console-ticket.service';

const VM = '0b7a5e53-8a5c-4e7e-a0f4-4c1d3f5b2a10';
const OTHER_VM = '7c0f4a8e-3b1d-4d8e-9f2a-1e5b6c7d8e9f';

const ALICE: Caller = testCaller([{ path: '/', role: 'Manage' }], {
  kind: 'session',
  principal: 'alice@local',
  display: 'alice@local',
  tokenId: null,
  tokenName: null,
  sessionId: 'session-a',
});

/** A repository whose clock the test moves; tickets are real (random, hashed). */
class TestTickets extends ConsoleTicketRepository {
  at = 1_000_000;
  override now(): number {
    return this.at;
  }
}

function setup(options: { status?: string; allowApiTokens?: boolean } = {}) {
  const tickets = new TestTickets();
  const resources = strictMock<ResourcesService>('ResourcesService', {
    vm: async (_caller, _remote, uuid) =>
      ({ id: uuid, name: 'web-01', status: options.status ?? 'running' }) as Awaited<
        ReturnType<ResourcesService['vm']>
      >,
  });
  const config = { console: { allowApiTokens: options.allowApiTokens ?? false } } as ManagerConfig;
  return { tickets, resources, service: new ConsoleTicketService(config, tickets, resources) };
}

function refusal(work: () => void): DomainError {
  try {
    work();
  } catch (error) {
    return error as DomainError;
  }
  throw new Error('the ticket was accepted');
}

describe('console tickets', () => {
  it('issues a prefixed ticket that opens the console of that VM once', async () => {
    const { service } = setup();
    const issued = await service.issue(ALICE, 'dc-east', VM);
    expect(issued.ticket).toMatch(/^dvct_[A-Za-z0-9_-]{43}$/);
    expect(issued.websocketPath).toBe(`/api/v1/remotes/dc-east/vms/${VM}/console/ws`);
    expect(() => service.redeem(issued.ticket, ALICE, 'dc-east', VM)).not.toThrow();
    const again = refusal(() => service.redeem(issued.ticket, ALICE, 'dc-east', VM));
    expect(again.code).toBe(ErrorCode.Unauthenticated);
  });

  it('keeps only a hash of the ticket', async () => {
    const { service, tickets } = setup();
    const issued = await service.issue(ALICE, 'dc-east', VM);
    const stored = JSON.stringify([
      ...(tickets as unknown as { tickets: Map<string, unknown> }).tickets,
    ]);
    expect(stored).not.toContain(issued.ticket);
    expect(stored).not.toContain(issued.ticket.slice(5));
  });

  it('refuses a ticket after it expired', async () => {
    const { service, tickets } = setup();
    const issued = await service.issue(ALICE, 'dc-east', VM);
    expect(Date.parse(issued.expiresAt) - tickets.at).toBeLessThanOrEqual(60_000);
    tickets.at += CONSOLE_TICKET_TTL_MS;
    expect(refusal(() => service.redeem(issued.ticket, ALICE, 'dc-east', VM)).code).toBe(
      ErrorCode.Unauthenticated,
    );
  });

  it("refuses another user's ticket, another session's and a ticket for another VM", async () => {
    const { service } = setup();
    const bob = { ...ALICE, principal: 'bob@local', display: 'bob@local', sessionId: 'session-b' };
    const otherSession = { ...ALICE, sessionId: 'session-a2' };
    for (const [who, remote, vm] of [
      [bob, 'dc-east', VM],
      [otherSession, 'dc-east', VM],
      [ALICE, 'dc-east', OTHER_VM],
      [ALICE, 'dc-west', VM],
    ] as const) {
      const issued = await service.issue(ALICE, 'dc-east', VM);
      expect(refusal(() => service.redeem(issued.ticket, who, remote, vm)).code).toBe(
        ErrorCode.Unauthenticated,
      );
      // refused once, the ticket is gone for its owner too
      expect(refusal(() => service.redeem(issued.ticket, ALICE, 'dc-east', VM)).code).toBe(
        ErrorCode.Unauthenticated,
      );
    }
  });

  it('refuses API tokens unless the manager allows them', async () => {
    const token = testCaller([{ path: '/', role: 'Manage' }]);
    await expect(setup().service.issue(token, 'dc-east', VM)).rejects.toMatchObject({
      code: ErrorCode.Forbidden,
      message: expect.stringMatching(/DEBVISOR_CONSOLE_ALLOW_API_TOKENS/),
    });
    const { service } = setup({ allowApiTokens: true });
    const issued = await service.issue(token, 'dc-east', VM);
    expect(() => service.redeem(issued.ticket, token, 'dc-east', VM)).not.toThrow();
  });

  it('says clearly that a stopped VM has no console', async () => {
    await expect(
      setup({ status: 'stopped' }).service.issue(ALICE, 'dc-east', VM),
    ).rejects.toMatchObject({
      code: ErrorCode.Conflict,
      message: 'VM web-01 is stopped: it has no console until it runs',
    });
  });
});
