import type { Logger } from '../shared/logger';
import type { LocalNodeService } from './local-node.service';
import type { NodeStatusInput } from './node.schema';
import type { RegistryService } from './registry.service';

/**
 * Keeps this node in the registry: registers it, heartbeats every interval (which keeps the lease
 * alive), registers again when the lease was lost (etcd restarted, or was unreachable for longer
 * than the TTL), and revokes the lease on a clean stop so that the node disappears at once.
 */
export class NodePresence {
  private leaseId: string | undefined;
  /** performance.now() of the last heartbeat that found the lease alive (HA's watchdog reads it). */
  private renewedAt = -Infinity;
  private timer: NodeJS.Timeout | undefined;
  private beating: Promise<void> | undefined;
  private stopped = false;
  /** The last status read, and the read under way (heartbeats never wait on a slow one). */
  private lastStatus: NodeStatusInput | undefined;
  private reading: Promise<NodeStatusInput> | undefined;

  constructor(
    private readonly nodeId: string,
    private readonly registry: Pick<RegistryService, 'register' | 'heartbeat' | 'revoke'>,
    private readonly local: Pick<LocalNodeService, 'info' | 'status'>,
    private readonly intervalMs: number,
    private readonly logger: Logger,
    /** Runs after every (re-)registration, e.g. to republish what a fresh etcd lost. */
    private readonly onRegistered: () => Promise<void> = async () => undefined,
  ) {}

  /**
   * Registers and sends the first heartbeat, then runs onRegistered; rejects when etcd cannot be
   * reached. The status (drivers' health: `ceph health` on the rbd driver, seconds on a loaded
   * host) is read before the lease exists and onRegistered runs after the first heartbeat, so
   * neither can outlast a short lease between registration and heartbeat.
   */
  async start(): Promise<void> {
    if (!(await this.register()))
      throw new Error('the node lease vanished right after registration');
    this.schedule();
  }

  /** Stops heartbeating and revokes the lease, giving etcd at most `timeoutMs` (the lease expires anyway). */
  async stop(timeoutMs = 3_000): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`etcd did not answer within ${timeoutMs} ms`)),
        timeoutMs,
      );
    });
    try {
      await Promise.race([this.beating, deadline]);
      if (!this.leaseId) return;
      await Promise.race([this.registry.revoke(this.leaseId), deadline]);
      this.logger.info({ leaseId: this.leaseId }, 'node lease revoked');
    } catch (error) {
      this.logger.warn({ err: error }, 'could not revoke the node lease; it expires by itself');
    } finally {
      clearTimeout(timer);
    }
  }

  /** The node's current lease ('' before registration): HA binds the health score to it. */
  get currentLeaseId(): string {
    return this.leaseId ?? '';
  }

  /** Milliseconds since the lease was last seen alive (Infinity before the first heartbeat). */
  sinceRenewedMs(): number {
    return performance.now() - this.renewedAt;
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.beating = this.beat().finally(() => this.schedule());
    }, this.intervalMs);
  }

  /**
   * The status a heartbeat carries: a fresh one when it is read within half an interval, else the
   * last one read. The lease must not wait on a slow driver (`ceph health` takes seconds on a loaded
   * host, and a lease that runs out gets a healthy node fenced by HA); the read goes on and the next
   * heartbeat carries it. Only the very first read is waited for.
   */
  private async heartbeatStatus(): Promise<NodeStatusInput> {
    this.reading ??= this.local
      .status()
      .then((status) => (this.lastStatus = status))
      .finally(() => (this.reading = undefined));
    const reading = this.reading;
    const last = this.lastStatus;
    if (!last) return reading;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<NodeStatusInput>((resolve) => {
      timer = setTimeout(() => resolve(last), this.intervalMs / 2);
    });
    try {
      return await Promise.race([
        reading.catch((error: unknown) => {
          this.logger.warn({ err: error }, 'cannot read the node status; sending the last one');
          return last;
        }),
        late,
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  private async beat(): Promise<void> {
    try {
      const status = await this.heartbeatStatus();
      const sent = performance.now(); // the lease runs from the keep-alive, not from its answer
      if (this.leaseId && (await this.registry.heartbeat(this.nodeId, this.leaseId, status))) {
        this.renewedAt = sent;
        return;
      }
      this.logger.warn({ leaseId: this.leaseId }, 'node lease lost; registering again');
      await this.register();
    } catch (error) {
      this.logger.warn({ err: error }, 'heartbeat failed; retrying at the next interval');
    }
  }

  /** Registers, heartbeats at once, then runs onRegistered; answers whether the lease was alive at the heartbeat. */
  private async register(): Promise<boolean> {
    const [info, status] = await Promise.all([this.local.info(), this.heartbeatStatus()]);
    const { leaseId, ttlSeconds } = await this.registry.register(info);
    this.leaseId = leaseId;
    const sent = performance.now();
    const alive = await this.registry.heartbeat(this.nodeId, leaseId, status);
    if (alive) this.renewedAt = sent;
    this.logger.info({ leaseId, ttlSeconds }, 'node registered');
    await this.onRegistered();
    return alive;
  }
}
