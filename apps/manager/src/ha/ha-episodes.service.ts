import type { HaEvent__Output, HaNode__Output, HaStatus__Output } from '@debvisor/proto';
import { Injectable, OnModuleInit } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { AuditService, SYSTEM_PRINCIPAL } from '../audit/audit.service';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { ResourcesService } from '../resources/resources.service';
import { TasksService, type TaskContext } from '../tasks/tasks.service';
import { HaMetrics } from './ha-metrics';
import {
  describeNode,
  describeVm,
  drainPhase,
  fencePhase,
  nodesById,
  recoveryPhase,
  type Phase,
} from './ha-state';

/** The task types of HA events: a node's fence, a VM's recovery, a node's drain. */
/** At most this many waiting event lines are kept per episode (the newest). */
const UNCLAIMED_LINES_KEPT = 50;

export const HA_TASKS = {
  fence: 'ha.fence',
  recovery: 'ha.recovery',
  drain: 'ha.drain',
} as const;
type Kind = keyof typeof HA_TASKS;

/**
 * One HA event followed as a task: lines wait here until the task runs and writes them to its
 * journal; the end (succeeded or failed with the cluster's reason) closes the task.
 */
class Episode {
  taskId: string | undefined;
  /**
   * A drain asked for through the manager: `answeredAt` is when its node confirmed it (unset
   * while the request is out). Reads that started earlier may not show it, so they do not move it.
   */
  asked: { answeredAt?: Date } | undefined;
  /** Taken up again after a manager restart: since when its journal may miss the cluster's events. */
  resumedSince: Date | undefined;
  last = '';
  readonly lines: string[] = [];
  outcome: { ok: true; message: string } | { ok: false; message: string } | undefined;
  private wake: (() => void) | undefined;

  constructor(
    readonly kind: Kind,
    readonly remote: string,
    readonly subject: string,
  ) {}

  /** A journal line, unless it says what the last one said. */
  note(line: string): void {
    if (line === this.last) return;
    this.last = line;
    this.lines.push(line);
    this.signal();
  }

  end(ok: boolean, message: string): void {
    if (this.outcome) return;
    this.outcome = ok ? { ok: true, message } : { ok: false, message };
    this.signal();
  }

  /** Resolves at the next line or the end. */
  changed(): Promise<void> {
    return new Promise((resolve) => (this.wake = resolve));
  }

  private signal(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
}

/**
 * HA events as tasks with journals. The HA poll hands every remote's status to follow(); comparing
 * it with the previous one, a node being fenced, a VM being recovered and a node being drained
 * each open an `ha.*` task (owned by the manager, or by the operator who asked for the drain),
 * every change the cluster reports becomes a journal line, and the task ends with the event:
 * succeeded (fenced and confirmed, VM running again, node drained) or failed with the cluster's
 * reason (fence unconfirmed, recovery given up, drain stopped). The ends are recorded in the audit
 * log (ha.event) and a recovery's outcome in debvisor_ha_recoveries_total, and the resource cache
 * re-reads what moved.
 *
 * An event that starts and ends between two polls still gets its task, opened and closed at once.
 * After a manager restart, a task left running is taken up again (resume): it follows its event
 * from the cluster's HA status and event log as before — the events of the time the manager was
 * down come first — and ends with it, or at once with the reason when it cannot tell what it
 * followed. Tasks left queued are failed as not carried out; the first poll opens new ones for the
 * events still under way.
 */
@Injectable()
export class HaEpisodesService implements OnModuleInit {
  private readonly open = new Map<string, Episode>();
  /** Per remote: event lines read before the status showed their change, by episode key. */
  private readonly unclaimed = new Map<string, Map<string, string[]>>();
  private readonly byTask = new Map<string, Episode>();

  constructor(
    private readonly tasks: TasksService,
    private readonly audit: AuditService,
    private readonly metrics: HaMetrics,
    private readonly resources: ResourcesService,
    private readonly logger: PinoLogger,
  ) {
    logger.setContext(HaEpisodesService.name);
  }

  onModuleInit(): void {
    for (const [kind, type] of Object.entries(HA_TASKS) as [Kind, string][]) {
      this.tasks.registerHandler(type, {
        follower: true,
        run: (context) => this.follow_(context),
        resume: (context) => this.resume(kind, context),
      });
    }
  }

  /**
   * Since when the journals of the tasks taken up again after a restart on `remote` may miss the
   * cluster's events (the last line each wrote): the first read after the restart reads the event
   * log from there. Undefined when none was taken up.
   */
  resumedSince(remote: string): Date | undefined {
    let since: Date | undefined;
    for (const episode of this.open.values())
      if (
        episode.remote === remote &&
        episode.resumedSince &&
        !(since && since <= episode.resumedSince)
      )
        since = episode.resumedSince;
    return since;
  }

