import { peerTargetOf, type PeerTarget } from '../rpc/peer-client.repository';
import type { Clock } from '../shared/clock';
import type { Logger } from '../shared/logger';
import type { DrainView, HaDrainDeps } from './ha-drain.service';
import type { HaConfig } from './ha-config.schema';
import type { EventKind, PolicyRecord, ResourceRecord, ResourceState } from './ha.records';
import type { Leader } from './ha.repository';
import { placeVm, type PlacementCandidate } from './placement';
import { crashAction, GAVE_UP_RESTARTING, gaveUp, UNTIL_AN_OPERATOR } from './restart-policy';

/** States in which the coordinator is handling a VM that died (its node is alive and not fenced). */
const HANDLING = 'after it stopped unexpectedly';
/** Failed relocations in a row (nothing moved: the VM stays stopped on its node) before HA gives up. */
const RELOCATION_ATTEMPTS = 3;
const STOPPED_ON_PURPOSE =
  'stopped on purpose (StopVm, ShutdownVm or its guest powered off): HA does not restart it';

export interface HaRestartsDeps {
  config: HaConfig;
  mover: HaDrainDeps['mover'] & {
    start(node: PeerTarget, uuid: string): Promise<unknown>;
    startMoved(node: PeerTarget, uuid: string): Promise<unknown>;
  };
  candidates(view: DrainView, source: string, reserved: Map<string, number>): PlacementCandidate[];
  inFlight: Set<string>;
  /** The coordinator's guarded write of a VM's HA state; false when it no longer leads. */
  setResource(
    view: DrainView,
    policy: PolicyRecord,
    state: ResourceState,
    nodeId: string,
    reason: string,
    change?: Partial<ResourceRecord>,
  ): Promise<boolean>;
  event(
    leader: Leader,
    kind: EventKind,
    nodeId: string,
    vmUuid: string,
    message: string,
  ): Promise<void>;
  /** Is the node lost or fenced (recovery's business, not the restart policy's)? */
  troubled(view: DrainView, nodeId: string): boolean;
  clock: Clock;
  logger: Logger;
}

/**
 * The restart policy (docs/ha.md, restarts): an HA VM whose process died on a live node (its node
 * reports it `crashed`) is restarted in place up to max_restarts times within the window, then
 * relocated to another node up to max_relocations times, then left in `error` with the reason. A
 * VM stopped on purpose (its node reports it `stopped`) is recorded `stopped` and left alone.
 * Every step is checked against the VM's node first (its report may be a tick old) and recorded
 * as an HA event.
 */
export class HaRestarts {
  private readonly running = new Set<Promise<void>>();
  /** Relocations that failed in a row, per VM, and when the next is tried. */
  private readonly failed = new Map<string, { count: number; nextAt: number }>();

  constructor(private readonly deps: HaRestartsDeps) {}

  async settle(): Promise<void> {
    await Promise.all([...this.running]);
  }

  /** Is this HA VM reported crashed on `nodeId` (the restart policy moves it, not a drain)? */
  crashed(view: DrainView, uuid: string, nodeId: string): boolean {
    if (!view.ha.policies.get(uuid)?.policy.enabled) return false;
    return this.down(view, uuid, nodeId)?.state === 'crashed' || this.handling(view, uuid);
  }

  async step(view: DrainView, policies: readonly PolicyRecord[]): Promise<void> {
    for (const policy of policies) {
      if (!policy.policy.enabled) continue;
      const uuid = policy.vmUuid;
      const nodeId = view.index.get(uuid)?.nodeId;
      if (!nodeId || this.deps.inFlight.has(`vm:${uuid}`)) continue;
      if (!view.alive.has(nodeId) || this.deps.troubled(view, nodeId)) continue;
      const resource = view.ha.resources.get(uuid);
      const down = this.down(view, uuid, nodeId);
      // Given up by the restart policy, or by recovery (docs/ha.md: it waits for its operator).
      const given = gaveUp(resource);
      // Known to be defined here, stopped (recovery's gave up: once its node reported it down).
      const waiting = given && resource.reason.includes(UNTIL_AN_OPERATOR);
      if (!down) {
        // Running again (started by an operator, or the report caught up): protected.
        if (resource && (resource.state === 'stopped' || waiting))
          await this.deps.setResource(view, policy, 'protected', nodeId, `runs on ${nodeId}`);
        continue;
      }
      if (given) {
        // Recovery gave up on it and its returned node defined it again (ha-node.service.ts).
        if (!waiting)
          await this.deps.setResource(
            view,
            policy,
            'error',
            nodeId,
            // The original reason is cut so that the end always fits the record (1000 chars).
            `${resource.reason.slice(0, 850)}; defined on ${nodeId} again: ${UNTIL_AN_OPERATOR}`,
          );
        continue;
      }
      // Being recovered (a VM of a fenced node started again on it, docs/ha.md): not ours.
      const recovering = resource?.state === 'recovering' || resource?.state === 'pending';
      if (recovering && !this.handling(view, uuid)) continue;
      if (down.state === 'stopped' && !this.handling(view, uuid)) {
        if (resource?.state !== 'stopped' && resource?.state !== undefined)
          await this.deps.setResource(view, policy, 'stopped', nodeId, STOPPED_ON_PURPOSE);
        continue;
      }
      if ((this.failed.get(uuid)?.nextAt ?? 0) > this.deps.clock.now().getTime()) continue;
      this.launch(view, policy, nodeId, down.since);
    }
  }

