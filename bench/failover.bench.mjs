// npm run bench -- failover
//
// Node death → every HA VM of the node running elsewhere, fenced first (docs/ha.md): real etcd,
// three real agent processes (sim hypervisor), the victim holding N protected VMs; the victim's
// agent is killed (SIGKILL) and the times to detection (the coordinator's node-suspect event), to
// the confirmed fence (fenced), and to every VM running on another node (asked of every node's
// hypervisor) are measured, for N = 1 and N = 20. Baseline, same run: starting the same N VMs on
// a live node with StartVm (what recovery cannot beat), and the lease TTL (the detection floor).
//
// Prints one JSON document on stdout (and writes bench-results/failover-<storage>.json).
// Environment: BENCH_STORAGE (sim | rbd: a real Ceph cluster, real blocklisting), BENCH_LEASE_TTL_S
// (5), BENCH_SIZES (1,20), BENCH_TIME_SCALE (0.02: a sim VM start takes 80 ms; 1 is realistic: 4 s).
// With rbd storage every Ceph tool call of the agents (rbd, rados, ceph) is traced through a
// wrapper, and the results say, per phase (until fenced, fenced to running), how many calls of
// each command ran and how long they took: where the fence's time goes.
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os, { tmpdir } from 'node:os';
import { join } from 'node:path';

const require = createRequire(import.meta.url);
const root = join(import.meta.dirname, '..');
const testing = require(join(root, 'libs/testing/dist/index.js'));

const STORAGE = process.env.BENCH_STORAGE ?? 'sim';
const LEASE_TTL_S = Number(process.env.BENCH_LEASE_TTL_S ?? 5);
const SIZES = (process.env.BENCH_SIZES ?? '1,20').split(',').map(Number);
const TIME_SCALE = Number(process.env.BENCH_TIME_SCALE ?? 0.02);
// Fencing many disks on a loaded Ceph takes a while: a generous fence timeout.
const HA = {
  tickMs: 250,
  coordinatorTtlSeconds: LEASE_TTL_S,
  fenceRetrySeconds: 2,
  fenceTimeoutSeconds: 120,
};
const POLICY = {
  enabled: true,
  priority: 100,
  preferredNodes: [],
  nodeGroup: '',
  maxRestarts: 1,
  maxRelocations: 5,
  onNoNode: 'wait',
};

/** The machine's load (1, 5, 15 min) at the end: figures from a loaded machine say so. */
const loadAverage = () => os.loadavg().map((l) => Math.round(l * 100) / 100);
const log = (message) => process.stderr.write(`[bench failover] ${message}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, probe, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not reached within ${timeoutMs} ms`);
    await sleep(50);
  }
}

async function events(cluster) {
  const etcd = cluster.etcd.client();
  try {
    const values = await etcd.getAll().prefix('/debvisor/ha/events/').strings();
    return Object.keys(values)
      .sort()
      .map((key) => JSON.parse(values[key]));
  } finally {
    etcd.close();
  }
}

async function running(client, nodeId) {
  // A loaded host answers slowly; the waits poll, so a slow answer only delays the next look.
  const { vms } = await client.vm.listVms({ nodeId }, { deadlineMs: 10_000 });
  return vms.filter((vm) => vm.runtime.state === 'running').map((vm) => vm.spec.uuid);
}

/**
 * Wrappers that time every call of a Ceph tool: one line per call, `<start ns> <end ns> <exit> <tool> <args>`
 * (the bench's own tool, not the product: the agents call the wrapper through rbd.*Binary).
 */
function traceCephTools() {
  const dir = mkdtempSync(join(tmpdir(), 'debvisor-bench-ceph-trace-'));
  const log = join(dir, 'calls.log');
  writeFileSync(log, '');
  const binaries = {};
  for (const tool of ['rbd', 'rados', 'ceph']) {
    const path = join(dir, tool);
    writeFileSync(
      path,
      [
        '#!/bin/sh',
        's=$(date +%s%N)',
        `/usr/bin/${tool} "$@"`,
        'rc=$?',
        `printf '%s %s %s ${tool} %s\\n' "$s" "$(date +%s%N)" "$rc" "$*" >> ${log}`,
        'exit $rc',
        '',
      ].join('\n'),
    );
    chmodSync(path, 0o755);
    binaries[`${tool}Binary`] = path;
  }
  return { log, binaries };
}

