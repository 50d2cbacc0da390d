import { watch, type FSWatcher } from 'node:fs';
import { mkdir, readdir, unlink } from 'node:fs/promises';
import type { Duplex } from 'node:stream';
import { z } from 'zod';
import { TestPatternRfb } from '../../console/test-pattern-rfb';
import { AgentError, ErrorCode } from '../../shared/agent-error';
import type { Clock } from '../../shared/clock';
import {
  vmDefinitionSchema,
  type DriverHealth,
  type FreezeResult,
  type HostFacts,
  type HostUsage,
  type HypervisorDriver,
  type IncomingOptions,
  type MigrationAddress,
  type MigrationStats,
  type MigrationStatus,
  type OutgoingOptions,
  type ShutdownOptions,
  type VmDefinition,
  type VmInstance,
  type VmState,
} from '../hypervisor.driver';
import { MigrationModel, type MigrationFigures } from './sim-migration.model';
import {
  SimIncomingEndpoint,
  SimOutgoingStream,
  type IncomingHandler,
  type OutgoingHandler,
} from './sim-migration.transport';
import { migrationProof, verifyProof, type Hello } from './sim-migration.wire';
import type { SimOperation, SimStateRepository, SimVmRecord } from './sim-state.repository';
import { simVmUsage } from './sim-usage';

/** How long operations take at timeScale 1 (what a small Linux guest on QEMU/KVM needs). */
export const SIM_DURATIONS_MS: Readonly<Record<SimOperation, number>> = {
  start: 4_000,
  shutdown: 6_000,
  reboot: 8_000,
  stop: 500,
};
export const DEFAULT_SHUTDOWN_TIMEOUT_SECONDS = 60;
/** A VM labelled `sim-guest: hung` has a guest that ignores ACPI shutdown and reboot requests. */
export const HUNG_GUEST_LABEL = 'sim-guest';

/** A VM labelled `sim-dirty-rate: <bytes per second>` dirties its memory at that rate during a migration. */
export const DIRTY_RATE_LABEL = 'sim-dirty-rate';
/** A VM labelled `sim-guest-agent: yes` has a QEMU guest agent that freezes its filesystems for snapshots. */
export const GUEST_AGENT_LABEL = 'sim-guest-agent';
/** Without the label: what each busy vCPU dirties (a VM's dirty rate follows its CPU usage). */
export const DIRTY_BYTES_PER_BUSY_VCPU = 40_000_000;
/** The link a migration moves at without a bandwidth limit (10 GbE), unless configured. */
export const DEFAULT_MIGRATION_BANDWIDTH_BYTES = 1_250_000_000;
/** Filler bytes sent per modelled round: enough to exercise the transport, far from copying the RAM. */
const ROUND_FILLER_BYTES = 4096;
const MAX_ROUNDS_PER_FRAME = 4;
/** The longest a migration's pump sleeps (wall time), so that it notices a cancel or close promptly. */
const PUMP_TICK_MS = 50;

/** Memory the simulated host itself uses besides its VMs. */
const HOST_OVERHEAD_BYTES = 6 * 1024 ** 3;

export interface SimHypervisorOptions {
  state: Pick<SimStateRepository, 'load' | 'save' | 'socketPath' | 'clearSockets'>;
  clock: Clock;
  /** Multiplies every duration: 1 is realistic, tests use ~0.02. */
  timeScale: number;
  facts: HostFacts;
  /** The VMs of a first start (no state saved yet). */
  seed?: () => Promise<SimVmRecord[]>;
  /** Bytes per second a migration moves without a bandwidth limit (sim.migrationBandwidthBytes). */
  migrationBandwidthBytes?: number;
  /**
   * A directory where a file named after a VM's uuid makes that VM crash, as when its QEMU is
   * killed (tests of the HA restart policy); the file is removed. Unset: no crashes.
   */
  crashRequests?: string;
}

const CRASH_REQUEST = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

const migrationIdSchema = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/,
    'a migration id is 1-128 letters, digits, dots, colons, dashes and underscores',
  );
const pskSchema = z.object({
  identity: z.string().min(1).max(256),
  key: z.instanceof(Buffer).refine((key) => key.length === 32, 'a migration PSK key is 32 bytes'),
});
const incomingOptionsSchema = z.object({
  migrationId: migrationIdSchema,
  transport: z.enum(['tunnel', 'direct']),
  listenHost: z.string().min(1).max(253).optional(),
  psk: pskSchema.optional(),
  allowPostcopy: z.boolean(),
});
const outgoingOptionsSchema = z.object({
  migrationId: migrationIdSchema,
  destination: z.discriminatedUnion('kind', [
    z.object({ kind: z.literal('unix'), path: z.string().min(1).max(107) }),
    z.object({
      kind: z.literal('tcp'),
      host: z.string().min(1).max(253),
      port: z.int().min(1).max(65535),
    }),
    z.object({ kind: z.literal('libvirt'), uri: z.string() }),
  ]),
  psk: pskSchema.optional(),
  downtimeLimitMs: z.number().min(0).max(3_600_000),
  bandwidthLimitBytes: z.number().min(0).max(Number.MAX_SAFE_INTEGER),
  autoConverge: z.boolean(),
  allowPostcopy: z.boolean(),
});

