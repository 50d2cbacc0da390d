import { collectDefaultMetrics, Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** gRPC status codes by number, as their names appear in the `status` label. */
export const GRPC_STATUS_NAMES = [
  'OK',
  'CANCELLED',
  'UNKNOWN',
  'INVALID_ARGUMENT',
  'DEADLINE_EXCEEDED',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'ABORTED',
  'OUT_OF_RANGE',
  'UNIMPLEMENTED',
  'INTERNAL',
  'UNAVAILABLE',
  'DATA_LOSS',
  'UNAUTHENTICATED',
] as const;
export type GrpcStatusName = (typeof GRPC_STATUS_NAMES)[number];

/** The name of a gRPC status code; anything outside the table is UNKNOWN (label values stay bounded). */
export function grpcStatusName(code: number): GrpcStatusName {
  return GRPC_STATUS_NAMES[code] ?? 'UNKNOWN';
}

/**
 * prom-client's default gauges that end in `_total`, against Prometheus naming rules (promtool check
 * metrics refuses them); each is the sum of its unsuffixed sibling (e.g. sum(nodejs_active_handles)).
 */
const MISNAMED_DEFAULT_METRICS = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
];

/** prom-client's process and Node.js metrics in `registry`, without the misnamed ones. */
export function collectProcessMetrics(registry: Registry): void {
  collectDefaultMetrics({ register: registry });
  for (const name of MISNAMED_DEFAULT_METRICS) registry.removeSingleMetric(name);
}

/** The gRPC package of the agent's services: `rpc_*` metrics name services fully qualified. */
export const RPC_PACKAGE = 'debvisor.v1';

/** `VmService.StartVm` → `{ service: 'debvisor.v1.VmService', method: 'StartVm' }`. */
export function rpcLabels(rpc: string): { service: string; method: string } {
  const dot = rpc.indexOf('.');
  return { service: `${RPC_PACKAGE}.${rpc.slice(0, dot)}`, method: rpc.slice(dot + 1) };
}

/** Seconds; from a quick registry read to a power action that waits for a guest. */
export const RPC_DURATION_BUCKETS = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
];

export type AuthResult = 'success' | 'failure';

export interface RpcMetricsOptions {
  /** Every value the `method` label of auth_attempts_total takes (series start at 0). */
  readonly authMethods: readonly string[];
  /** Every value the `backend_service` label of backend_connection_errors_total takes. */
  readonly backends: readonly string[];
}

/**
 * The metrics of the DebVisor RPC guide, with its names, plus certificate expiry: the same
 * definitions on the agent (the RPCs it serves) and the manager (the RPCs it makes to agents, and
 * its own API's authentication). Every label takes values from a bounded set — gRPC service and
 * method names, status names, fixed method/backend/certificate names — never user input.
 */
export class RpcMetrics {
  private readonly requests: Counter<'service' | 'method' | 'status'>;
  private readonly duration: Histogram<'service' | 'method'>;
  private readonly authAttempts: Counter<'method' | 'result'>;
  private readonly authzDenials: Counter;
  private readonly rateLimitViolations: Counter;
  private readonly serviceStatus: Gauge<'service'>;
  private readonly backendErrors: Counter<'backend_service'>;
  private readonly certificateExpiry: Gauge<'cert'>;

  constructor(registry: Registry, options: RpcMetricsOptions) {
    const registers = [registry];
    this.requests = new Counter({
      name: 'rpc_requests_total',
      help: 'gRPC calls by service, method and final gRPC status',
      labelNames: ['service', 'method', 'status'],
      registers,
    });
    this.duration = new Histogram({
      name: 'rpc_request_duration_seconds',
      help: 'gRPC call duration in seconds, by service and method',
      labelNames: ['service', 'method'],
      buckets: RPC_DURATION_BUCKETS,
      registers,
    });
    this.authAttempts = new Counter({
      name: 'auth_attempts_total',
      help: 'Authentication attempts by method and result (success or failure)',
      labelNames: ['method', 'result'],
      registers,
    });
    this.authzDenials = new Counter({
      name: 'authz_denials_total',
      help: 'Requests refused because the authenticated caller lacks the permission',
      registers,
    });
    this.rateLimitViolations = new Counter({
      name: 'rate_limit_violations_total',
      help: 'Requests refused by a rate limit',
      registers,
    });
    this.serviceStatus = new Gauge({
      name: 'rpc_service_status',
      help: 'Whether a service is serving (1) or not (0)',
      labelNames: ['service'],
      registers,
    });
    this.backendErrors = new Counter({
      name: 'backend_connection_errors_total',
      help: 'Failed attempts to reach a backend (etcd, postgres, agent, ...)',
      labelNames: ['backend_service'],
      registers,
    });
    this.certificateExpiry = new Gauge({
      name: 'debvisor_certificate_expiry_timestamp_seconds',
      help: 'When a certificate in use expires (notAfter), as Unix time in seconds',
      labelNames: ['cert'],
      registers,
    });
    // Counters that alerts take rate() or increase() of start at 0, so that the first failure counts.
    for (const method of options.authMethods)
      for (const result of ['success', 'failure'] as const)
        this.authAttempts.inc({ method, result }, 0);
    for (const backend of options.backends) this.backendErrors.inc({ backend_service: backend }, 0);
  }

  /** One finished call; `status` is its gRPC status code (0 for OK). */
  observeCall(service: string, method: string, status: number, seconds: number): void {
    this.requests.inc({ service, method, status: grpcStatusName(status) });
    this.duration.observe({ service, method }, seconds);
  }

  authAttempt(method: string, result: AuthResult): void {
    this.authAttempts.inc({ method, result });
  }

  authzDenied(): void {
    this.authzDenials.inc();
  }

  rateLimitViolation(): void {
    this.rateLimitViolations.inc();
  }

  setServiceStatus(service: string, serving: boolean): void {
    this.serviceStatus.set({ service }, serving ? 1 : 0);
  }

  backendConnectionError(backend: string): void {
    this.backendErrors.inc({ backend_service: backend });
  }

  setCertificateExpiry(cert: string, notAfter: Date): void {
    this.certificateExpiry.set({ cert }, Math.floor(notAfter.getTime() / 1000));
  }
}
