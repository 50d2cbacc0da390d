import { describe, expect, it } from 'vitest';
import type { Task } from '../tasks/task-view';
import {
  formatMs,
  migrationResult,
  percentSent,
  phaseLabel,
  progressFigures,
  type MigrationDetails,
} from './migration-progress';

const MiB = 1024 * 1024;

function details(change: Partial<MigrationDetails> = {}): MigrationDetails {
  return {
    phase: 'transfer',
    vm: '6f1c2b9e-0000-4000-8000-000000000001',
    source: { remote: 'dc-east', node: 'node-1' },
    target: { remote: 'dc-west', node: 'node-2' },
    options: {
      online: true,
      transport: 'tunnel',
      mode: 'precopy',
      autoConverge: false,
      allowPostcopy: false,
      downtimeLimitMs: 300,
      bandwidthLimitBytes: MiB,
      completionTimeoutSecondsPerGib: 60,
      storageMap: {},
      networkMap: {},
    },
    progress: {
      stage: 'precopy',
      transferredBytes: 1536 * MiB,
      remainingBytes: 2560 * MiB,
      totalBytes: 4096 * MiB,
      dirtyRateBytes: 12 * MiB,
      expectedDowntimeMs: 240,
      etaSeconds: 2560,
      iteration: 2,
      downtimeMs: null,
      totalTimeMs: null,
      message: '',
    },
    journal: [],
    createdAt: '2025-01-01T10:00:00.000Z',
    transferStartedAt: '2025-01-01T10:00:01.000Z',
    finishedAt: null,
    updatedAt: '2025-01-01T10:00:30.000Z',
    ...change,
  };
}

function task(change: Partial<Task> = {}): Task {
  return {
    id: 'c0ffee00-0000-4000-8000-000000000001',
    type: 'vm.migrate',
    state: 'running',
    target: { remote: 'dc-east', vm: '6f1c2b9e-0000-4000-8000-000000000001' },
    vm: null,
    owner: 'admin@local',
    progress: 0.05 + 0.9 * 0.375,
    log: [],
    error: null,
    createdAt: '2025-01-01T10:00:00.000Z',
    startedAt: '2025-01-01T10:00:00.500Z',
    finishedAt: null,
    updatedAt: '2025-01-01T10:00:30.000Z',
    migration: details(),
    ...change,
  };
}

describe('migration progress', () => {
  it('shows the figures with their units and the percentage from the task’s progress', () => {
    expect(progressFigures(task())).toMatchObject({
      percent: 38,
      phaseLabel: 'Transfer',
      stage: 'precopy',
      transferred: '1.5 GiB',
      remaining: '2.5 GiB',
      total: '4.0 GiB',
      dirtyRate: '12.0 MiB/s',
      expectedDowntime: '240 ms',
      eta: '42 min 40 s',
      iteration: '2',
      downtime: null,
    });
  });

  it('says the ETA is being estimated while the source has none, and done once completed', () => {
    const noEta = task({
      migration: details({ progress: { ...details().progress!, etaSeconds: 0 } }),
    });
    expect(progressFigures(noEta)?.eta).toBe('estimating…');
    expect(
      progressFigures(task({ migration: details({ phase: 'prepare', progress: null }) })),
    ).toMatchObject({ eta: 'not started', transferred: '—', phaseLabel: 'Prepare target' });
    const done = task({
      state: 'succeeded',
      progress: 1,
      migration: details({
        phase: 'completed',
        progress: {
          ...details().progress!,
          stage: 'completed',
          remainingBytes: 0,
          downtimeMs: 85,
          totalTimeMs: 8_500,
        },
      }),
    });
    expect(progressFigures(done)).toMatchObject({
      percent: 100,
      eta: 'done',
      downtime: '85 ms',
      totalTime: '8.5 s',
      phaseLabel: 'Completed',
    });
  });

  it('shows the share of memory sent, which a later pass may lower again, within 0…100', () => {
    const figures = details().progress!;
    expect(
      percentSent(
        task({ migration: details({ progress: { ...figures, remainingBytes: 1024 * MiB } }) }),
      ),
    ).toBe(75);
    expect(
      percentSent(
        task({ migration: details({ progress: { ...figures, remainingBytes: 8192 * MiB } }) }),
      ),
    ).toBe(0);
    // Before the first figures: the task's own progress, except in the transfer (nothing known sent yet).
    expect(
      percentSent(
        task({ progress: 0.05, migration: details({ phase: 'prepare', progress: null }) }),
      ),
    ).toBe(5);
    expect(percentSent(task({ progress: 0.05, migration: details({ progress: null }) }))).toBe(0);
    expect(percentSent(task({ progress: 1.4, migration: details({ phase: 'completed' }) }))).toBe(
      100,
    );
  });

  it('has nothing to show for a task without migration details', () => {
    expect(progressFigures(task({ migration: undefined }))).toBeNull();
  });

  it('formats milliseconds', () => {
    expect(formatMs(0)).toBe('0 ms');
    expect(formatMs(999.6)).toBe('1000 ms');
    expect(formatMs(1500)).toBe('1.5 s');
    expect(formatMs(42_000)).toBe('42 s');
    expect(formatMs(32_743_000)).toBe('9 h 5 min');
    expect(formatMs(null)).toBe('—');
    expect(phaseLabel('cancelled')).toBe('Cancelled');
  });
});

describe('migration result', () => {
  it('is none while the task runs', () => {
    expect(migrationResult(task())).toBeNull();
    expect(migrationResult(task({ state: 'queued' }))).toBeNull();
  });

  it('puts the VM at the target after a success', () => {
    expect(
      migrationResult(task({ state: 'succeeded', migration: details({ phase: 'completed' }) })),
    ).toEqual({ state: 'succeeded', remote: 'dc-west', node: 'node-2', error: null });
  });

  it('keeps the VM at its source, with the error, after a failure or a cancel', () => {
    const error = 'cancelled by admin@local: the VM keeps running on node node-1';
    expect(
      migrationResult(
        task({ state: 'cancelled', error, migration: details({ phase: 'cancelled' }) }),
      ),
    ).toEqual({ state: 'cancelled', remote: 'dc-east', node: 'node-1', error });
    expect(migrationResult(task({ state: 'failed', error: 'boom', migration: undefined }))).toEqual(
      { state: 'failed', remote: 'dc-east', node: null, error: 'boom' },
    );
  });
});