/** Statuses in which an outgoing migration is over at the source, the VM still here waiting for finishOutgoing. */
const AWAITING_FINISH: readonly MigrationStatus[] = ['completed', 'postcopy-paused'];

interface IncomingMigration {
  migrationId: string;
  options: IncomingOptions;
  endpoint?: SimIncomingEndpoint;
  status: MigrationStatus;
  error?: string;
  /** Stream bytes that arrived (the transport really carried them). */
  receivedBytes: number;
  /** The guest's boot time at the source, so that its uptime goes on here. */
  bootedAt: string | null;
  committed: boolean;
}

interface OutgoingMigration {
  migrationId: string;
  options: OutgoingOptions;
  model: MigrationModel;
  stream?: SimOutgoingStream;
  /** Wall-clock ms when the destination accepted the stream: the model's time 0. */
  startedAt?: number;
  destinationPostcopy: boolean;
  postcopy: 'no' | 'sent' | 'acked';
  endSent: boolean;
  /** Wakes the pump from its sleep. */
  wake?: () => void;
}

/**
 * A simulated hypervisor. VMs live in memory and in the state file; operations take realistic,
 * scaled time and hold the VM's lock meanwhile.
 *
 * Across an agent restart the simulated VMs behave like QEMU processes under libvirt, which keep
 * running while the management daemon restarts: a running VM is still running (its uptime goes on),
 * and an operation that was under way is settled as the hypervisor would have finished it.
 *
 * Live migration follows MigrationModel (pre-copy rounds, auto-converge, post-copy) over a real
 * connection between two drivers: the destination listens (a unix socket for the tunnel, TCP for the
 * direct transport), the source connects, proves the PSK (direct), sends a few KiB per modelled
 * round and an end marker that the destination acknowledges. Figures are the model's, in realistic
 * (unscaled) time; only the pace is scaled by timeScale. A migration does not survive the driver:
 * when it opens again, an incoming VM that was not committed is gone (a killed incoming QEMU) and
 * an outgoing pre-copy is cancelled (the VM keeps running here).
 */
export class SimHypervisorDriver implements HypervisorDriver {
  readonly name = 'sim';
  private readonly vms = new Map<string, SimVmRecord>();
  /** The open consoles (test patterns) of each VM. */
  private readonly consoles = new Map<string, Set<TestPatternRfb>>();
  private readonly locks = new Map<string, SimOperation | 'migration'>();
  private readonly incomings = new Map<string, IncomingMigration>();
  private readonly outgoings = new Map<string, OutgoingMigration>();
  private saveError: string | undefined;
  private closed = false;
  private crashWatcher: FSWatcher | undefined;

  private constructor(private readonly options: SimHypervisorOptions) {}

  static async open(options: SimHypervisorOptions): Promise<SimHypervisorDriver> {
    const driver = new SimHypervisorDriver(options);
    const saved = await options.state.load();
    const records = saved ?? (await options.seed?.()) ?? [];
    await options.state.clearSockets();
    for (const record of records) {
      // An incoming QEMU does not outlive its driver: the VM was never committed here.
      if (record.migration?.role === 'incoming') continue;
      const vm = driver.settle(record);
      driver.vms.set(vm.spec.uuid, vm);
      if (
        vm.migration?.role === 'outgoing' &&
        vm.migration.stats &&
        AWAITING_FINISH.includes(vm.migration.stats.status)
      )
        driver.locks.set(vm.spec.uuid, 'migration');
    }
    await options.state.save(driver.records());
    if (options.crashRequests) await driver.watchCrashRequests(options.crashRequests);
    return driver;
  }

