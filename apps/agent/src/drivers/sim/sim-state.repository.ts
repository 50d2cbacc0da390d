import { z } from 'zod';
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
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
 * The VM's last or current migration: an incoming VM not yet committed (dropped when the driver
 * opens again, like a killed incoming QEMU), or the source's view of an outgoing one.
 */
export const simMigrationRecordSchema = z.strictObject({
  role: z.enum(['incoming', 'outgoing']),
  migrationId: z.string().min(1).max(128),
  stats: simMigrationStatsSchema,
});

export type SimMigrationRecord = z.infer<typeof simMigrationRecordSchema>;

export const simVmRecordSchema = z.strictObject({
  spec: vmDefinitionSchema,
  state: z.enum(VM_STATES),
  stateChangedAt: timestamp,
  /** When the guest last booted (running VMs), for uptime. */
  bootedAt: timestamp.nullable(),
  /** An operation under way: the state it ends in and when, so a restarted agent can settle it. */
  transition: z.strictObject({ operation: z.enum(SIM_OPERATIONS), target: z.enum(VM_STATES), endsAt: timestamp }).nullable(),
  migration: simMigrationRecordSchema.optional(),
});

export type SimVmRecord = z.infer<typeof simVmRecordSchema>;

const stateFileSchema = z.strictObject({ version: z.literal(1), vms: z.array(simVmRecordSchema) });

/** The sim hypervisor's VMs in <stateDir>/sim/vms.json, written atomically (temp file, fsync, rename). */
export class SimStateRepository {
  /** The sim's own directory (<stateDir>/sim): the state file, and the sockets incoming migrations listen on. */
  readonly dir: string;
  readonly file: string;
  private queue: Promise<void> = Promise.resolve();

  constructor(stateDir: string) {
    this.dir = join(stateDir, 'sim');
    this.file = join(this.dir, 'vms.json');
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
    const parsed = stateFileSchema.safeParse(safeJson(text));
    if (!parsed.success) throw new Error(`the sim VM state file ${this.file} is corrupt: ${parsed.error.issues[0]?.message ?? 'unreadable'}`);
    return parsed.data.vms;
  }

  /** Saves a snapshot; saves happen one after another in call order. */
  save(vms: readonly SimVmRecord[]): Promise<void> {
    const text = JSON.stringify({ version: 1, vms }, null, 2) + '\n';
    const write = this.queue.then(() => this.write(text));
    this.queue = write.catch(() => undefined);
    return write;
  }

  private async write(text: string): Promise<void> {
    const dir = dirname(this.file);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const temp = `${this.file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    try {
      const handle = await open(temp, 'w', 0o600);
      try {
        await handle.writeFile(text, 'utf8');
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temp, this.file);
    } catch (error) {
      await rm(temp, { force: true });
      throw error;
    }
    const dirHandle = await open(dir, 'r');
    try {
      await dirHandle.sync();
    } finally {
      await dirHandle.close();
    }
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
