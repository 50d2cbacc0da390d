import type { Schemas } from '../api/client';
import { formatBytes, formatDuration, formatRate } from '../ui/format';

/** What the wizard reads and sends. */
export type VmDetail = Schemas['VmDetail_Output'];
export type NodeResource = Schemas['NodeResource_Output'];
export type RemoteStatus = Schemas['RemoteStatus_Output'];
export type MigrateBody = Schemas['MigrateBodyDto'];
export type PreflightAnswer = Schemas['PreflightAnswerDto_Output'];
export type MigrationMode = MigrateBody['mode'];
export type Transport = NonNullable<MigrateBody['transport']>;

export const MIGRATION_MODES: readonly MigrationMode[] = ['precopy', 'postcopy', 'auto'];
const MiB = 1024 * 1024;

/** The manager's pool and bridge names (migration.dto.ts): what a map may name. */
const MAP_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/** One source storage pool (with the images of the VM in it) and the pool it goes to. */
export interface StorageRow {
  pool: string;
  images: string[];
  target: string;
}

/** One source bridge (with the VM's NICs on it) and the bridge it goes to. */
export interface NetworkRow {
  bridge: string;
  nics: string[];
  target: string;
}

/** Everything the wizard's steps collect; numbers are kept as typed (validated when sent). */
export interface MigrationForm {
  targetRemote: string;
  targetNode: string;
  storage: StorageRow[];
  network: NetworkRow[];
  online: boolean;
  mode: MigrationMode;
  autoConverge: boolean;
  allowPostcopy: boolean;
  /** MiB/s; empty: unlimited. */
  bandwidthMiBps: string;
  downtimeLimitMs: string;
  completionTimeoutSecondsPerGib: string;
  /** Empty: the manager's default (direct within a remote, tunnel across remotes). */
  transport: Transport | '';
}

/** The maps prefilled with the identity (every pool and bridge keeps its name), one row per pool and bridge. */
export function identityMaps(vm: Pick<VmDetail, 'disks' | 'nics'>): {
  storage: StorageRow[];
  network: NetworkRow[];
} {
  const pools = new Map<string, string[]>();
  for (const disk of vm.disks) pools.set(disk.pool, [...(pools.get(disk.pool) ?? []), disk.image]);
  const bridges = new Map<string, string[]>();
  for (const nic of vm.nics) bridges.set(nic.bridge, [...(bridges.get(nic.bridge) ?? []), nic.mac]);
  return {
    storage: [...pools].map(([pool, images]) => ({ pool, images, target: pool })),
    network: [...bridges].map(([bridge, nics]) => ({ bridge, nics, target: bridge })),
  };
}

/** The form a wizard starts with: the VM's own remote, identity maps, a live migration of a running VM, the API's defaults. */
export function initialForm(
  vm: Pick<VmDetail, 'remote' | 'status' | 'disks' | 'nics'>,
): MigrationForm {
  return {
    targetRemote: vm.remote,
    targetNode: '',
    ...identityMaps(vm),
    online: vm.status !== 'stopped',
    mode: 'precopy',
    autoConverge: false,
    allowPostcopy: false,
    bandwidthMiBps: '',
    downtimeLimitMs: '300',
    completionTimeoutSecondsPerGib: '60',
    transport: '',
  };
}

/** The transport the manager uses when none is chosen. */
export function defaultTransport(sourceRemote: string, targetRemote: string): Transport {
  return sourceRemote === targetRemote ? 'direct' : 'tunnel';
}

/** Problems with the maps, per row (`storage:<pool>`, `network:<bridge>`). */
export function mapErrors(
  form: Pick<MigrationForm, 'storage' | 'network'>,
): Record<string, string> {
  const errors: Record<string, string> = {};
  const check = (key: string, value: string, what: string) => {
    if (!MAP_NAME.test(value.trim()))
      errors[key] =
        `a ${what} name is 1-63 letters, digits, dots, underscores and hyphens, starting with a letter or digit`;
  };
  for (const row of form.storage) check(`storage:${row.pool}`, row.target, 'pool');
  for (const row of form.network) check(`network:${row.bridge}`, row.target, 'bridge');
  return errors;
}

/** A whole number within bounds, or an error message. */
function wholeNumber(text: string, min: number, max: number): number | string {
  const trimmed = text.trim();
  if (!/^\d+$/.test(trimmed)) return `a whole number from ${min} to ${max}`;
  const value = Number(trimmed);
  return value < min || value > max ? `a whole number from ${min} to ${max}` : value;
}

