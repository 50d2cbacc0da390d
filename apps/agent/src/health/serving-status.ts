/** A service's state in gRPC's health checking protocol (grpc.health.v1). */
export type ServingStatus = 'SERVING' | 'NOT_SERVING';

/** The agent's gRPC services, as health checks and rpc_service_status name them. */
export const AGENT_SERVICES = [
  'debvisor.v1.NodeService',
  'debvisor.v1.VmService',
  'debvisor.v1.StorageService',
  'debvisor.v1.MigrationService',
  'debvisor.v1.AccessService',
] as const;
export type AgentService = (typeof AGENT_SERVICES)[number];

/** The empty service name asks for the server as a whole. */
export const OVERALL = '';

type Listener = (status: ServingStatus) => void;

/**
 * The serving status of every service and of the server overall (`''`), as the health service
 * answers it: NOT_SERVING until the first evaluation, then whatever the health monitor decides;
 * watchers hear of every change. On shutdown everything turns NOT_SERVING, so that load balancers
 * drain the agent before it stops.
 */
export class ServingStatusBoard {
  private readonly statuses = new Map<string, ServingStatus>([
    [OVERALL, 'NOT_SERVING'],
    ...AGENT_SERVICES.map((s) => [s, 'NOT_SERVING'] as const),
  ]);
  private readonly listeners = new Map<string, Set<Listener>>();
  private readonly shutdownListeners = new Set<() => void>();
  private frozen = false;

  /** The status of a service; undefined for a service this agent does not have. */
  get(service: string): ServingStatus | undefined {
    return this.statuses.get(service);
  }

  all(): ReadonlyMap<string, ServingStatus> {
    return this.statuses;
  }

  /** Sets the services' statuses and the overall one (serving only when every service is). */
  update(services: Readonly<Record<AgentService, ServingStatus>>): void {
    if (this.frozen) return;
    for (const service of AGENT_SERVICES) this.set(service, services[service]);
    this.set(
      OVERALL,
      AGENT_SERVICES.every((service) => services[service] === 'SERVING')
        ? 'SERVING'
        : 'NOT_SERVING',
    );
  }

  /** Everything NOT_SERVING from now on (the agent is stopping); then shutdown listeners run. */
  shutdown(): void {
    for (const service of this.statuses.keys()) this.set(service, 'NOT_SERVING');
    this.frozen = true;
    for (const listener of [...this.shutdownListeners]) listener();
  }

  /** Calls `listener` once when the board shuts down (watch streams end then); answers the function that stops it. */
  onShutdown(listener: () => void): () => void {
    this.shutdownListeners.add(listener);
    return () => this.shutdownListeners.delete(listener);
  }

  /** Calls `listener` on every change of `service`'s status; answers the function that stops it. */
  watch(service: string, listener: Listener): () => void {
    let set = this.listeners.get(service);
    if (!set) this.listeners.set(service, (set = new Set()));
    set.add(listener);
    return () => set.delete(listener);
  }

  private set(service: string, status: ServingStatus): void {
    if (this.statuses.get(service) === status) return;
    this.statuses.set(service, status);
    for (const listener of this.listeners.get(service) ?? []) listener(status);
  }
}
