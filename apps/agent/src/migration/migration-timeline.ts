import type { Logger } from '../shared/logger';

/**
 * When each step of one migration happened on this agent (wall-clock milliseconds, 0.1 ms
 * precision), logged once as one line at its end (`migration timeline`): where a migration's time
 * goes, readable from the logs of the manager and both agents side by side (the migration
 * benchmark puts them together).
 */
export class MigrationTimeline {
  private readonly steps: { step: string; at: number }[] = [];
  private logged = false;

  constructor(first?: string) {
    if (first) this.mark(first);
  }

  mark(step: string): void {
    this.steps.push({
      step,
      at: Math.round((performance.timeOrigin + performance.now()) * 10) / 10,
    });
  }

  /** Logs the steps so far (once; a later call does nothing). */
  log(logger: Logger, fields: Record<string, unknown>): void {
    if (this.logged || this.steps.length === 0) return;
    this.logged = true;
    logger.info({ ...fields, steps: this.steps }, 'migration timeline');
  }
}
