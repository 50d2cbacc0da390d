import type { MigrationStats } from '../hypervisor.driver';

/** Dirty memory is tracked and sent in whole guest pages. */
export const PAGE_BYTES = 4096;
/** The dirty-bitmap sync closing each pre-copy round; it also keeps a round from taking no time at all. */
export const SYNC_MS = 5;
/** What a switchover costs besides the last RAM: stopping the vCPUs, the device state, starting at the target. */
export const SWITCHOVER_COST_MS = 15;
/** QEMU's auto-converge defaults: cpu-throttle-initial, cpu-throttle-increment, max-cpu-throttle, throttle-trigger-threshold. */
export const AUTO_CONVERGE = {
  initialPercent: 20,
  incrementPercent: 10,
  maxPercent: 99,
  triggerFraction: 0.5,
} as const;

export interface MigrationModelParams {
  /** Guest RAM (QEMU's ram total). */
  memoryBytes: number;
  /** Bytes per second the guest dirties while it runs unthrottled. */
  dirtyRateBytes: number;
  /** Bytes per second the link carries. */
  bandwidthBytes: number;
  /** The downtime the source may switch over with. */
  downtimeLimitMs: number;
  autoConverge: boolean;
}

/** A snapshot as QEMU's query-migrate answers it, plus the guest throttle auto-converge applies. */
export interface MigrationFigures extends MigrationStats {
  /** cpu-throttle-percentage: how much of its vCPU time the guest loses (0 without auto-converge). */
  throttlePercent: number;
}

interface Round {
  startMs: number;
  /** What this round sends (round 0: all RAM; then what the previous round left dirty). */
  bytes: number;
  throttlePercent: number;
  durationMs: number;
  /** What the guest dirtied meanwhile: the next round's bytes (capped at the RAM). */
  dirtiedBytes: number;
  /** Bytes sent before this round started. */
  sentBeforeBytes: number;
}

/** The final stop-and-copy (pre-copy) or the switch (post-copy), and what follows it. */
interface Ending {
  kind: 'precopy' | 'postcopy';
  atMs: number;
  /** Pre-copy: sent during the downtime; post-copy: pulled by the running target afterwards. */
  bytes: number;
  sentBeforeBytes: number;
  iteration: number;
  downtimeMs: number;
  completedAtMs: number;
}

/**
 * QEMU's RAM migration as a function of time, in model milliseconds since the stream started.
 *
 * Pre-copy: round 0 sends all RAM at the bandwidth; each further round sends what the guest dirtied
 * during the previous one (never more than the RAM). After each round's bitmap sync, when the dirty
 * remainder can be sent within the downtime limit, the source stops the guest and sends it
 * (downtime = remainder / bandwidth + a fixed switchover cost). A guest that dirties as fast as the
 * link carries never gets there: the remainder stops shrinking. Auto-converge throttles the guest
 * after each round that dirtied more than half of what it sent (20 %, then +10 % per such round, at
 * most 99 %). Post-copy: at the switch the guest stops here, starts at the target after the
 * switchover cost, and the target pulls the rest at the bandwidth.
 *
 * Deterministic and free of I/O; rounds are computed as far as they are asked for, and a migration
 * that settled into identical rounds is answered arithmetically, so that hours of a non-convergent
 * migration cost nothing.
 */
export class MigrationModel {
  private readonly rounds: Round[];
  /** Set when the last computed round repeats forever. */
  private steady = false;
  private ending: Ending | undefined;

  constructor(readonly params: Readonly<MigrationModelParams>) {
    const { memoryBytes, dirtyRateBytes, bandwidthBytes, downtimeLimitMs } = params;
    if (
      !(memoryBytes > 0) ||
      !(bandwidthBytes > 0) ||
      !(dirtyRateBytes >= 0) ||
      !(downtimeLimitMs >= 0)
    ) {
      throw new RangeError(
        'a migration model needs memory > 0, bandwidth > 0, dirty rate >= 0 and downtime limit >= 0',
      );
    }
    this.rounds = [this.round(0, memoryBytes, 0, 0)];
  }

