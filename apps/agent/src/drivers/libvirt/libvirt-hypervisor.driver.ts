import { fqdnSchema, ipAddressSchema, uuidSchema } from '@debvisor/common';
import type { Duplex } from 'node:stream';
import { connectVncSocket } from '../../console/vnc-socket';
import type { AgentConfig } from '../../config/agent-config.schema';
import { AgentError, ErrorCode } from '../../shared/agent-error';
import type { Clock } from '../../shared/clock';
import { forEachLimit } from '../../shared/concurrency';
import { hasControlCharacters } from '../../shared/text';
import { HostFactsRepository } from '../host-facts.repository';
import type {
  DriverHealth,
  FreezeResult,
  HostFacts,
  HostUsage,
  HypervisorDriver,
  IncomingOptions,
  MigrationAddress,
  MigrationStats,
  MigrationStatus,
  OutgoingOptions,
  ShutdownOptions,
  VmDefinition,
  VmInstance,
  VmState,
} from '../hypervisor.driver';
import { buildDomainXml, parseDomainXml, vncSocketOf } from './libvirt-domain-xml';
import {
  domainState,
  parseColonFields,
  parseDomstats,
  parseJobInfo,
  parseVersion,
  type DomainState,
} from './virsh-output';
import { VirshRepository, type VirshJob, type VirshJobResult } from './virsh.repository';

export const LIBVIRT_DEFAULT_SHUTDOWN_TIMEOUT_SECONDS = 60;
/** Where we keep when a domain booted: in its live XML, so that it survives agent restarts and migrates with it. */
const RUNTIME_NAMESPACE = 'urn:debvisor:runtime:1';
// --nowait: a domain in a migration job answers at once with what it has, instead of waiting for the job.
const STATS = ['--raw', '--nowait', '--state', '--cpu-total', '--balloon'] as const;
const LIST_CONCURRENCY = 4;

type Operation = 'define' | 'start' | 'shutdown' | 'reboot' | 'stop' | 'undefine' | 'migration';

export interface LibvirtDriverOptions {
  virsh: Pick<VirshRepository, 'run' | 'define' | 'background'>;
  hostFacts: Pick<HostFactsRepository, 'facts' | 'usage'>;
  clock: Clock;
  domainType: 'kvm' | 'qemu';
  /** The URI a source's libvirtd reaches this host's libvirtd at; `{host}` is replaced by the agent's host. */
  migrationUriTemplate: string;
  /** How long a virsh call may take (also the bound for waiting on a migration to start or to stop). */
  commandTimeoutMs: number;
  /** How long reboot() waits for the guest to reboot (default 60 s). */
  rebootTimeoutSeconds?: number;
  /** How often shutdown() and the migration calls look at the domain (default 250 ms). */
  pollIntervalMs?: number;
}

interface Outgoing {
  job: VirshJob;
  result?: VirshJobResult;
  last: MigrationStats;
  startedAt: number;
  allowPostcopy: boolean;
  postcopy: boolean;
  cancelled: boolean;
}

interface Observed {
  state: VmState;
  since: string;
}

/**
 * The production hypervisor: libvirt, through virsh (VirshRepository). Domains carry their VM
 * definition in the domain XML (tenant, labels and disk sizes in <metadata> under our namespace);
 * each VM takes one operation at a time (the lock lives in this process, like the sim driver's).
 *
 * Live migration is libvirt's peer-to-peer migration: the source libvirtd connects to the target
 * libvirtd itself (`virsh migrate --p2p`), over libvirt's own TLS (qemu+tls://, with the libvirt
 * PKI in /etc/pki/libvirt on every host) by default. The agents' tunnel and the one-time PSK do not
 * apply; the target side needs no preparation beyond reserving the VM's id.
 */
export class LibvirtHypervisorDriver implements HypervisorDriver {
  readonly name = 'libvirt';
  private readonly locks = new Map<string, Operation>();
  private readonly observed = new Map<string, Observed>();
  private readonly cpuSamples = new Map<string, { cpuNs: number; atMs: number }>();
  private readonly bootedAt = new Map<string, string>();
  private readonly outgoing = new Map<string, Outgoing>();

  constructor(private readonly options: LibvirtDriverOptions) {}

