import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../../shared/agent-error';
import {
  domainState,
  parseColonFields,
  parseDomstats,
  parseJobInfo,
  parseVersion,
} from './virsh-output';
import { virshError } from './virsh.repository';

// Outputs as virsh 9.0 (Debian 12) prints them.
const ACTIVE_JOB = `Job type: 2

operation: 5
time_elapsed: 1532
data_total: 1090060288
data_processed: 310378496
data_remaining: 781193216
memory_total: 1090060288
memory_processed: 310378496
memory_remaining: 781193216
memory_bps: 104857600
memory_constant: 1234
memory_normal: 75000
memory_normal_bytes: 307200000
memory_dirty_rate: 2560
memory_iteration: 3
memory_page_size: 4096
downtime: 312
setup_time: 2
`;

const COMPLETED_JOB = `Job type: 3

operation: 4
time_elapsed: 514
time_elapsed_net: 513
downtime: 30
downtime_net: 29
setup_time: 0
data_total: 67502080
data_processed: 578325
data_remaining: 0
memory_bps: 27691375
memory_dirty_rate: 0
memory_iteration: 2
memory_page_size: 4096
`;

describe('virsh output', () => {
  it('maps a running migration job to MigrationStats', () => {
    expect(parseJobInfo(ACTIVE_JOB)).toEqual({
      status: 'active',
      transferredBytes: 310378496,
      remainingBytes: 781193216,
      totalBytes: 1090060288,
      dirtyRateBytes: 2560 * 4096,
      expectedDowntimeMs: 312,
      iteration: 3,
      throughputBytes: 104857600,
    });
  });

  it('reports the measured downtime and total time of a completed job', () => {
    expect(parseJobInfo(COMPLETED_JOB)).toMatchObject({
      status: 'completed',
      downtimeMs: 30,
      totalTimeMs: 514,
      remainingBytes: 0,
      expectedDowntimeMs: 0,
    });
  });

  it('answers none when no job runs, and failed or cancelled as libvirt tells', () => {
    expect(parseJobInfo('Job type: 0\n\n').status).toBe('none');
    expect(parseJobInfo('Job type: 4\n\nerrmsg: migration failed\n')).toMatchObject({
      status: 'failed',
      error: 'migration failed',
    });
    expect(parseJobInfo('Job type: 5\n').status).toBe('cancelled');
  });

  it('reads domstats, nodeinfo and version', () => {
    expect(
      parseDomstats("Domain: 't1'\n  state.state=1\n  state.reason=2\n  balloon.rss=41660\n"),
    ).toEqual({ 'state.state': '1', 'state.reason': '2', 'balloon.rss': '41660' });
    expect(parseColonFields('CPU(s):              2\nMemory size:         7169824 KiB\n')).toEqual({
      'CPU(s)': '2',
      'Memory size': '7169824 KiB',
    });
    expect(
      parseVersion(
        'Compiled against library: libvirt 9.0.0\nUsing library: libvirt 9.0.0\nUsing API: QEMU 9.0.0\nRunning hypervisor: QEMU 7.2.22\nRunning against daemon: 9.0.0\n',
      ),
    ).toEqual({
      libvirt: '9.0.0',
      qemu: '7.2.22',
    });
  });

  it('maps libvirt states and reasons, including both ends of a migration', () => {
    expect(domainState(1, 1)).toEqual({ state: 'running' });
    expect(domainState(5, 2)).toEqual({ state: 'stopped' });
    expect(domainState(3, 1)).toEqual({ state: 'paused' });
    expect(domainState(3, 2)).toEqual({ state: 'migrating', migration: 'precopy' });
    expect(domainState(3, 12)).toEqual({ state: 'migrating', migration: 'postcopy' });
    expect(domainState(1, 10)).toEqual({ state: 'migrating', migration: 'postcopy' });
    expect(domainState(4, 1)).toEqual({ state: 'stopping' });
    expect(domainState(6, 1)).toEqual({ state: 'crashed' });
  });

  it('turns virsh errors into agent errors by what libvirt reported', () => {
    const notFound = virshError('start', "error: failed to get domain 'x'\n");
    expect(notFound.code).toBe(ErrorCode.NotFound);
    expect(notFound.message).toBe("failed to get domain 'x'");
    expect(
      virshError(
        'start',
        "error: Failed to start domain 'a'\nerror: Requested operation is not valid: domain is already running\n",
      ).code,
    ).toBe(ErrorCode.FailedPrecondition);
    expect(
      virshError(
        'define',
        "error: Failed to define domain from /tmp/debvisor-virsh-Ab12/domain.xml\nerror: operation failed: domain 'a' already exists with uuid 1\n",
      ),
    ).toMatchObject({
      code: ErrorCode.AlreadyExists,
      message: "operation failed: domain 'a' already exists with uuid 1",
    });
    expect(
      virshError(
        'list',
        "error: failed to connect to the hypervisor\nerror: Failed to connect socket to '/run/libvirt/libvirt-sock': No such file or directory\n",
      ).code,
    ).toBe(ErrorCode.Unavailable);
    expect(
      virshError('define', 'error: XML document failed to validate against schema\n').code,
    ).toBe(ErrorCode.InvalidArgument);
    expect(virshError('x', 'error: internal error: something odd\n').code).toBe(ErrorCode.Internal);
  });
});
