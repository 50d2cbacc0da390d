import { createClusterPki, type ClusterPki } from '@debvisor/testing';
import { fakeClock, strictMock } from '@debvisor/testing/strict-mock';
import { EventEmitter } from 'node:events';
import { X509Certificate } from 'node:crypto';
import pino from 'pino';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import type { HypervisorDriver, VmInstance } from '../drivers/hypervisor.driver';
import { ErrorCode } from '../shared/agent-error';
import { MigrationCookies } from './migration-cookies';
import {
  MigrationTargetService,
  type MigrationTargetDeps,
  type Reservation,
} from './migration-target.service';
import type { Frame } from './tunnel-bridge';

const UUID = '6b1b8c52-5f4e-4c7b-9d59-2f3c8a1e0b11';
const MIGRATION = '0b6f2f7e-3f56-4a62-9a1e-7f8b1b2c3d4e';
const spec: VmInstance['spec'] = {
  uuid: UUID,
  name: 'web-01',
  vcpus: 1,
  memoryBytes: 2 ** 30,
  disks: [],
  nics: [],
  cpuModel: 'x86-64-v2',
  hugepages: false,
  tenant: '',
  labels: {},
};

/** A tunnel stream as the target's side sees it: frames in by emit('data'), frames out recorded. */
class FakeStream extends EventEmitter {
  readonly sent: Frame[] = [];
  write(frame: Frame): boolean {
    this.sent.push(frame);
    this.emit('sent');
    return true;
  }
  pause(): this {
    return this;
  }
  resume(): this {
    return this;
  }
  end(): void {}
  /** The message of the first control word `word` sent, once it was sent. */
  async word(word: string): Promise<string> {
    for (;;) {
      const frame = this.sent.find((f) => f.control === word);
      if (frame) return frame.message ?? '';
      await new Promise((resolve) => this.once('sent', resolve));
    }
  }
}

describe('resuming a post-copy migration: the one-time resume credential', () => {
  let pki: ClusterPki;
  let source: Buffer;
  beforeAll(async () => {
    pki = await createClusterPki('resume');
    source = new X509Certificate((await pki.agent('node-1')).certPem).raw;
  });

  function target() {
    const driver = strictMock<HypervisorDriver>('HypervisorDriver', {
      prepareIncoming: async () => ({ kind: 'unix', path: '/run/in.sock' }),
      commitIncoming: async () => ({ spec }) as VmInstance,
      recoverIncoming: async () => ({ kind: 'unix', path: '/run/in.sock-r1' }),
    } as never);
    const deps = {
      nodeId: 'node-2',
      advertise: '127.0.0.1:7000',
      advertiseHost: '127.0.0.1',
      clusterCa: new X509Certificate(pki.ca.certPem),
      clusterCaPem: pki.ca.certPem,
      cookieTtlMs: 60_000,
      driver,
      cookies: new MigrationCookies(fakeClock()),
      credentials: strictMock<MigrationTargetDeps['credentials']>('credentials', {
        forgetPeerCa: () => undefined,
      }),
      disks: strictMock<MigrationTargetDeps['disks']>('disks', { lock: async () => undefined }),
      index: strictMock<MigrationTargetDeps['index']>('index', { put: async () => undefined }),
      revoked: strictMock<MigrationTargetDeps['revoked']>('revoked', { isRevoked: () => false }),
      clock: fakeClock(),
      logger: pino({ level: 'silent' }),
    } as unknown as MigrationTargetDeps;
    const service = new MigrationTargetService(deps);
    // pre-flight is another spec's subject: here every check passes
    vi.spyOn(service, 'checks').mockResolvedValue([]);
    return { service, driver };
  }

  /** A migration claimed by `source`, committed in post-copy, whose link then broke; answers the credential. */
  async function brokenPostcopy(service: MigrationTargetService) {
    const prepared = await service.prepare(
      {
        vm: spec,
        role: 'target',
        migrationId: MIGRATION,
        online: true,
        allowPostcopy: true,
        transport: 'tunnel',
        sourceNodeId: 'node-1',
        sourceCaPem: '',
      } as never,
      {} as never,
    );
    const { reservation } = await service.claim(opening(prepared.cookie!), source);
    const stream = new FakeStream();
    const carried = service.carry(stream as never, reservation, 'node-1', false);
    const credential = await stream.word('credential');
    await stream.word('ready');
    stream.emit('data', { control: 'commit' });
    await stream.word('committed');
    stream.emit('error', new Error('the link broke'));
    await carried;
    return { credential, reservation };
  }

  const opening = (cookie: string, migrationId = MIGRATION) => ({
    cookie,
    vmUuid: UUID,
    migrationId,
    controlOnly: false,
    dataConnections: true,
  });

  it('resumes once from the certificate that claimed the migration, with fresh data tokens and a fresh credential; a replay is refused', async () => {
    const { service, driver } = target();
    const { credential, reservation } = await brokenPostcopy(service);
    expect(credential).toMatch(/^dvmr_[A-Za-z0-9_-]{43}$/);
    expect(reservation.message).toMatch(/^paused: the link to node node-1 was lost/);
    const firstTokens = reservation.data!.tokens.toWire();

    const resumed = await service.claim(opening(credential), source);
    const stream = new FakeStream();
    void service.carry(stream as never, resumed.reservation, resumed.sourceNode, false);
    const next = await stream.word('credential');
    const ready = JSON.parse(await stream.word('ready')) as { dataTokens: string[] };
    expect(next).toMatch(/^dvmr_/);
    expect(next).not.toBe(credential);
    expect(ready.dataTokens).toHaveLength(1);
    expect(firstTokens).not.toContain(ready.dataTokens[0]);
    expect(driver.recoverIncoming).toHaveBeenCalledWith(UUID);
    expect((resumed.reservation as Reservation).address).toEqual({
      kind: 'unix',
      path: '/run/in.sock-r1',
    });

    await expect(service.claim(opening(credential), source)).rejects.toMatchObject({
      code: ErrorCode.PermissionDenied,
      message: 'unknown or used resume credential',
    });
  });

  it('refuses the credential from another certificate (even of the same node), for another migration, or after the source said done — without using it up', async () => {
    const { service } = target();
    const { credential } = await brokenPostcopy(service);
    const sameNodeOtherKey = new X509Certificate((await pki.agent('node-1')).certPem).raw;
    const otherNode = new X509Certificate((await pki.agent('node-3')).certPem).raw;
    for (const peer of [sameNodeOtherKey, otherNode, undefined])
      await expect(service.claim(opening(credential), peer)).rejects.toMatchObject({
        code: ErrorCode.PermissionDenied,
        message:
          'the resume credential works only from the agent certificate that opened the migration',
      });
    await expect(
      service.claim(opening(credential, '9d1f0a3e-2b4c-4d5e-8f60-718293a4b5c6'), source),
    ).rejects.toMatchObject({ code: ErrorCode.PermissionDenied });

    // the refusals did not use it up: the source itself still resumes with it
    const resumed = await service.claim(opening(credential), source);
    const stream = new FakeStream();
    void service.carry(stream as never, resumed.reservation, resumed.sourceNode, false);
    const next = await stream.word('credential');
    await stream.word('ready');
    // every page arrived: nothing is resumable any more
    stream.emit('data', { control: 'done' });
    await expect(service.claim(opening(next), source)).rejects.toMatchObject({
      code: ErrorCode.PermissionDenied,
      message: 'unknown or used resume credential',
    });
  });
});