/** The traced calls between two instants (ms since the epoch), by command (`tool sub verb`). */
function callsBetween(trace, fromMs, toMs) {
  const lines = readFileSync(trace.log, 'utf8').split('\n').filter(Boolean);
  const byCommand = {};
  let calls = 0;
  for (const line of lines) {
    const [start, end, , tool, ...args] = line.split(' ');
    const startMs = Number(start) / 1e6;
    if (startMs < fromMs || startMs > toMs) continue;
    // The command: the tool and its first words that are not options or their values.
    const words = [];
    for (let i = 0; i < args.length && words.length < 3; i++) {
      if (args[i] === '--') break;
      if (args[i].startsWith('-')) {
        if (!args[i].includes('=') && !['--format'].includes(args[i])) i++;
        continue;
      }
      words.push(args[i]);
    }
    const name = [tool, ...words].join(' ');
    const entry = (byCommand[name] ??= { calls: 0, totalMs: 0, maxMs: 0 });
    const ms = (Number(end) - Number(start)) / 1e6;
    entry.calls += 1;
    entry.totalMs += ms;
    entry.maxMs = Math.max(entry.maxMs, ms);
    calls += 1;
  }
  for (const entry of Object.values(byCommand)) {
    entry.meanMs = Math.round(entry.totalMs / entry.calls);
    entry.totalMs = Math.round(entry.totalMs);
    entry.maxMs = Math.round(entry.maxMs);
  }
  return { calls, byCommand };
}

