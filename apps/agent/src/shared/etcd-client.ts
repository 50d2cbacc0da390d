import {
  Etcd3,
  GRPCDeadlineExceededError,
  GRPCUnavailableError,
  isRecoverableError,
  type IOptions,
} from 'etcd3';
import { readFileSync } from 'node:fs';

/** Deadline of every unary etcd call (streams such as lease keep-alives set their own). */
export const ETCD_CALL_TIMEOUT_MS = 5_000;

/** How to reach a cluster's etcd: its endpoints, mutual TLS (files) and etcd's own auth. */
export interface EtcdConnection {
  endpoints: readonly string[];
  /** CA of etcd's server certificate, and this client's certificate and key (PEM files). */
  tls?: { ca: string; cert: string; key: string };
  /** etcd's role-based auth, when enabled on the cluster. */
  auth?: { username: string; password: string };
}

/** etcd3 options for `connection`, with the TLS files read now; `timeoutMs` bounds each call. */
export function etcdClientOptions(
  connection: Omit<EtcdConnection, 'endpoints'> & { endpoints: readonly string[] },
  timeoutMs = ETCD_CALL_TIMEOUT_MS,
): IOptions {
  return {
    hosts: [...connection.endpoints],
    dialTimeout: timeoutMs,
    defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + timeoutMs }),
    ...(connection.tls
      ? {
          credentials: {
            rootCertificate: readFileSync(connection.tls.ca),
            certChain: readFileSync(connection.tls.cert),
            privateKey: readFileSync(connection.tls.key),
          },
        }
      : {}),
    ...(connection.auth ? { auth: { ...connection.auth } } : {}),
  };
}

/** The connection an agent configuration's `etcd` section describes (the password read from its file). */
export function etcdConnectionOf(etcd: {
  endpoints: readonly string[];
  tls?: { ca: string; cert: string; key: string };
  auth?: { username: string; passwordFile: string };
}): EtcdConnection {
  return {
    endpoints: etcd.endpoints,
    tls: etcd.tls,
    auth: etcd.auth && {
      username: etcd.auth.username,
      password: readFileSync(etcd.auth.passwordFile, 'utf8').trim(),
    },
  };
}

export function createEtcdClient(connection: EtcdConnection | readonly string[]): Etcd3 {
  return new Etcd3(
    etcdClientOptions(
      Array.isArray(connection)
        ? { endpoints: connection as readonly string[] }
        : (connection as EtcdConnection),
    ),
  );
}

/** True for failures that mean etcd could not be reached (not that it refused the request). */
export function isEtcdUnreachable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  // BrokenCircuitError: etcd3's circuit breaker (cockatiel) stops calls after repeated failures.
  return (
    error instanceof GRPCUnavailableError ||
    error instanceof GRPCDeadlineExceededError ||
    error.constructor.name === 'BrokenCircuitError' ||
    isRecoverableError(error)
  );
}
