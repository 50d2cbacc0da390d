import type { HaNode, HaOverview, HaPolicy, HaVm } from './queries';

/** How a state reads: its word, an icon (never colour alone) and its tone. */
export interface StateLabel {
  readonly word: string;
  readonly icon: string;
  readonly tone: 'ok' | 'warn' | 'bad' | 'muted';
}

export const VM_STATE_LABEL: Record<HaVm['state'], StateLabel> = {
  protected: { word: 'Protected', icon: '✔', tone: 'ok' },
  recovering: { word: 'Recovering', icon: '↻', tone: 'warn' },
  fenced: { word: 'Fenced', icon: '✖', tone: 'bad' },
  error: { word: 'Error', icon: '✖', tone: 'bad' },
  disabled: { word: 'HA off', icon: '–', tone: 'muted' },
  stopped: { word: 'Stopped on purpose', icon: '■', tone: 'muted' },
  unknown: { word: 'Unknown', icon: '?', tone: 'muted' },
};

export const NODE_STATE_LABEL: Record<HaNode['state'], StateLabel> = {
  online: { word: 'Online', icon: '✔', tone: 'ok' },
  draining: { word: 'Draining', icon: '⇥', tone: 'warn' },
  maintenance: { word: 'In maintenance', icon: '‖', tone: 'muted' },
  suspect: { word: 'Suspect', icon: '▲', tone: 'warn' },
  fencing: { word: 'Being fenced', icon: '✖', tone: 'bad' },
  fenced: { word: 'Fenced', icon: '✖', tone: 'bad' },
  'fence-failed': { word: 'Fence unconfirmed', icon: '✖', tone: 'bad' },
  rejoining: { word: 'Rejoining', icon: '↻', tone: 'warn' },
  unknown: { word: 'Unknown', icon: '?', tone: 'muted' },
};

/** The VM's HA state in words, with what the cluster says when that adds something. */
export function vmStateInWords(vm: Pick<HaVm, 'state' | 'clusterState' | 'reason'>): string {
  const details = vmDetailsInWords(vm);
  return `${VM_STATE_LABEL[vm.state].word}${details ? ` — ${details}` : ''}`;
}

/** What the cluster says beyond the state's word (next to a badge that shows the word). */
export function vmDetailsInWords(vm: Pick<HaVm, 'clusterState' | 'reason'>): string {
  const waiting = vm.clusterState === 'pending' ? 'waiting for a node that fits' : '';
  return [waiting, vm.reason].filter(Boolean).join(': ');
}

const times = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

/** "92 of 100 (healthy)", or a dash when the node has not published a score. */
export function scoreInWords(health: HaNode['health']): string {
  if (!health) return '—';
  return `${Math.round(health.score)} of 100 (${health.state})`;
}

/** The probes that cost points, in words: "ceph warn: slow ops (−20)". */
export function probeProblems(health: HaNode['health']): string[] {
  return (health?.probes ?? [])
    .filter((probe) => probe.result !== 'ok')
    .map(
      (probe) =>
        `${probe.name} ${probe.result}${probe.reason ? `: ${probe.reason}` : ''} (−${Math.round(probe.penalty)})`,
    );
}

/** A policy in one line, for tables. */
export function policyInWords(policy: HaVm['policy']): string {
  if (!policy.enabled) return 'off';
  const parts = [`priority ${policy.priority}`];
  if (policy.preferredNodes.length > 0) parts.push(`prefers ${policy.preferredNodes.join(', ')}`);
  if (policy.nodeGroup) parts.push(`group ${policy.nodeGroup}`);
  parts.push(
    `${times(policy.maxRelocations, 'relocation')}/h`,
    `${times(policy.maxRestarts, 'restart')}/h`,
  );
  parts.push(policy.onNoNode === 'stop' ? 'gives up when no node fits' : 'waits for a node');
  return parts.join(', ');
}

/** Counts over every remote the caller sees, for the dashboard. */
export function haTotals(overview: HaOverview) {
  const totals = { protected: 0, recovering: 0, fenced: 0, error: 0, fencedNodes: 0 };
  for (const remote of overview.remotes) {
    totals.protected += remote.vms.protected;
    totals.recovering += remote.vms.recovering;
    totals.fenced += remote.vms.fenced;
    totals.error += remote.vms.error;
    totals.fencedNodes += remote.nodes.fenced + remote.nodes['fence-failed'];
  }
  return totals;
}

/** What the policy form holds: text as typed. */
export interface PolicyForm {
  enabled: boolean;
  priority: string;
  preferredNodes: string;
  nodeGroup: string;
  maxRestarts: string;
  maxRelocations: string;
  onNoNode: 'wait' | 'stop';
}

export function formOf(policy: HaVm['policy'] | null): PolicyForm {
  return {
    enabled: policy?.enabled ?? true,
    priority: String(policy?.priority ?? 100),
    preferredNodes: (policy?.preferredNodes ?? []).join(', '),
    nodeGroup: policy?.nodeGroup ?? '',
    maxRestarts: String(policy?.maxRestarts ?? 1),
    maxRelocations: String(policy?.maxRelocations ?? 1),
    onNoNode: policy?.onNoNode === 'stop' ? 'stop' : 'wait',
  };
}

const NODE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

function whole(text: string, field: string, max: number): number | string {
  const value = Number(text.trim());
  if (text.trim() === '' || !Number.isInteger(value) || value < 0 || value > max)
    return `${field}: a whole number from 0 to ${max}`;
  return value;
}

/** The policy to send, or what is wrong with the form (the manager checks it again). */
export function policyFromForm(form: PolicyForm): { policy: HaPolicy } | { error: string } {
  const priority = whole(form.priority, 'Priority', 1000);
  const maxRestarts = whole(form.maxRestarts, 'Restarts per hour', 100);
  const maxRelocations = whole(form.maxRelocations, 'Relocations per hour', 100);
  for (const value of [priority, maxRestarts, maxRelocations])
    if (typeof value === 'string') return { error: value };
  const preferredNodes = form.preferredNodes
    .split(/[\s,]+/)
    .map((node) => node.trim())
    .filter(Boolean);
  const bad = preferredNodes.find((node) => !NODE.test(node));
  if (bad) return { error: `Preferred nodes: "${bad}" is not a node id` };
  const nodeGroup = form.nodeGroup.trim();
  if (nodeGroup && !NODE.test(nodeGroup))
    return { error: `Node group: "${nodeGroup}" is not a group name` };
  return {
    policy: {
      enabled: form.enabled,
      priority: priority as number,
      preferredNodes,
      nodeGroup,
      maxRestarts: maxRestarts as number,
      maxRelocations: maxRelocations as number,
      onNoNode: form.onNoNode,
    },
  };
}
