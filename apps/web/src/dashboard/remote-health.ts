/**
 * How a remote looks on the dashboard, from the figures the manager answers: unreachable and
 * degraded remotes must stand out (by word and icon as well as colour).
 */
export type RemoteHealth = 'unreachable' | 'degraded' | 'pending' | 'online';

export interface RemoteFigures {
  status: 'pending' | 'online' | 'unreachable';
  nodes: { total: number; alive: number; degraded: number; offline: number };
  alerts: readonly { severity: 'critical' | 'warning' }[];
}

/** Online with an offline or unhealthy node, or any alert, is degraded. */
export function remoteHealth(remote: RemoteFigures): RemoteHealth {
  if (remote.status === 'unreachable') return 'unreachable';
  if (remote.status === 'pending') return 'pending';
  if (remote.nodes.offline > 0 || remote.nodes.degraded > 0 || remote.alerts.length > 0)
    return 'degraded';
  return 'online';
}

/** The word and the icon of each health (the icon is decoration; the word is what is read out). */
export const HEALTH_LABEL: Record<RemoteHealth, { word: string; icon: string }> = {
  unreachable: { word: 'Unreachable', icon: '✖' },
  degraded: { word: 'Degraded', icon: '▲' },
  pending: { word: 'Pending', icon: '…' },
  online: { word: 'Online', icon: '✔' },
};

const SEVERITY_ORDER = { critical: 0, warning: 1 } as const;

/** Critical first; within a severity the order stays (the manager's: by remote). */
export function bySeverity<T extends { severity: 'critical' | 'warning' }>(
  alerts: readonly T[],
): T[] {
  return [...alerts].sort((a, b) => SEVERITY_ORDER[a.severity] - SEVERITY_ORDER[b.severity]);
}

/** The remotes whose name contains `filter` (ignoring case and surrounding spaces); all for an empty filter. */
export function filterRemotes<T extends { remote: string }>(
  remotes: readonly T[],
  filter: string,
): readonly T[] {
  const wanted = filter.trim().toLowerCase();
  return wanted ? remotes.filter((r) => r.remote.toLowerCase().includes(wanted)) : remotes;
}

/** used / total as a share (0 when there is nothing to use). */
export function share(used: number, total: number): number {
  return total > 0 ? Math.min(1, Math.max(0, used / total)) : 0;
}
