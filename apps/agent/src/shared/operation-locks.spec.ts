import { describe, expect, it } from 'vitest';
import { ErrorCode } from './agent-error';
import { OperationLocks } from './operation-locks';

describe('OperationLocks', () => {
  it('refuses a second operation on a key, naming the first, until it is released', () => {
    const locks = new OperationLocks('VM');
    const release = locks.hold('u1', 'snapshot', 'web-01');
    expect(() => locks.hold('u1', 'migration', 'web-01')).toThrow(
      expect.objectContaining({
        code: ErrorCode.FailedPrecondition,
        message:
          'VM web-01 is busy: a snapshot operation is in progress; try again when it has finished',
      }),
    );
    expect(locks.holder('u1')).toBe('snapshot');
    release();
    release(); // idempotent: it does not release a later holder
    const again = locks.hold('u1', 'migration');
    release();
    expect(locks.holder('u1')).toBe('migration');
    again();
    expect(locks.holder('u1')).toBeUndefined();
  });

  it('takes several keys all or none', () => {
    const locks = new OperationLocks('image');
    locks.hold('rbd/b', 'demote');
    expect(() => locks.holdAll(['rbd/a', 'rbd/b', 'rbd/c'], 'snapshot')).toThrow(
      /image rbd\/b is busy: a demote operation/,
    );
    expect([locks.holder('rbd/a'), locks.holder('rbd/c')]).toEqual([undefined, undefined]);
  });

  it('releases the key when the task fails', async () => {
    const locks = new OperationLocks('VM');
    await expect(
      locks.with('u1', 'rollback', () => Promise.reject(new Error('boom'))),
    ).rejects.toThrow('boom');
    expect(locks.holder('u1')).toBeUndefined();
  });
});