  /** A remote the manager no longer knows: the events still followed on it end, saying so. */
  async remoteRemoved(remote: string): Promise<void> {
    for (const [key, episode] of [...this.open])
      if (episode.remote === remote)
        await this.finish(
          key,
          episode,
          false,
          `remote ${remote} was removed from the manager; the cluster keeps handling the event`,
        );
  }

  /**
   * Compares a remote's HA status with the one before (undefined: the first read) and moves the
   * events on. `events`: the cluster's own event log since the last read (ListHaEvents), whose
   * lines go into the journal of the event they belong to when that one is followed.
   */
  async follow(
    remote: string,
    previous: HaStatus__Output | undefined,
    current: HaStatus__Output,
    readAt: Date,
    events: readonly HaEvent__Output[] = [],
  ): Promise<void> {
    // Lines of events whose change the status did not show yet come first.
    const logged = new Map(this.unclaimed.get(remote) ?? []);
    this.unclaimed.delete(remote);
    for (const event of events) {
      const key = eventKey(remote, event);
      if (key) logged.set(key, [...(logged.get(key) ?? []), eventLine(event)]);
    }
    await this.coordinator(remote, previous, current);
    const before = previous ? nodesById(previous) : undefined;
    const nodes = nodesById(current);
    for (const node of current.nodes) {
      const was = before?.get(node.nodeId);
      await this.step(
        'fence',
        remote,
        node.nodeId,
        fencePhase(node),
        was && fencePhase(was),
        () => describeNode(node),
        logged,
      );
      const drain = keyOf('drain', remote, node.nodeId);
      const asked = this.open.get(drain)?.asked;
      if (!asked || (asked.answeredAt && asked.answeredAt <= readAt))
        await this.step(
          'drain',
          remote,
          node.nodeId,
          drainPhase(node),
          was && drainPhase(was),
          () => describeNode(node),
          logged,
        );
      else if (logged.get(drain)?.length) this.keepUnclaimed(remote, drain, logged.get(drain)!);
    }
    const resourcesBefore = new Map(
      (previous?.resources ?? []).map((resource) => [resource.vmUuid, resource]),
    );
    for (const resource of current.resources) {
      const node = nodes.get(resource.nodeId);
      const was = resourcesBefore.get(resource.vmUuid);
      let wasPhase: Phase | undefined =
        was && recoveryPhase(was, before?.get(was.nodeId) ?? nodes.get(was.nodeId));
      // Recovered between two polls: it ran on a node that is now being fenced, and now runs elsewhere.
      if (
        was &&
        wasPhase === 'succeeded' &&
        was.nodeId !== resource.nodeId &&
        ['suspect', 'fencing', 'fenced', 'fence-failed'].includes(
          nodes.get(was.nodeId)?.state ?? '',
        )
      ) {
        this.episode('recovery', remote, resource.vmUuid).note(
          describeVm(was, nodes.get(was.nodeId)),
        );
        wasPhase = 'none';
      }
      await this.step(
        'recovery',
        remote,
        resource.vmUuid,
        recoveryPhase(resource, node),
        wasPhase,
        () => describeVm(resource, node),
        logged,
      );
    }
    // Events whose subject left the status (a VM taken out of HA, a node removed) end here.
    const present = new Set([
      ...current.nodes.flatMap((node) => [`fence:${node.nodeId}`, `drain:${node.nodeId}`]),
      ...current.resources.map((resource) => `recovery:${resource.vmUuid}`),
    ]);
    for (const [key, episode] of this.open) {
      if (episode.remote !== remote || present.has(key.slice(key.indexOf('/') + 1))) continue;
      await this.finish(
        key,
        episode,
        true,
        `${episode.kind === 'recovery' ? 'VM' : 'node'} ${episode.subject} is no longer in the cluster's HA state`,
      );
    }
  }

  /**
   * A drain asked for through the manager: its task is the caller's (created before the agent is
   * asked, so that the poll does not open one of its own), fed by the node's answer and the polls.
   */
  async drainRequested(
    remote: string,
    nodeId: string,
    owner: string,
    now: () => Date,
    start: () => Promise<HaNode__Output>,
  ): Promise<{ taskId: string }> {
    const key = keyOf('drain', remote, nodeId);
    const existing = this.open.get(key);
    if (existing?.taskId)
      throw new DomainError(
        ErrorCode.Conflict,
        `node ${nodeId} is being drained already (task ${existing.taskId})`,
      );
    const episode = new Episode('drain', remote, nodeId);
    episode.asked = {};
    this.open.set(key, episode);
    try {
      return await this.tasks.enqueue(
        { type: HA_TASKS.drain, remoteId: remote, vmId: null, owner },
        {
          prepare: async (taskId) => {
            episode.taskId = taskId;
            this.byTask.set(taskId, episode);
            const node = await start();
            episode.asked = { answeredAt: now() };
            episode.note(`maintenance asked for: ${describeNode(node)}`);
            const phase = drainPhase(node);
            if (phase !== 'active')
              await this.finish(key, episode, phase === 'succeeded', describeNode(node));
          },
        },
      );
    } catch (error) {
      this.open.delete(key);
      if (episode.taskId) this.byTask.delete(episode.taskId);
      throw error;
    }
  }

