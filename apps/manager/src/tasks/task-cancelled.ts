import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';

/**
 * Thrown by a task handler whose task was cancelled on request: the task ends `cancelled` with this
 * message as its error (say what state things were left in).
 */
export class TaskCancelled extends DomainError {
  constructor(message: string) {
    super(ErrorCode.Conflict, message);
    this.name = 'TaskCancelled';
  }
}
