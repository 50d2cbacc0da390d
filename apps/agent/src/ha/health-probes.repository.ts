import { parseEndpoint } from '@debvisor/common';
import { execFile } from 'node:child_process';
import { connect } from 'node:net';
import type { HypervisorDriver } from '../drivers/hypervisor.driver';
import type { RbdCliRepository } from '../drivers/rbd/rbd-cli.repository';
import type { StorageDriver } from '../drivers/storage.driver';
import { AgentError, ErrorCode } from '../shared/agent-error';
import type { ProbeOutcome } from './health-score';

/** The few things the probes need to know of the cluster. */
export interface ProbeContext {
  /** Live peers' agent endpoints (host:port). */
  peers: { nodeId: string; endpoint: string }[];
}

/**
 * The real probes behind a node's health score (docs/ha.md), each with a deadline: the hypervisor
 * answering (its health and a VM listing), Ceph (the cluster's health through this node's client,
 * and an OSD round trip on the rbd driver), the network (a TCP connection to every live peer's
 * agent, a ping of the gateway) and etcd.
 */
export class HealthProbesRepository {
  constructor(
    private readonly deps: {
      hypervisor: Pick<HypervisorDriver, 'health' | 'list'>;
      storage: Pick<StorageDriver, 'name' | 'cephHealth' | 'health'>;
      /** The rbd driver's tools, for the OSD round trip (undefined on sim storage). */
      cli?: Pick<RbdCliRepository, 'run'>;
      /** The pool whose OSDs the Ceph probe reaches. */
      probePool: string;
      nodeId: string;
      etcdReachable: () => Promise<boolean>;
      gateway?: string;
      timeoutMs: number;
      /** Told every evaluation's outcomes (the HA metrics). */
      observe?: (outcomes: readonly ProbeOutcome[]) => void;
    },
  ) {}

  async probe(context: ProbeContext): Promise<ProbeOutcome[]> {
    const outcomes = await Promise.all([
      this.hypervisor(),
      this.ceph(),
      this.network(context),
      this.etcd(),
    ]);
    this.deps.observe?.(outcomes);
    return outcomes;
  }

  private async hypervisor(): Promise<ProbeOutcome> {
    return this.timed('hypervisor', async () => {
      const [health, vms] = await Promise.all([
        this.deps.hypervisor.health(),
        this.deps.hypervisor.list(),
      ]);
      if (health.status === 'failed') return ['fail', `${health.name}: ${health.message}`];
      if (health.status === 'degraded') return ['warn', `${health.name}: ${health.message}`];
      return ['ok', `${health.name} answers (${vms.length} VMs)`];
    });
  }

  private async ceph(): Promise<ProbeOutcome> {
    return this.timed('ceph', async () => {
      if (this.deps.cli) {
        // This node's client reaches a monitor and an OSD: stat of an object that does not exist
        // answers ENOENT from the OSD. (rados, not the heavier ceph CLI: the heartbeat's driver
        // health already asks `ceph health`; the cluster's own health is in the driver status.)
        await this.deps.cli
          .run(
            'rados',
            ['-p', this.deps.probePool, 'stat', '--', `debvisor-ha-probe.${this.deps.nodeId}`],
            { timeoutMs: this.deps.timeoutMs },
          )
          .catch((error: unknown) => {
            if (error instanceof AgentError && error.code === ErrorCode.NotFound) return;
            throw error;
          });
        return ['ok', 'the monitors and an OSD of the pool answer this node'];
      }
      const health = await this.deps.storage.cephHealth();
      const reached = 'the cluster answers';
      if (health === 'HEALTH_ERR') return ['fail', `${reached}; the cluster reports HEALTH_ERR`];
      if (health === 'HEALTH_WARN') return ['warn', `${reached}; the cluster reports HEALTH_WARN`];
      return ['ok', `${reached}; HEALTH_OK`];
    });
  }

  private async network(context: ProbeContext): Promise<ProbeOutcome> {
    return this.timed('network', async () => {
      const peers = context.peers.filter((p) => p.nodeId !== this.deps.nodeId);
      const results = await Promise.all(
        peers.map(async (peer) => ({
          peer: peer.nodeId,
          ok: await tcpReachable(peer.endpoint, this.deps.timeoutMs),
        })),
      );
      const down = results.filter((r) => !r.ok).map((r) => r.peer);
      const gateway = this.deps.gateway
        ? await ping(this.deps.gateway, this.deps.timeoutMs)
        : undefined;
      const parts = [
        peers.length ? `${peers.length - down.length}/${peers.length} peers reached` : 'no peers',
        down.length ? `unreachable: ${down.join(', ')}` : '',
        gateway === undefined ? '' : gateway ? 'gateway answers' : 'gateway does not answer',
      ].filter(Boolean);
      const reason = parts.join('; ');
      if ((peers.length > 0 && down.length === peers.length) || gateway === false)
        return ['fail', reason];
      if (down.length) return ['warn', reason];
      return ['ok', reason];
    });
  }

  private async etcd(): Promise<ProbeOutcome> {
    return this.timed('etcd', async () =>
      (await this.deps.etcdReachable()) ? ['ok', 'etcd answers'] : ['fail', 'etcd does not answer'],
    );
  }

  /** Runs a probe within the deadline; a throw or a timeout fails it with the reason. */
  private async timed(
    name: ProbeOutcome['name'],
    run: () => Promise<[ProbeOutcome['result'], string]>,
  ): Promise<ProbeOutcome> {
    const started = performance.now();
    let timer: NodeJS.Timeout | undefined;
    try {
      const [result, reason] = await Promise.race([
        run(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`no answer within ${this.deps.timeoutMs} ms`)),
            this.deps.timeoutMs,
          );
        }),
      ]);
      return { name, result, reason, latencyMs: Math.round(performance.now() - started) };
    } catch (error) {
      return {
        name,
        result: 'fail',
        reason: (error as Error).message.slice(0, 300),
        latencyMs: Math.round(performance.now() - started),
      };
    } finally {
      clearTimeout(timer);
    }
  }
}

function tcpReachable(endpoint: string, timeoutMs: number): Promise<boolean> {
  const parsed = parseEndpoint(endpoint);
  if (!parsed) return Promise.resolve(false);
  return new Promise((resolve) => {
    const socket = connect({ host: parsed.host, port: parsed.port, timeout: timeoutMs });
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.once('connect', () => done(true));
    socket.once('timeout', () => done(false));
    socket.once('error', () => done(false));
  });
}

/** One ICMP echo through ping(8) (Debian iputils-ping); the address is validated by the config schema. */
function ping(address: string, timeoutMs: number): Promise<boolean> {
  const seconds = String(Math.max(1, Math.ceil(timeoutMs / 1000)));
  return new Promise((resolve) => {
    execFile(
      'ping',
      ['-n', '-q', '-c', '1', '-W', seconds, '--', address],
      {
        timeout: timeoutMs + 1000,
        killSignal: 'SIGKILL',
        env: { LC_ALL: 'C', PATH: '/usr/bin:/bin' },
      },
      (error) => resolve(!error),
    );
  });
}
