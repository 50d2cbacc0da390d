import { fqdnSchema, ipAddressSchema } from '@debvisor/common';
import { join, resolve } from 'node:path';
import type { Duplex } from 'node:stream';
import { connectVncSocket } from '../../console/vnc-socket';
import { AgentError, ErrorCode } from '../../shared/agent-error';
import type { Clock } from '../../shared/clock';
import { HostFactsRepository } from '../host-facts.repository';
import {
  vmDefinitionSchema,
  type DriverHealth,
  type FreezeResult,
  type HostFacts,
  type HostUsage,
  type HypervisorDriver,
  type IncomingOptions,
  type MigrationAddress,
  type MigrationPsk,
  type MigrationStats,
  type MigrationStatus,
  type OutgoingOptions,
  type ShutdownOptions,
  type VmDefinition,
  type VmInstance,
  type VmState,
} from '../hypervisor.driver';
import {
  bootFiles,
  buildQemuArgv,
  imagePath,
  isNamedQemuCpuModel,
  qemuDefinitionProblem,
  type QemuConfig,
  type QemuRunPaths,
  type RbdAccess,
} from './qemu-argv';
import { GuestAgentError, GuestAgentTimeoutError, guestAgentCommand } from './qemu-guest-agent';
import {
  migrationStats,
  migrationStatus,
  queryMigrateSchema,
  type QueryMigrate,
} from './qemu-migration-stats';
import { QemuProcessRepository, QemuStartError } from './qemu-process.repository';
import { QemuStateRepository, type QemuVmRecord } from './qemu-state.repository';
import { QmpClient, QmpCommandError, QmpConnectionError } from './qmp-client';

export const DEFAULT_SHUTDOWN_TIMEOUT_SECONDS = 60;
/** Unix socket paths hold at most 107 bytes (sun_path is 108 with its NUL). */
const MAX_SOCKET_PATH = 107;
const UUID_LENGTH = 36;
const QUERY_TIMEOUT_MS = 3_000;
const QUIT_TIMEOUT_MS = 10_000;
const CANCEL_TIMEOUT_MS = 30_000;
const TOOL_TIMEOUT_MS = 10_000;
/** How long a QEMU version that answered is trusted by health() before `--version` is asked again. */
const QEMU_VERSION_RECHECK_MS = 5 * 60_000;
/** How long a thaw waits for the guest agent (a freeze has the caller's bound). */
const THAW_TIMEOUT_MS = 10_000;
/** For re-attaching to a running QEMU's monitor (a fresh QEMU gets qemu.startTimeoutSeconds). */
const RECONNECT_TIMEOUT_MS = 5_000;
/** QEMU's max-bandwidth for "unlimited" (its own default is 128 MiB/s). */
const UNLIMITED_BANDWIDTH = 2 ** 50;
const MAX_DOWNTIME_LIMIT_MS = 2_000_000;
const TLS_IN = 'mig-tls-in';
const TLS_OUT = 'mig-tls-out';
/**
 * GnuTLS priority of the direct transport: AES-GCM before ChaCha20-Poly1305. With QEMU's default
 * (NORMAL) the two QEMUs negotiated ChaCha20-Poly1305, whose nettle core took 38 % of the source
 * QEMU's CPU samples and held the transport to 0.14-0.41x raw TCP on the migration benchmark;
 * AES-GCM runs on AES-NI. ChaCha20 stays, last, for a host without AES-NI.
 */
const TLS_PRIORITY = 'NORMAL:-CHACHA20-POLY1305:+CHACHA20-POLY1305';
/** GnuTLS reads keys.psk as identity:hexkey lines. */
const PSK_IDENTITY = /^[A-Za-z0-9._-]{1,128}$/;
const PSK_KEY_BYTES = 32;
/** Incoming statuses in which QEMU still loads the stream. */
const LOADING: readonly MigrationStatus[] = ['none', 'setup', 'active', 'pre-switchover', 'device'];
/** How long commitIncoming waits for the last of the stream to load. */
const COMMIT_WAIT_MS = 15_000;
/** How long a post-copy target waits for QEMU to run the source's RUN command before its `cont`. */
const POSTCOPY_RUN_WAIT_MS = 40_000;
/** How long a post-copy target's `cont` may take (all within the source's 120 s wait for 'committed'). */
const POSTCOPY_CONT_TIMEOUT_MS = 40_000;
/**
 * How long a resumed post-copy migration may take to connect and finish its handshake with the
 * target (the received-page bitmaps, then the resume ack: a few KiB per GiB of guest memory).
 */
const RECOVER_TIMEOUT_MS = 30_000;
/** While a recovery is under way the source is asked again this often even without an event. */
const RECOVER_RECHECK_MS = 250;
/** While loading, the incoming side is asked again this often even without a MIGRATION event. */
const INCOMING_RECHECK_MS = 250;
/** How long, and how often, a source that said 'completed' is asked again for its figures. */
const FIGURES_WAIT_MS = 1_000;
const FIGURES_RECHECK_MS = 2;
/** Outgoing statuses in which QEMU still moves data (cancel must wait them out). */
const MIGRATING: readonly MigrationStatus[] = [
  'setup',
  'active',
  'pre-switchover',
  'device',
  'cancelling',
];

/** query-status run states, as VM states. */
const RUN_STATES: Record<string, VmState> = {
  running: 'running',
  'guest-panicked': 'crashed',
  'internal-error': 'crashed',
  'io-error': 'crashed',
  shutdown: 'stopping',
};

export interface QemuHypervisorOptions {
  config: Readonly<QemuConfig>;
  stateDir: string;
  clock: Clock;
  /** How QEMU opens RBD disks (without qemu.imageDir): the agent's rbd settings. */
  rbd?: RbdAccess;
  /** The host's facts and load (cpuinfo, meminfo, hugepages, bridges). */
  facts?: Pick<HostFactsRepository, 'facts' | 'usage'>;
  state?: QemuStateRepository;
  processes?: QemuProcessRepository;
}

interface QemuProcess {
  pid: number;
  qmp: QmpClient | undefined;
  /** QEMU announced a SHUTDOWN (guest power-off, signal, quit): its exit is not a crash. */
  shutdownSeen: boolean;
  /** The driver ends it itself: the operation settles the VM's state. */
  ending: boolean;
}

interface QemuVm {
  record: QemuVmRecord;
  process?: QemuProcess;
  /** Source side of a migration under way; `postcopy` once it switched (from then on only the target can run the VM). */
  outgoing?: { wasRunning: boolean; postcopy: boolean; postcopyEntered?: boolean };
  /**
   * Post-copy recovery: how many times QEMU's migration entered 'postcopy-recover' (from its
   * MIGRATION events: a handshake that fails goes back to 'postcopy-paused' too fast to be polled),
   * and, at the target, where the last migrate-recover listens.
   */
  recovery?: { handshakes: number; listening?: string };
  cpu?: { cpuSeconds: number; atMs: number; usage: number };
}

/**
 * Runs each VM as its own QEMU process, driven over QMP. QEMUs are daemonized, so they outlive the
 * agent: on open the driver re-attaches to them (pidfile + QMP socket) — except a migration target
 * that was never committed, which is killed and forgotten, as it only holds a copy.
 *
 * Definitions live in <stateDir>/qemu/<uuid>.json; runtime files (QMP socket, pidfile, serial log,
 * incoming migration socket, PSK key files) in <stateDir>/run/<uuid>/, mode 0700.
 */
