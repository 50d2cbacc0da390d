import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { parseJsonOrUndefined, writeFileAtomically } from '../../shared/atomic-file';
import { VM_STATES, vmDefinitionSchema } from '../hypervisor.driver';

const timestamp = z.iso.datetime({ offset: true });

export const qemuVmRecordSchema = z.strictObject({
  version: z.literal(1),
  spec: vmDefinitionSchema,
  /** 'defined': a VM of this host; 'incoming': a migration target not committed yet (killed and forgotten after an agent restart). */
  phase: z.enum(['defined', 'incoming']),
  /** The state last seen; what a VM whose QEMU is gone reports ('stopped' or 'crashed'). */
  state: z.enum(VM_STATES),
  stateChangedAt: timestamp,
  /** When the guest last booted (running VMs), for uptime. */
  bootedAt: timestamp.nullable(),
});

export type QemuVmRecord = z.infer<typeof qemuVmRecordSchema>;

const FILE_NAME = /^([0-9a-f-]{36})\.json$/;

/** The qemu driver's VM definitions, one JSON file per VM in <stateDir>/qemu/, written atomically (temp file, fsync, rename). */
export class QemuStateRepository {
  readonly dir: string;
  private readonly queues = new Map<string, Promise<void>>();

  constructor(stateDir: string) {
    this.dir = join(stateDir, 'qemu');
  }

  /** Every saved VM; a file that does not validate stops the driver with a message naming it. */
  async load(): Promise<QemuVmRecord[]> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const records: QemuVmRecord[] = [];
    for (const name of (await readdir(this.dir)).sort()) {
      const match = FILE_NAME.exec(name);
      if (!match) continue;
      const file = join(this.dir, name);
      const parsed = qemuVmRecordSchema.safeParse(
        parseJsonOrUndefined(await readFile(file, 'utf8')),
      );
      if (!parsed.success)
        throw new Error(
          `the qemu VM state file ${file} is corrupt: ${parsed.error.issues[0]?.message ?? 'unreadable'}`,
        );
      if (parsed.data.spec.uuid !== match[1])
        throw new Error(`the qemu VM state file ${file} holds VM ${parsed.data.spec.uuid}`);
      records.push(parsed.data);
    }
    return records;
  }

  /** Saves one VM; saves of one VM happen in call order. */
  save(record: QemuVmRecord): Promise<void> {
    const text = JSON.stringify(record, null, 2) + '\n';
    return this.enqueue(record.spec.uuid, () =>
      this.write(join(this.dir, `${record.spec.uuid}.json`), text),
    );
  }

  remove(uuid: string): Promise<void> {
    return this.enqueue(uuid, () => rm(join(this.dir, `${uuid}.json`), { force: true }));
  }

  private enqueue(uuid: string, work: () => Promise<void>): Promise<void> {
    const next = (this.queues.get(uuid) ?? Promise.resolve()).then(work);
    const settled = next.catch(() => undefined);
    this.queues.set(uuid, settled);
    void settled.then(() => {
      if (this.queues.get(uuid) === settled) this.queues.delete(uuid);
    });
    return next;
  }

  private write(file: string, text: string): Promise<void> {
    return writeFileAtomically(file, text);
  }
}
