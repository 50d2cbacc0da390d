import pino, { type Logger } from 'pino';

export type { Logger };

/**
 * JSON logs on stdout. Authorization metadata and key material are redacted as a second line of
 * defence; code never passes them to the logger in the first place.
 */
export function createLogger(level: string, bindings: Record<string, string> = {}): Logger {
  return pino({
    level,
    base: { service: 'debvisor-rpcd', ...bindings },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: {
      paths: ['authorization', '*.authorization', 'secret', '*.secret', 'key', '*.key'],
      censor: '[redacted]',
    },
  });
}

/**
 * For the few lifecycle lines (agent ready, shutting down, stopped) that supervisors and the test
 * harness wait for: logged at info whatever logLevel says.
 */
export function lifecycleLogger(logger: Logger): Logger {
  return logger.child({}, { level: 'info' });
}
