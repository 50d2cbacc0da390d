import type { PinoLogger } from 'nestjs-pino';

/**
 * When each step of one migration happened in the manager (wall-clock milliseconds, 0.1 ms
 * precision), logged once as one line when the work on it ends (`migration timeline`): with the
 * agents' lines of the same name, where a migration's time goes (the migration benchmark puts them
 * together).
 */
export class MigrationTimeline {
  private readonly steps: { step: string; at: number }[] = [];
  private logged = false;

  mark(step: string): void {
    this.steps.push({
      step,
      at: Math.round((performance.timeOrigin + performance.now()) * 10) / 10,
    });
  }

  /** Logs the steps so far (once; a later call does nothing). */
  log(logger: PinoLogger, fields: Record<string, unknown>): void {
    if (this.logged || this.steps.length === 0) return;
    this.logged = true;
    logger.info({ ...fields, steps: this.steps }, 'migration timeline');
  }
}
