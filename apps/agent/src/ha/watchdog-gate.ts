/** How often the watchdog's own timer checks (start()). */
export const WATCHDOG_INTERVAL_MS = 100;

/**
 * The HA watchdog's gate in front of the hypervisor (docs/ha.md). A node whose watchdog has not
 * run for longer than its lease TTL (the agent was paused, or starved) may have been declared dead
 * and its VMs restarted elsewhere: before anything reads or changes its VMs, the watchdog runs
 * (and stops its HA VMs). So a node that wakes up never reports, let alone runs, an HA VM that now
 * runs on another node, whatever order its timers and its incoming calls come in.
 */
export class WatchdogGate {
  private lastBeat = performance.now();
  private stall: Promise<void> | undefined;
  private handler: ((reason: string) => Promise<void>) | undefined;
  private timer: NodeJS.Timeout | undefined;

  /** How long ago the node's lease was last renewed (Infinity before the first time). */
  private sinceRenewedMs: () => number = () => Infinity;

  /**
   * A lease not renewed for this long counts as lost: its TTL, counted from the last keep-alive
   * sent (etcd counts from when it received it, so the node's count ends first). The timer
   * (start()) acts within WATCHDOG_INTERVAL_MS of it, before the coordinator can have seen the
   * lease expire in etcd, fenced the node and started its VMs elsewhere. A shorter limit would stop
   * the VMs of nodes whose heartbeat is merely late (seen under load with a 3 s lease), and a
   * node that stopped its VMs is fenced and its VMs moved.
   */
  readonly leaseLimitMs: number;

  constructor(private readonly limitMs: number) {
    this.leaseLimitMs = limitMs;
  }

  /**
   * Checks on a timer of its own, every WATCHDOG_INTERVAL_MS. The HA loop and the heartbeat wait
   * on etcd calls, each up to its deadline (5 s, longer than a short lease) when etcd is cut off;
   * the watchdog must not wait with them. A gap between two runs of this timer longer than the
   * limit means the process itself did not run (paused, starved).
   */
  start(): void {
    if (this.timer) return;
    let last = performance.now();
    this.timer = setInterval(() => {
      const now = performance.now();
      if (now - last <= this.limitMs) this.beat();
      last = now;
      this.check().catch(() => undefined); // the handler logs its own failures
    }, WATCHDOG_INTERVAL_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Also stalled: a lease not renewed for longer than the limit (etcd unreachable, a slow loop). */
  watchLease(sinceRenewedMs: () => number): void {
    this.sinceRenewedMs = sinceRenewedMs;
  }

  /** The watchdog ran: the node is not stalled. */
  beat(): void {
    this.lastBeat = performance.now();
  }

  /** What runs when a stall is found (HaNodeService's self-fence). */
  onStall(handler: (reason: string) => Promise<void>): void {
    this.handler = handler;
    this.beat();
  }

  /** Resolves once the node is known not to be stalled (running the handler first when it is). */
  async check(): Promise<void> {
    const gap = performance.now() - this.lastBeat;
    if (this.stall) return this.stall;
    const sinceRenewed = this.sinceRenewedMs();
    const leaseLost = Number.isFinite(sinceRenewed) && sinceRenewed > this.leaseLimitMs;
    if ((gap <= this.limitMs && !leaseLost) || !this.handler) return;
    const reason =
      gap > this.limitMs
        ? `this agent did not run for ${Math.round(gap)} ms, longer than its lease`
        : `its lease was not renewed for ${Math.round(sinceRenewed)} ms`;
    this.stall = this.handler(reason).finally(() => {
      this.lastBeat = performance.now();
      this.stall = undefined;
    });
    return this.stall;
  }

  /** `target` with every method call waiting for check() first. */
  wrap<T extends object>(target: T): T {
    return new Proxy(target, {
      get: (object, property, receiver) => {
        const value: unknown = Reflect.get(object, property, receiver);
        if (typeof value !== 'function') return value;
        return async (...args: unknown[]) => {
          await this.check();
          return (value as (...a: unknown[]) => unknown).apply(object, args);
        };
      },
    });
  }
}
