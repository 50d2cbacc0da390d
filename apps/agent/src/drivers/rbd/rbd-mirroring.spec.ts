import { fakeClock, strictMock } from '@debvisor/testing/strict-mock';
import { describe, expect, it } from 'vitest';
import { AgentError, ErrorCode } from '../../shared/agent-error';
import { RbdMirroring, type RbdRunner, type RunOptions } from './rbd-mirroring';

// A Ceph-shaped token (base64 of {fsid, client_id, key, mon_host}); its key is made up.
const TOKEN = Buffer.from(
  JSON.stringify({
    fsid: '41668716-257e-4a72-8d68-b07003e2e93b',
    client_id: 'rbd-mirror-peer',
    key: 'AQDyrBZricP5IBAA+NEaETfc53/MWrEvty/Z+Q==',
    mon_host: 'v2:127.0.0.1:43101/0',
  }),
).toString('base64');
const POOL_INFO = JSON.stringify({ mode: 'image', site_name: 'site-b', peers: [] });
const PAIRED = JSON.stringify({
  mode: 'image',
  site_name: 'site-b',
  peers: [{ uuid: 'u1', direction: 'rx-tx', site_name: 'site-a' }],
});
const POOL_STATUS = JSON.stringify({
  summary: { health: 'OK', daemon_health: 'OK', image_health: 'OK', states: {} },
});

function mirroring(run: RbdRunner['run'], clock = fakeClock()) {
  const cli = strictMock<RbdRunner>('cli', { run });
  return {
    cli,
    clock,
    mirroring: new RbdMirroring({
      cli,
      clock,
      commandTimeoutMs: 30_000,
      peerTimeoutMs: 10_000,
      defaultSiteName: 'dc1',
    }),
  };
}

describe('RbdMirroring', () => {
  it('hands the bootstrap token to rbd on standard input only, with the peer deadline', async () => {
    const calls: { args: readonly string[]; options?: RunOptions }[] = [];
    const { mirroring: subject } = mirroring(async (_tool, args, options) => {
      calls.push({ args, options });
      if (args.includes('info'))
        return calls.filter((c) => c.args.includes('info')).length > 1 ? PAIRED : POOL_INFO;
      if (args.includes('status')) return POOL_STATUS;
      return '';
    });
    const status = await subject.importPeerBootstrap('rbd', 'site-b', `${TOKEN}\n`, 'rx-tx');
    expect(status.peers).toEqual([{ uuid: 'u1', siteName: 'site-a', direction: 'rx-tx' }]);
    const imported = calls.find((c) => c.args.includes('import'))!;
    expect(imported.args).toEqual([
      'mirror',
      'pool',
      'peer',
      'bootstrap',
      'import',
      '--site-name',
      'site-b',
      '--direction',
      'rx-tx',
      '--token-path',
      '-',
      '--',
      'rbd',
    ]);
    expect(imported.options).toEqual({ reach: 'peer', input: TOKEN });
    for (const call of calls) expect(call.args.join(' ')).not.toContain(TOKEN.slice(0, 24));
    // Never the --all listing, which prints the peers' keys.
    expect(calls.some((c) => c.args.includes('--all') && c.args.includes('pool'))).toBe(false);
  });

  it('refuses what is not a bootstrap token without running rbd or quoting it', async () => {
    const { mirroring: subject } = mirroring(() => Promise.reject(new Error('no command may run')));
    for (const token of [
      '',
      'x'.repeat(9000),
      'not base64!',
      Buffer.from('{"fsid":"a"}').toString('base64'),
    ]) {
      const error = await subject
        .importPeerBootstrap('rbd', 'site-b', token, 'rx-tx')
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(AgentError);
      expect((error as AgentError).code).toBe(ErrorCode.InvalidArgument);
      if (token) expect((error as AgentError).message).not.toContain(token.slice(0, 8));
    }
  });

  it('reports a peer that does not answer in time as unavailable, without the token', async () => {
    const { mirroring: subject } = mirroring(async (_tool, args) => {
      if (args.includes('import'))
        throw new AgentError(
          ErrorCode.DeadlineExceeded,
          'the Ceph cluster ceph did not answer rbd mirror pool peer within 10 s',
        );
      return POOL_INFO;
    });
    const error = (await subject
      .importPeerBootstrap('rbd', 'site-b', TOKEN, 'rx-tx')
      .catch((e: unknown) => e)) as AgentError;
    expect(error.code).toBe(ErrorCode.Unavailable);
    expect(error.message).toBe('the peer cluster did not answer within 10 s');
  });

  it('waits for the peer demotion before a planned promotion and gives up after the peer deadline', async () => {
    const info = JSON.stringify({
      name: 'd',
      mirroring: { mode: 'snapshot', state: 'enabled', global_id: 'g', primary: false },
    });
    const copies = JSON.stringify([
      {
        id: 3,
        name: 'c',
        timestamp: 'Mon Dec  7 12:58:54 2026',
        namespace: {
          type: 'mirror',
          state: 'non-primary',
          complete: true,
          primary_mirror_uuid: 'p',
        },
      },
    ]);
    const {
      mirroring: subject,
      cli,
      clock,
    } = mirroring(async (_tool, args) => (args[0] === 'info' ? info : copies));
    const started = clock.now().getTime();
    const error = (await subject
      .promote({ pool: 'rbd', image: 'd' }, false)
      .catch((e: unknown) => e)) as AgentError;
    expect(error.code).toBe(ErrorCode.FailedPrecondition);
    expect(error.message).toMatch(/still primary at the peer site/);
    expect(clock.now().getTime() - started).toBeLessThanOrEqual(10_000);
    expect(cli.run.mock.calls.some(([, args]) => args.includes('promote'))).toBe(false);
  });

  it('retries a promotion while rbd-mirror still holds the image', async () => {
    let primary = false;
    let attempts = 0;
    const { mirroring: subject } = mirroring(async (_tool, args) => {
      if (args[0] === 'info')
        return JSON.stringify({
          name: 'd',
          mirroring: { mode: 'snapshot', state: 'enabled', global_id: 'g', primary },
        });
      if (args.includes('promote')) {
        attempts += 1;
        if (attempts < 3)
          throw new AgentError(
            ErrorCode.FailedPrecondition,
            'rbd mirror image promote: Read-only file system',
          );
        primary = true;
        return '';
      }
      if (args[0] === 'snap') {
        return JSON.stringify([
          {
            id: 9,
            name: 'd',
            timestamp: 'Mon Dec  7 13:00:24 2026',
            namespace: {
              type: 'mirror',
              state: 'demoted',
              complete: true,
              primary_mirror_uuid: 'p',
            },
          },
        ]);
      }
      if (args.includes('image') && args.includes('status'))
        return JSON.stringify({
          name: 'd',
          state: 'up+stopped',
          description: 'local image is primary',
          peer_sites: [],
        });
      return '[]';
    });
    const status = await subject.promote({ pool: 'rbd', image: 'd' }, false);
    expect(attempts).toBe(3);
    expect(status.primary).toBe(true);
  });
});
