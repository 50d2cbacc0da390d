import { describe, expect, it } from 'vitest';
import {
  bySeverity,
  filterRemotes,
  remoteHealth,
  share,
  type RemoteFigures,
} from './remote-health';

const healthy: RemoteFigures = {
  status: 'online',
  nodes: { total: 3, alive: 3, degraded: 0, offline: 0 },
  alerts: [],
};

describe('remoteHealth', () => {
  it('is online when every node is alive and healthy and nothing is alerting', () => {
    expect(remoteHealth(healthy)).toBe('online');
  });

  it('is degraded with an offline node, an unhealthy node or any alert', () => {
    expect(
      remoteHealth({ ...healthy, nodes: { total: 3, alive: 2, degraded: 0, offline: 1 } }),
    ).toBe('degraded');
    expect(
      remoteHealth({ ...healthy, nodes: { total: 3, alive: 3, degraded: 1, offline: 0 } }),
    ).toBe('degraded');
    expect(remoteHealth({ ...healthy, alerts: [{ severity: 'warning' }] })).toBe('degraded');
  });

  it('keeps unreachable and pending whatever the figures say', () => {
    expect(remoteHealth({ ...healthy, status: 'unreachable' })).toBe('unreachable');
    expect(
      remoteHealth({ ...healthy, status: 'pending', alerts: [{ severity: 'critical' }] }),
    ).toBe('pending');
  });
});

describe('bySeverity', () => {
  it('puts critical alerts first and keeps the order within a severity', () => {
    const alerts = [
      { severity: 'warning' as const, message: 'a' },
      { severity: 'critical' as const, message: 'b' },
      { severity: 'warning' as const, message: 'c' },
      { severity: 'critical' as const, message: 'd' },
    ];
    expect(bySeverity(alerts).map((a) => a.message)).toEqual(['b', 'd', 'a', 'c']);
    expect(alerts[0].message).toBe('a');
  });
});

describe('filterRemotes', () => {
  const remotes = [{ remote: 'dc-east' }, { remote: 'dc-west' }, { remote: 'lab' }];
  it('keeps the remotes whose name contains the filter, ignoring case and spaces', () => {
    expect(filterRemotes(remotes, ' DC-')).toEqual([{ remote: 'dc-east' }, { remote: 'dc-west' }]);
    expect(filterRemotes(remotes, 'west')).toEqual([{ remote: 'dc-west' }]);
  });
  it('keeps all for an empty filter', () => {
    expect(filterRemotes(remotes, '  ')).toBe(remotes);
  });
});

describe('share', () => {
  it('is used / total within 0..1, and 0 without a total', () => {
    expect(share(1, 4)).toBe(0.25);
    expect(share(5, 4)).toBe(1);
    expect(share(3, 0)).toBe(0);
  });
});
