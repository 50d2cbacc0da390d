import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AgentError, ErrorCode } from '../../shared/agent-error';
import { cephError, errnoOf, RbdCliRepository, type RbdCliOptions } from './rbd-cli.repository';
import { parseCtime } from './rbd-storage.driver';

describe('cephError', () => {
  const cases: [string, ErrorCode, string][] = [
    [
      'rbd: error opening image nope: (2) No such file or directory\n',
      ErrorCode.NotFound,
      'rbd info: No such file or directory',
    ],
    [
      'rbd: create error: (17) File exists\n2026-12-07T12:59:54.189+0000 7f60 -1 librbd: rbd image a1 already exists\n',
      ErrorCode.AlreadyExists,
      'rbd info: File exists',
    ],
    [
      'Creating snap: 0% complete...failed.\nrbd: failed to create snapshot: (30) Read-only file system\n',
      ErrorCode.FailedPrecondition,
      'rbd info: Read-only file system',
    ],
    [
      'rbd: lock is already held by someone else\n',
      ErrorCode.FailedPrecondition,
      'rbd info: Device or resource busy',
    ],
    [
      'rbd: error: image still has watchers\nrbd: delete error: (16) Device or resource busy',
      ErrorCode.FailedPrecondition,
      'rbd info: Device or resource busy',
    ],
    [
      'ERROR: failed locking: (16) Device or resource busy\nerror 16: (16) Device or resource busy\n',
      ErrorCode.FailedPrecondition,
      'rbd info: Device or resource busy',
    ],
    [
      'rbd: listing images failed: (13) Permission denied\n',
      ErrorCode.FailedPrecondition,
      'rbd info: the Ceph client lacks permission (Permission denied)',
    ],
    [
      'rbd: listing images failed: (110) Connection timed out\n',
      ErrorCode.Unavailable,
      'rbd info: Connection timed out',
    ],
    [
      "2026 -1 monclient(hunting): handle_auth_bad_method server allowed_methods [2] but i only support [2]\nrbd: couldn't connect to the cluster!\n",
      ErrorCode.Unavailable,
      'rbd info: cannot connect to the Ceph cluster east',
    ],
    ['something nobody expected\n', ErrorCode.Internal, 'rbd info: failed'],
  ];
  it.each(cases)('maps %j', (stderr, code, message) => {
    const error = cephError('east', 'rbd info', stderr);
    expect(error).toMatchObject({ code, message });
  });

  it('keeps the errno in the cause and never the rest of stderr', () => {
    const error = cephError(
      'east',
      'rbd snap create',
      '2026 -1 auth: /etc/ceph/secret.keyring\nrbd: failed to create snapshot: (30) Read-only file system\n',
    );
    expect(errnoOf(error)).toBe(30);
    expect(error.message).not.toContain('/etc/ceph');
    expect(errnoOf(new AgentError(ErrorCode.Internal, 'no cause'))).toBeUndefined();
  });
});

describe('parseCtime', () => {
  it("reads rbd's ctime strings as UTC", () => {
    expect(parseCtime('Mon Dec  7 12:59:54 2026')).toBe('2026-12-07T12:59:54.000Z');
    expect(parseCtime('Tue Nov 17 03:04:05 2026')).toBe('2026-11-17T03:04:05.000Z');
    expect(parseCtime('')).toBe('');
    expect(parseCtime('2026-12-07 12:59:54')).toBe('');
  });
});

describe('RbdCliRepository', () => {
  const dir = mkdtempSync(join(tmpdir(), 'debvisor-rbd-cli-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** A stand-in tool (a script) that records its argv and answers as told. */
  function fakeTool(name: string, body: string): string {
    const path = join(dir, name);
    writeFileSync(path, `#!/bin/sh\n${body}\n`);
    chmodSync(path, 0o755);
    return path;
  }

  const options = (overrides: Partial<RbdCliOptions>): RbdCliOptions => ({
    cluster: 'east',
    conf: '/etc/ceph/east.conf',
    keyring: '/etc/ceph/east.client.debvisor.keyring',
    clientId: 'debvisor',
    rbdBinary: 'rbd',
    cephBinary: 'ceph',
    radosBinary: 'rados',
    timeoutMs: 5_000,
    peerTimeoutMs: 300,
    ...overrides,
  });

  it('runs the tool with the cluster, user and keyring, --format json before --, and stdin', async () => {
    const rbd = fakeTool(
      'rbd-args',
      'printf "%s\\n" "$@" > "$0.argv"; cat > "$0.stdin"; echo "[\\"a\\"]"',
    );
    const cli = new RbdCliRepository(options({ rbdBinary: rbd }));
    expect(await cli.json('rbd', ['ls', '--', 'rbd'], { input: 'secret-token' })).toEqual(['a']);
    expect(readFileSync(`${rbd}.argv`, 'utf8').trim().split('\n')).toEqual([
      '--cluster',
      'east',
      '-c',
      '/etc/ceph/east.conf',
      '--id',
      'debvisor',
      '--keyring',
      '/etc/ceph/east.client.debvisor.keyring',
      'ls',
      '--format',
      'json',
      '--',
      'rbd',
    ]);
    expect(readFileSync(`${rbd}.stdin`, 'utf8')).toBe('secret-token');
  });

  it('refuses an operand that starts with "-" or holds a control character before running anything', async () => {
    const rbd = fakeTool('rbd-never', 'touch "$0.ran"');
    const cli = new RbdCliRepository(options({ rbdBinary: rbd }));
    await expect(cli.run('rbd', ['info', '--', '-x'])).rejects.toMatchObject({
      code: ErrorCode.InvalidArgument,
    });
    await expect(cli.run('rbd', ['info', '--', 'a\nb'])).rejects.toMatchObject({
      code: ErrorCode.InvalidArgument,
    });
    expect(existsSync(`${rbd}.ran`)).toBe(false);
  });

  it('kills a call at the peer timeout and answers DEADLINE_EXCEEDED', async () => {
    const rbd = fakeTool('rbd-hang', 'exec sleep 30');
    const cli = new RbdCliRepository(options({ rbdBinary: rbd }));
    const started = Date.now();
    await expect(
      cli.run('rbd', ['mirror', 'image', 'status', '--', 'rbd/a'], { reach: 'peer' }),
    ).rejects.toMatchObject({
      code: ErrorCode.DeadlineExceeded,
      message: 'the Ceph cluster east did not answer rbd mirror image status within 0.3 s',
    });
    expect(Date.now() - started).toBeLessThan(3_000);
  });

  it('names the Debian package when the tool is missing', async () => {
    const cli = new RbdCliRepository(options({ cephBinary: join(dir, 'no-such-ceph') }));
    await expect(cli.run('ceph', ['health'])).rejects.toMatchObject({
      code: ErrorCode.Unavailable,
      message: expect.stringContaining('ceph-common'),
    });
  });
});