export class QemuHypervisorDriver implements HypervisorDriver {
  readonly name = 'qemu';
  private readonly vms = new Map<string, QemuVm>();
  private readonly locks = new Map<string, string>();
  /** Who waits for the next change of a VM's migration (see migrationEvent). */
  private readonly migrationWaiters = new Map<string, Set<(woken: boolean) => void>>();
  /** Post-copy recoveries so far: each listens on a socket of its own. */
  private recoveries = 0;
  /** VMs whose guest agent was sent guest-fsfreeze-freeze and not yet thawed. */
  private readonly freezeSent = new Set<string>();
  private readonly state: QemuStateRepository;
  private readonly processes: QemuProcessRepository;
  private readonly hostFacts: Pick<HostFactsRepository, 'facts' | 'usage'>;
  private readonly config: Readonly<QemuConfig>;
  private readonly runDir: string;
  private cpuModels: Promise<Set<string> | undefined> | undefined;
  private qemuVersion: string | undefined;
  /** When `qemu --version` last answered (health asks at most every QEMU_VERSION_RECHECK_MS). */
  private qemuVersionCheckedAt = -Infinity;
  private saveError: string | undefined;
  private closing = false;

  private constructor(private readonly options: QemuHypervisorOptions) {
    const { config } = options;
    // QEMU daemonizes into '/': every path it gets must be absolute
    this.config = {
      ...config,
      imageDir: config.imageDir && resolve(config.imageDir),
      bootDir: config.bootDir && resolve(config.bootDir),
    };
    this.runDir = join(resolve(options.stateDir), 'run');
    this.state = options.state ?? new QemuStateRepository(resolve(options.stateDir));
    this.processes = options.processes ?? new QemuProcessRepository(config.binary);
    this.hostFacts = options.facts ?? new HostFactsRepository();
  }

  static async open(options: QemuHypervisorOptions): Promise<QemuHypervisorDriver> {
    const driver = new QemuHypervisorDriver(options);
    const longest = driver.paths('0'.repeat(UUID_LENGTH)).guestAgent;
    if (Buffer.byteLength(longest) > MAX_SOCKET_PATH) {
      throw new Error(
        `stateDir ${options.stateDir} is too long for QEMU's unix sockets: ${longest} has ${Buffer.byteLength(longest)} bytes, at most ${MAX_SOCKET_PATH} are possible; choose a shorter stateDir`,
      );
    }
    await driver.recover(await driver.state.load());
    return driver;
  }

  async list(): Promise<VmInstance[]> {
    const views = await Promise.all([...this.vms.values()].map((vm) => this.view(vm)));
    return views.sort(
      (a, b) => a.spec.name.localeCompare(b.spec.name) || a.spec.uuid.localeCompare(b.spec.uuid),
    );
  }

  async get(uuid: string): Promise<VmInstance | undefined> {
    const vm = this.vms.get(uuid);
    return vm && this.view(vm);
  }

  async define(spec: VmDefinition): Promise<VmInstance> {
    const parsed = await this.validate(spec);
    this.requireFree(parsed);
    const vm: QemuVm = {
      record: {
        version: 1,
        spec: parsed,
        phase: 'defined',
        state: 'stopped',
        stateChangedAt: this.now(),
        bootedAt: null,
      },
    };
    this.vms.set(parsed.uuid, vm);
    await this.persist(vm);
    return this.view(vm);
  }

  start(uuid: string): Promise<VmInstance> {
    return this.operate(uuid, 'start', async (vm) => {
      if (vm.process) throw this.wrongState(vm, await this.liveState(vm), 'started', 'a stopped');
      await this.setState(vm, 'starting');
      try {
        await this.launch(vm, false);
      } catch (error) {
        await this.setState(vm, 'stopped');
        throw error;
      }
      vm.record.bootedAt = this.now();
      await this.setState(vm, 'running');
    });
  }

