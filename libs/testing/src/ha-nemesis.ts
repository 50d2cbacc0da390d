import type { AgentClient, TestAgent, TestCluster } from './agent';

/**
 * Nemeses and checkers for HA tests in the style of Jepsen: faults done to real agent processes,
 * and a sampler that asks every node's hypervisor (through its own agent, never forwarded) which
 * VMs run there, so that a VM running on two nodes at one moment is caught.
 */

/** SIGSTOP: the agent (and, with the sim hypervisor, its VMs) freezes; its lease runs out. */
export function pauseAgent(agent: TestAgent): void {
  agent.process.child.kill('SIGSTOP');
}

/** SIGCONT: a paused agent runs again, unaware of the time that passed. */
export function resumeAgent(agent: TestAgent): void {
  agent.process.child.kill('SIGCONT');
}

/** VM states in which a VM's process exists and can write (not stopped, not crashed). */
const LIVE = new Set(['starting', 'running', 'stopping', 'rebooting', 'migrating', 'paused']);

export interface RunSample {
  at: number;
  /** Per watched VM: the nodes whose hypervisor reports it live. */
  where: Map<string, string[]>;
  /** Nodes that did not answer this sample. */
  silent: string[];
}

export interface DoubleRun {
  at: number;
  uuid: string;
  nodes: string[];
}

/**
 * Samples every node's VMs every `intervalMs` until stopped; records every moment a watched VM was
 * live on more than one node. A node that does not answer (killed, paused) reports nothing.
 */
export class RunSampler {
  private timer: NodeJS.Timeout | undefined;
  private readonly clients: Map<string, AgentClient>;
  private running: Promise<void> | undefined;
  readonly samples: RunSample[] = [];
  readonly doubleRuns: DoubleRun[] = [];

  constructor(
    cluster: TestCluster,
    apiKey: string,
    private readonly uuids: readonly string[],
    private readonly intervalMs = 100,
  ) {
    this.clients = new Map(cluster.agents.map((a) => [a.nodeId, cluster.connect(apiKey, a)]));
  }

  start(): void {
    const loop = (): void => {
      this.timer = setTimeout(() => {
        this.running = this.sample()
          .then(() => undefined)
          .finally(loop);
      }, this.intervalMs);
    };
    loop();
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    await this.running;
    clearTimeout(this.timer);
    for (const client of this.clients.values()) client.close();
  }

  /** One sample of every node, now. */
  async sample(): Promise<RunSample> {
    const at = Date.now();
    const where = new Map<string, string[]>(this.uuids.map((u) => [u, []]));
    const silent: string[] = [];
    await Promise.all(
      [...this.clients].map(async ([nodeId, client]) => {
        try {
          const { vms } = await client.vm.listVms({ nodeId }, { deadlineMs: 1_000 });
          for (const vm of vms) {
            const list = where.get(vm.spec?.uuid ?? '');
            if (list && LIVE.has(vm.runtime?.state ?? '')) list.push(nodeId);
          }
        } catch {
          silent.push(nodeId);
        }
      }),
    );
    const sample = { at, where, silent };
    this.samples.push(sample);
    for (const [uuid, nodes] of where)
      if (nodes.length > 1) this.doubleRuns.push({ at, uuid, nodes: [...nodes].sort() });
    return sample;
  }
}