  private down(view: DrainView, uuid: string, nodeId: string) {
    return view.ha.members.get(nodeId)?.downVms.find((d) => d.vmUuid === uuid);
  }

  /** Is the coordinator in the middle of bringing this VM back (it may have stopped it itself)? */
  private handling(view: DrainView, uuid: string): boolean {
    const resource = view.ha.resources.get(uuid);
    return (
      (resource?.state === 'recovering' || resource?.state === 'pending') &&
      resource.reason.includes(HANDLING)
    );
  }

  private launch(view: DrainView, policy: PolicyRecord, nodeId: string, since: string): void {
    const key = `vm:${policy.vmUuid}`;
    this.deps.inFlight.add(key);
    const run = this.bringBack(view, policy, nodeId, since)
      .catch((error: unknown) =>
        this.deps.logger.warn({ err: error, vm: policy.vmUuid }, 'HA restart step failed'),
      )
      .finally(() => {
        this.deps.inFlight.delete(key);
        this.running.delete(run);
      });
    this.running.add(run);
  }

  private async bringBack(
    view: DrainView,
    policy: PolicyRecord,
    nodeId: string,
    since: string,
  ): Promise<void> {
    const uuid = policy.vmUuid;
    const name = policy.vmName;
    const node = peerOf(view, nodeId);
    if (!node) return;
    // The node's report may be a tick old: ask the VM's node how it is now.
    const now = await this.deps.mover.get(node, uuid);
    const state = now.runtime?.state ?? '';
    if (state !== 'crashed' && !(state === 'stopped' && this.handling(view, uuid))) return;
    const resource = view.ha.resources.get(uuid);
    if (resource?.state === 'pending' && resource.reason.startsWith(`relocation to ${nodeId} `)) {
      // Moved here by a relocation whose start failed: started here, nothing counted again.
      try {
        await this.deps.mover.start(node, uuid);
      } catch (error) {
        await this.deps.event(
          view.leader,
          'vm-restart-failed',
          nodeId,
          uuid,
          `${name}: start on ${nodeId} after its relocation failed: ${(error as Error).message}`,
        );
        return;
      }
      await this.deps.setResource(view, policy, 'protected', nodeId, `relocated to ${nodeId}`);
      await this.deps.event(view.leader, 'vm-relocated', nodeId, uuid, `${name} runs on ${nodeId}`);
      return;
    }
    const history = {
      restarts: resource?.restarts ?? [],
      relocations: resource?.relocations ?? [],
    };
    const at = this.deps.clock.now();
    const action = crashAction(
      policy.policy,
      history,
      at,
      this.deps.config.restartWindowSeconds * 1000,
      !view.ha.maintenance.has(nodeId),
    );
    if (action.kind === 'give-up') {
      if (!(await this.deps.setResource(view, policy, 'error', nodeId, action.reason))) return;
      await this.deps.event(view.leader, 'vm-gave-up', nodeId, uuid, `${name}: ${action.reason}`);
      return;
    }
    if (!this.handling(view, uuid))
      await this.deps.event(
        view.leader,
        'vm-crashed',
        nodeId,
        uuid,
        `${name} is ${state} on ${nodeId} since ${since}`,
      );
    if (action.kind === 'restart') {
      const restarts = [...history.restarts, at.toISOString()].slice(-200);
      const label = `restart ${action.count} of ${policy.policy.maxRestarts}`;
      if (
        !(await this.deps.setResource(
          view,
          policy,
          'recovering',
          nodeId,
          `restarting in place ${HANDLING} (${label})`,
          { restarts },
        ))
      )
        return;
      try {
        await this.deps.mover.start(node, uuid);
      } catch (error) {
        const reason = `restart in place on ${nodeId} failed: ${(error as Error).message}`;
        await this.deps.setResource(view, policy, 'pending', nodeId, `${reason} ${HANDLING}`);
        await this.deps.event(view.leader, 'vm-restart-failed', nodeId, uuid, `${name}: ${reason}`);
        return;
      }
      await this.deps.setResource(
        view,
        policy,
        'protected',
        nodeId,
        `restarted in place (${label})`,
      );
      await this.deps.event(
        view.leader,
        'vm-restarted',
        nodeId,
        uuid,
        `${name} runs again on ${nodeId} (${label})`,
      );
      return;
    }
    await this.relocate(view, policy, node, action.count, history.relocations, at);
  }

