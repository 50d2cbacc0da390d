import type { Logger } from '../../shared/logger';
import type { HypervisorDriver } from '../hypervisor.driver';
import type { SimStorageDriver } from './sim-storage.driver';

/**
 * The guests of simulated VMs at work: every interval each running VM of this node writes to each
 * of its disks (a new content version), so that snapshots, rollbacks and mirroring have something
 * to carry and a mirror's lag grows between mirror snapshots. A refused write (a fenced node, a
 * non-primary mirror, a disk another VM holds) is what a real guest would see as an I/O error:
 * it is logged at debug level and the VM goes on.
 */
export class SimDiskWriter {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly hypervisor: Pick<HypervisorDriver, 'list'>,
    private readonly storage: Pick<SimStorageDriver, 'writeImage'>,
    private readonly intervalMs: number,
    private readonly logger: Logger,
  ) {}

  start(): void {
    this.schedule();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  /** One round of writes by every running VM. */
  async write(): Promise<void> {
    const vms = await this.hypervisor.list().catch(() => []);
    for (const vm of vms) {
      if (vm.runtime.state !== 'running') continue;
      for (const disk of vm.spec.disks) {
        await this.storage
          .writeImage({ pool: disk.pool, image: disk.image }, vm.spec.uuid)
          .catch((error: unknown) =>
            this.logger.debug(
              { err: error, vm: vm.spec.uuid, image: `${disk.pool}/${disk.image}` },
              'a simulated guest write was refused',
            ),
          );
      }
    }
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.write().finally(() => this.schedule());
    }, this.intervalMs);
  }
}
