import { describe, expect, it } from 'vitest';
import type { Schedule } from './queries';
import { intervalInWords, rollbackLoss, schedulesOfVm, scheduleInWords } from './snapshot-view';

const snapshot = {
  name: 'before-upgrade',
  createdAt: '2026-12-07T12:00:00.000Z',
  disks: [{ pool: 'rbd', image: 'a', sizeBytes: 1 }],
};
const NOW = Date.parse('2026-12-07T12:30:00.000Z');

describe('what a rollback loses, in words', () => {
  it('names the time since which writes are lost, in UTC too, and that it cannot be undone', () => {
    const [loss, ...rest] = rollbackLoss(
      snapshot,
      { name: 'web-1', status: 'stopped' },
      false,
      NOW,
    );
    expect(loss).toContain('Everything written to its disk since');
    expect(loss).toContain('2026-12-07 12:00:00 UTC');
    expect(loss).toContain('30 min ago');
    expect(loss).toContain('snapshot before-upgrade');
    expect(rest).toEqual([]);
  });

  it('says a running VM is stopped first when asked, and refused otherwise', () => {
    expect(rollbackLoss(snapshot, { name: 'web-1', status: 'running' }, true, NOW)[1]).toMatch(
      /web-1 is running: it will be stopped first/,
    );
    expect(rollbackLoss(snapshot, { name: 'web-1', status: 'running' }, false, NOW)[1]).toMatch(
      /refused unless it is stopped/,
    );
  });

  it('counts the disks of a group snapshot', () => {
    expect(
      rollbackLoss(
        { ...snapshot, disks: [...snapshot.disks, ...snapshot.disks] },
        { name: 'db', status: 'stopped' },
        false,
        NOW,
      )[0],
    ).toContain('all 2 of its disks');
  });
});

describe('schedules in words', () => {
  it.each([
    ['1h', 'every hour'],
    ['15m', 'every 15 minutes'],
    ['7d', 'every 7 days'],
  ])('%s is %s', (interval, words) => {
    expect(intervalInWords(interval)).toBe(words);
  });

  it('says the cron expression is in UTC and the retention', () => {
    expect(scheduleInWords({ interval: null, cron: '0 3 * * *', keep: 7 })).toBe(
      'cron "0 3 * * *" (UTC), keeps 7',
    );
    expect(scheduleInWords({ interval: '1h', cron: null, keep: 24 })).toBe('every hour, keeps 24');
  });
});

describe("a VM's schedules", () => {
  const base = {
    interval: '1h',
    cron: null,
    keep: 1,
    freeze: true,
    enabled: true,
    owner: 'a',
    createdAt: '',
    updatedAt: '',
    lastRunAt: null,
    lastTaskId: null,
    nextRunAt: '',
  };
  const schedule = (id: string, target: Partial<Schedule['target']>): Schedule => ({
    ...base,
    id,
    name: id,
    target: { type: 'vm', remote: 'dc-east', vm: null, labels: null, pool: null, ...target },
  });
  const vm = {
    remote: 'dc-east',
    id: 'AAAA',
    labels: { env: 'prod', tier: 'web' },
    disks: [{ pool: 'rbd' }],
  };

  it('are its own, and those of its remote matching its labels or pools', () => {
    const found = schedulesOfVm(
      [
        schedule('own', { vm: 'aaaa' }),
        schedule('other-vm', { vm: 'bbbb' }),
        schedule('labels', { type: 'labels', labels: { env: 'prod' } }),
        schedule('labels-miss', { type: 'labels', labels: { env: 'test' } }),
        schedule('pool', { type: 'pool', pool: 'rbd' }),
        schedule('other-remote', { remote: 'dc-west', vm: 'aaaa' }),
      ],
      vm,
    );
    expect(found.map((f) => [f.schedule.id, f.through])).toEqual([
      ['own', null],
      ['labels', 'labels env=prod'],
      ['pool', 'pool rbd'],
    ]);
  });
});