async function scenario(count, ceph, trace) {
  // The victim (node-3) gets enough seeded VMs that `count` of them run (the sim seeds two thirds running).
  const seed = Math.ceil(count * 1.5) + 1;
  const cluster = await testing.startCluster({
    clusterId: `failover-${count}`,
    nodes: 3,
    vmsPerNode: 0,
    timeScale: TIME_SCALE,
    leaseTtlSeconds: LEASE_TTL_S,
    logLevel: 'warn',
    agentConfig: (nodeId) => ({
      sim: {
        timeScale: TIME_SCALE,
        seedVms: nodeId === 'node-3' ? seed : 0,
        mirror: { replayIntervalMs: 5_000, peerTimeoutMs: 1_000 },
      },
      ha: HA,
      ...(ceph
        ? {
            storage: { driver: 'rbd' },
            rbd: {
              cluster: ceph.name,
              conf: ceph.confPath,
              keyring: ceph.clientKeyringPath,
              clientId: ceph.clientId,
              ...trace.binaries,
            },
          }
        : {}),
    }),
  });
  try {
    const key = await cluster.createApiKey(['ha:*', 'vm:*', 'node:*'], { principal: 'bench' });
    const clients = new Map(cluster.agents.map((a) => [a.nodeId, cluster.connect(key, a)]));
    const client = clients.get('node-1');
    const victim = cluster.agents.find((a) => a.nodeId === 'node-3');
    const status = await until(
      'a coordinator on node-1 or node-2',
      async () => {
        const s = await client.ha.getHaStatus({});
        return ['node-1', 'node-2'].includes(s.coordinatorNodeId) ? s : undefined;
      },
      30_000,
    ).catch(async () => client.ha.getHaStatus({}));
    if (status.coordinatorNodeId === 'node-3')
      log('the victim is the coordinator: detection also waits for a new election');
    const uuids = (
      await until(
        'the victim listing its VMs',
        () => running(clients.get('node-3'), 'node-3'),
        60_000,
      )
    ).slice(0, count);
    if (uuids.length < count) throw new Error(`only ${uuids.length} VMs run on the victim`);

    // Baseline: stop the VMs and start them again on their live node (StartVm, all at once).
    await Promise.all(uuids.map((uuid) => client.vm.stopVm({ uuid }, { deadlineMs: 60_000 })));
    const startedAt = performance.now();
    await Promise.all(uuids.map((uuid) => client.vm.startVm({ uuid }, { deadlineMs: 120_000 })));
    const startBaselineMs = performance.now() - startedAt;

    for (const uuid of uuids) await client.ha.setHaPolicy({ vmUuid: uuid, policy: POLICY });
    const etcd = cluster.etcd.client();
    await until(
      'HA VMs protected, their definitions kept',
      async () => {
        const specs = await etcd.getAll().prefix('/debvisor/ha/specs/').keys();
        const s = await client.ha.getHaStatus({});
        const ok =
          uuids.every((u) => specs.includes(`/debvisor/ha/specs/${u}`)) &&
          uuids.every((u) =>
            s.resources.some((r) => r.vmUuid === u && r.state === 'protected' && r.epoch !== '0'),
          );
        return ok || undefined;
      },
      60_000,
    );
    etcd.close();
    const before = (await events(cluster)).length;

    const killedAt = Date.now();
    await victim.kill();
    const runningAt = await until(
      'every HA VM running on a live node',
      async () => {
        const where = await Promise.all(
          ['node-1', 'node-2'].map((n) => running(clients.get(n), n)),
        );
        const all = where.flat();
        return uuids.every((u) => all.includes(u)) ? Date.now() : undefined;
      },
      120_000,
    );
    // The coordinator records vm-recovered right after FailoverVm answers: wait for the journal too.
    const journal = await until(
      'the recoveries in the HA journal',
      async () => {
        const list = (await events(cluster)).slice(before);
        const done = uuids.every((u) =>
          list.some((e) => e.kind === 'vm-recovered' && e.vmUuid === u),
        );
        return done ? list : undefined;
      },
      30_000,
    );
    const at = (kind) => {
      const event = journal.find((e) => e.kind === kind && e.nodeId === 'node-3');
      return event ? Date.parse(event.at) - killedAt : null;
    };
    const recovered = journal.filter((e) => e.kind === 'vm-recovered' && uuids.includes(e.vmUuid));
    const firstRecovery = Math.min(...recovered.map((e) => Date.parse(e.at)));
    const fencedMs = at('fenced');
    const result = {
      vms: count,
      detectionMs: at('node-suspect'),
      fenceStartedMs: at('fence-started'),
      fencedMs,
      firstVmRecoveredMs: recovered.length ? firstRecovery - killedAt : null,
      lastVmRecoveredMs: recovered.length
        ? Math.max(...recovered.map((e) => Date.parse(e.at))) - killedAt
        : null,
      allRunningMs: runningAt - killedAt,
      fencedBeforeEveryRecovery: fencedMs !== null && firstRecovery - killedAt >= fencedMs,
      baselineStartVmsMs: Math.round(startBaselineMs),
      ...(trace && fencedMs !== null
        ? {
            cephCalls: {
              untilFenced: callsBetween(trace, killedAt, killedAt + fencedMs),
              fencedToRunning: callsBetween(trace, killedAt + fencedMs, runningAt),
            },
          }
        : {}),
    };
    for (const c of clients.values()) c.close();
    return result;
  } finally {
    await cluster.stop();
  }
}

const ceph = STORAGE === 'rbd' ? await testing.startCephCluster() : undefined;
const trace = ceph ? traceCephTools() : undefined;
try {
  const results = [];
  for (const count of SIZES) {
    log(`${count} VM(s) on the victim (${STORAGE} storage, lease TTL ${LEASE_TTL_S} s)`);
    results.push(await scenario(count, ceph, trace));
    log(JSON.stringify(results.at(-1)));
  }
  const worst = Math.max(...results.map((r) => r.allRunningMs));
  const json = JSON.stringify(
    {
      benchmark: 'failover',
      storage: STORAGE,
      hypervisor: 'sim',
      simTimeScale: TIME_SCALE,
      leaseTtlSeconds: LEASE_TTL_S,
      haTickMs: HA.tickMs,
      baseline: { detectionFloorMs: LEASE_TTL_S * 1000 },
      results,
      load: loadAverage(),
      aimMs: 30_000,
      withinAim: worst < 30_000,
    },
    null,
    2,
  );
  console.log(json);
  mkdirSync(join(root, 'bench-results'), { recursive: true });
  writeFileSync(join(root, `bench-results/failover-${STORAGE}.json`), json);
} finally {
  await ceph?.stop();
}