/** MiB/s as typed → bytes per second for the API (empty or 0: unlimited), or an error message. */
export function bandwidthBytes(mibPerSecond: string): number | string {
  const trimmed = mibPerSecond.trim();
  if (trimmed === '') return 0;
  if (!/^\d+(\.\d+)?$/.test(trimmed)) return 'MiB per second as a number (empty: unlimited)';
  const bytes = Math.round(Number(trimmed) * MiB);
  return bytes > Number.MAX_SAFE_INTEGER ? 'too large' : bytes;
}

/** Problems with the options, by field. */
export function optionErrors(
  form: MigrationForm,
): Partial<
  Record<'bandwidthMiBps' | 'downtimeLimitMs' | 'completionTimeoutSecondsPerGib', string>
> {
  const errors: Partial<
    Record<'bandwidthMiBps' | 'downtimeLimitMs' | 'completionTimeoutSecondsPerGib', string>
  > = {};
  const bandwidth = bandwidthBytes(form.bandwidthMiBps);
  if (typeof bandwidth === 'string') errors.bandwidthMiBps = bandwidth;
  const downtime = wholeNumber(form.downtimeLimitMs, 1, 600_000);
  if (typeof downtime === 'string') errors.downtimeLimitMs = downtime;
  const timeout = wholeNumber(form.completionTimeoutSecondsPerGib, 0, 86_400);
  if (typeof timeout === 'string') errors.completionTimeoutSecondsPerGib = timeout;
  return errors;
}

/** Advice (not errors) about a combination of options. */
export function optionAdvice(form: MigrationForm): string[] {
  const advice: string[] = [];
  if (form.mode === 'auto' && !form.allowPostcopy)
    advice.push(
      'Auto mode switches to post-copy only when post-copy is allowed; without it, it behaves like pre-copy.',
    );
  if (!form.online)
    advice.push(
      'An offline migration moves the definition of a stopped VM; a running VM must be shut down first.',
    );
  return advice;
}

/** Only the entries that change a name: the manager keeps unnamed pools and bridges as they are. */
function renames(rows: readonly { from: string; target: string }[]): Record<string, string> {
  const map: Record<string, string> = {};
  for (const row of rows) if (row.target.trim() !== row.from) map[row.from] = row.target.trim();
  return map;
}

/**
 * The body of POST …/migrate and …/migrate/preflight. Throws when a field is invalid (the wizard
 * checks them first: mapErrors, optionErrors).
 */
export function migrateBody(form: MigrationForm): MigrateBody {
  const invalid = { ...mapErrors(form), ...optionErrors(form) };
  const first = Object.entries(invalid)[0];
  if (first) throw new Error(`${first[0]}: ${first[1]}`);
  if (!form.targetRemote || !form.targetNode)
    throw new Error('choose the target remote and node first');
  return {
    targetRemote: form.targetRemote,
    targetNode: form.targetNode,
    online: form.online,
    ...(form.transport ? { transport: form.transport } : {}),
    mode: form.mode,
    autoConverge: form.autoConverge,
    allowPostcopy: form.allowPostcopy,
    downtimeLimitMs: Number(form.downtimeLimitMs.trim()),
    bandwidthLimitBytes: bandwidthBytes(form.bandwidthMiBps) as number,
    completionTimeoutSecondsPerGib: Number(form.completionTimeoutSecondsPerGib.trim()),
    storageMap: renames(form.storage.map((row) => ({ from: row.pool, target: row.target }))),
    networkMap: renames(form.network.map((row) => ({ from: row.bridge, target: row.target }))),
  };
}

/** What a pre-flight was run for: when the target or the maps change, its checks no longer apply. */
export function preflightScope(form: MigrationForm): string {
  return JSON.stringify([
    form.targetRemote,
    form.targetNode,
    form.storage.map((r) => [r.pool, r.target.trim()]),
    form.network.map((r) => [r.bridge, r.target.trim()]),
  ]);
}

/** A choice in a select, disabled with the reason when it cannot be taken. */
export interface Choice {
  value: string;
  label: string;
  disabledReason: string | null;
}

