import type { RequestHandler } from 'express';
import { AsyncLocalStorage, AsyncResource } from 'node:async_hooks';
import { newTraceId, traceIdOf } from './trace-id';

interface TraceContext {
  readonly traceId: string;
}

const storage = new AsyncLocalStorage<TraceContext>();

/**
 * A resource created when this module loads, outside any request: running in its scope leaves every
 * async-local context behind (ours and the request logger's), so that background work started
 * from inside a request does not carry that request's context by accident.
 */
const outside = new AsyncResource('debvisor-background');

/**
 * The trace id of the work in progress: the request's (the caller's traceparent or x-trace-id,
 * else a new one) while a request is handled, the task's or the refresh's in background work;
 * undefined outside of both. What the manager sends agents as x-debvisor-trace-id, and what the
 * audit log records.
 */
export function currentTraceId(): string | undefined {
  return storage.getStore()?.traceId;
}

/** Runs `work` with `traceId` as the current trace id (inside whatever else the caller's context holds). */
export function runWithTraceId<T>(traceId: string, work: () => T): T {
  return storage.run({ traceId }, work);
}

/**
 * Runs background `work` detached from the caller's context, under its own trace id (a new one by
 * default): a poller refresh, a task started by an earlier request.
 */
export function runInBackground<T>(work: () => T, traceId: string = newTraceId()): T {
  return outside.runInAsyncScope(() => storage.run({ traceId }, work));
}

/**
 * Express middleware: the rest of the request runs with the request's trace id as the current one.
 * Mounted after the body parser, which would otherwise resume the request outside this context.
 */
export function traceContextMiddleware(): RequestHandler {
  return (req, _res, next) => storage.run({ traceId: traceIdOf(req) }, next);
}
