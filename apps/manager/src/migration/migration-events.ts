import { Injectable } from '@nestjs/common';

/** A migration that moved a VM to another remote has completed: the VM runs (or is defined) there now. */
export interface VmMovedEvent {
  readonly type: 'vm-moved';
  /** The task that carried the migration out (a vm.migrate task, or another feature's task that moved the VM). */
  readonly taskId: string;
  readonly vmId: string;
  readonly fromRemote: string;
  readonly toRemote: string;
  readonly online: boolean;
}

/** What a listener did about the event, in one sentence for the task's journal (undefined: nothing). */
export type VmMovedListener = (event: VmMovedEvent) => Promise<string | undefined>;

/**
 * Tells other features that a VM changed remotes (the replication feature swaps its DR roles), so
 * that the migration feature writes no other feature's table and imports none of them. Listeners
 * are awaited: when the task ends, what they record is there. A listener must be idempotent (a
 * migration settled again after a manager restart tells it again).
 */
@Injectable()
export class MigrationEvents {
  private readonly listeners = new Set<VmMovedListener>();

  subscribe(listener: VmMovedListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Every listener's note, or its failure (one listener's failure does not keep the others from hearing). */
  async emit(event: VmMovedEvent): Promise<PromiseSettledResult<string | undefined>[]> {
    return Promise.allSettled([...this.listeners].map((listener) => listener(event)));
  }
}
