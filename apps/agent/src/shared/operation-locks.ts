import { AgentError, ErrorCode } from './agent-error';

/** Releases what `OperationLocks.hold` took. Idempotent. */
export type Release = () => void;

/**
 * One operation at a time per key (a VM uuid, a "pool/image"), within this agent: a second
 * operation is refused, not queued, with an error that names the operation holding the key — the
 * same rule and wording as the hypervisor drivers' own VM locks, which cover the hypervisor's side.
 * Storage operations, migrations and VM power operations take the VM's key, so none of them can
 * start while another holds the VM.
 */
export class OperationLocks {
  private readonly held = new Map<string, string>();

  /** @param kind what a key names in messages ("VM", "image") */
  constructor(private readonly kind: string) {}

  /** The operation holding `key`, undefined when free. */
  holder(key: string): string | undefined {
    return this.held.get(key);
  }

  /** Takes `key` for `operation`; FAILED_PRECONDITION naming the holder when it is taken. `label` names the key in the message. */
  hold(key: string, operation: string, label = key): Release {
    const holder = this.held.get(key);
    if (holder !== undefined) throw busy(this.kind, label, holder);
    this.held.set(key, operation);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (this.held.get(key) === operation) this.held.delete(key);
    };
  }

  /** Takes every key (all or none), in a fixed order. */
  holdAll(
    keys: readonly string[],
    operation: string,
    labelOf: (key: string) => string = (key) => key,
  ): Release {
    const releases: Release[] = [];
    try {
      for (const key of [...new Set(keys)].sort())
        releases.push(this.hold(key, operation, labelOf(key)));
    } catch (error) {
      for (const release of releases) release();
      throw error;
    }
    return () => releases.forEach((release) => release());
  }

  /** Runs `task` while holding `key`. */
  async with<T>(key: string, operation: string, task: () => Promise<T>, label = key): Promise<T> {
    const release = this.hold(key, operation, label);
    try {
      return await task();
    } finally {
      release();
    }
  }
}

export function busy(kind: string, label: string, holder: string): AgentError {
  return new AgentError(
    ErrorCode.FailedPrecondition,
    `${kind} ${label} is busy: a ${holder} operation is in progress; try again when it has finished`,
  );
}
