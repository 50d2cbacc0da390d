import type { ServiceError } from '@grpc/grpc-js';

/** The gRPC error a call failed with; fails the test when the call succeeds. */
export async function rpcError(call: Promise<unknown>): Promise<ServiceError> {
  try {
    await call;
  } catch (error) {
    return error as ServiceError;
  }
  throw new Error('the call succeeded, but it should have failed');
}

/** Polls `probe` until it answers a value other than undefined; answers it and how long it took. */
export async function eventually<T>(
  probe: () => Promise<T | undefined>,
  timeoutMs: number,
  intervalMs = 100,
): Promise<{ value: T; ms: number }> {
  const started = Date.now();
  let last: unknown;
  while (Date.now() - started < timeoutMs) {
    try {
      const value = await probe();
      if (value !== undefined) return { value, ms: Date.now() - started };
    } catch (error) {
      last = error;
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(
    `condition not met within ${timeoutMs} ms${last ? ` (last error: ${(last as Error).message})` : ''}`,
  );
}
