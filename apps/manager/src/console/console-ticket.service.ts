import { Inject, Injectable } from '@nestjs/common';
import type { Caller } from '../authz/caller';
import { DomainError, PermissionDenied } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { MANAGER_CONFIG, type ManagerConfig } from '../config/manager-config';
import { ResourcesService } from '../resources/resources.service';
import { CONSOLE_PROTOCOL, type ConsoleTicketDto } from './console.dto';
import { ConsoleTicketRepository } from './console-ticket.repository';

/** How long a console ticket stays valid: enough to open the WebSocket right after asking. */
export const CONSOLE_TICKET_TTL_MS = 30_000;
/** States in which a VM has a screen to show. */
const LIVE_STATES = new Set([
  'running',
  'migrating',
  'paused',
  'rebooting',
  'starting',
  'stopping',
]);

/** Why a ticket was refused: the same answer whatever the reason, so that it reveals nothing. */
const REFUSED = 'the console ticket is invalid, expired, already used, or not yours for this VM';

/**
 * Console tickets: single use, valid 30 s, bound to the user, the login session (or API token,
 * when DEBVISOR_CONSOLE_ALLOW_API_TOKENS allows tokens) and the VM; stored only as a hash.
 */
@Injectable()
export class ConsoleTicketService {
  constructor(
    @Inject(MANAGER_CONFIG) private readonly config: ManagerConfig,
    private readonly tickets: ConsoleTicketRepository,
    private readonly resources: ResourcesService,
  ) {}

  /** A ticket for `caller` (who holds vm.console on the VM: the route checked it). */
  async issue(caller: Caller, remote: string, vmid: string): Promise<ConsoleTicketDto> {
    this.requireConsoleCaller(caller);
    const vm = await this.resources.vm(caller, remote, vmid); // 404 for an unknown VM
    if (!LIVE_STATES.has(vm.status))
      throw new DomainError(
        ErrorCode.Conflict,
        `VM ${vm.name} is ${vm.status}: it has no console until it runs`,
      );
    const secret = this.tickets.newSecret();
    const expiresAt = this.tickets.now() + CONSOLE_TICKET_TTL_MS;
    this.tickets.save(secret, {
      principal: caller.principal,
      sessionId: caller.kind === 'session' ? caller.sessionId : null,
      tokenId: caller.kind === 'token' ? caller.tokenId : null,
      remote,
      vmid,
      expiresAt,
    });
    return {
      ticket: secret,
      expiresAt: new Date(expiresAt).toISOString(),
      websocketPath: consoleWebSocketPath(remote, vmid),
      protocol: CONSOLE_PROTOCOL,
    };
  }

  /**
   * Redeems a ticket presented by `caller` for the console of `vmid`: it is used up whatever the
   * outcome, and accepted only within its time, for the same principal, login session (or token)
   * and VM.
   */
  redeem(secret: string, caller: Caller, remote: string, vmid: string): void {
    this.requireConsoleCaller(caller);
    const binding = this.tickets.take(secret);
    const same =
      binding !== undefined &&
      binding.expiresAt > this.tickets.now() &&
      binding.principal === caller.principal &&
      binding.sessionId === (caller.kind === 'session' ? caller.sessionId : null) &&
      binding.tokenId === (caller.kind === 'token' ? caller.tokenId : null) &&
      binding.remote === remote &&
      binding.vmid === vmid;
    if (!same) throw new DomainError(ErrorCode.Unauthenticated, REFUSED);
  }

  private requireConsoleCaller(caller: Caller): void {
    if (caller.kind === 'token' && !this.config.console.allowApiTokens)
      throw new PermissionDenied(
        undefined,
        {},
        'API tokens cannot open consoles (the manager setting DEBVISOR_CONSOLE_ALLOW_API_TOKENS allows it); use a login session',
      );
  }
}

/** The WebSocket path of a VM's console. */
export function consoleWebSocketPath(remote: string, vmid: string): string {
  return `/api/v1/remotes/${encodeURIComponent(remote)}/vms/${encodeURIComponent(vmid)}/console/ws`;
}
