import { MIGRATION_PHASES } from '../task-details/migration-details.dto';
import type { TaskLogLine } from '../tasks/task.entity';

export type MigrationPhase = (typeof MIGRATION_PHASES)[number];
export type FinalPhase = Extract<MigrationPhase, 'completed' | 'failed' | 'cancelled'>;

export function isFinalPhase(phase: string): phase is FinalPhase {
  return phase === 'completed' || phase === 'failed' || phase === 'cancelled';
}

export interface JournalEntry {
  /** RFC 3339 */
  readonly at: string;
  readonly phase: MigrationPhase;
  readonly message: string;
}

const LINE = new RegExp(`^\\[(${MIGRATION_PHASES.join('|')})\\] (.*)$`, 's');

/**
 * The phase journal lives in the task's log: a line `[phase] message` per step, so that the log
 * reads as one story and the journal is the log's migration lines.
 */
export function journalLine(phase: MigrationPhase, message: string): string {
  return `[${phase}] ${message}`;
}

export function journalOf(log: readonly TaskLogLine[]): JournalEntry[] {
  const entries: JournalEntry[] = [];
  for (const line of log) {
    const match = LINE.exec(line.message);
    if (match) entries.push({ at: line.at, phase: match[1] as MigrationPhase, message: match[2] });
  }
  return entries;
}
