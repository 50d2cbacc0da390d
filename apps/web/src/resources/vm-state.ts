import { formatTime, formatUtc } from '../ui/format';

/** What a VM needs to say whether its state is known: the manager marks a VM of a node that does not answer "unknown". */
export interface VmSeen {
  status: string;
  lastSeenAt: string | null;
}

/**
 * A VM whose state the manager does not know now (its node does not answer): "state unknown — last
 * seen <the user's local time>", with the same moment in UTC for the hover; null for a known state.
 */
export function unknownStateInWords(vm: VmSeen): { text: string; utc: string | null } | null {
  if (vm.status !== 'unknown') return null;
  if (!vm.lastSeenAt) return { text: 'state unknown — never seen by this manager', utc: null };
  return {
    text: `state unknown — last seen ${formatTime(vm.lastSeenAt)}`,
    utc: formatUtc(vm.lastSeenAt),
  };
}