/** The remotes a VM may go to: those where the caller holds vm.migrate and which answer; others disabled with the reason. */
export function remoteChoices(remotes: readonly RemoteStatus[], sourceRemote: string): Choice[] {
  return [...remotes]
    .sort((a, b) =>
      a.remote === sourceRemote
        ? -1
        : b.remote === sourceRemote
          ? 1
          : a.remote.localeCompare(b.remote),
    )
    .map((remote) => {
      const reason = !remote.privileges.includes('vm.migrate')
        ? 'needs the vm.migrate privilege there'
        : remote.status === 'unreachable'
          ? 'unreachable'
          : remote.status === 'pending'
            ? 'not read yet'
            : null;
      const label =
        remote.remote === sourceRemote
          ? `${remote.remote} (this remote: another node)`
          : remote.remote;
      return { value: remote.remote, label, disabledReason: reason };
    });
}

/** The nodes of the target remote, by name; offline nodes and the VM's own node are disabled. */
export function nodeChoices(
  nodes: readonly NodeResource[],
  targetRemote: string,
  vm: Pick<VmDetail, 'remote' | 'node'>,
): Choice[] {
  return nodes
    .filter((node) => node.remote === targetRemote)
    .sort((a, b) => a.name.localeCompare(b.name, undefined, { numeric: true }))
    .map((node) => {
      const reason = !node.alive
        ? 'offline'
        : targetRemote === vm.remote && node.id === vm.node
          ? 'the VM runs here'
          : null;
      const free = Math.max(0, node.memoryTotalBytes - node.memoryUsedBytes);
      const gib = (free / 1024 ** 3).toFixed(free >= 10 * 1024 ** 3 ? 0 : 1);
      const label = node.alive
        ? `${node.name} — ${node.status}, ${node.vmsRunning} VMs running, ${gib} GiB free`
        : node.name;
      return { value: node.id, label, disabledReason: reason };
    });
}

/** The first choice that can be taken, or '' when none. */
export function firstEnabled(choices: readonly Choice[]): string {
  return choices.find((choice) => choice.disabledReason === null)?.value ?? '';
}

/** Whether the pre-flight answer lets the wizard go on: it ran for the current target and maps, and no check failed. */
export function preflightPassed(
  answer: PreflightAnswer | null,
  checkedScope: string | null,
  form: MigrationForm,
): boolean {
  return (
    answer !== null &&
    answer.ok &&
    checkedScope === preflightScope(form) &&
    answer.checks.every((check) => check.result !== 'fail')
  );
}

/**
 * The transfer time the wizard shows for the options as entered now: the guest's memory at the
 * lowest of the rate the manager measured between the two remotes, the bandwidth limit typed in
 * and the link's cap (from the pre-flight answer). One sentence saying what it rests on.
 */
export function transferEstimate(
  estimate: PreflightAnswer['estimate'] | undefined,
  form: MigrationForm,
  remotes: { source: string; target: string },
): string {
  if (!estimate) return 'Run the pre-flight checks for an estimate of the transfer time.';
  if (!form.online) return 'An offline migration moves only the definition: no memory is sent.';
  const limit = bandwidthBytes(form.bandwidthMiBps);
  const bounds: { rate: number; basis: string }[] = [];
  if (estimate.measuredBytesPerSecond)
    bounds.push({
      rate: estimate.measuredBytesPerSecond,
      basis: `the rate measured over the last ${estimate.measuredMigrations === 1 ? 'migration' : `${estimate.measuredMigrations} migrations`} between ${remotes.source} and ${remotes.target}`,
    });
  if (typeof limit === 'number' && limit > 0)
    bounds.push({ rate: limit, basis: 'the bandwidth limit above' });
  if (estimate.linkCapBytesPerSecond)
    bounds.push({ rate: estimate.linkCapBytesPerSecond, basis: "the link's bandwidth cap" });
  if (bounds.length === 0)
    return `No estimate yet: no live migration between ${remotes.source} and ${remotes.target} has been measured; a bandwidth limit gives one.`;
  const slowest = bounds.reduce((low, bound) => (bound.rate < low.rate ? bound : low));
  const seconds = Math.max(1, Math.ceil(estimate.memoryBytes / slowest.rate));
  return `About ${formatDuration(seconds)} to send ${formatBytes(estimate.memoryBytes)} at ${formatRate(slowest.rate)} (${slowest.basis}); a guest that writes to its memory takes longer.`;
}
