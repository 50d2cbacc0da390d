import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
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

/** Answers the uuids of the VMs live on one node, read without asking its agent. */
export type LiveVmSource = () => Promise<string[]>;

/**
 * The live VMs of a sim node, read from its hypervisor's own state file (<stateDir>/sim/vms.json,
 * written at every change): what runs there even when its agent cannot be reached (partitioned),
 * and read without passing its watchdog gate (which a call through the agent would trigger).
 */
export function simStateFileSource(stateDir: string): LiveVmSource {
  return async () => {
    const text = await readFile(join(stateDir, 'sim', 'vms.json'), 'utf8');
    const state = JSON.parse(text) as {
      vms: { spec: { uuid: string }; state: string }[];
    };
    return state.vms.filter((vm) => LIVE.has(vm.state)).map((vm) => vm.spec.uuid);
  };
}

/**
 * The VMs of a qemu node that have a QEMU process, from /proc: every qemu-system process whose
 * command line names the node's state directory, by the `-uuid` it was started with (a VM with two
 * processes there is listed twice). The process is what writes to the disks, whatever its agent
 * (killed, partitioned) says. With -daemonize, QEMU's launcher (a session leader: the agent spawns
 * it detached) and its short-lived middle process (it calls setsid) wait for the daemon they fork:
 * they count as one process until the daemon exists, and not beside it.
 */
export function qemuProcessSource(stateDir: string): LiveVmSource {
  return async () => {
    const found: { uuid: string; launcher: boolean }[] = [];
    for (const pid of await readdir('/proc')) {
      if (!/^\d+$/.test(pid)) continue;
      let argv: string[];
      let stat: string;
      try {
        argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
        if (!argv[0]?.includes('qemu-system') || !argv.some((a) => a.includes(stateDir))) continue;
        stat = await readFile(`/proc/${pid}/stat`, 'utf8');
      } catch {
        continue; // ended meanwhile
      }
      // After the command name: state ppid pgrp session ...
      const [state, , , session] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (state === 'Z') continue;
      const at = argv.indexOf('-uuid');
      const uuid = at >= 0 ? argv[at + 1] : undefined;
      if (uuid) found.push({ uuid, launcher: session === pid });
    }
    const uuids: string[] = [];
    for (const uuid of new Set(found.map((p) => p.uuid))) {
      const daemons = found.filter((p) => p.uuid === uuid && !p.launcher).length;
      for (let i = 0; i < Math.max(daemons, 1); i++) uuids.push(uuid);
    }
    return uuids;
  };
}

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
 * live on more than one node. A node that does not answer (killed, paused) reports nothing. A node
 * with a source in `sources` is read through it (its state file, its QEMU processes) instead of
 * asking its agent.
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
    private readonly sources: Readonly<Record<string, LiveVmSource>> = {},
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
          const source = this.sources[nodeId];
          if (source) {
            for (const uuid of await source()) where.get(uuid)?.push(nodeId);
            return;
          }
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
