import { describe, expect, it } from 'vitest';
import { VM_ACTIONS } from '../agents/agent-connection';
import { MIGRATION_TASK } from '../migration/migration.service';
import { PAIR_TASK } from '../replication/replication-pairs.service';
import { DR_TASKS } from '../replication/vm-replication.service';
import { SCHEDULE_RUN_TASK } from '../snapshots/snapshot-schedules.service';
import {
  SNAPSHOT_CREATE_TASK,
  SNAPSHOT_DELETE_TASK,
  SNAPSHOT_ROLLBACK_TASK,
} from '../snapshots/snapshots.service';
import { taskSchema } from './tasks.dto';

describe('the task view in the API document', () => {
  it('names every task type a feature registers', () => {
    const described = new Set(String(taskSchema.shape.type.meta()?.description).split(' | '));
    const registered = [
      ...VM_ACTIONS.map((action) => `vm.${action}`),
      MIGRATION_TASK,
      SNAPSHOT_CREATE_TASK,
      SNAPSHOT_DELETE_TASK,
      SNAPSHOT_ROLLBACK_TASK,
      SCHEDULE_RUN_TASK,
      PAIR_TASK,
      ...Object.values(DR_TASKS),
    ];
    expect(registered.filter((type) => !described.has(type))).toEqual([]);
    expect([...described].filter((type) => !registered.includes(type))).toEqual([]);
  });
});