  shutdown(uuid: string, options: ShutdownOptions = {}): Promise<VmInstance> {
    return this.operate(uuid, 'shutdown', async (vm) => {
      const process = await this.requireLive(vm, ['running', 'paused'], 'shut down', 'a running');
      const timeoutSeconds = options.timeoutSeconds || DEFAULT_SHUTDOWN_TIMEOUT_SECONDS;
      await this.setState(vm, 'stopping');
      process.ending = true;
      try {
        await this.command(vm, 'system_powerdown');
        if (await this.exitWithin(vm, process, timeoutSeconds * 1000)) {
          await this.setState(vm, 'stopped');
          return;
        }
        if (options.forceStop) {
          await this.terminate(vm);
          await this.setState(vm, 'stopped');
          return;
        }
      } catch (error) {
        await this.settleAfterFailure(vm, process);
        throw error;
      }
      process.ending = false;
      if (!(await this.processes.isAlive(process.pid, this.paths(uuid).pidFile))) {
        // it went just after the timeout
        this.detach(vm, process);
        await this.setState(vm, 'stopped');
        return;
      }
      await this.setState(vm, 'running');
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `the guest of VM ${vm.record.spec.name} did not shut down within ${timeoutSeconds} s; it is still running (retry with force_stop to power it off)`,
      );
    });
  }

  reboot(uuid: string): Promise<VmInstance> {
    return this.operate(uuid, 'reboot', async (vm) => {
      await this.requireLive(vm, ['running'], 'rebooted', 'a running');
      await this.setState(vm, 'rebooting');
      try {
        await this.command(vm, 'system_reset');
      } finally {
        await this.setState(vm, 'running');
      }
      vm.record.bootedAt = this.now();
      await this.persist(vm);
    });
  }

  stop(uuid: string): Promise<VmInstance> {
    return this.operate(uuid, 'stop', async (vm) => {
      if (!vm.process) throw this.wrongState(vm, vm.record.state, 'stopped', 'a running');
      await this.setState(vm, 'stopping');
      await this.terminate(vm);
      await this.setState(vm, 'stopped');
    });
  }

  async undefine(uuid: string): Promise<void> {
    await this.operate(uuid, 'undefine', async (vm) => {
      if (vm.process) throw this.wrongState(vm, await this.liveState(vm), 'undefined', 'a stopped');
      await this.forget(vm);
    });
  }

  async facts(): Promise<HostFacts> {
    const facts = await this.hostFacts.facts();
    const version =
      this.qemuVersion ?? (await this.processes.version(TOOL_TIMEOUT_MS).catch(() => undefined));
    this.qemuVersion = version;
    return { ...facts, versions: { ...facts.versions, ...(version ? { qemu: version } : {}) } };
  }

  usage(): Promise<HostUsage> {
    return this.hostFacts.usage();
  }

  /**
   * The QEMU version, asked again only every QEMU_VERSION_RECHECK_MS: health runs with every
   * heartbeat and HA probe, and each ask forks the agent (a fork of a large process stalls its
   * event loop, and with it every migration it relays).
   */
  private async checkedVersion(): Promise<string> {
    const now = performance.now();
    if (this.qemuVersion && now - this.qemuVersionCheckedAt < QEMU_VERSION_RECHECK_MS)
      return this.qemuVersion;
    const version = await this.processes.version(TOOL_TIMEOUT_MS);
    this.qemuVersion = version;
    this.qemuVersionCheckedAt = now;
    return version;
  }

  async health(): Promise<DriverHealth> {
    let version: string;
    try {
      version = await this.checkedVersion();
    } catch (error) {
      return {
        name: this.name,
        status: 'failed',
        message: `QEMU cannot run: ${(error as Error).message}`,
      };
    }
    if (this.saveError)
      return {
        name: this.name,
        status: 'degraded',
        message: `cannot save the VM state: ${this.saveError}`,
      };
    const running = [...this.vms.values()].filter(
      (vm) => vm.process && vm.record.phase === 'defined',
    ).length;
    return {
      name: this.name,
      status: 'ok',
      message: `QEMU ${version} (${this.config.accel}), ${this.vms.size} VMs, ${running} running`,
    };
  }

  async freezeFilesystems(uuid: string, timeoutMs: number): Promise<FreezeResult> {
    const vm = this.find(uuid);
    const state = vm.process ? await this.liveState(vm) : vm.record.state;
    if (!vm.process || state !== 'running')
      return { frozen: false, reason: `VM ${vm.record.spec.name} is ${state}, not running` };
    try {
      const count = await guestAgentCommand(
        this.paths(uuid).guestAgent,
        'guest-fsfreeze-freeze',
        timeoutMs,
        () => this.freezeSent.add(uuid),
      );
      return {
        frozen: true,
        reason: `the guest agent froze ${typeof count === 'number' ? count : 'the'} filesystems`,
      };
    } catch (error) {
      if (error instanceof GuestAgentTimeoutError || error instanceof GuestAgentError)
        return { frozen: false, reason: error.message };
      throw error;
    }
  }

  async thawFilesystems(uuid: string): Promise<void> {
    const vm = this.find(uuid);
    // Only a guest whose agent was sent the freeze can be frozen (one without an agent never answered the sync).
    if (!this.freezeSent.delete(uuid) || !vm.process) return;
    await guestAgentCommand(
      this.paths(uuid).guestAgent,
      'guest-fsfreeze-thaw',
      THAW_TIMEOUT_MS,
    ).catch(() => undefined);
  }

  /** Lets go of the QEMU monitors; the QEMUs keep running. */
  async close(): Promise<void> {
    this.closing = true;
    for (const vm of this.vms.values()) vm.process?.qmp?.close();
  }

  // Live migration: the target end.

  async prepareIncoming(spec: VmDefinition, options: IncomingOptions): Promise<MigrationAddress> {
    const parsed = await this.validate(spec);
    const direct = options.transport === 'direct';
    let listenHost = '';
    if (direct) {
      listenHost = validHost(options.listenHost, 'the listen host');
      validPsk(options.psk);
    }
    this.requireFree(parsed);
    const vm: QemuVm = {
      record: {
        version: 1,
        spec: parsed,
        phase: 'incoming',
        state: 'migrating',
        stateChangedAt: this.now(),
        bootedAt: null,
      },
    };
    this.vms.set(parsed.uuid, vm);
    this.locks.set(parsed.uuid, 'migration');
    const paths = this.paths(parsed.uuid);
    try {
      // saved first, so that an agent that dies from here on finds and kills this QEMU
      await this.persist(vm);
      await this.launch(vm, true);
      const multifd = multifdChannelsOf(options);
      const capabilities = {
        events: true,
        'postcopy-ram': options.allowPostcopy,
        'late-block-activate': true,
        multifd: multifd > 0,
      };
      await this.command(vm, 'migrate-set-capabilities', {
        capabilities: capabilityList(capabilities),
      });
      if (multifd > 0)
        await this.command(vm, 'migrate-set-parameters', { 'multifd-channels': multifd });
      if (direct) {
        const psk = options.psk!;
        // the server reads keys.psk at each handshake: it stays until commit or abort
        await this.processes.writePsk(paths.pskIn, psk.identity, psk.key);
        await this.command(vm, 'object-add', {
          'qom-type': 'tls-creds-psk',
          id: TLS_IN,
          endpoint: 'server',
          dir: paths.pskIn,
          priority: TLS_PRIORITY,
        });
        await this.command(vm, 'migrate-set-parameters', { 'tls-creds': TLS_IN });
      }
      const uri = direct ? `tcp:${uriHost(listenHost)}:0` : `unix:${paths.migration}`;
      await this.command(vm, 'migrate-incoming', { uri });
      if (!direct) return { kind: 'unix', path: paths.migration };
      const info = await this.queryMigrate(vm);
      const port = Number(info['socket-address']?.find((a) => a.type === 'inet')?.port);
      if (!Number.isInteger(port) || port <= 0)
        throw new AgentError(
          ErrorCode.Internal,
          `QEMU did not report the port it listens on for VM ${parsed.name}`,
        );
      return { kind: 'tcp', host: listenHost, port };
    } catch (error) {
      await this.discardIncoming(vm).catch(() => undefined);
      throw error;
    }
  }

  async incomingStatus(uuid: string): Promise<MigrationStatus> {
    const vm = this.find(uuid);
    if (vm.record.phase !== 'incoming') return 'completed';
    if (!vm.process) return 'failed';
    let status: MigrationStatus;
    try {
      status = migrationStatus((await this.queryMigrate(vm)).status);
    } catch (error) {
      // an incoming QEMU exits when the stream breaks
      if (!vm.process) return 'failed';
      throw error;
    }
    if (status !== 'setup' && status !== 'none')
      await this.processes.removeDir(this.paths(uuid).pskIn);
    return status;
  }

  async commitIncoming(uuid: string): Promise<VmInstance> {
    const vm = this.find(uuid);
    if (vm.record.phase !== 'incoming')
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `VM ${vm.record.spec.name} is not an incoming migration here`,
      );
    // the source sees its side done a moment before this side has loaded the last of the state
    const deadline = this.options.clock.now().getTime() + COMMIT_WAIT_MS;
    let next = this.migrationEvent(uuid, INCOMING_RECHECK_MS);
    let status = await this.incomingStatus(uuid);
    while (LOADING.includes(status) && this.options.clock.now().getTime() < deadline) {
      await next; // QEMU's MIGRATION event when the last of the state is loaded
      next = this.migrationEvent(uuid, INCOMING_RECHECK_MS);
      status = await this.incomingStatus(uuid);
    }
    if (status !== 'completed' && status !== 'postcopy-active') {
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `the incoming migration of VM ${vm.record.spec.name} is ${status}; it can be committed once completed (or in post-copy)`,
      );
    }
    // In post-copy, start the vCPUs only once QEMU has run the source's RUN command (it then
    // leaves 'inmigrate', paused). A `cont` before it makes QEMU start them from inside that
    // command's handler: under TCG that left the guest's kernel spinning with interrupts off in 1
    // of 6 migrations on a starved host, and in none of 18 this way (measured, QEMU 7.2).
    // That wait has its own bound: on a loaded host QEMU loads the device state (each guest page a
    // device touches fetched from the source) for longer than the 15 s above, and a `cont` sent
    // then would take the path this wait exists to avoid. It holds for 'completed' too: a short
    // post-copy can complete before QEMU's main loop ran the RUN command's handler (QEMU 7.2's
    // postcopy_ram_listen_thread says so: "we might not be in 'RUN' state yet"), and a pre-copy
    // one leaves 'inmigrate' in a handler of its own.
    const runDeadline = this.options.clock.now().getTime() + POSTCOPY_RUN_WAIT_MS;
    while (
      (await this.queryStatus(vm)) === 'inmigrate' &&
      this.options.clock.now().getTime() < runDeadline
    ) {
      await this.options.clock.sleep(10);
    }
    // In post-copy `cont` runs in QEMU's main loop, which stalls on every guest page a device
    // touches that has not arrived: on a slow or deep link that takes seconds per page.
    await this.command(
      vm,
      'cont',
      undefined,
      status === 'postcopy-active' ? POSTCOPY_CONT_TIMEOUT_MS : undefined,
    );
    await this.processes.removeDir(this.paths(uuid).pskIn);
    vm.record.phase = 'defined';
    vm.record.bootedAt = this.now();
    await this.setState(vm, 'running');
    this.locks.delete(uuid);
    return this.view(vm);
  }

  async abortIncoming(uuid: string): Promise<void> {
    const vm = this.vms.get(uuid);
    if (!vm) return;
    if (vm.record.phase !== 'incoming') {
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `VM ${vm.record.spec.name} runs here already (the migration was committed); it cannot be aborted`,
      );
    }
    await this.discardIncoming(vm);
  }

  // Live migration: the source end.

  async startOutgoing(uuid: string, options: OutgoingOptions): Promise<void> {
    const vm = this.find(uuid);
    const uri = destinationUri(options);
    if (options.destination.kind === 'tcp') validPsk(options.psk);
    if (
      !Number.isInteger(options.downtimeLimitMs) ||
      options.downtimeLimitMs < 1 ||
      options.downtimeLimitMs > MAX_DOWNTIME_LIMIT_MS
    ) {
      throw new AgentError(
        ErrorCode.InvalidArgument,
        `the downtime limit must be 1-${MAX_DOWNTIME_LIMIT_MS} ms`,
      );
    }
    if (!Number.isSafeInteger(options.bandwidthLimitBytes) || options.bandwidthLimitBytes < 0) {
      throw new AgentError(
        ErrorCode.InvalidArgument,
        'the bandwidth limit must be a whole number of bytes per second (0: unlimited)',
      );
    }
    this.lock(vm, 'migration');
    try {
      const state = vm.process ? await this.liveState(vm) : vm.record.state;
      if (state !== 'running' && state !== 'paused')
        throw this.wrongState(vm, state, 'migrated', 'a running');
      vm.outgoing = { wasRunning: state === 'running', postcopy: false };
      const multifd = multifdChannelsOf(options);
      const capabilities = {
        events: true,
        'auto-converge': options.autoConverge,
        'postcopy-ram': options.allowPostcopy,
        multifd: multifd > 0,
      };
      await this.command(vm, 'migrate-set-capabilities', {
        capabilities: capabilityList(capabilities),
      });
      let tlsCreds = '';
      if (options.psk && options.destination.kind === 'tcp') {
        await this.addClientPsk(vm, options.psk);
        tlsCreds = TLS_OUT;
      }
      await this.command(vm, 'migrate-set-parameters', {
        'downtime-limit': options.downtimeLimitMs,
        'max-bandwidth':
          options.bandwidthLimitBytes === 0 ? UNLIMITED_BANDWIDTH : options.bandwidthLimitBytes,
        // post-copy faults stall the guest until their page arrives: the background copy is never throttled
        'max-postcopy-bandwidth': 0,
        'tls-creds': tlsCreds,
        ...(multifd > 0 ? { 'multifd-channels': multifd } : {}),
      });
      await this.setState(vm, 'migrating');
      await this.command(vm, 'migrate', { uri });
    } catch (error) {
      await this.endOutgoing(vm).catch(() => undefined);
      throw error;
    }
  }

  migrationEvent(uuid: string, timeoutMs: number): Promise<boolean> {
    let waiters = this.migrationWaiters.get(uuid);
    if (!waiters) this.migrationWaiters.set(uuid, (waiters = new Set()));
    const set = waiters;
    return new Promise((resolve) => {
      const done = (woken: boolean) => {
        if (!set.delete(done)) return;
        if (set.size === 0 && this.migrationWaiters.get(uuid) === set)
          this.migrationWaiters.delete(uuid);
        resolve(woken);
      };
      set.add(done);
      void this.options.clock.sleep(timeoutMs).then(() => done(false));
    });
  }

  async outgoingStats(uuid: string): Promise<MigrationStats> {
    const vm = this.requireOutgoing(uuid);
    if (!vm.process)
      return { ...migrationStats({}), status: 'failed', error: 'the source QEMU exited' };
    let info = await this.queryMigrate(vm);
    // QEMU 7.2 says 'completed' (and sends its last MIGRATION event) a moment before its migration
    // thread fills in the total time and downtime, and no event follows: asked again shortly rather
    // than at the caller's next poll (which cost a whole progress interval in 3 of 10 migrations).
    const deadline = this.options.clock.now().getTime() + FIGURES_WAIT_MS;
    while (
      info.status === 'completed' &&
      !((info['total-time'] ?? 0) > 0) &&
      this.options.clock.now().getTime() < deadline
    ) {
      await this.options.clock.sleep(FIGURES_RECHECK_MS);
      info = await this.queryMigrate(vm);
    }
    const stats = migrationStats(info);
    if (stats.status === 'postcopy-active' || stats.status === 'postcopy-paused')
      vm.outgoing!.postcopyEntered = true;
    return stats;
  }

  async pauseOutgoing(uuid: string): Promise<void> {
    const vm = this.requireOutgoing(uuid);
    const status = migrationStatus((await this.queryMigrate(vm)).status);
    if (status !== 'postcopy-active')
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `only a migration in post-copy can be paused; that of VM ${vm.record.spec.name} is ${status}`,
      );
    await this.command(vm, 'migrate-pause');
  }

  async recoverIncoming(uuid: string): Promise<MigrationAddress> {
    const vm = this.find(uuid);
    // No query-migrate first: it runs in the main loop, which may be blocked (see below); QEMU
    // itself refuses migrate-recover unless its migration is paused in post-copy.
    if (!vm.process)
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `the migration of VM ${vm.record.spec.name} is not a paused post-copy migration here`,
      );
    // a fresh socket each time: the one of the broken stream may still be bound
    const path = `${this.paths(uuid).migration}-r${++this.recoveries}`;
    const deadline = this.options.clock.now().getTime() + RECOVER_TIMEOUT_MS;
    for (let paused = false; ;) {
      const next = this.migrationEvent(uuid, RECOVER_RECHECK_MS);
      try {
        // out of band: the target's main loop may wait for a page the broken link holds back, and
        // the socket is then served by the monitor's own thread, not that loop (QEMU's design)
        await this.command(vm, 'migrate-recover', { uri: `unix:${path}` }, undefined, true);
        break;
      } catch (error) {
        const message = (error as Error).message;
        // QEMU still listens where the last recovery asked (the source never connected): again there
        const listening = vm.recovery?.listening;
        if (listening && /triggered already/i.test(message))
          return { kind: 'unix', path: listening };
        // The break has not reached this side (a link that went silent, or its socket closed a
        // moment ago): cut the stream on purpose, then wait for QEMU's postcopy-paused.
        if (
          !/only be run when postcopy is paused/i.test(message) ||
          this.options.clock.now().getTime() >= deadline
        )
          throw error;
        if (!paused) {
          paused = true;
          await this.command(vm, 'migrate-pause', undefined, undefined, true).catch(
            () => undefined, // paused meanwhile
          );
        }
        await next;
      }
    }
    vm.recovery = { handshakes: vm.recovery?.handshakes ?? 0, listening: path };
    return { kind: 'unix', path };
  }

  async recoverOutgoing(uuid: string, destination: MigrationAddress): Promise<void> {
    const vm = this.requireOutgoing(uuid);
    if (destination.kind !== 'unix')
      throw new AgentError(
        ErrorCode.InvalidArgument,
        'a post-copy migration is recovered over a unix socket (the tunnel transport)',
      );
    const uri = destinationUri({ destination } as OutgoingOptions);
    // a migrate-pause or a broken socket reaches QEMU's migration thread a moment later
    const pausedBy = this.options.clock.now().getTime() + RECOVER_TIMEOUT_MS;
    let current = await this.postcopyStatus(vm);
    while (current === 'postcopy-active' && this.options.clock.now().getTime() < pausedBy) {
      await this.migrationEvent(uuid, RECOVER_RECHECK_MS);
      current = await this.postcopyStatus(vm);
    }
    if (current !== 'postcopy-paused')
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `the migration of VM ${vm.record.spec.name} is not a paused post-copy migration`,
      );
    const recovery = (vm.recovery ??= { handshakes: 0 });
    const handshakes = recovery.handshakes;
    const name = vm.record.spec.name;
    const deadline = this.options.clock.now().getTime() + RECOVER_TIMEOUT_MS;
    let next = this.migrationEvent(uuid, RECOVER_RECHECK_MS);
    await this.command(vm, 'migrate', { uri, resume: true });
    // QEMU answers before it even connected: the outcome is where its status goes from here
    for (;;) {
      await next;
      next = this.migrationEvent(uuid, RECOVER_RECHECK_MS);
      const info = await this.queryMigrate(vm);
      const status = info.status ?? 'none';
      const reason = info['error-desc'] ? `: ${info['error-desc']}` : '';
      if (status === 'postcopy-paused' && recovery.handshakes > handshakes)
        throw new AgentError(
          ErrorCode.Unavailable,
          `QEMU could not resume the post-copy migration of VM ${name}: the handshake with the target failed${reason}; both ends stay paused and keep every page, recover again`,
        );
      if (status === 'failed' || status === 'cancelled')
        throw new AgentError(
          ErrorCode.Internal,
          `the post-copy migration of VM ${name} ${status} while resuming${reason}`,
        );
      if (status !== 'postcopy-paused' && status !== 'postcopy-recover') return; // resumed
      if (this.options.clock.now().getTime() < deadline) continue;
      if (status === 'postcopy-paused')
        throw new AgentError(
          ErrorCode.Unavailable,
          `QEMU did not connect to the target to resume the post-copy migration of VM ${name} within ${RECOVER_TIMEOUT_MS / 1000} s${reason}; both ends stay paused and keep every page, recover again`,
        );
      // QEMU 7.2 can neither pause nor resume a migration in this state: someone must step in
      throw new AgentError(
        ErrorCode.DeadlineExceeded,
        `the target did not complete the handshake to resume the post-copy migration of VM ${name} within ${RECOVER_TIMEOUT_MS / 1000} s: the source's QEMU waits in postcopy-recover and cannot be recovered again; both ends keep every page`,
      );
    }
  }

  async switchToPostcopy(uuid: string): Promise<void> {
    const vm = this.requireOutgoing(uuid);
    await this.command(vm, 'migrate-start-postcopy');
    vm.outgoing!.postcopy = true;
  }

  async cancelOutgoing(uuid: string): Promise<void> {
    const vm = this.find(uuid);
    if (!vm.outgoing) return;
    if (!vm.process) return this.endOutgoing(vm);
    let status = migrationStatus((await this.queryMigrate(vm)).status);
    if (status === 'postcopy-active' || status === 'postcopy-paused')
      vm.outgoing.postcopyEntered = true;
    // A post-copy migration that failed before the target ran anything left the source whole; one
    // that got further did not — even when QEMU then calls it failed (e.g. the target's last word
    // never came back): resuming the source then would run the VM twice.
    if (
      status === 'postcopy-active' ||
      status === 'postcopy-paused' ||
      (vm.outgoing.postcopy && (status === 'completed' || vm.outgoing.postcopyEntered))
    ) {
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `the migration of VM ${vm.record.spec.name} switched to post-copy: the target holds the VM's newest state, so the migration can only complete, not be cancelled`,
      );
    }
    if (MIGRATING.includes(status)) {
      await this.command(vm, 'migrate_cancel');
      const deadline = this.options.clock.now().getTime() + CANCEL_TIMEOUT_MS;
      while (MIGRATING.includes(status)) {
        if (this.options.clock.now().getTime() > deadline)
          throw new AgentError(
            ErrorCode.DeadlineExceeded,
            `QEMU did not cancel the migration of VM ${vm.record.spec.name} within ${CANCEL_TIMEOUT_MS / 1000} s`,
          );
        await this.options.clock.sleep(50);
        status = migrationStatus((await this.queryMigrate(vm)).status);
      }
    }
    await this.endOutgoing(vm);
  }

  async finishOutgoing(uuid: string): Promise<void> {
    const vm = this.requireOutgoing(uuid);
    const status = migrationStatus((await this.queryMigrate(vm)).status);
    if (status !== 'completed') {
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `the migration of VM ${vm.record.spec.name} is ${status}; the source can only be finished once it completed`,
      );
    }
    await this.terminate(vm);
    await this.forget(vm);
  }

  // Internals.

  /** Settles the saved VMs against the QEMUs that are still there (see the class comment). */
  private async recover(records: QemuVmRecord[]): Promise<void> {
    const known = new Set(records.map((r) => r.spec.uuid));
    for (const record of records) {
      const vm: QemuVm = { record };
      const paths = this.paths(record.spec.uuid);
      const pid = await this.processes.readPid(paths.pidFile);
      const alive = pid !== undefined && (await this.processes.isAlive(pid, paths.pidFile));
      if (record.phase === 'incoming') {
        if (alive) await this.processes.kill(pid, paths.pidFile);
        await this.processes.removeDir(paths.dir);
        await this.state.remove(record.spec.uuid);
        continue;
      }
      this.vms.set(record.spec.uuid, vm);
      if (alive) {
        vm.process = { pid, qmp: undefined, shutdownSeen: false, ending: false };
        await this.connectMonitor(vm, vm.process).catch(() => undefined);
        await this.resumeOutgoing(vm).catch(() => undefined);
        if (record.state !== 'migrating') record.state = 'running';
      } else if (record.state !== 'stopped') {
        // QEMU ended while no agent watched: only a state that needs no QEMU is plausible as it was
        record.state =
          record.state === 'starting' || record.state === 'stopping' ? 'stopped' : 'crashed';
        record.stateChangedAt = this.now();
        record.bootedAt = null;
      }
      await this.persist(vm);
    }
    // run directories without a definition: an incoming QEMU whose record never got written
    for (const name of await this.processes.listDirs(this.runDir)) {
      if (known.has(name) || !/^[0-9a-f-]{36}$/.test(name)) continue;
      const paths = this.paths(name);
      const pid = await this.processes.readPid(paths.pidFile);
      if (pid !== undefined) await this.processes.kill(pid, paths.pidFile);
      await this.processes.removeDir(paths.dir);
    }
  }

  /** A re-attached source whose QEMU is still migrating (or finished and waits, paused): the migration lock comes back. */
  private async resumeOutgoing(vm: QemuVm): Promise<void> {
    const status = migrationStatus((await this.queryMigrate(vm)).status);
    const runState = await this.queryStatus(vm);
    if (
      MIGRATING.includes(status) ||
      status.startsWith('postcopy') ||
      (status === 'completed' && runState === 'postmigrate')
    ) {
      // whether a completed migration went through post-copy is not known any more: the orchestrator decides
      vm.outgoing = { wasRunning: true, postcopy: status.startsWith('postcopy') };
      vm.record.state = 'migrating';
      this.locks.set(vm.record.spec.uuid, 'migration');
    } else if (vm.record.state === 'migrating') {
      vm.record.state = 'running';
    }
  }

  private async validate(spec: VmDefinition): Promise<VmDefinition> {
    const parsed = vmDefinitionSchema.safeParse(spec);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new AgentError(
        ErrorCode.InvalidArgument,
        `invalid VM definition: ${issue?.path.join('.') || 'definition'}: ${issue?.message}`,
      );
    }
    const problem = qemuDefinitionProblem(parsed.data, this.config);
    if (problem)
      throw new AgentError(
        ErrorCode.InvalidArgument,
        `VM ${parsed.data.name} cannot run on QEMU: ${problem}`,
      );
    if (isNamedQemuCpuModel(parsed.data.cpuModel)) {
      this.cpuModels ??= this.processes.cpuModels(TOOL_TIMEOUT_MS).catch(() => {
        this.cpuModels = undefined; // QEMU cannot run now: starting the VM will say why
        return undefined;
      });
      const known = await this.cpuModels;
      if (known && !known.has(parsed.data.cpuModel)) {
        throw new AgentError(
          ErrorCode.InvalidArgument,
          `CPU model ${parsed.data.cpuModel} is not known to this QEMU; use x86-64, x86-64-v2, x86-64-v3, x86-64-v4, host-model or a model of qemu-system-x86_64 -cpu help`,
        );
      }
    }
    return parsed.data;
  }

  private requireFree(spec: VmDefinition): void {
    if (this.vms.has(spec.uuid))
      throw new AgentError(
        ErrorCode.AlreadyExists,
        `a VM with uuid ${spec.uuid} exists already on this node`,
      );
    const named = [...this.vms.values()].find((vm) => vm.record.spec.name === spec.name);
    if (named)
      throw new AgentError(
        ErrorCode.AlreadyExists,
        `a VM named ${spec.name} exists already on this node`,
      );
  }

  /** Starts the VM's QEMU (paused and waiting for a migration stream when `incoming`) and attaches to its monitor. */
  private async launch(vm: QemuVm, incoming: boolean): Promise<void> {
    const { spec } = vm.record;
    const paths = this.paths(spec.uuid);
    const { imageDir, bootDir } = this.config;
    const diskCache: Array<'none' | 'writeback'> = [];
    if (imageDir) {
      for (const disk of spec.disks) {
        const file = imagePath(imageDir, disk.pool, disk.image);
        if (!(await this.processes.isFile(file))) {
          throw new AgentError(
            ErrorCode.FailedPrecondition,
            `the disk image ${disk.pool}/${disk.image} of VM ${spec.name} does not exist in the image directory`,
          );
        }
        diskCache.push((await this.processes.supportsDirectIo(file)) ? 'none' : 'writeback');
      }
    }
    for (const file of bootFiles(spec, bootDir)) {
      if (!(await this.processes.isFile(file))) {
        throw new AgentError(
          ErrorCode.FailedPrecondition,
          `the boot file ${file.slice(bootDir!.length + 1)} of VM ${spec.name} does not exist in the boot directory`,
        );
      }
    }
    const argv = buildQemuArgv({
      spec,
      config: this.config,
      rbd: this.options.rbd,
      paths,
      diskCache,
      incoming,
    });
    await this.processes.prepareRunDir(paths.dir);
    try {
      await this.processes.spawnDaemon(argv, paths.log, this.config.startTimeoutSeconds * 1000);
    } catch (error) {
      await this.reap(paths);
      if (error instanceof QemuStartError)
        throw new AgentError(
          ErrorCode.FailedPrecondition,
          `QEMU could not start VM ${spec.name}: ${error.message}`,
        );
      throw error;
    }
    const pid = await this.processes.readPid(paths.pidFile);
    if (pid === undefined)
      throw new AgentError(ErrorCode.Internal, `QEMU started VM ${spec.name} but wrote no pidfile`);
    const process: QemuProcess = { pid, qmp: undefined, shutdownSeen: false, ending: false };
    vm.process = process;
    vm.cpu = undefined;
    try {
      await this.connectMonitor(vm, process, this.config.startTimeoutSeconds * 1000);
    } catch (error) {
      process.ending = true;
      await this.processes.kill(pid, paths.pidFile);
      vm.process = undefined;
      throw new AgentError(
        ErrorCode.Unavailable,
        `QEMU started VM ${spec.name} but its monitor does not answer: ${(error as Error).message}`,
      );
    }
  }

  /** QEMU said the VM's migration moved on (a new status, or a pre-copy pass): its waiters look now. */
  private migrationChanged(uuid: string): void {
    for (const wake of [...(this.migrationWaiters.get(uuid) ?? [])]) wake(true);
  }

  /** Kills a QEMU that a failed start may have left behind. */
  private async reap(paths: QemuPaths): Promise<void> {
    const pid = await this.processes.readPid(paths.pidFile);
    if (pid !== undefined) await this.processes.kill(pid, paths.pidFile);
  }

  private async connectMonitor(
    vm: QemuVm,
    process: QemuProcess,
    timeoutMs = RECONNECT_TIMEOUT_MS,
  ): Promise<QmpClient> {
    const qmp = await QmpClient.connect(this.paths(vm.record.spec.uuid).qmp, timeoutMs);
    process.qmp = qmp;
    qmp.on('event', (event) => {
      if (event.event === 'SHUTDOWN') process.shutdownSeen = true;
      // a source whose migration reached post-copy never resumes the VM itself (cancelOutgoing)
      if (event.event === 'MIGRATION' && event.data.status === 'postcopy-active' && vm.outgoing)
        vm.outgoing.postcopyEntered = true;
      if (event.event === 'MIGRATION' && event.data.status === 'postcopy-recover' && vm.recovery)
        vm.recovery.handshakes++;
      if (event.event === 'MIGRATION' || event.event === 'MIGRATION_PASS')
        this.migrationChanged(vm.record.spec.uuid);
      if (
        (event.event === 'STOP' || event.event === 'RESUME') &&
        !this.locks.has(vm.record.spec.uuid)
      )
        vm.record.stateChangedAt = this.now();
    });
    qmp.on('close', () => void this.monitorClosed(vm, process, qmp));
    return qmp;
  }

  /** QEMU's monitor went away: QEMU exited, unless the driver ended it itself or lets go of it. */
  private async monitorClosed(vm: QemuVm, process: QemuProcess, qmp: QmpClient): Promise<void> {
    if (this.closing || vm.process !== process || process.qmp !== qmp) return;
    process.qmp = undefined;
    if (process.ending) return;
    const { pidFile } = this.paths(vm.record.spec.uuid);
    if (!(await this.processes.waitForExit(process.pid, pidFile, 2_000))) return; // still alive: the next command reconnects
    if (vm.process !== process || process.ending) return;
    vm.process = undefined;
    if (vm.record.phase === 'incoming') return; // incomingStatus reports it failed
    vm.record.bootedAt = null;
    vm.record.state = process.shutdownSeen ? 'stopped' : 'crashed';
    vm.record.stateChangedAt = this.now();
    await this.persist(vm);
  }

  /** The monitor of a running VM, reconnected if it had gone away while QEMU lives. */
  private async monitor(vm: QemuVm): Promise<QmpClient> {
    const process = vm.process;
    if (!process)
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `VM ${vm.record.spec.name} is not running`,
      );
    if (process.qmp && !process.qmp.isClosed) return process.qmp;
    try {
      return await this.connectMonitor(vm, process);
    } catch (error) {
      throw new AgentError(
        ErrorCode.Unavailable,
        `the QEMU monitor of VM ${vm.record.spec.name} does not answer: ${(error as Error).message}`,
      );
    }
  }

  /**
   * Runs a QMP command (`oob`: out of band, see QmpClient.executeOob); QEMU's refusals become
   * FAILED_PRECONDITION with its reason, an unreachable monitor UNAVAILABLE.
   */
  private async command(
    vm: QemuVm,
    command: string,
    args?: Record<string, unknown>,
    timeoutMs?: number,
    oob = false,
  ): Promise<unknown> {
    const qmp = await this.monitor(vm);
    try {
      return await (oob
        ? qmp.executeOob(command, args, timeoutMs)
        : qmp.execute(command, args, timeoutMs));
    } catch (error) {
      if (error instanceof QmpCommandError)
        throw new AgentError(
          ErrorCode.FailedPrecondition,
          `QEMU refused ${command} for VM ${vm.record.spec.name}: ${error.desc}`,
          { cause: error },
        );
      if (error instanceof QmpConnectionError)
        throw new AgentError(ErrorCode.Unavailable, `VM ${vm.record.spec.name}: ${error.message}`, {
          cause: error,
        });
      throw error;
    }
  }

  private async queryMigrate(vm: QemuVm): Promise<QueryMigrate> {
    const answer = queryMigrateSchema.safeParse(
      await this.command(vm, 'query-migrate', undefined, QUERY_TIMEOUT_MS),
    );
    if (!answer.success)
      throw new AgentError(
        ErrorCode.Internal,
        `QEMU answered query-migrate for VM ${vm.record.spec.name} in an unexpected form`,
      );
    return answer.data;
  }

  /** The migration status as QEMU names it, 'postcopy-recover' included (the contract maps it to paused). */
  private async postcopyStatus(vm: QemuVm): Promise<string> {
    return (await this.queryMigrate(vm)).status ?? 'none';
  }

  /** QEMU's run state ('running', 'paused', 'postmigrate', …). */
  private async queryStatus(vm: QemuVm): Promise<string> {
    const answer = (await this.command(vm, 'query-status', undefined, QUERY_TIMEOUT_MS)) as
      { status?: unknown } | undefined;
    return typeof answer?.status === 'string' ? answer.status : 'unknown';
  }

  /** The state of a VM whose QEMU runs; what was last recorded when the monitor does not answer. */
  private async liveState(vm: QemuVm): Promise<VmState> {
    if (!vm.process) return vm.record.state;
    try {
      const status = await this.queryStatus(vm);
      return RUN_STATES[status] ?? 'paused';
    } catch {
      return vm.record.state;
    }
  }

  /** Waits for QEMU to exit by itself (after system_powerdown); true when it did. */
  private async exitWithin(vm: QemuVm, process: QemuProcess, timeoutMs: number): Promise<boolean> {
    const qmp = process.qmp;
    const { pidFile } = this.paths(vm.record.spec.uuid);
    if (qmp) {
      // the monitor closes as QEMU exits; the process is gone a moment later
      let timer: NodeJS.Timeout | undefined;
      const closed = await Promise.race([
        qmp.closed.then(() => true),
        new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs))),
      ]);
      clearTimeout(timer);
      if (!closed || !(await this.processes.waitForExit(process.pid, pidFile, QUIT_TIMEOUT_MS)))
        return false;
    } else if (!(await this.processes.waitForExit(process.pid, pidFile, timeoutMs))) return false;
    this.detach(vm, process);
    return true;
  }

  /** Ends a VM's QEMU: quit over QMP, SIGKILL when it does not go. */
  private async terminate(vm: QemuVm): Promise<void> {
    const process = vm.process;
    if (!process) return;
    process.ending = true;
    const { pidFile } = this.paths(vm.record.spec.uuid);
    let exited = false;
    if (process.qmp && !process.qmp.isClosed) {
      await process.qmp.execute('quit', undefined, QUIT_TIMEOUT_MS).catch(() => undefined);
      exited = await this.processes.waitForExit(process.pid, pidFile, QUIT_TIMEOUT_MS);
    }
    if (!exited) await this.processes.kill(process.pid, pidFile);
    this.detach(vm, process);
  }

  private detach(vm: QemuVm, process: QemuProcess): void {
    process.ending = true;
    process.qmp?.close();
    if (vm.process === process) vm.process = undefined;
    vm.record.bootedAt = null;
    vm.cpu = undefined;
  }

  /** After a failed shutdown step: whatever QEMU does now decides the state. */
  private async settleAfterFailure(vm: QemuVm, process: QemuProcess): Promise<void> {
    process.ending = false;
    const { pidFile } = this.paths(vm.record.spec.uuid);
    if (await this.processes.isAlive(process.pid, pidFile)) await this.setState(vm, 'running');
    else {
      this.detach(vm, process);
      await this.setState(vm, 'stopped');
    }
  }

  private async discardIncoming(vm: QemuVm): Promise<void> {
    const { uuid } = vm.record.spec;
    const paths = this.paths(uuid);
    if (vm.process) {
      vm.process.ending = true;
      vm.process.qmp?.close();
    }
    await this.reap(paths);
    vm.process = undefined;
    await this.processes.removeDir(paths.dir);
    await this.state.remove(uuid);
    if (this.vms.get(uuid) === vm) this.vms.delete(uuid);
    this.locks.delete(uuid);
  }

  private async addClientPsk(vm: QemuVm, psk: MigrationPsk): Promise<void> {
    const { pskOut } = this.paths(vm.record.spec.uuid);
    await this.command(vm, 'object-del', { id: TLS_OUT }).catch(() => undefined);
    await this.processes.writePsk(pskOut, psk.identity, psk.key);
    try {
      // the client reads its key once, here: the file need not outlive this command
      await this.command(vm, 'object-add', {
        'qom-type': 'tls-creds-psk',
        id: TLS_OUT,
        endpoint: 'client',
        dir: pskOut,
        username: psk.identity,
        priority: TLS_PRIORITY,
      });
    } finally {
      await this.processes.removeDir(pskOut);
    }
  }

  /** Leaves the source's migration: TLS credentials removed, the VM resumed if migration had paused it, the lock released. */
  private async endOutgoing(vm: QemuVm): Promise<void> {
    const { uuid } = vm.record.spec;
    try {
      if (vm.process) {
        await this.command(vm, 'migrate-set-parameters', { 'tls-creds': '' }).catch(
          () => undefined,
        );
        await this.command(vm, 'object-del', { id: TLS_OUT }).catch(() => undefined);
        const runState = await this.queryStatus(vm);
        if (
          vm.outgoing?.wasRunning &&
          (runState === 'postmigrate' || runState === 'paused' || runState === 'finish-migrate')
        )
          await this.command(vm, 'cont');
      }
    } finally {
      vm.outgoing = undefined;
      await this.setState(
        vm,
        vm.process
          ? await this.liveState(vm)
          : vm.record.state === 'migrating'
            ? 'crashed'
            : vm.record.state,
      );
      this.locks.delete(uuid);
    }
  }

  private requireOutgoing(uuid: string): QemuVm {
    const vm = this.find(uuid);
    if (!vm.outgoing)
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `VM ${vm.record.spec.name} is not being migrated from this node`,
      );
    return vm;
  }

  async openConsole(uuid: string): Promise<Duplex> {
    const vm = this.find(uuid);
    if (!vm.process)
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `VM ${vm.record.spec.name} is not running, so it has no console`,
      );
    return connectVncSocket(this.paths(uuid).vnc, vm.record.spec.name);
  }

  private find(uuid: string): QemuVm {
    const vm = this.vms.get(uuid);
    if (!vm) throw new AgentError(ErrorCode.NotFound, `no VM ${uuid} on this node`);
    return vm;
  }

  private lock(vm: QemuVm, operation: string): void {
    const holder = this.locks.get(vm.record.spec.uuid);
    if (holder) {
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `VM ${vm.record.spec.name} is busy: a ${holder} operation is in progress; try again when it has finished`,
      );
    }
    this.locks.set(vm.record.spec.uuid, operation);
  }

  private async operate(
    uuid: string,
    operation: string,
    run: (vm: QemuVm) => Promise<void>,
  ): Promise<VmInstance> {
    const vm = this.find(uuid);
    this.lock(vm, operation);
    try {
      await run(vm);
    } finally {
      this.locks.delete(uuid);
    }
    return this.view(vm);
  }

  private async requireLive(
    vm: QemuVm,
    states: VmState[],
    verb: string,
    article: string,
  ): Promise<QemuProcess> {
    const state = vm.process ? await this.liveState(vm) : vm.record.state;
    if (!vm.process || !states.includes(state)) throw this.wrongState(vm, state, verb, article);
    return vm.process;
  }

  private wrongState(vm: QemuVm, state: VmState, verb: string, article: string): AgentError {
    return new AgentError(
      ErrorCode.FailedPrecondition,
      `VM ${vm.record.spec.name} is ${state}; only ${article} VM can be ${verb}`,
    );
  }

  private async setState(vm: QemuVm, state: VmState): Promise<void> {
    if (vm.record.state !== state) {
      vm.record.state = state;
      vm.record.stateChangedAt = this.now();
    }
    if (state === 'stopped' || state === 'crashed') vm.record.bootedAt = null;
    await this.persist(vm);
  }

  private async forget(vm: QemuVm): Promise<void> {
    const { uuid } = vm.record.spec;
    await this.state.remove(uuid);
    await this.processes.removeDir(this.paths(uuid).dir);
    this.vms.delete(uuid);
  }

  private async view(vm: QemuVm): Promise<VmInstance> {
    const { spec } = vm.record;
    const lockedBy = this.locks.get(spec.uuid) ?? '';
    const state = lockedBy || !vm.process ? vm.record.state : await this.liveState(vm);
    const usage = vm.process
      ? await this.vmUsage(vm, vm.process, state)
      : { cpuUsage: 0, memoryUsedBytes: 0 };
    const bootedAt = vm.record.bootedAt ? Date.parse(vm.record.bootedAt) : undefined;
    return {
      spec: structuredClone(spec),
      runtime: {
        state,
        cpuUsage: usage.cpuUsage,
        memoryUsedBytes: usage.memoryUsedBytes,
        uptimeSeconds:
          bootedAt !== undefined && vm.process
            ? Math.max(0, Math.floor((this.options.clock.now().getTime() - bootedAt) / 1000))
            : 0,
        stateChangedAt: vm.record.stateChangedAt,
        lockedBy,
      },
    };
  }

  /** CPU (fraction of the VM's vCPUs, since the last look or since QEMU started) and resident memory of a VM's QEMU. */
  private async vmUsage(
    vm: QemuVm,
    process: QemuProcess,
    state: VmState,
  ): Promise<{ cpuUsage: number; memoryUsedBytes: number }> {
    const sample = await this.processes.sample(process.pid);
    if (!sample) return { cpuUsage: 0, memoryUsedBytes: 0 };
    const atMs = this.options.clock.now().getTime();
    const vcpus = vm.record.spec.vcpus;
    let usage: number;
    const last = vm.cpu;
    if (last && atMs - last.atMs < 1_000) usage = last.usage;
    else {
      usage = last
        ? (sample.cpuSeconds - last.cpuSeconds) / ((atMs - last.atMs) / 1000) / vcpus
        : sample.cpuSeconds / Math.max(1, sample.ageSeconds) / vcpus;
      vm.cpu = { cpuSeconds: sample.cpuSeconds, atMs, usage };
    }
    const cpuUsage =
      state === 'running' || state === 'migrating'
        ? Math.round(Math.min(1, Math.max(0, usage)) * 1000) / 1000
        : 0;
    return { cpuUsage, memoryUsedBytes: Math.min(sample.rssBytes, vm.record.spec.memoryBytes) };
  }

  private paths(uuid: string): QemuPaths {
    const dir = join(this.runDir, uuid);
    return {
      dir,
      qmp: join(dir, 'qmp'),
      pidFile: join(dir, 'pid'),
      serialLog: join(dir, 'serial.log'),
      guestAgent: join(dir, 'qga.sock'),
      vnc: join(dir, 'vnc.sock'),
      log: join(dir, 'qemu.log'),
      migration: join(dir, 'mig'),
      pskIn: join(dir, 'psk'),
      pskOut: join(dir, 'psk-out'),
    };
  }

  private now(): string {
    return this.options.clock.now().toISOString();
  }

  /** Saves a VM; a failure shows in health() rather than failing the operation under way. */
  private async persist(vm: QemuVm): Promise<void> {
    if (this.vms.get(vm.record.spec.uuid) !== vm) return;
    try {
      await this.state.save(vm.record);
      this.saveError = undefined;
    } catch (error) {
      this.saveError = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    }
  }
}

