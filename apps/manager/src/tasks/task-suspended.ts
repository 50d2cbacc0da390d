/**
 * Thrown by a resumable task handler when the manager is shutting down: the task is left `running`
 * as it is, and the handler's resume() settles it after the next start.
 */
export class TaskSuspended extends Error {
  constructor() {
    super('left running for the next start of the manager');
    this.name = 'TaskSuspended';
  }
}