  /** Stops the dead VM (it lets go of its disks), moves its definition to another node, starts it there. */
  private async relocate(
    view: DrainView,
    policy: PolicyRecord,
    node: PeerTarget,
    count: number,
    earlier: readonly string[],
    at: Date,
  ): Promise<void> {
    const uuid = policy.vmUuid;
    const name = policy.vmName;
    const label = `relocation ${count} of ${policy.policy.maxRelocations}`;
    const vm = await this.deps.mover.get(node, uuid);
    if (!vm.spec) return;
    const member = view.ha.members.get(node.nodeId);
    const placement = placeVm(
      { name: vm.spec.name, cpuModel: vm.spec.cpuModel, memoryBytes: Number(vm.spec.memoryBytes) },
      policy.policy,
      { cpuModel: member?.cpuModel ?? '', cpuFlags: member?.cpuFlags ?? [] },
      this.deps.candidates(view, node.nodeId, new Map()),
    );
    if (placement.nodeId === undefined) {
      const reason = `cannot relocate ${HANDLING}: ${placement.reason}`;
      if (policy.policy.onNoNode === 'stop') {
        const gaveUp = `${GAVE_UP_RESTARTING}: ${reason}`;
        if (await this.deps.setResource(view, policy, 'error', node.nodeId, gaveUp))
          await this.deps.event(view.leader, 'vm-gave-up', node.nodeId, uuid, `${name}: ${gaveUp}`);
      } else if (view.ha.resources.get(uuid)?.reason !== reason) {
        await this.deps.setResource(view, policy, 'pending', node.nodeId, reason);
        await this.deps.event(
          view.leader,
          'vm-restart-failed',
          node.nodeId,
          uuid,
          `${name}: ${reason}`,
        );
      }
      return;
    }
    const target = peerOf(view, placement.nodeId)!;
    if (
      !(await this.deps.setResource(
        view,
        policy,
        'recovering',
        node.nodeId,
        `relocating to ${target.nodeId} ${HANDLING} (${label})`,
      ))
    )
      return;
    const relocations = { relocations: [...earlier, at.toISOString()].slice(-200) };
    let moved = false;
    try {
      if (vm.runtime?.state === 'crashed') await this.deps.mover.stop(node, uuid);
      await this.deps.mover.move({ uuid, source: node, target, mode: 'offline' }, vm.spec);
      moved = true;
      await this.deps.mover.startMoved(target, uuid);
    } catch (error) {
      // Did it move after all (a source can lose track of an offline move's end)? Its target says.
      moved ||= await this.deps.mover.get(target, uuid).then(
        (found) => Boolean(found.spec),
        () => false,
      );
      // Counted once the VM moved; a move that did not happen is tried again, a few times.
      const failures = (this.failed.get(uuid)?.count ?? 0) + 1;
      const delay = this.deps.config.drainRetrySeconds * 1000 * failures;
      this.failed.set(uuid, { count: failures, nextAt: this.deps.clock.now().getTime() + delay });
      const reason = `relocation to ${target.nodeId} failed (attempt ${failures}): ${(error as Error).message}`;
      const where = moved ? target.nodeId : node.nodeId;
      if (!moved && failures >= RELOCATION_ATTEMPTS) {
        this.failed.delete(uuid);
        const gaveUp = `${GAVE_UP_RESTARTING}: ${reason}`;
        if (await this.deps.setResource(view, policy, 'error', where, gaveUp))
          await this.deps.event(view.leader, 'vm-gave-up', where, uuid, `${name}: ${gaveUp}`);
        return;
      }
      const change = moved ? relocations : {};
      await this.deps.setResource(view, policy, 'pending', where, `${reason} ${HANDLING}`, change);
      await this.deps.event(view.leader, 'vm-restart-failed', where, uuid, `${name}: ${reason}`);
      return;
    }
    this.failed.delete(uuid);
    await this.deps.setResource(
      view,
      policy,
      'protected',
      target.nodeId,
      `relocated from ${node.nodeId} (${label})`,
      relocations,
    );
    await this.deps.event(
      view.leader,
      'vm-relocated',
      target.nodeId,
      uuid,
      `${name} runs on ${target.nodeId}, relocated from ${node.nodeId} (${label})`,
    );
  }
}

function peerOf(view: DrainView, nodeId: string): PeerTarget | undefined {
  const entry = view.nodes.get(nodeId);
  return entry && peerTargetOf(entry);
}