interface QemuPaths extends QemuRunPaths {
  dir: string;
  log: string;
  migration: string;
  pskIn: string;
  pskOut: string;
}

function capabilityList(
  capabilities: Record<string, boolean>,
): Array<{ capability: string; state: boolean }> {
  return Object.entries(capabilities).map(([capability, state]) => ({ capability, state }));
}

function validPsk(psk: MigrationPsk | undefined): MigrationPsk {
  if (!psk)
    throw new AgentError(ErrorCode.InvalidArgument, 'the direct transport needs a pre-shared key');
  if (!PSK_IDENTITY.test(psk.identity))
    throw new AgentError(
      ErrorCode.InvalidArgument,
      'a PSK identity is 1-128 letters, digits, dots, underscores and hyphens',
    );
  if (psk.key.length !== PSK_KEY_BYTES)
    throw new AgentError(ErrorCode.InvalidArgument, `a PSK is ${PSK_KEY_BYTES} bytes`);
  return psk;
}

function validHost(host: string | undefined, what: string): string {
  if (
    host !== undefined &&
    (ipAddressSchema.safeParse(host).success || fqdnSchema.safeParse(host).success)
  )
    return host.replace(/\.$/, '');
  throw new AgentError(ErrorCode.InvalidArgument, `${what} must be an IP address or a host name`);
}

function uriHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

function destinationUri(options: OutgoingOptions): string {
  const destination = options.destination;
  switch (destination.kind) {
    case 'unix':
      if (
        !destination.path.startsWith('/') ||
        Buffer.byteLength(destination.path) > MAX_SOCKET_PATH ||
        /[\0\n]/.test(destination.path)
      ) {
        throw new AgentError(
          ErrorCode.InvalidArgument,
          `a unix migration address is an absolute path of at most ${MAX_SOCKET_PATH} bytes`,
        );
      }
      return `unix:${destination.path}`;
    case 'tcp':
      if (!Number.isInteger(destination.port) || destination.port < 1 || destination.port > 65535)
        throw new AgentError(ErrorCode.InvalidArgument, 'a migration port is 1-65535');
      return `tcp:${uriHost(validHost(destination.host, 'the migration host'))}:${destination.port}`;
    case 'libvirt':
      throw new AgentError(
        ErrorCode.InvalidArgument,
        'the qemu driver cannot migrate to a libvirt URI',
      );
  }
}

/**
 * QEMU multifd channels: 1-15, and never with post-copy (QEMU 7.2 refuses the two together).
 */
function multifdChannelsOf(options: { multifdChannels?: number; allowPostcopy: boolean }): number {
  const channels = options.multifdChannels ?? 0;
  if (channels === 0) return 0;
  if (!Number.isInteger(channels) || channels < 1 || channels > 15)
    throw new AgentError(ErrorCode.InvalidArgument, 'multifd channels must be 0-15');
  if (options.allowPostcopy)
    throw new AgentError(
      ErrorCode.InvalidArgument,
      'multifd channels cannot be combined with post-copy',
    );
  return channels;
}
