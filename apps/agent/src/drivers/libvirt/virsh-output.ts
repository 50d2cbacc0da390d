import type { MigrationStats, VmState } from '../hypervisor.driver';

/** `Key: value` lines (nodeinfo, dominfo, domjobinfo --rawstats); keys as printed, values trimmed. */
export function parseColonFields(output: string): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const line of output.split('\n')) {
    const at = line.indexOf(':');
    if (at > 0) fields[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  return fields;
}

/** `virsh domstats --raw` of one domain: its `key=value` lines. */
export function parseDomstats(output: string): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const line of output.split('\n')) {
    const match = /^\s+([\w.-]+)=(.*)$/.exec(line);
    if (match) fields[match[1]] = match[2];
  }
  return fields;
}

/** `virsh version`: the versions of libvirt (the daemon's) and of the hypervisor. */
export function parseVersion(output: string): Record<string, string> {
  const versions: Record<string, string> = {};
  const daemon =
    /Running against daemon:\s*(\S+)/.exec(output)?.[1] ??
    /Using library: libvirt\s*(\S+)/.exec(output)?.[1];
  const hypervisor = /Running hypervisor:\s*(\S+)\s+(\S+)/.exec(output);
  if (daemon) versions.libvirt = daemon;
  if (hypervisor) versions[hypervisor[1].toLowerCase()] = hypervisor[2];
  return versions;
}

// virDomainState and the reasons that matter here (libvirt's include/libvirt/libvirt-domain.h).
const RUNNING = 1;
const BLOCKED = 2;
const PAUSED = 3;
const SHUTDOWN = 4;
const SHUTOFF = 5;
const CRASHED = 6;
const PMSUSPENDED = 7;
const PAUSED_MIGRATION = 2;
const PAUSED_POSTCOPY = 12;
const PAUSED_POSTCOPY_FAILED = 13;
const RUNNING_POSTCOPY = 10;

export interface DomainState {
  state: VmState;
  /** Incoming or outgoing migration, as the state's reason tells. */
  migration?: 'precopy' | 'postcopy' | 'postcopy-failed';
}

/** Our state for libvirt's state.state and state.reason numbers (domstats). */
export function domainState(state: number, reason: number): DomainState {
  switch (state) {
    case RUNNING:
    case BLOCKED:
      return reason === RUNNING_POSTCOPY
        ? { state: 'migrating', migration: 'postcopy' }
        : { state: 'running' };
    case PAUSED:
      if (reason === PAUSED_MIGRATION) return { state: 'migrating', migration: 'precopy' };
      if (reason === PAUSED_POSTCOPY) return { state: 'migrating', migration: 'postcopy' };
      if (reason === PAUSED_POSTCOPY_FAILED)
        return { state: 'paused', migration: 'postcopy-failed' };
      return { state: 'paused' };
    case PMSUSPENDED:
      return { state: 'paused' };
    case SHUTDOWN:
      return { state: 'stopping' };
    case CRASHED:
      return { state: 'crashed' };
    case SHUTOFF:
    default:
      return { state: 'stopped' };
  }
}

// virDomainJobType
const JOB_UNBOUNDED = 2;
const JOB_COMPLETED = 3;
const JOB_FAILED = 4;
const JOB_CANCELLED = 5;

/** `virsh domjobinfo --rawstats` as MigrationStats; 'none' when no job runs. */
export function parseJobInfo(output: string): MigrationStats {
  const fields = parseColonFields(output);
  const number = (key: string) => {
    const value = Number(fields[key] ?? 0);
    return Number.isFinite(value) ? value : 0;
  };
  const type = number('Job type');
  const status =
    type === JOB_COMPLETED
      ? 'completed'
      : type === JOB_FAILED
        ? 'failed'
        : type === JOB_CANCELLED
          ? 'cancelled'
          : type >= 1 && type <= JOB_UNBOUNDED
            ? 'active'
            : 'none';
  const stats: MigrationStats = {
    status,
    transferredBytes: number('data_processed'),
    remainingBytes: number('data_remaining'),
    totalBytes: number('data_total'),
    dirtyRateBytes: number('memory_dirty_rate') * (number('memory_page_size') || 4096),
    expectedDowntimeMs: status === 'completed' ? 0 : number('downtime'),
    iteration: number('memory_iteration'),
    throughputBytes: number('memory_bps'),
  };
  if (status === 'completed') {
    stats.downtimeMs = number('downtime');
    stats.totalTimeMs = number('time_elapsed');
  }
  if (fields.errmsg) stats.error = fields.errmsg;
  return stats;
}