  /** Crashes the VMs named by files in `dir` (see SimHypervisorOptions.crashRequests), now and on change. */
  private async watchCrashRequests(dir: string): Promise<void> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const scan = async () => {
      for (const name of await readdir(dir).catch(() => [] as string[])) {
        if (!CRASH_REQUEST.test(name)) continue;
        await unlink(`${dir}/${name}`).catch(() => undefined);
        await this.crash(name);
      }
    };
    this.crashWatcher = watch(dir, () => void scan());
    this.crashWatcher.unref();
    await scan();
  }

  /**
   * The VM's process dies: a running or paused VM that no operation holds turns `crashed` (it keeps
   * its disks' locks, as a killed QEMU does). Anything else is left as it is.
   */
  async crash(uuid: string): Promise<void> {
    const vm = this.vms.get(uuid);
    if (!vm || this.locks.has(uuid) || (vm.state !== 'running' && vm.state !== 'paused')) return;
    this.setState(vm, 'crashed');
    vm.bootedAt = null;
    await this.persist();
  }

  async list(): Promise<VmInstance[]> {
    return this.records()
      .map((record) => this.view(record))
      .sort(
        (a, b) => a.spec.name.localeCompare(b.spec.name) || a.spec.uuid.localeCompare(b.spec.uuid),
      );
  }

  async get(uuid: string): Promise<VmInstance | undefined> {
    const record = this.vms.get(uuid);
    return record && this.view(record);
  }

  async define(spec: VmDefinition): Promise<VmInstance> {
    const parsed = vmDefinitionSchema.safeParse(spec);
    if (!parsed.success)
      throw new AgentError(
        ErrorCode.InvalidArgument,
        `invalid VM definition: ${parsed.error.issues[0]?.message}`,
      );
    if (this.vms.has(spec.uuid))
      throw new AgentError(ErrorCode.AlreadyExists, `a VM with uuid ${spec.uuid} exists already`);
    if (this.records().some((r) => r.spec.name === spec.name))
      throw new AgentError(ErrorCode.AlreadyExists, `a VM named ${spec.name} exists already`);
    const record: SimVmRecord = {
      spec: parsed.data,
      state: 'stopped',
      stateChangedAt: this.now().toISOString(),
      bootedAt: null,
      transition: null,
    };
    this.vms.set(spec.uuid, record);
    await this.persist();
    return this.view(record);
  }

  start(uuid: string): Promise<VmInstance> {
    return this.operate(uuid, 'start', async (vm) => {
      this.require(vm, ['stopped', 'crashed'], 'started', 'a stopped');
      await this.transition(vm, 'start', 'starting', 'running', SIM_DURATIONS_MS.start);
    });
  }

  shutdown(uuid: string, options: ShutdownOptions = {}): Promise<VmInstance> {
    return this.operate(uuid, 'shutdown', async (vm) => {
      this.require(vm, ['running', 'paused'], 'shut down', 'a running');
      const timeoutSeconds = options.timeoutSeconds || DEFAULT_SHUTDOWN_TIMEOUT_SECONDS;
      const timeoutMs = timeoutSeconds * 1000;
      if (!isHung(vm) && SIM_DURATIONS_MS.shutdown <= timeoutMs) {
        await this.transition(vm, 'shutdown', 'stopping', 'stopped', SIM_DURATIONS_MS.shutdown);
        return;
      }
      if (options.forceStop) {
        await this.transition(
          vm,
          'shutdown',
          'stopping',
          'stopped',
          timeoutMs + SIM_DURATIONS_MS.stop,
        );
        return;
      }
      await this.transition(vm, 'shutdown', 'stopping', 'running', timeoutMs);
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `the guest of VM ${vm.spec.name} did not shut down within ${timeoutSeconds} s; it is still running (retry with force_stop to power it off)`,
      );
    });
  }

  reboot(uuid: string): Promise<VmInstance> {
    return this.operate(uuid, 'reboot', async (vm) => {
      this.require(vm, ['running'], 'rebooted', 'a running');
      if (!isHung(vm)) {
        await this.transition(vm, 'reboot', 'rebooting', 'running', SIM_DURATIONS_MS.reboot);
        return;
      }
      await this.transition(
        vm,
        'reboot',
        'rebooting',
        'running',
        DEFAULT_SHUTDOWN_TIMEOUT_SECONDS * 1000,
        false,
      );
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `the guest of VM ${vm.spec.name} did not respond to the reboot request within ${DEFAULT_SHUTDOWN_TIMEOUT_SECONDS} s; it is still running (stop and start it instead)`,
      );
    });
  }

  stop(uuid: string): Promise<VmInstance> {
    return this.operate(uuid, 'stop', async (vm) => {
      this.require(vm, ['running', 'paused', 'crashed'], 'stopped', 'a running');
      await this.transition(vm, 'stop', 'stopping', 'stopped', SIM_DURATIONS_MS.stop);
    });
  }

  async facts(): Promise<HostFacts> {
    const { hugepages } = this.options.facts;
    const used = this.records()
      .filter((r) => r.spec.hugepages && r.state !== 'stopped' && r.state !== 'crashed')
      .reduce((sum, r) => sum + Math.ceil(r.spec.memoryBytes / hugepages.pageSizeBytes), 0);
    return {
      ...this.options.facts,
      hugepages: {
        ...hugepages,
        free: Math.max(0, Math.min(hugepages.free, hugepages.total - used)),
      },
    };
  }

  async usage(): Promise<HostUsage> {
    const now = this.now().getTime();
    let cpuSeconds = 0;
    let memory = HOST_OVERHEAD_BYTES;
    for (const record of this.vms.values()) {
      const usage = simVmUsage(record.spec, record.state, now);
      cpuSeconds += usage.cpuUsage * record.spec.vcpus;
      memory += usage.memoryUsedBytes;
    }
    const { cpuCount, memoryBytes } = this.options.facts;
    return {
      cpuUsage: Math.min(1, Math.round((0.02 + cpuSeconds / cpuCount) * 1000) / 1000),
      memoryUsedBytes: Math.min(memoryBytes, memory),
    };
  }

  async health(): Promise<DriverHealth> {
    if (this.saveError)
      return {
        name: 'sim',
        status: 'degraded',
        message: `cannot save the VM state: ${this.saveError}`,
      };
    const running = this.records().filter((r) => r.state === 'running').length;
    return { name: 'sim', status: 'ok', message: `${this.vms.size} VMs, ${running} running` };
  }

  /** Stops every migration's connection without settling it: as after a killed agent, open() settles them. */
  async close(): Promise<void> {
    this.closed = true;
    this.crashWatcher?.close();
    for (const out of this.outgoings.values()) {
      out.stream?.destroy();
      out.wake?.();
    }
    await Promise.all([...this.incomings.values()].map((incoming) => incoming.endpoint?.close()));
    await this.persist();
  }

  // --- Live migration: the destination ---

  async prepareIncoming(spec: VmDefinition, options: IncomingOptions): Promise<MigrationAddress> {
    const parsedSpec = vmDefinitionSchema.safeParse(spec);
    if (!parsedSpec.success)
      throw new AgentError(
        ErrorCode.InvalidArgument,
        `invalid VM definition: ${parsedSpec.error.issues[0]?.message}`,
      );
    const parsed = incomingOptionsSchema.safeParse(options);
    if (!parsed.success)
      throw new AgentError(
        ErrorCode.InvalidArgument,
        `invalid incoming migration options: ${parsed.error.issues[0]?.message}`,
      );
    if (options.transport === 'direct' && (!options.psk || !options.listenHost)) {
      throw new AgentError(
        ErrorCode.InvalidArgument,
        'the direct transport needs a listen host and a PSK',
      );
    }
    if (this.vms.has(spec.uuid))
      throw new AgentError(
        ErrorCode.AlreadyExists,
        `a VM with uuid ${spec.uuid} exists already on this node`,
      );
    if (this.records().some((r) => r.spec.name === spec.name))
      throw new AgentError(
        ErrorCode.AlreadyExists,
        `a VM named ${spec.name} exists already on this node`,
      );
    const uuid = spec.uuid;
    // Reserved before the first await, so that a second prepare of the same VM is refused.
    const record: SimVmRecord = {
      spec: parsedSpec.data,
      state: 'paused',
      stateChangedAt: this.now().toISOString(),
      bootedAt: null,
      transition: null,
      migration: { role: 'incoming', migrationId: options.migrationId },
    };
    const incoming: IncomingMigration = {
      migrationId: options.migrationId,
      options,
      status: 'setup',
      receivedBytes: 0,
      bootedAt: null,
      committed: false,
    };
    this.vms.set(uuid, record);
    this.locks.set(uuid, 'migration');
    this.incomings.set(uuid, incoming);
    let endpoint: SimIncomingEndpoint;
    try {
      const where =
        options.transport === 'tunnel'
          ? { kind: 'unix' as const, path: await this.options.state.socketPath() }
          : { kind: 'tcp' as const, host: options.listenHost ?? '' };
      endpoint = await SimIncomingEndpoint.listen(where, this.incomingHandler(uuid, incoming));
    } catch (error) {
      this.forgetIncoming(uuid, incoming);
      const code = (error as NodeJS.ErrnoException).code;
      const where =
        options.transport === 'direct'
          ? ` on ${options.listenHost}`
          : ' (unix socket under the state directory)';
      throw new AgentError(
        ErrorCode.Unavailable,
        `cannot listen for the incoming migration of VM ${spec.name}${where}: ${code ?? 'failed'}`,
        { cause: error },
      );
    }
    if (this.incomings.get(uuid) !== incoming) {
      await endpoint.close();
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `the incoming migration of VM ${spec.name} was aborted while it was being prepared`,
      );
    }
    incoming.endpoint = endpoint;
    await this.persist();
    return endpoint.address;
  }

  /** A generated test pattern (the sim has no VNC server), so that a demo has a console. */
  async openConsole(uuid: string): Promise<Duplex> {
    const vm = this.vms.get(uuid);
    if (!vm) throw new AgentError(ErrorCode.NotFound, `no VM ${uuid} on this node`);
    if (vm.state !== 'running' && vm.state !== 'migrating')
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `VM ${vm.spec.name} is ${vm.state}, so it has no console`,
      );
    const pattern = new TestPatternRfb(vm.spec.name);
    let open = this.consoles.get(uuid);
    if (!open) this.consoles.set(uuid, (open = new Set()));
    open.add(pattern);
    pattern.once('close', () => open.delete(pattern));
    return pattern;
  }

  /** Ends the consoles of VMs that stopped or left this node (a QEMU's VNC socket closes likewise). */
  private endConsoles(): void {
    for (const [uuid, open] of this.consoles) {
      const vm = this.vms.get(uuid);
      if (vm && (vm.state === 'running' || vm.state === 'migrating')) continue;
      for (const pattern of open) pattern.close();
      this.consoles.delete(uuid);
    }
  }

  async incomingStatus(uuid: string): Promise<MigrationStatus> {
    const incoming = this.incomings.get(uuid);
    if (incoming) return incoming.status;
    if (!this.vms.has(uuid)) throw new AgentError(ErrorCode.NotFound, `no VM ${uuid} on this node`);
    return 'none';
  }

  async commitIncoming(uuid: string): Promise<VmInstance> {
    const vm = this.vms.get(uuid);
    if (!vm) throw new AgentError(ErrorCode.NotFound, `no VM ${uuid} on this node`);
    const incoming = this.incomings.get(uuid);
    if (incoming?.committed) return this.view(vm);
    if (!incoming)
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `VM ${vm.spec.name} is not arriving by migration here`,
      );
    if (incoming.status !== 'completed' && incoming.status !== 'postcopy-active') {
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `the incoming migration of VM ${vm.spec.name} is ${incoming.status}; it can run here once all its state arrived or after the switch to post-copy`,
      );
    }
    incoming.committed = true;
    const now = this.now().toISOString();
    vm.state = 'running';
    vm.stateChangedAt = now;
    vm.bootedAt = incoming.bootedAt ?? now;
    delete vm.migration;
    this.locks.delete(uuid);
    // In post-copy the stream goes on until the last page arrived.
    if (incoming.status === 'completed') await incoming.endpoint?.close();
    await this.persist();
    return this.view(vm);
  }

  async abortIncoming(uuid: string): Promise<void> {
    const incoming = this.incomings.get(uuid);
    if (!incoming || incoming.committed) return;
    this.forgetIncoming(uuid, incoming);
    await incoming.endpoint?.close();
    await this.persist();
  }

  // --- Live migration: the source ---

  async startOutgoing(uuid: string, options: OutgoingOptions): Promise<void> {
    const parsed = outgoingOptionsSchema.safeParse(options);
    if (!parsed.success)
      throw new AgentError(
        ErrorCode.InvalidArgument,
        `invalid migration options: ${parsed.error.issues[0]?.message}`,
      );
    if (options.destination.kind === 'libvirt')
      throw new AgentError(
        ErrorCode.InvalidArgument,
        'the sim driver migrates over a unix socket or TCP, not to a libvirt URI',
      );
    const vm = this.lockable(uuid);
    this.require(vm, ['running'], 'migrated live', 'a running');
    const linkBytes = this.options.migrationBandwidthBytes ?? DEFAULT_MIGRATION_BANDWIDTH_BYTES;
    const model = new MigrationModel({
      memoryBytes: vm.spec.memoryBytes,
      dirtyRateBytes: this.dirtyRate(vm),
      bandwidthBytes:
        options.bandwidthLimitBytes > 0
          ? Math.min(options.bandwidthLimitBytes, linkBytes)
          : linkBytes,
      downtimeLimitMs: options.downtimeLimitMs,
      autoConverge: options.autoConverge,
    });
    const out: OutgoingMigration = {
      migrationId: options.migrationId,
      options,
      model,
      destinationPostcopy: false,
      postcopy: 'no',
      endSent: false,
    };
    this.locks.set(uuid, 'migration');
    this.outgoings.set(uuid, out);
    this.setState(vm, 'migrating');
    vm.migration = {
      role: 'outgoing',
      migrationId: options.migrationId,
      stats: stats(model.at(-1)),
    };
    await this.persist();
    const hello: Hello = {
      version: 1,
      migrationId: options.migrationId,
      vmUuid: uuid,
      pskIdentity: options.psk?.identity,
      proof: options.psk && migrationProof(options.psk, options.migrationId),
      postcopy: options.allowPostcopy,
      bootedAt: vm.bootedAt,
    };
    let stream: SimOutgoingStream;
    try {
      stream = await SimOutgoingStream.connect(
        options.destination,
        hello,
        this.outgoingHandler(uuid, out),
      );
    } catch (error) {
      // Like QEMU's migrate command: accepted, then the migration fails; outgoingStats tells why.
      if (this.outgoings.get(uuid) === out)
        await this.settleOutgoing(uuid, out, 'failed', (error as Error).message);
      return;
    }
    if (this.outgoings.get(uuid) !== out || this.closed) stream.destroy();
    else out.stream = stream;
  }

  async outgoingStats(uuid: string): Promise<MigrationStats> {
    const vm = this.vms.get(uuid);
    if (!vm) throw new AgentError(ErrorCode.NotFound, `no VM ${uuid} on this node`);
    const out = this.outgoings.get(uuid);
    if (out) return this.liveStats(out);
    if (vm.migration?.role === 'outgoing' && vm.migration.stats) return { ...vm.migration.stats };
    return {
      status: 'none',
      transferredBytes: 0,
      remainingBytes: 0,
      totalBytes: 0,
      dirtyRateBytes: 0,
      expectedDowntimeMs: 0,
      iteration: 0,
      throughputBytes: 0,
    };
  }

  async switchToPostcopy(uuid: string): Promise<void> {
    const vm = this.vms.get(uuid);
    if (!vm) throw new AgentError(ErrorCode.NotFound, `no VM ${uuid} on this node`);
    const out = this.outgoings.get(uuid);
    if (!out) {
      // Like QEMU's migrate-start-postcopy, a request that comes too late changes nothing.
      if (vm.migration?.role === 'outgoing' && vm.migration.stats?.status === 'completed') return;
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `no migration of VM ${vm.spec.name} is under way`,
      );
    }
    if (!out.options.allowPostcopy)
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `post-copy was not enabled for the migration of VM ${vm.spec.name}`,
      );
    if (out.postcopy !== 'no') return;
    if (out.startedAt === undefined || !out.stream)
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `the migration of VM ${vm.spec.name} is still setting up`,
      );
    if (!out.destinationPostcopy)
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `the destination of VM ${vm.spec.name} did not enable post-copy`,
      );
    const t = this.modelMs(out);
    // Pre-copy that is already switching over completes as it is (QEMU ignores the late request too).
    if (out.model.at(t).status !== 'active') return;
    out.model.switchToPostcopy(t);
    out.postcopy = 'sent';
    // From here on the guest's only running copy is the destination's.
    this.setState(vm, 'paused');
    vm.migration = {
      role: 'outgoing',
      migrationId: out.migrationId,
      stats: { ...this.liveStats(out), status: 'postcopy-active' },
    };
    await out.stream.send('P');
    out.wake?.();
    await this.persist();
  }

  async cancelOutgoing(uuid: string): Promise<void> {
    const vm = this.vms.get(uuid);
    if (!vm) throw new AgentError(ErrorCode.NotFound, `no VM ${uuid} on this node`);
    const out = this.outgoings.get(uuid);
    const status = out
      ? this.liveStats(out).status
      : vm.migration?.role === 'outgoing'
        ? vm.migration.stats?.status
        : undefined;
    if ((out && out.postcopy !== 'no') || status === 'postcopy-paused') {
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `VM ${vm.spec.name} runs at the destination since the switch to post-copy; a post-copy migration cannot be cancelled`,
      );
    }
    if (out) {
      out.stream?.destroy();
      await this.settleOutgoing(
        uuid,
        out,
        'cancelled',
        'the migration was cancelled; the VM keeps running here',
      );
      return;
    }
    if (vm.migration?.role === 'outgoing' && vm.migration.stats && status === 'completed') {
      // Completed but not finished: the destination did not take over, so the source resumes.
      vm.migration.stats = {
        ...vm.migration.stats,
        status: 'cancelled',
        error: 'cancelled after it completed; the VM resumed here',
      };
      this.setState(vm, 'running');
      this.locks.delete(uuid);
      await this.persist();
    }
  }

  async finishOutgoing(uuid: string): Promise<void> {
    const vm = this.vms.get(uuid);
    if (!vm) return;
    const out = this.outgoings.get(uuid);
    const status = out
      ? this.liveStats(out).status
      : vm.migration?.role === 'outgoing'
        ? vm.migration.stats?.status
        : 'none';
    if (out || !status || !AWAITING_FINISH.includes(status)) {
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `the migration of VM ${vm.spec.name} is ${status ?? 'none'}; the VM is removed here only once its migration completed`,
      );
    }
    this.vms.delete(uuid);
    this.locks.delete(uuid);
    this.incomings.delete(uuid);
    await this.persist();
  }

  async undefine(uuid: string): Promise<void> {
    const vm = this.lockable(uuid);
    this.require(vm, ['stopped', 'crashed'], 'undefined', 'a stopped');
    this.vms.delete(uuid);
    this.incomings.delete(uuid);
    await this.persist();
  }

  async freezeFilesystems(uuid: string, timeoutMs: number): Promise<FreezeResult> {
    const vm = this.vms.get(uuid);
    if (!vm) throw new AgentError(ErrorCode.NotFound, `no VM ${uuid} on this node`);
    if (vm.state !== 'running')
      return { frozen: false, reason: `VM ${vm.spec.name} is ${vm.state}, not running` };
    if (vm.spec.labels[GUEST_AGENT_LABEL] !== 'yes')
      return { frozen: false, reason: `no QEMU guest agent answered within ${timeoutMs} ms` };
    return { frozen: true, reason: 'the guest agent froze the filesystems' };
  }

  /** The simulated guest's I/O never stops, so there is nothing to thaw. */
  async thawFilesystems(_uuid: string): Promise<void> {}

  private incomingHandler(uuid: string, incoming: IncomingMigration): IncomingHandler {
    const fail = (reason: string) => {
      incoming.status = 'failed';
      incoming.error = reason;
      return { refuse: reason };
    };
    return {
      hello: (hello) => {
        if (this.incomings.get(uuid) !== incoming)
          return fail('the incoming migration was aborted');
        if (hello.migrationId !== incoming.migrationId)
          return fail('the stream belongs to another migration');
        if (hello.vmUuid !== uuid) return fail('the stream carries another VM');
        const { psk } = incoming.options;
        if (incoming.options.transport === 'direct' && psk) {
          if (!hello.proof)
            return fail('the source did not prove the migration key (TLS-PSK handshake failed)');
          if (
            hello.pskIdentity !== psk.identity ||
            !verifyProof(psk, incoming.migrationId, hello.proof)
          ) {
            return fail('the source proved another migration key (TLS-PSK handshake failed)');
          }
        }
        incoming.status = 'active';
        incoming.bootedAt = hello.bootedAt;
        return { postcopy: incoming.options.allowPostcopy };
      },
      pages: (bytes) => {
        incoming.receivedBytes += bytes;
      },
      postcopy: () => {
        if (!incoming.options.allowPostcopy)
          return fail('post-copy is not enabled on the destination').refuse;
        incoming.status = 'postcopy-active';
        return undefined;
      },
      end: () => {
        if (incoming.receivedBytes === 0)
          return fail('the stream ended before any memory arrived').refuse;
        incoming.status = 'completed';
        return undefined;
      },
      closed: (reason) => {
        if (this.closed || incoming.status === 'completed' || incoming.status === 'failed') return;
        incoming.error = reason;
        incoming.status = incoming.status === 'postcopy-active' ? 'postcopy-paused' : 'failed';
      },
    };
  }

  private outgoingHandler(uuid: string, out: OutgoingMigration): OutgoingHandler {
    const live = () => !this.closed && this.outgoings.get(uuid) === out;
    return {
      accepted: ({ postcopy }) => {
        if (!live() || out.startedAt !== undefined) return;
        out.startedAt = this.now().getTime();
        out.destinationPostcopy = postcopy;
        const vm = this.vms.get(uuid);
        if (vm)
          vm.migration = {
            role: 'outgoing',
            migrationId: out.migrationId,
            stats: this.liveStats(out),
          };
        void this.persist();
        void this.pump(uuid, out);
      },
      acknowledged: (what) => {
        if (!live()) return;
        if (what === 'P') {
          out.postcopy = 'acked';
          return;
        }
        out.stream?.end();
        void this.settleOutgoing(uuid, out, 'completed');
      },
      closed: (reason) => {
        if (!live()) return;
        void this.settleOutgoing(
          uuid,
          out,
          out.postcopy === 'no' ? 'failed' : 'postcopy-paused',
          reason,
        );
      },
    };
  }

  /** Sends the modelled rounds and the end marker at the model's pace until the migration settles. */
  private async pump(uuid: string, out: OutgoingMigration): Promise<void> {
    let sentIteration = 0;
    while (!this.closed && this.outgoings.get(uuid) === out) {
      const t = this.modelMs(out);
      const now = out.model.at(t);
      const stream = out.stream;
      if (stream && now.iteration > sentIteration) {
        const rounds = Math.min(MAX_ROUNDS_PER_FRAME, now.iteration - sentIteration);
        sentIteration = now.iteration;
        await stream.send('R', Buffer.alloc(rounds * ROUND_FILLER_BYTES, sentIteration % 256));
        continue;
      }
      if (stream && now.status === 'completed' && !out.endSent) {
        out.endSent = true;
        await stream.send('E'); // the destination's acknowledgement settles the migration
      }
      const next = stream ? out.model.nextEventMs(t) : undefined;
      const waitMs =
        next === undefined
          ? PUMP_TICK_MS
          : Math.min(PUMP_TICK_MS, Math.max(0, (next - t) * this.options.timeScale));
      await new Promise<void>((resolve) => {
        out.wake = resolve;
        void this.options.clock.sleep(waitMs).then(resolve);
      });
    }
  }

  /** Ends an outgoing migration: the VM keeps running here (failed, cancelled) or waits for finishOutgoing. */
  private async settleOutgoing(
    uuid: string,
    out: OutgoingMigration,
    status: 'completed' | 'failed' | 'cancelled' | 'postcopy-paused',
    error?: string,
  ): Promise<void> {
    if (this.outgoings.get(uuid) !== out) return;
    this.outgoings.delete(uuid);
    out.wake?.();
    const vm = this.vms.get(uuid);
    if (!vm) return;
    const completedAt = out.model.completedAtMs();
    const figures =
      status === 'completed' && completedAt !== undefined
        ? stats(out.model.at(completedAt))
        : { ...this.liveStats(out), downtimeMs: undefined, totalTimeMs: undefined };
    vm.migration = {
      role: 'outgoing',
      migrationId: out.migrationId,
      stats: withoutUndefined({ ...figures, status, error }),
    };
    if (status === 'failed' || status === 'cancelled') {
      this.setState(vm, 'running');
      this.locks.delete(uuid);
    } else {
      // QEMU's postmigrate: the source stays paused until the destination took over.
      this.setState(vm, 'paused');
    }
    await this.persist();
  }

  private liveStats(out: OutgoingMigration): MigrationStats {
    const figures = stats(out.model.at(this.modelMs(out)));
    // The source reports completion (or post-copy) only once the destination acknowledged it.
    if (figures.status === 'completed')
      return withoutUndefined({
        ...figures,
        status: out.postcopy === 'no' ? 'device' : 'postcopy-active',
        downtimeMs: undefined,
        totalTimeMs: undefined,
      });
    if (figures.status === 'postcopy-active' && out.postcopy !== 'acked')
      return { ...figures, status: 'device' };
    return figures;
  }

  private forgetIncoming(uuid: string, incoming: IncomingMigration): void {
    if (this.incomings.get(uuid) !== incoming) return;
    this.incomings.delete(uuid);
    this.vms.delete(uuid);
    this.locks.delete(uuid);
  }

  /** The model's time: realistic milliseconds since the destination accepted (before: -1). */
  private modelMs(out: OutgoingMigration): number {
    return out.startedAt === undefined
      ? -1
      : (this.now().getTime() - out.startedAt) / this.options.timeScale;
  }

  /** The label's rate when it is a valid byte count, else one that follows the VM's CPU usage. */
  private dirtyRate(vm: SimVmRecord): number {
    const label = vm.spec.labels[DIRTY_RATE_LABEL];
    if (label !== undefined && /^\d{1,15}$/.test(label)) return Number(label);
    const { cpuUsage } = simVmUsage(vm.spec, 'running', this.now().getTime());
    return Math.round(cpuUsage * vm.spec.vcpus * DIRTY_BYTES_PER_BUSY_VCPU);
  }

  /** The VM, when no operation holds it. */
  private lockable(uuid: string): SimVmRecord {
    const vm = this.vms.get(uuid);
    if (!vm) throw new AgentError(ErrorCode.NotFound, `no VM ${uuid} on this node`);
    const holder = this.locks.get(uuid);
    if (holder)
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `VM ${vm.spec.name} is busy: a ${holder} operation is in progress; try again when it has finished`,
      );
    return vm;
  }

  private setState(vm: SimVmRecord, state: VmState): void {
    vm.state = state;
    vm.stateChangedAt = this.now().toISOString();
  }

  private async operate(
    uuid: string,
    operation: SimOperation,
    run: (vm: SimVmRecord) => Promise<void>,
  ): Promise<VmInstance> {
    const vm = this.lockable(uuid);
    this.locks.set(uuid, operation);
    try {
      await run(vm);
    } finally {
      this.locks.delete(uuid);
    }
    return this.view(vm);
  }

  private require(vm: SimVmRecord, states: VmState[], verb: string, article: string): void {
    if (!states.includes(vm.state)) {
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `VM ${vm.spec.name} is ${vm.state}; only ${article} VM can be ${verb}`,
      );
    }
  }

  /** Moves the VM through `during` to `target`, persisting both steps. */
  private async transition(
    vm: SimVmRecord,
    operation: SimOperation,
    during: VmState,
    target: VmState,
    durationMs: number,
    boots = true,
  ): Promise<void> {
    const scaled = durationMs * this.options.timeScale;
    const now = this.now();
    vm.state = during;
    vm.stateChangedAt = now.toISOString();
    vm.transition = { operation, target, endsAt: new Date(now.getTime() + scaled).toISOString() };
    await this.persist();
    await this.options.clock.sleep(scaled);
    this.finish(vm, boots);
    await this.persist();
  }

  private finish(vm: SimVmRecord, boots = true): void {
    if (!vm.transition) return;
    const { operation, target } = vm.transition;
    const at = this.now();
    const endsAt = new Date(Math.min(Date.parse(vm.transition.endsAt), at.getTime())).toISOString();
    vm.state = target;
    vm.stateChangedAt = endsAt;
    if (target !== 'running') vm.bootedAt = null;
    else if (boots && (operation === 'start' || operation === 'reboot')) vm.bootedAt = endsAt;
    vm.transition = null;
  }

  /**
   * A record as loaded: an operation that was under way when the agent stopped is finished; an
   * outgoing pre-copy is cancelled (the VM runs on here); a migration that had switched to post-copy
   * lost its stream (the VM runs at the destination, the source waits paused).
   */
  private settle(record: SimVmRecord): SimVmRecord {
    const vm = structuredClone(record);
    const migration = vm.migration?.role === 'outgoing' ? vm.migration.stats : undefined;
    if (
      migration &&
      (migration.status === 'postcopy-active' || migration.status === 'postcopy-paused')
    ) {
      Object.assign(migration, {
        status: 'postcopy-paused',
        error:
          migration.error ?? 'the agent stopped during post-copy; the VM runs at the destination',
      });
      vm.state = 'paused';
    } else if (migration && migration.status === 'completed') {
      vm.state = 'paused';
    } else if (migration && !['failed', 'cancelled', 'none'].includes(migration.status)) {
      Object.assign(migration, {
        status: 'cancelled',
        error: 'the agent stopped during the migration; the VM kept running here',
      });
      vm.state = 'running';
    }
    if (vm.transition) this.finish(vm, !(vm.transition.operation === 'reboot' && isHung(vm)));
    else if (vm.state === 'starting' || vm.state === 'rebooting' || vm.state === 'migrating')
      vm.state = 'running';
    else if (vm.state === 'stopping') vm.state = 'stopped';
    if (vm.state === 'running' && !vm.bootedAt) vm.bootedAt = vm.stateChangedAt;
    return vm;
  }

  private view(record: SimVmRecord): VmInstance {
    const now = this.now().getTime();
    const usage = simVmUsage(record.spec, record.state, now);
    const bootedAt = record.bootedAt ? Date.parse(record.bootedAt) : undefined;
    const out = this.outgoings.get(record.spec.uuid);
    // Auto-converge takes CPU time from the guest.
    const throttle =
      out && record.state === 'migrating' ? out.model.at(this.modelMs(out)).throttlePercent : 0;
    return {
      spec: structuredClone(record.spec),
      runtime: {
        state: record.state,
        cpuUsage: Math.round(usage.cpuUsage * (100 - throttle) * 10) / 1000,
        memoryUsedBytes: usage.memoryUsedBytes,
        uptimeSeconds:
          bootedAt !== undefined && record.state !== 'stopped'
            ? Math.max(0, Math.floor((now - bootedAt) / 1000))
            : 0,
        stateChangedAt: record.stateChangedAt,
        lockedBy: this.locks.get(record.spec.uuid) ?? '',
      },
    };
  }

  private records(): SimVmRecord[] {
    return [...this.vms.values()];
  }

  private now(): Date {
    return this.options.clock.now();
  }

  /** Saves the state; a failure shows in health() rather than failing the operation under way. */
  private async persist(): Promise<void> {
    this.endConsoles();
    try {
      await this.options.state.save(this.records());
      this.saveError = undefined;
    } catch (error) {
      this.saveError = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    }
  }
}

/** The figures outgoingStats answers (QEMU's query-migrate has no throttle field in our contract). */
function stats(figures: MigrationFigures): MigrationStats {
  const { throttlePercent: _throttle, ...rest } = figures;
  return withoutUndefined(rest);
}

function withoutUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

function isHung(vm: SimVmRecord): boolean {
  return vm.spec.labels[HUNG_GUEST_LABEL] === 'hung';
}