  /** The task of an open event, for tests and the API. */
  openTask(kind: Kind, remote: string, subject: string): string | undefined {
    return this.open.get(keyOf(kind, remote, subject))?.taskId;
  }

  private async coordinator(
    remote: string,
    previous: HaStatus__Output | undefined,
    current: HaStatus__Output,
  ): Promise<void> {
    if (!previous || previous.coordinatorNodeId === current.coordinatorNodeId) return;
    const elected = current.coordinatorNodeId !== '';
    await this.audit.systemEvent({
      action: 'ha.event',
      target: `/remotes/${encodeURIComponent(remote)}`,
      outcome: elected ? 'success' : 'failure',
      details: {
        kind: elected ? 'coordinator-elected' : 'coordinator-lost',
        coordinator: current.coordinatorNodeId || null,
        previous: previous.coordinatorNodeId || null,
        epoch: String(current.fencingEpoch),
      },
    });
  }

  /**
   * One event's step: opens it when it starts (or started and ended since the last poll), writes
   * a line when the cluster says something new, ends it when its phase ends.
   */
  private async step(
    kind: Kind,
    remote: string,
    subject: string,
    phase: Phase,
    before: Phase | undefined,
    line: () => string,
    logged: ReadonlyMap<string, string[]>,
  ): Promise<void> {
    const key = keyOf(kind, remote, subject);
    let episode = this.open.get(key);
    if (!episode) {
      const startsNow = phase === 'active';
      // Ended between two polls: seen before it started, now done. (At the first read, an ended
      // event is history, not news.)
      const passedUnseen = before === 'none' && (phase === 'succeeded' || phase === 'failed');
      if (!startsNow && !passedUnseen) {
        // The cluster logged it before the status showed it: the lines wait for the next read.
        const lines = logged.get(key);
        if (lines?.length) this.keepUnclaimed(remote, key, lines);
        return;
      }
      episode = this.episode(kind, remote, subject);
    }
    for (const entry of logged.get(key) ?? []) episode.note(entry);
    episode.note(line());
    if (phase === 'succeeded' || phase === 'failed') {
      await this.finish(key, episode, phase === 'succeeded', line());
    } else if (phase === 'none') {
      await this.finish(
        key,
        episode,
        kind !== 'drain',
        episode.resumedSince
          ? `ended while the manager was restarting; the cluster now shows: ${line()}`
          : endedAs(kind, line()),
      );
    }
  }

  private keepUnclaimed(remote: string, key: string, lines: readonly string[]): void {
    const kept = this.unclaimed.get(remote) ?? new Map<string, string[]>();
    kept.set(key, lines.slice(-UNCLAIMED_LINES_KEPT));
    this.unclaimed.set(remote, kept);
  }

  private episode(kind: Kind, remote: string, subject: string): Episode {
    const key = keyOf(kind, remote, subject);
    let episode = this.open.get(key);
    if (episode) return episode;
    episode = new Episode(kind, remote, subject);
    this.open.set(key, episode);
    const opened = episode;
    void this.tasks
      .enqueue(
        {
          type: HA_TASKS[kind],
          remoteId: remote,
          vmId: kind === 'recovery' ? subject : null,
          owner: SYSTEM_PRINCIPAL,
        },
        {
          prepare: async (taskId) => {
            opened.taskId = taskId;
            this.byTask.set(taskId, opened);
          },
        },
      )
      .catch((error: unknown) => {
        this.open.delete(key);
        this.logger.error({ err: error, remote, kind, subject }, 'cannot open an HA task');
      });
    return episode;
  }

  private async finish(key: string, episode: Episode, ok: boolean, message: string): Promise<void> {
    this.open.delete(key);
    episode.end(ok, message);
    const vm = episode.kind === 'recovery';
    if (vm) this.metrics.recoveryEnded(episode.remote, ok ? 'succeeded' : 'failed');
    // The rest of the manager (resource lists, the VM page) shows where things run now, not at its next poll.
    void (
      vm
        ? this.resources.refreshVm(episode.remote, episode.subject)
        : this.resources.refreshRemote(episode.remote)
    ).catch((error: unknown) =>
      this.logger.warn({ err: error, remote: episode.remote }, 'cannot refresh after an HA event'),
    );
    await this.audit.systemEvent({
      action: 'ha.event',
      target: `/remotes/${encodeURIComponent(episode.remote)}${vm ? `/vms/${encodeURIComponent(episode.subject)}` : ''}`,
      outcome: ok ? 'success' : 'failure',
      details: {
        kind: EVENT_NAMES[episode.kind][ok ? 0 : 1],
        ...(vm ? { vm: episode.subject } : { node: episode.subject }),
        taskId: episode.taskId ?? null,
        message,
      },
    });
  }

