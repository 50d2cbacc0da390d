import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { parseJsonOrUndefined, writeFileAtomically } from '../../shared/atomic-file';
import { MIGRATION_STATUSES, VM_STATES, vmDefinitionSchema } from '../hypervisor.driver';

const timestamp = z.iso.datetime({ offset: true });

export const SIM_OPERATIONS = ['start', 'shutdown', 'reboot', 'stop'] as const;
export type SimOperation = (typeof SIM_OPERATIONS)[number];

const count = z.number().min(0).max(Number.MAX_SAFE_INTEGER);

/** A migration's figures as outgoingStats answers them (kept once it settled). */
export const simMigrationStatsSchema = z.strictObject({
  status: z.enum(MIGRATION_STATUSES),
  transferredBytes: count,
  remainingBytes: count,
  totalBytes: count,
  dirtyRateBytes: count,
  expectedDowntimeMs: count,
  iteration: count,
  throughputBytes: count,
  downtimeMs: count.optional(),
  totalTimeMs: count.optional(),
  error: z.string().max(1000).optional(),
});

/**
 * The VM's current or last migration: an incoming VM not yet committed (dropped when the driver
 * opens again, like a killed incoming QEMU), or the source's figures of an outgoing one.
 */
export const simMigrationRecordSchema = z.strictObject({
  role: z.enum(['incoming', 'outgoing']),
  migrationId: z.string().min(1).max(128),
  /** Outgoing: the figures when it last changed phase (final once settled). */
  stats: simMigrationStatsSchema.optional(),
});

export type SimMigrationRecord = z.infer<typeof simMigrationRecordSchema>;

export const simVmRecordSchema = z.strictObject({
  spec: vmDefinitionSchema,
  state: z.enum(VM_STATES),
  stateChangedAt: timestamp,
  /** When the guest last booted (running VMs), for uptime. */
  bootedAt: timestamp.nullable(),
  /** An operation under way: the state it ends in and when, so a restarted agent can settle it. */
  transition: z
    .strictObject({
      operation: z.enum(SIM_OPERATIONS),
      target: z.enum(VM_STATES),
      endsAt: timestamp,
    })
    .nullable(),
  migration: simMigrationRecordSchema.optional(),
});

export type SimVmRecord = z.infer<typeof simVmRecordSchema>;

/** sun_path holds 108 bytes on Linux, including the terminating NUL. */
const MAX_SOCKET_PATH_BYTES = 107;

const stateFileSchema = z.strictObject({ version: z.literal(1), vms: z.array(simVmRecordSchema) });

/**
 * The sim hypervisor's files: its VMs in <stateDir>/sim/vms.json, written atomically (temp file,
 * fsync, rename), and the sockets of incoming migrations.
 */
export class SimStateRepository {
  /** The sim's own directory (<stateDir>/sim): the state file, and the sockets incoming migrations listen on. */
  readonly dir: string;
  readonly file: string;
  private queue: Promise<void> = Promise.resolve();

  constructor(stateDir: string) {
    this.dir = join(stateDir, 'sim');
    this.file = join(this.dir, 'vms.json');
  }

  /**
   * A fresh path for an incoming migration's unix socket, in <dir>/mig (mode 0700, so that only the
   * agent's user can connect). Socket paths are short (108 bytes on Linux): a state directory whose
   * path is too long is refused with a message.
   */
  async socketPath(): Promise<string> {
    const dir = join(this.dir, 'mig');
    const path = join(dir, `${randomBytes(6).toString('hex')}.sock`);
    if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES)
      throw new Error(`the state directory path is too long for a unix socket (${path})`);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    return path;
  }

  /** Removes the sockets of incoming migrations a previous process left behind (a killed agent). */
  async clearSockets(): Promise<void> {
    await rm(join(this.dir, 'mig'), { recursive: true, force: true });
  }

  /** The saved VMs, or undefined when nothing was ever saved (a first start). */
  async load(): Promise<SimVmRecord[] | undefined> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
    const parsed = stateFileSchema.safeParse(parseJsonOrUndefined(text));
    if (!parsed.success)
      throw new Error(
        `the sim VM state file ${this.file} is corrupt: ${parsed.error.issues[0]?.message ?? 'unreadable'}`,
      );
    return parsed.data.vms;
  }

  /** Saves a snapshot; saves happen one after another in call order. */
  save(vms: readonly SimVmRecord[]): Promise<void> {
    const text = JSON.stringify({ version: 1, vms }, null, 2) + '\n';
    const write = this.queue.then(() => this.write(text));
    this.queue = write.catch(() => undefined);
    return write;
  }

  private write(text: string): Promise<void> {
    return writeFileAtomically(this.file, text);
  }
}
