import { DomainError } from '../common/domain-error';

/** A DR task's journal line: "[step] message", the step an operator can follow in the task log. */
export const DR_STEPS = [
  'check',
  'pair',
  'enable',
  'disable',
  'stop',
  'snapshot',
  'sync',
  'fence',
  'demote',
  'promote',
  'move',
  'start',
  'resync',
  'rollback',
  'done',
] as const;
export type DrStep = (typeof DR_STEPS)[number];

export function drLine(step: DrStep, message: string): string {
  return `[${step}] ${message}`;
}

export function messageOf(error: unknown): string {
  return error instanceof DomainError ? error.message : 'an unexpected error (see the manager log)';
}