  /**
   * A task a previous manager process left running: its event is followed again from the cluster
   * (the next HA read of its remote moves it on, as before the restart). The subject is the task's
   * VM for a recovery, and the node its journal names for a fence or a drain.
   */
  private async resume(kind: Kind, context: TaskContext): Promise<void> {
    const { task } = context;
    const subject = kind === 'recovery' ? task.vmId : nodeOfJournal(task.log);
    if (!task.remoteId || !subject)
      throw new DomainError(
        ErrorCode.Conflict,
        `the manager restarted while this task ran, and its journal does not say which ${kind === 'recovery' ? 'VM' : 'node'} it followed; the cluster keeps handling the event (see its HA state)`,
      );
    const key = keyOf(kind, task.remoteId, subject);
    const other = this.open.get(key);
    if (other)
      throw new DomainError(
        ErrorCode.Conflict,
        `the manager restarted; this event is followed on in ${other.taskId ? `task ${other.taskId}` : 'a new task'}, opened by the first HA read after the restart`,
      );
    const episode = new Episode(kind, task.remoteId, subject);
    episode.taskId = task.id;
    const last = task.log.at(-1)?.at;
    episode.resumedSince = last ? new Date(last) : (task.startedAt ?? task.createdAt);
    this.open.set(key, episode);
    this.byTask.set(task.id, episode);
    await context.log(
      `the manager restarted: following this ${kind === 'recovery' ? `recovery of VM ${subject}` : `${kind} of node ${subject}`} again from the cluster's HA state`,
    );
    await this.follow_(context);
  }

  /** The task handler: writes the event's lines to the journal as they come, and ends with it. */
  private async follow_(context: TaskContext): Promise<void> {
    const episode = this.byTask.get(context.task.id);
    if (!episode)
      throw new DomainError(
        ErrorCode.Conflict,
        'this HA event is no longer followed (the manager restarted); the cluster keeps handling it',
      );
    try {
      for (;;) {
        const changed = episode.changed();
        while (episode.lines.length > 0) await context.log(episode.lines.shift()!);
        if (episode.outcome) {
          if (!episode.outcome.ok)
            throw new DomainError(ErrorCode.RemoteError, episode.outcome.message);
          if (episode.outcome.message !== episode.last) await context.log(episode.outcome.message);
          return;
        }
        await changed;
      }
    } finally {
      this.byTask.delete(context.task.id);
    }
  }
}

/**
 * The node a fence's or a drain's journal follows: every such journal has a line of describeNode
 * (`node <id> <state>…`) or of a drain's start (`maintenance asked for: node <id> …`).
 */
function nodeOfJournal(log: readonly { message: string }[]): string | undefined {
  for (const { message } of log) {
    const match = /^(?:maintenance asked for: )?node (\S+) /.exec(message);
    if (match) return match[1];
  }
  return undefined;
}

function keyOf(kind: Kind, remote: string, subject: string): string {
  return `${remote}/${kind}:${subject}`;
}

/** The HA event a cluster event log entry belongs to (none for the coordinator's election). */
function eventKey(remote: string, event: HaEvent__Output): string | undefined {
  if (event.kind.startsWith('vm-') && event.vmUuid) return keyOf('recovery', remote, event.vmUuid);
  if (!event.nodeId) return undefined;
  if (event.kind.startsWith('drain-')) return keyOf('drain', remote, event.nodeId);
  if (event.kind.startsWith('fence') || event.kind.startsWith('node-'))
    return keyOf('fence', remote, event.nodeId);
  return undefined;
}

/** A cluster event as a journal line: the cluster's time, kind, words and epoch. */
function eventLine(event: HaEvent__Output): string {
  return `cluster ${event.at}: ${event.kind}${event.message ? ` — ${event.message}` : ''} (epoch ${String(event.epoch)})`;
}

/** The audit log's event kinds for an event's end: [succeeded, failed]. */
const EVENT_NAMES: Record<Kind, [string, string]> = {
  fence: ['fenced', 'fence-unconfirmed'],
  recovery: ['vm-recovered', 'vm-recovery-failed'],
  drain: ['drain-finished', 'drain-failed'],
};

/** Why an event ended without reaching its goal: the node came back, the drain stopped. */
function endedAs(kind: Kind, line: string): string {
  switch (kind) {
    case 'fence':
      return `the node came back before it was fenced: ${line}`;
    case 'drain':
      return `the drain stopped before the node was empty: ${line}`;
    case 'recovery':
      return `no longer recovered by HA: ${line}`;
  }
}