  /** The figures at `ms` (before 0: setting up). */
  at(ms: number): MigrationFigures {
    const total = this.params.memoryBytes;
    if (ms < 0)
      return figures('setup', {
        transferredBytes: 0,
        remainingBytes: total,
        totalBytes: total,
        iteration: 0,
        throughputBytes: 0,
      });
    this.extendTo(ms);
    const ending = this.ending;
    if (ending && ms >= ending.atMs) return this.endingAt(ending, ms);
    const { index, round } = this.roundAt(ms);
    const sending = Math.min(
      round.bytes,
      Math.floor((this.params.bandwidthBytes * (ms - round.startMs)) / 1000),
    );
    const remaining = round.bytes - sending;
    return figures('active', {
      transferredBytes: round.sentBeforeBytes + sending,
      remainingBytes: remaining,
      totalBytes: total,
      // QEMU knows the dirty rate from the first bitmap sync on.
      dirtyRateBytes: index === 0 ? 0 : this.dirtyRate(this.previousThrottle(index, round)),
      expectedDowntimeMs: this.sendMs(remaining),
      iteration: index + 1,
      throughputBytes: this.params.bandwidthBytes,
      throttlePercent: round.throttlePercent,
    });
  }

  /** When the figures next change other than by steady sending: a round's end, the switchover, completion. */
  nextEventMs(ms: number): number | undefined {
    if (ms < 0) return 0;
    this.extendTo(ms);
    const ending = this.ending;
    if (ending && ms >= ending.atMs)
      return ms < ending.completedAtMs ? ending.completedAtMs : undefined;
    const { round } = this.roundAt(ms);
    return round.startMs + round.durationMs;
  }

  /**
   * Switches a pre-copy migration under way to post-copy at `ms`: a last bitmap sync decides what
   * the target still has to pull. Throws when the migration is not in pre-copy at that time.
   */
  switchToPostcopy(ms: number): MigrationFigures {
    const now = this.at(ms);
    if (now.status !== 'active')
      throw new RangeError(
        `the migration is ${now.status}; only an active pre-copy migration can switch to post-copy`,
      );
    const { round } = this.roundAt(ms);
    const elapsed = ms - round.startMs;
    const dirtied = (this.dirtyRate(round.throttlePercent) * elapsed) / 1000;
    const bytes = Math.min(this.params.memoryBytes, pages(now.remainingBytes + dirtied));
    const completedAtMs = ms + SWITCHOVER_COST_MS + this.sendMs(bytes);
    this.ending = {
      kind: 'postcopy',
      atMs: ms,
      bytes,
      sentBeforeBytes: now.transferredBytes,
      iteration: now.iteration + 1,
      downtimeMs: SWITCHOVER_COST_MS,
      completedAtMs,
    };
    return this.at(ms);
  }

  /** When the migration completes, once that is decided (the switchover started or post-copy runs). */
  completedAtMs(): number | undefined {
    return this.ending?.completedAtMs;
  }

  private endingAt(ending: Ending, ms: number): MigrationFigures {
    const { bandwidthBytes, memoryBytes } = this.params;
    const throttlePercent =
      ending.kind === 'precopy' ? this.rounds[this.rounds.length - 1].throttlePercent : 0;
    if (ms >= ending.completedAtMs) {
      return figures('completed', {
        transferredBytes: ending.sentBeforeBytes + ending.bytes,
        remainingBytes: 0,
        totalBytes: memoryBytes,
        iteration: ending.iteration,
        throughputBytes: bandwidthBytes,
        downtimeMs: round3(ending.downtimeMs),
        totalTimeMs: round3(ending.completedAtMs),
        throttlePercent,
      });
    }
    // Post-copy pulls after the target started; pre-copy sends at once, with the guest stopped.
    const sendingFrom = ending.kind === 'postcopy' ? ending.atMs + SWITCHOVER_COST_MS : ending.atMs;
    const sent = Math.min(
      ending.bytes,
      Math.max(0, Math.floor((bandwidthBytes * (ms - sendingFrom)) / 1000)),
    );
    const remaining = ending.bytes - sent;
    return figures(ending.kind === 'postcopy' ? 'postcopy-active' : 'device', {
      transferredBytes: ending.sentBeforeBytes + sent,
      remainingBytes: remaining,
      totalBytes: memoryBytes,
      expectedDowntimeMs: ending.kind === 'postcopy' ? 0 : this.sendMs(remaining),
      iteration: ending.iteration,
      throughputBytes: bandwidthBytes,
      throttlePercent,
    });
  }

