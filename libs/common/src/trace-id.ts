/**
 * Trace ids travel from the manager to agents (and from agent to agent when a call is forwarded) in
 * this gRPC metadata key, so that one operation can be followed through every log.
 */
export const TRACE_ID_METADATA = 'x-debvisor-trace-id';

/**
 * What a trace id may look like wherever one is accepted from outside: 8-128 characters, letters,
 * digits and `. _ : -`, starting with a letter or digit. No spaces, quotes or separators of log
 * formats. A W3C trace id (32 hex digits) and the manager's own ids fit.
 */
export const TRACE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{7,127}$/;

export function isTraceId(value: unknown): value is string {
  return typeof value === 'string' && TRACE_ID_PATTERN.test(value);
}
