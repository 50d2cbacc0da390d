import { describe, expect, it } from 'vitest';
import {
  currentTargetRoute,
  isActive,
  isUnfiltered,
  listRefreshMs,
  logBesidesJournal,
  NO_TASK_FILTER,
  pageInfo,
  targetLabel,
  targetRoute,
  taskListQuery,
  taskSeconds,
  type Task,
} from './task-view';

describe('the tasks page', () => {
  it('asks the API only for the filters that are set, and for one page', () => {
    expect(taskListQuery(NO_TASK_FILTER, 0)).toEqual({ limit: 25, offset: 0 });
    expect(
      taskListQuery({ state: 'failed', type: 'vm.migrate', remote: ' dc-east ' }, 50, 10),
    ).toEqual({ state: 'failed', type: 'vm.migrate', remote: 'dc-east', limit: 10, offset: 50 });
    expect(taskListQuery(NO_TASK_FILTER, -5).offset).toBe(0);
    expect(isUnfiltered({ state: '', type: '', remote: '  ' })).toBe(true);
    expect(isUnfiltered({ state: 'running', type: '', remote: '' })).toBe(false);
  });

  it('pages through the total the server reports', () => {
    expect(pageInfo(0, 0, 25)).toEqual({ label: 'No tasks', previous: null, next: null });
    expect(pageInfo(60, 0, 25)).toEqual({ label: '1–25 of 60', previous: null, next: 25 });
    expect(pageInfo(60, 25, 25)).toEqual({ label: '26–50 of 60', previous: 0, next: 50 });
    expect(pageInfo(60, 50, 25)).toEqual({ label: '51–60 of 60', previous: 25, next: null });
    expect(pageInfo(60, 10, 25).previous).toBe(0);
  });

  it('polls every 2 s while a task is queued or running', () => {
    expect(isActive('queued')).toBe(true);
    expect(isActive('cancelled')).toBe(false);
    expect(listRefreshMs([{ state: 'succeeded' }, { state: 'running' }])).toBe(2000);
    expect(listRefreshMs([{ state: 'succeeded' }])).toBeGreaterThan(2000);
    expect(listRefreshMs(undefined)).toBeGreaterThan(2000);
  });

  it('links a task to its VM', () => {
    const vm = '6f1c2b9e-0000-4000-8000-000000000001';
    expect(targetRoute({ target: { remote: 'dc-east', vm } })).toEqual({
      page: 'vm',
      remote: 'dc-east',
      vmid: vm,
    });
    expect(targetRoute({ target: { remote: 'dc-east', vm: null } })).toBeNull();
    expect(targetLabel({ target: { remote: 'dc-east', vm }, vm: null })).toBe(
      'dc-east / 6f1c2b9e…',
    );
    expect(targetLabel({ target: { remote: null, vm: null }, vm: null })).toBe('—');
  });

  it("names a task's VM and where it is now, and links there, once the manager lists it (also after a move to another remote)", () => {
    const vm = '6f1c2b9e-0000-4000-8000-000000000001';
    const now = { name: 'web-01', remote: 'dc-west', node: 'west-2' };
    expect(targetLabel({ target: { remote: 'dc-east', vm }, vm: now })).toBe(
      'web-01 on dc-west / west-2',
    );
    expect(currentTargetRoute({ target: { remote: 'dc-east', vm }, vm: now })).toEqual({
      page: 'vm',
      remote: 'dc-west',
      vmid: vm,
    });
    expect(currentTargetRoute({ target: { remote: 'dc-east', vm }, vm: null })).toEqual({
      page: 'vm',
      remote: 'dc-east',
      vmid: vm,
    });
  });

  it("shows a migration's log without the lines its journal already shows", () => {
    const log = [
      { at: '2026-01-01T00:00:00.000Z', message: 'queued by alice@local' },
      { at: '2026-01-01T00:00:01.000Z', message: '[preflight] checking both ends' },
      { at: '2026-01-01T00:00:02.000Z', message: '[transfer] source: precopy' },
      { at: '2026-01-01T00:00:03.000Z', message: 'the VM is running on node east-1' },
    ];
    const migration = { phase: 'completed', journal: [] } as unknown as Task['migration'];
    expect(logBesidesJournal({ type: 'vm.migrate', log, migration }).map((l) => l.message)).toEqual(
      ['queued by alice@local', 'the VM is running on node east-1'],
    );
    expect(logBesidesJournal({ type: 'vm.start', log, migration: undefined })).toEqual(log);
  });

  it('measures how long a task ran, or has been running', () => {
    const startedAt = '2025-01-01T10:00:00.000Z';
    expect(taskSeconds({ startedAt: null, finishedAt: null }, Date.parse(startedAt))).toBeNull();
    expect(taskSeconds({ startedAt, finishedAt: '2025-01-01T10:01:30.000Z' }, 0)).toBe(90);
    expect(taskSeconds({ startedAt, finishedAt: null }, Date.parse(startedAt) + 5000)).toBe(5);
  });
});