  /** Computes rounds until the one holding `ms`, the ending, or a steady state. */
  private extendTo(ms: number): void {
    while (!this.ending && !this.steady) {
      const last = this.rounds[this.rounds.length - 1];
      const endMs = last.startMs + last.durationMs;
      if (endMs > ms) return;
      if (this.sendMs(last.dirtiedBytes) <= this.params.downtimeLimitMs) {
        const downtimeMs = this.sendMs(last.dirtiedBytes) + SWITCHOVER_COST_MS;
        this.ending = {
          kind: 'precopy',
          atMs: endMs,
          bytes: last.dirtiedBytes,
          sentBeforeBytes: last.sentBeforeBytes + last.bytes,
          iteration: this.rounds.length + 1,
          downtimeMs,
          completedAtMs: endMs + downtimeMs,
        };
        return;
      }
      const next = this.round(
        endMs,
        last.dirtiedBytes,
        this.nextThrottle(last),
        last.sentBeforeBytes + last.bytes,
      );
      if (next.bytes === last.bytes && next.throttlePercent === last.throttlePercent)
        this.steady = true;
      else this.rounds.push(next);
    }
  }

  /** The round under way at `ms` (within the computed rounds or the steady repetition of the last). */
  private roundAt(ms: number): { index: number; round: Round } {
    const last = this.rounds[this.rounds.length - 1];
    if (ms >= last.startMs) {
      const repeats = this.steady ? Math.floor((ms - last.startMs) / last.durationMs) : 0;
      return {
        index: this.rounds.length - 1 + repeats,
        round: {
          ...last,
          startMs: last.startMs + repeats * last.durationMs,
          sentBeforeBytes: last.sentBeforeBytes + repeats * last.bytes,
        },
      };
    }
    let low = 0;
    let high = this.rounds.length - 1;
    while (low < high) {
      const mid = Math.ceil((low + high) / 2);
      if (this.rounds[mid].startMs <= ms) low = mid;
      else high = mid - 1;
    }
    return { index: low, round: this.rounds[low] };
  }

  private round(
    startMs: number,
    bytes: number,
    throttlePercent: number,
    sentBeforeBytes: number,
  ): Round {
    const durationMs = this.sendMs(bytes) + SYNC_MS;
    const dirtiedBytes = Math.min(
      this.params.memoryBytes,
      pages((this.dirtyRate(throttlePercent) * durationMs) / 1000),
    );
    return { startMs, bytes, throttlePercent, durationMs, dirtiedBytes, sentBeforeBytes };
  }

  /** Auto-converge: each round that dirtied more than half of what it sent throttles the guest further. */
  private nextThrottle(round: Round): number {
    if (
      !this.params.autoConverge ||
      round.dirtiedBytes <= round.bytes * AUTO_CONVERGE.triggerFraction
    )
      return round.throttlePercent;
    if (round.throttlePercent === 0) return AUTO_CONVERGE.initialPercent;
    return Math.min(
      AUTO_CONVERGE.maxPercent,
      round.throttlePercent + AUTO_CONVERGE.incrementPercent,
    );
  }

  /** The throttle during the round before `index` (whose sync measured the dirty rate QEMU shows). */
  private previousThrottle(index: number, round: Round): number {
    return index - 1 < this.rounds.length
      ? this.rounds[index - 1].throttlePercent
      : round.throttlePercent;
  }

  private dirtyRate(throttlePercent: number): number {
    return Math.round(this.params.dirtyRateBytes * (1 - throttlePercent / 100));
  }

  private sendMs(bytes: number): number {
    return (bytes / this.params.bandwidthBytes) * 1000;
  }
}

function figures(
  status: MigrationFigures['status'],
  values: Partial<MigrationFigures> &
    Pick<MigrationFigures, 'transferredBytes' | 'remainingBytes' | 'totalBytes'>,
): MigrationFigures {
  return {
    status,
    dirtyRateBytes: 0,
    iteration: 0,
    throughputBytes: 0,
    throttlePercent: 0,
    ...values,
    expectedDowntimeMs: round3(values.expectedDowntimeMs ?? 0),
  };
}

function pages(bytes: number): number {
  return Math.ceil(bytes / PAGE_BYTES) * PAGE_BYTES;
}

function round3(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