  /** The driver the agent's configuration describes. */
  static fromConfig(
    config: Readonly<AgentConfig['libvirt']>,
    clock: Clock,
  ): LibvirtHypervisorDriver {
    const timeoutMs = config.commandTimeoutSeconds * 1000;
    return new LibvirtHypervisorDriver({
      virsh: new VirshRepository({ virsh: config.virsh, uri: config.uri, timeoutMs }),
      hostFacts: new HostFactsRepository(),
      clock,
      domainType: config.domainType,
      migrationUriTemplate: config.migrationUriTemplate,
      commandTimeoutMs: timeoutMs,
    });
  }

  async list(): Promise<VmInstance[]> {
    const uuids = (await this.virsh(['list', '--all', '--uuid']))
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean);
    const stats = statsByName(await this.virsh(['domstats', ...STATS]));
    const found: VmInstance[] = [];
    await forEachLimit(uuids, LIST_CONCURRENCY, async (uuid) => {
      const spec = await this.spec(uuid).catch(ignoreNotFound);
      if (spec) found.push(await this.view(spec, stats.get(spec.name)));
    });
    return found.sort(
      (a, b) => a.spec.name.localeCompare(b.spec.name) || a.spec.uuid.localeCompare(b.spec.uuid),
    );
  }

  async get(uuid: string): Promise<VmInstance | undefined> {
    if (!uuidSchema.safeParse(uuid).success) return undefined;
    const spec = await this.spec(uuid).catch(ignoreNotFound);
    return spec && this.view(spec);
  }

  async define(spec: VmDefinition): Promise<VmInstance> {
    const xml = this.domainXml(spec);
    this.lock(spec.uuid, 'define', spec.name);
    let defined: VmDefinition | undefined;
    try {
      if (await this.spec(spec.uuid).catch(ignoreNotFound))
        throw new AgentError(ErrorCode.AlreadyExists, `a VM with uuid ${spec.uuid} exists already`);
      // libvirt itself refuses a second domain of the same name (ALREADY_EXISTS from its message).
      await this.options.virsh.define(xml);
      defined = await this.spec(spec.uuid);
    } finally {
      this.locks.delete(spec.uuid);
    }
    if (!defined)
      throw new AgentError(
        ErrorCode.Internal,
        `libvirt changed VM ${spec.name} beyond what its definition can describe`,
      );
    return this.view(defined);
  }

  start(uuid: string): Promise<VmInstance> {
    return this.operate(uuid, 'start', async (spec, state) => {
      this.require(spec, state, ['stopped', 'crashed'], 'started', 'a stopped');
      await this.virsh(['start', '--', uuid]);
      await this.markBooted(uuid);
    });
  }

  shutdown(uuid: string, options: ShutdownOptions = {}): Promise<VmInstance> {
    return this.operate(uuid, 'shutdown', async (spec, state) => {
      this.require(spec, state, ['running', 'paused'], 'shut down', 'a running');
      const timeoutSeconds = options.timeoutSeconds || LIBVIRT_DEFAULT_SHUTDOWN_TIMEOUT_SECONDS;
      await this.virsh(['shutdown', '--mode', 'acpi', '--', uuid]);
      const deadline = this.now() + timeoutSeconds * 1000;
      while ((await this.state(uuid)).state !== 'stopped') {
        if (this.now() >= deadline) {
          if (options.forceStop) {
            await this.virsh(['destroy', '--', uuid]).catch(ignoreNotRunning);
            return;
          }
          throw new AgentError(
            ErrorCode.FailedPrecondition,
            `the guest of VM ${spec.name} did not shut down within ${timeoutSeconds} s; it is still running (retry with force_stop to power it off)`,
          );
        }
        await this.options.clock.sleep(this.pollMs());
      }
    });
  }

  reboot(uuid: string): Promise<VmInstance> {
    return this.operate(uuid, 'reboot', async (spec, state) => {
      this.require(spec, state, ['running'], 'rebooted', 'a running');
      const timeoutSeconds =
        this.options.rebootTimeoutSeconds ?? LIBVIRT_DEFAULT_SHUTDOWN_TIMEOUT_SECONDS;
      // Listen before asking: libvirt reports the guest's reset as a 'reboot' event. The guest takes
      // far longer to react to ACPI than virsh takes to register.
      const event = this.options.virsh.background([
        'event',
        '--domain',
        uuid,
        '--event',
        'reboot',
        '--timeout',
        String(timeoutSeconds),
      ]);
      try {
        await this.virsh(['reboot', '--mode', 'acpi', '--', uuid]);
      } catch (error) {
        event.interrupt();
        throw error;
      }
      const { stdout } = await event.done;
      if (!/event 'reboot'/.test(stdout)) {
        throw new AgentError(
          ErrorCode.FailedPrecondition,
          `the guest of VM ${spec.name} did not respond to the reboot request within ${timeoutSeconds} s; it is still running (stop and start it instead)`,
        );
      }
      await this.markBooted(uuid);
    });
  }

  stop(uuid: string): Promise<VmInstance> {
    return this.operate(uuid, 'stop', async (spec, state) => {
      this.require(
        spec,
        state,
        ['running', 'paused', 'crashed', 'stopping', 'migrating'],
        'stopped',
        'a running',
      );
      await this.virsh(['destroy', '--', uuid]).catch(ignoreNotRunning);
    });
  }

  async undefine(uuid: string): Promise<void> {
    await this.locked(uuid, 'undefine', async (spec, state) => {
      this.require(spec, state, ['stopped', 'crashed'], 'undefined', 'a stopped');
      await this.virsh(['undefine', '--managed-save', '--snapshots-metadata', '--', uuid]);
      this.forget(uuid);
    });
  }

  async facts(): Promise<HostFacts> {
    const host = await this.options.hostFacts.facts();
    const [node, version] = await Promise.all([
      this.virsh(['nodeinfo']).catch(() => ''),
      this.virsh(['version', '--daemon']).catch(() => ''),
    ]);
    const fields = parseColonFields(node);
    const cpus = Number(fields['CPU(s)']);
    const memoryKib = Number(/^(\d+)/.exec(fields['Memory size'] ?? '')?.[1]);
    return {
      ...host,
      cpuCount: Number.isInteger(cpus) && cpus > 0 ? cpus : host.cpuCount,
      memoryBytes:
        Number.isInteger(memoryKib) && memoryKib > 0 ? memoryKib * 1024 : host.memoryBytes,
      versions: { ...host.versions, ...parseVersion(version) },
    };
  }

  usage(): Promise<HostUsage> {
    return this.options.hostFacts.usage();
  }

  async health(): Promise<DriverHealth> {
    try {
      const versions = parseVersion(await this.virsh(['version', '--daemon']));
      const states = (await this.virsh(['list', '--all', '--uuid']))
        .split('\n')
        .filter((l) => l.trim()).length;
      const running = (await this.virsh(['list', '--uuid']))
        .split('\n')
        .filter((l) => l.trim()).length;
      return {
        name: this.name,
        status: 'ok',
        message: `libvirt ${versions.libvirt ?? '?'}, QEMU ${versions.qemu ?? '?'}: ${states} VMs, ${running} running`,
      };
    } catch (error) {
      return {
        name: this.name,
        status: 'failed',
        message: `libvirt does not answer: ${(error as Error).message}`,
      };
    }
  }

  /** Aborts migrations still under way (the agent stops); the VMs keep running under libvirtd. */
  async close(): Promise<void> {
    await Promise.all(
      [...this.outgoing.entries()].map(async ([uuid, outgoing]) => {
        if (outgoing.job.exited) return;
        await this.virsh(['domjobabort', '--', uuid]).catch(() => outgoing.job.interrupt());
        await this.settled(outgoing);
      }),
    );
  }

  // ----- live migration (libvirt peer-to-peer) -----

  async prepareIncoming(spec: VmDefinition, options: IncomingOptions): Promise<MigrationAddress> {
    this.domainXml(spec);
    if (options.transport !== 'direct') {
      throw new AgentError(
        ErrorCode.InvalidArgument,
        'libvirt migrates over its own connection between the libvirt daemons; the tunnel transport does not apply',
      );
    }
    const host = options.listenHost ?? '';
    if (!ipAddressSchema.safeParse(host).success && !fqdnSchema.safeParse(host).success) {
      throw new AgentError(
        ErrorCode.InvalidArgument,
        'an incoming libvirt migration needs the host name or address of this agent',
      );
    }
    this.lock(spec.uuid, 'migration', spec.name);
    try {
      if (await this.spec(spec.uuid).catch(ignoreNotFound))
        throw new AgentError(
          ErrorCode.AlreadyExists,
          `VM ${spec.name} (${spec.uuid}) is on this node already`,
        );
      const names = (await this.virsh(['list', '--all', '--name']))
        .split('\n')
        .map((l) => l.trim());
      if (names.includes(spec.name))
        throw new AgentError(
          ErrorCode.AlreadyExists,
          `another VM named ${spec.name} is on this node`,
        );
    } catch (error) {
      this.locks.delete(spec.uuid);
      throw error;
    }
    return {
      kind: 'libvirt',
      uri: this.options.migrationUriTemplate.replaceAll(
        '{host}',
        host.includes(':') ? `[${host}]` : host,
      ),
    };
  }

  async incomingStatus(uuid: string): Promise<MigrationStatus> {
    const state = await this.state(uuid).catch(ignoreNotFound);
    if (!state) return 'none';
    if (state.migration === 'precopy') return 'active';
    if (state.migration === 'postcopy') return 'postcopy-active';
    if (state.migration === 'postcopy-failed') return 'postcopy-paused';
    if (state.state === 'running') return 'completed';
    return state.state === 'stopped' ? 'failed' : 'active';
  }

  /** With peer-to-peer migration the domain already runs here: check it and release the VM. */
  async commitIncoming(uuid: string): Promise<VmInstance> {
    if (this.locks.get(uuid) !== 'migration')
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `no incoming migration of VM ${uuid} on this node`,
      );
    const spec = await this.spec(uuid).catch(ignoreNotFound);
    if (!spec)
      throw new AgentError(ErrorCode.FailedPrecondition, `VM ${uuid} has not arrived on this node`);
    const state = await this.state(uuid);
    if (state.state !== 'running' && state.migration !== 'postcopy') {
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `VM ${spec.name} is still arriving (${state.state}); it runs here once libvirt finished the migration`,
      );
    }
    this.locks.delete(uuid);
    return this.view(spec);
  }

  /**
   * Removes a half-arrived domain (libvirt normally cleans it up itself when a migration fails).
   * A domain that already runs here is never removed: after a peer-to-peer migration it is the only
   * copy of the VM.
   */
  async abortIncoming(uuid: string): Promise<void> {
    if (this.locks.get(uuid) !== 'migration') return;
    try {
      const state = await this.state(uuid).catch(ignoreNotFound);
      if (!state) return;
      if (state.state === 'running' || state.migration === 'postcopy') {
        throw new AgentError(
          ErrorCode.FailedPrecondition,
          `VM ${uuid} already runs on this node (the migration completed); it was left running`,
        );
      }
      await this.virsh(['destroy', '--', uuid]).catch(ignoreNotRunning);
      await this.virsh(['undefine', '--', uuid]).catch(ignoreNotFound);
      this.forget(uuid);
    } finally {
      this.locks.delete(uuid);
    }
  }

  async startOutgoing(uuid: string, options: OutgoingOptions): Promise<void> {
    if (options.destination.kind !== 'libvirt')
      throw new AgentError(
        ErrorCode.InvalidArgument,
        'the libvirt driver migrates to a libvirt URI only',
      );
    const uri = options.destination.uri;
    if (
      uri.length > 1024 ||
      hasControlCharacters(uri) ||
      !/^[a-z][a-z0-9+.-]*:\/\/[^\s]*$/i.test(uri)
    ) {
      throw new AgentError(
        ErrorCode.InvalidArgument,
        'the destination is not a libvirt URI such as qemu+tls://host/system',
      );
    }
    const spec = await this.existing(uuid);
    this.lock(uuid, 'migration', spec.name);
    try {
      this.require(
        spec,
        (await this.state(uuid)).state,
        ['running', 'paused'],
        'migrated live',
        'a running',
      );
      // Without --undefinesource: the source keeps its (shut off) definition until finishOutgoing,
      // so that QEMU's completed figures (downtime, total time) can still be read here, and a
      // failed commit at the target leaves the definition in place.
      const args = ['migrate', '--live', '--p2p', '--persistent'];
      if (options.autoConverge) args.push('--auto-converge');
      if (options.allowPostcopy) args.push('--postcopy');
      if (options.bandwidthLimitBytes > 0)
        args.push(
          '--bandwidth',
          String(Math.max(1, Math.ceil(options.bandwidthLimitBytes / 1024 ** 2))),
        );
      const job = this.options.virsh.background([...args, '--', uuid, uri]);
      const outgoing: Outgoing = {
        job,
        last: emptyStats('setup'),
        startedAt: this.now(),
        allowPostcopy: options.allowPostcopy,
        postcopy: false,
        cancelled: false,
      };
      void job.done.then((result) => (outgoing.result = result));
      this.outgoing.set(uuid, outgoing);
      await this.untilJobRuns(uuid, outgoing);
      if (!job.exited && options.downtimeLimitMs > 0) {
        // The limit is a parameter of the running job (virsh migrate has no flag for it).
        await this.virsh([
          'migrate-setmaxdowntime',
          '--',
          uuid,
          String(Math.round(options.downtimeLimitMs)),
        ]).catch(() => undefined);
      }
    } catch (error) {
      const outgoing = this.outgoing.get(uuid);
      if (outgoing && !outgoing.job.exited) {
        outgoing.job.interrupt();
        await this.settled(outgoing);
      }
      this.outgoing.delete(uuid);
      this.locks.delete(uuid);
      throw error;
    }
  }

  async outgoingStats(uuid: string): Promise<MigrationStats> {
    const outgoing = this.requireOutgoing(uuid);
    if (outgoing.result) return this.finalStats(uuid, outgoing);
    let stats: MigrationStats;
    try {
      stats = parseJobInfo(await this.virsh(['domjobinfo', '--rawstats', '--', uuid]));
    } catch (error) {
      // The domain stopped here (migrated) or went away: the outcome is virsh's.
      if (
        !(error instanceof AgentError) ||
        (error.code !== ErrorCode.NotFound && error.code !== ErrorCode.FailedPrecondition)
      )
        throw error;
      await this.settled(outgoing);
      return this.finalStats(uuid, outgoing);
    }
    if (stats.status === 'none' || stats.status === 'completed') {
      // Between libvirt's job and virsh's exit: the outcome is virsh's.
      if (!outgoing.job.exited)
        return {
          ...outgoing.last,
          status: outgoing.last.status === 'none' ? 'setup' : outgoing.last.status,
        };
      await this.settled(outgoing);
      return this.finalStats(uuid, outgoing);
    }
    if (stats.status === 'active' && outgoing.postcopy) stats.status = 'postcopy-active';
    outgoing.last = stats;
    return stats;
  }

  async switchToPostcopy(uuid: string): Promise<void> {
    const outgoing = this.requireOutgoing(uuid);
    if (!outgoing.allowPostcopy)
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        'this migration was started without post-copy',
      );
    if (outgoing.job.exited)
      throw new AgentError(ErrorCode.FailedPrecondition, 'the migration has ended');
    await this.virsh(['migrate-postcopy', '--', uuid]);
    outgoing.postcopy = true;
  }

  async cancelOutgoing(uuid: string): Promise<void> {
    const outgoing = this.outgoing.get(uuid);
    if (!outgoing) {
      if (this.locks.get(uuid) === 'migration') this.locks.delete(uuid);
      return;
    }
    if (!outgoing.job.exited) {
      if (outgoing.postcopy)
        throw new AgentError(
          ErrorCode.FailedPrecondition,
          'a migration in post-copy cannot be cancelled: the VM already runs at the target',
        );
      outgoing.cancelled = true;
      await this.virsh(['domjobabort', '--', uuid]).catch((error: unknown) => {
        if (
          error instanceof AgentError &&
          error.code === ErrorCode.FailedPrecondition &&
          /post-copy/i.test(error.message)
        )
          throw error;
      });
    }
    const result = await this.settled(outgoing);
    this.outgoing.delete(uuid);
    this.locks.delete(uuid);
    if (!result.error) {
      this.forget(uuid);
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `the migration of VM ${uuid} had completed before it could be cancelled; the VM runs at the target`,
      );
    }
  }

  async finishOutgoing(uuid: string): Promise<void> {
    const outgoing = this.outgoing.get(uuid);
    try {
      if (outgoing) {
        const result = await this.settled(outgoing);
        if (result.error)
          throw new AgentError(
            ErrorCode.FailedPrecondition,
            `the migration of VM ${uuid} did not complete: ${result.error.message}`,
          );
      }
      // The source's domain is shut off (migrated) and still defined: remove what is left of it.
      const state = await this.state(uuid).catch(ignoreNotFound);
      if (state) {
        if (state.state !== 'stopped')
          await this.virsh(['destroy', '--', uuid]).catch(ignoreNotRunning);
        await this.virsh(['undefine', '--managed-save', '--snapshots-metadata', '--', uuid]).catch(
          ignoreNotFound,
        );
      }
      this.forget(uuid);
    } finally {
      this.outgoing.delete(uuid);
      if (this.locks.get(uuid) === 'migration') this.locks.delete(uuid);
    }
  }

  // ----- helpers -----

  /**
   * `virsh domfsfreeze` through the guest agent channel of the domain XML, bounded by `timeoutMs`
   * (virsh is killed after it; libvirt's own agent timeout may be shorter).
   */
  async freezeFilesystems(uuid: string, timeoutMs: number): Promise<FreezeResult> {
    const spec = await this.spec(uuid);
    if (!spec) throw new AgentError(ErrorCode.NotFound, `no VM ${uuid} on this node`);
    const { state } = await this.state(uuid);
    if (state !== 'running')
      return { frozen: false, reason: `VM ${spec.name} is ${state}, not running` };
    try {
      const output = await this.options.virsh.run(['domfsfreeze', '--', uuid], timeoutMs);
      return { frozen: true, reason: output.trim() || 'the guest agent froze the filesystems' };
    } catch (error) {
      if (!(error instanceof AgentError) || error.code === ErrorCode.NotFound) throw error;
      if (error.code === ErrorCode.DeadlineExceeded)
        return { frozen: false, reason: `no QEMU guest agent answered within ${timeoutMs} ms` };
      return {
        frozen: false,
        reason: `the guest agent did not freeze the filesystems: ${error.message}`,
      };
    }
  }

  async thawFilesystems(uuid: string): Promise<void> {
    // Thawing a guest that is not frozen (or has no agent) is an error for libvirt, not for us.
    await this.options.virsh.run(['domfsthaw', '--', uuid]).catch(() => undefined);
  }

  private virsh(args: string[]): Promise<string> {
    return this.options.virsh.run(args);
  }

  private domainXml(spec: VmDefinition): string {
    try {
      return buildDomainXml(spec, { domainType: this.options.domainType });
    } catch (error) {
      throw new AgentError(
        ErrorCode.InvalidArgument,
        `invalid VM definition: ${(error as Error).message}`,
      );
    }
  }

  async openConsole(uuid: string): Promise<Duplex> {
    const spec = await this.spec(uuid);
    if (!spec) throw new AgentError(ErrorCode.NotFound, `no VM ${uuid} on this node`);
    // The live XML names the socket libvirt picked while the domain runs.
    const path = vncSocketOf(await this.virsh(['dumpxml', '--', uuid]));
    if (!path)
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `VM ${spec.name} offers no console: it is not running (or was defined without VNC)`,
      );
    return connectVncSocket(path, spec.name);
  }

  /** The VM definition libvirt keeps (the inactive XML: as defined, before libvirt expands host-model). */
  private async spec(uuid: string): Promise<VmDefinition | undefined> {
    return parseDomainXml(await this.virsh(['dumpxml', '--inactive', '--', uuid]));
  }

  private async state(uuid: string): Promise<DomainState> {
    const stats = parseDomstats(
      await this.virsh(['domstats', '--raw', '--nowait', '--state', '--', uuid]),
    );
    return domainState(Number(stats['state.state']), Number(stats['state.reason']));
  }

  private async view(spec: VmDefinition, known?: Record<string, string>): Promise<VmInstance> {
    const stats = known ?? parseDomstats(await this.virsh(['domstats', ...STATS, '--', spec.uuid]));
    const libvirtState = domainState(Number(stats['state.state']), Number(stats['state.reason']));
    const state = this.shown(spec.uuid, libvirtState.state);
    const nowMs = this.now();
    const active = libvirtState.state !== 'stopped' && libvirtState.state !== 'crashed';
    const seen = this.observed.get(spec.uuid);
    const since = seen && seen.state === state ? seen.since : new Date(nowMs).toISOString();
    this.observed.set(spec.uuid, { state, since });
    const bootedAt = active ? await this.booted(spec.uuid, since) : undefined;
    if (!active) this.bootedAt.delete(spec.uuid);
    return {
      spec,
      runtime: {
        state,
        cpuUsage: active ? this.cpuUsage(spec, Number(stats['cpu.time']), nowMs) : 0,
        memoryUsedBytes: active
          ? Number(stats['balloon.rss'] ?? stats['balloon.current'] ?? 0) * 1024
          : 0,
        uptimeSeconds: bootedAt
          ? Math.max(0, Math.floor((nowMs - Date.parse(bootedAt)) / 1000))
          : 0,
        stateChangedAt: since,
        lockedBy: this.locks.get(spec.uuid) ?? '',
      },
    };
  }

  /** The state to show: what libvirt says, or the transition one of our operations holds the VM in. */
  private shown(uuid: string, state: VmState): VmState {
    const operation = this.locks.get(uuid);
    if (operation === 'start' && state === 'stopped') return 'starting';
    if (operation === 'shutdown' && (state === 'running' || state === 'paused')) return 'stopping';
    if (operation === 'reboot' && state === 'running') return 'rebooting';
    if (operation === 'migration' && (state === 'running' || state === 'paused'))
      return 'migrating';
    return state;
  }

  /** Fraction of the VM's vCPUs used since the previous look (0 on the first one). */
  private cpuUsage(spec: VmDefinition, cpuNs: number, nowMs: number): number {
    if (!Number.isFinite(cpuNs)) return 0;
    const previous = this.cpuSamples.get(spec.uuid);
    this.cpuSamples.set(spec.uuid, { cpuNs, atMs: nowMs });
    if (!previous || nowMs <= previous.atMs || cpuNs < previous.cpuNs) return 0;
    const usage = (cpuNs - previous.cpuNs) / 1e6 / (nowMs - previous.atMs) / spec.vcpus;
    return Math.min(1, Math.round(usage * 1000) / 1000);
  }

  /** When the running domain booted: our note in its live XML, read once per driver. */
  private async booted(uuid: string, fallback: string): Promise<string> {
    const known = this.bootedAt.get(uuid);
    if (known) return known;
    const note = await this.virsh([
      'metadata',
      '--live',
      '--uri',
      RUNTIME_NAMESPACE,
      '--',
      uuid,
    ]).catch(() => '');
    const at = /booted-at=["']([0-9T:.Z-]{20,30})["']/.exec(note)?.[1];
    const value = at && Number.isFinite(Date.parse(at)) ? at : fallback;
    this.bootedAt.set(uuid, value);
    return value;
  }

  private async markBooted(uuid: string): Promise<void> {
    const at = new Date(this.now()).toISOString();
    this.bootedAt.set(uuid, at);
    await this.virsh([
      'metadata',
      '--live',
      '--uri',
      RUNTIME_NAMESPACE,
      '--key',
      'debvisor-runtime',
      '--set',
      `<runtime booted-at='${at}'/>`,
      '--',
      uuid,
    ]).catch(() => undefined);
  }

  private forget(uuid: string): void {
    this.observed.delete(uuid);
    this.cpuSamples.delete(uuid);
    this.bootedAt.delete(uuid);
  }

  /** Runs one operation on an existing VM under its lock; answers the VM as it is afterwards. */
  private async operate(
    uuid: string,
    operation: Operation,
    run: (spec: VmDefinition, state: VmState) => Promise<void>,
  ): Promise<VmInstance> {
    const spec = await this.locked(uuid, operation, run);
    return this.view(spec);
  }

  private async locked(
    uuid: string,
    operation: Operation,
    run: (spec: VmDefinition, state: VmState) => Promise<void>,
  ): Promise<VmDefinition> {
    const spec = await this.existing(uuid);
    this.lock(uuid, operation, spec.name);
    try {
      // The state is read under the lock: another operation may have just finished.
      await run(spec, (await this.state(uuid)).state);
      return spec;
    } finally {
      this.locks.delete(uuid);
    }
  }

  private async existing(uuid: string): Promise<VmDefinition> {
    this.requireUuid(uuid);
    const spec = await this.spec(uuid).catch(ignoreNotFound);
    if (!spec) throw new AgentError(ErrorCode.NotFound, `no VM ${uuid} on this node`);
    return spec;
  }

  private lock(uuid: string, operation: Operation, name: string): void {
    const holder = this.locks.get(uuid);
    if (holder)
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `VM ${name} is busy: a ${holder} operation is in progress; try again when it has finished`,
      );
    this.locks.set(uuid, operation);
  }

  private require(
    spec: VmDefinition,
    state: VmState,
    states: VmState[],
    verb: string,
    article: string,
  ): void {
    if (!states.includes(state))
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `VM ${spec.name} is ${state}; only ${article} VM can be ${verb}`,
      );
  }

  private requireUuid(uuid: string): void {
    if (!uuidSchema.safeParse(uuid).success)
      throw new AgentError(ErrorCode.InvalidArgument, 'not a valid VM UUID');
  }

  private requireOutgoing(uuid: string): Outgoing {
    const outgoing = this.outgoing.get(uuid);
    if (!outgoing)
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `no outgoing migration of VM ${uuid} on this node`,
      );
    return outgoing;
  }

  /** Waits until QEMU migrates (or virsh has ended: a target libvirt could not reach fails here), within the call timeout. */
  private async untilJobRuns(uuid: string, outgoing: Outgoing): Promise<void> {
    const deadline = this.now() + this.options.commandTimeoutMs;
    for (;;) {
      if (outgoing.job.exited) {
        const { error } = await outgoing.job.done;
        if (error) throw error;
        return;
      }
      // libvirt's job begins before it reached the target; QEMU's migration has begun once it counts bytes.
      const job = parseJobInfo(
        await this.virsh(['domjobinfo', '--rawstats', '--', uuid]).catch(() => ''),
      );
      if (job.status !== 'none' && job.totalBytes > 0) {
        outgoing.last = job;
        return;
      }
      if (this.now() >= deadline)
        throw new AgentError(
          ErrorCode.DeadlineExceeded,
          `libvirt did not start migrating VM ${uuid} within ${Math.round(this.options.commandTimeoutMs / 1000)} s`,
        );
      await this.options.clock.sleep(Math.min(50, this.pollMs()));
    }
  }

  /** Waits for the migrate process to end (interrupting it after the call timeout). */
  private async settled(outgoing: Outgoing): Promise<VirshJobResult> {
    const timer = setTimeout(() => outgoing.job.interrupt(), this.options.commandTimeoutMs);
    try {
      const result = await outgoing.job.done;
      outgoing.result = result;
      return result;
    } finally {
      clearTimeout(timer);
    }
  }

  /** The outcome once virsh has exited; on success QEMU's own figures of the completed job, read once. */
  private async finalStats(uuid: string, outgoing: Outgoing): Promise<MigrationStats> {
    const { error } = outgoing.result ?? {};
    if (error) {
      const cancelled =
        outgoing.cancelled || /operation aborted|canceled|cancelled/i.test(error.message);
      return { ...outgoing.last, status: cancelled ? 'cancelled' : 'failed', error: error.message };
    }
    if (outgoing.last.status !== 'completed') {
      const completed = parseJobInfo(
        await this.virsh([
          'domjobinfo',
          '--completed',
          '--keep-completed',
          '--rawstats',
          '--',
          uuid,
        ]).catch(() => ''),
      );
      outgoing.last =
        completed.status === 'completed'
          ? completed
          : {
              ...outgoing.last,
              status: 'completed',
              remainingBytes: 0,
              expectedDowntimeMs: 0,
              totalTimeMs: Math.max(0, this.now() - outgoing.startedAt),
            };
    }
    return outgoing.last;
  }

  private pollMs(): number {
    return this.options.pollIntervalMs ?? 250;
  }

  private now(): number {
    return this.options.clock.now().getTime();
  }
}

function emptyStats(status: MigrationStatus): MigrationStats {
  return {
    status,
    transferredBytes: 0,
    remainingBytes: 0,
    totalBytes: 0,
    dirtyRateBytes: 0,
    expectedDowntimeMs: 0,
    iteration: 0,
    throughputBytes: 0,
  };
}

/** `virsh domstats` of every domain, by domain name. */
function statsByName(output: string): Map<string, Record<string, string>> {
  const byName = new Map<string, Record<string, string>>();
  for (const block of output.split(/^Domain: /m).slice(1)) {
    const name = /^'(.*)'/.exec(block)?.[1];
    if (name !== undefined) byName.set(name, parseDomstats(block));
  }
  return byName;
}

function ignoreNotFound(error: unknown): undefined {
  if (error instanceof AgentError && error.code === ErrorCode.NotFound) return undefined;
  throw error;
}

function ignoreNotRunning(error: unknown): void {
  if (error instanceof AgentError && error.code === ErrorCode.FailedPrecondition) return;
  throw error;
}
