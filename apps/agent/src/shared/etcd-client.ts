import { Etcd3, GRPCDeadlineExceededError, GRPCUnavailableError, isRecoverableError } from 'etcd3';

/** Deadline of every unary etcd call (streams such as lease keep-alives set their own). */
export const ETCD_CALL_TIMEOUT_MS = 5_000;

export function createEtcdClient(endpoints: readonly string[]): Etcd3 {
  return new Etcd3({
    hosts: [...endpoints],
    dialTimeout: ETCD_CALL_TIMEOUT_MS,
    defaultCallOptions: (context) =>
      context.isStream ? {} : { deadline: Date.now() + ETCD_CALL_TIMEOUT_MS },
  });
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
