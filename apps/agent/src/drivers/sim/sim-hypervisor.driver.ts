import { AgentError, ErrorCode } from '../../shared/agent-error';
import type { Clock } from '../../shared/clock';
import {
  vmDefinitionSchema,
  type DriverHealth,
  type HostFacts,
  type HostUsage,
  type HypervisorDriver,
  type ShutdownOptions,
  type VmDefinition,
  type VmInstance,
  type VmState,
} from '../hypervisor.driver';
import type { SimOperation, SimStateRepository, SimVmRecord } from './sim-state.repository';
import { simVmUsage } from './sim-usage';

/** How long operations take at timeScale 1 (what a small Linux guest on QEMU/KVM needs). */
export const SIM_DURATIONS_MS: Readonly<Record<SimOperation, number>> = { start: 4_000, shutdown: 6_000, reboot: 8_000, stop: 500 };
export const DEFAULT_SHUTDOWN_TIMEOUT_SECONDS = 60;
/** A VM labelled `sim-guest: hung` has a guest that ignores ACPI shutdown and reboot requests. */
export const HUNG_GUEST_LABEL = 'sim-guest';

/** Memory the simulated host itself uses besides its VMs. */
const HOST_OVERHEAD_BYTES = 6 * 1024 ** 3;

export interface SimHypervisorOptions {
  state: Pick<SimStateRepository, 'load' | 'save'>;
  clock: Clock;
  /** Multiplies every duration: 1 is realistic, tests use ~0.02. */
  timeScale: number;
  facts: HostFacts;
  /** The VMs of a first start (no state saved yet). */
  seed?: () => Promise<SimVmRecord[]>;
}

/**
 * A simulated hypervisor. VMs live in memory and in the state file; operations take realistic,
 * scaled time and hold the VM's lock meanwhile.
 *
 * Across an agent restart the simulated VMs behave like QEMU processes under libvirt, which keep
 * running while the management daemon restarts: a running VM is still running (its uptime goes on),
 * and an operation that was under way is settled as the hypervisor would have finished it.
 */
export class SimHypervisorDriver implements HypervisorDriver {
  readonly name = 'sim';
  private readonly vms = new Map<string, SimVmRecord>();
  private readonly locks = new Map<string, SimOperation>();
  private saveError: string | undefined;

  private constructor(private readonly options: SimHypervisorOptions) {}

  static async open(options: SimHypervisorOptions): Promise<SimHypervisorDriver> {
    const driver = new SimHypervisorDriver(options);
    const saved = await options.state.load();
    const records = saved ?? (await options.seed?.()) ?? [];
    for (const record of records) driver.vms.set(record.spec.uuid, driver.settle(record));
    await options.state.save(driver.records());
    return driver;
  }

  async list(): Promise<VmInstance[]> {
    return this.records()
      .map((record) => this.view(record))
      .sort((a, b) => a.spec.name.localeCompare(b.spec.name) || a.spec.uuid.localeCompare(b.spec.uuid));
  }

  async get(uuid: string): Promise<VmInstance | undefined> {
    const record = this.vms.get(uuid);
    return record && this.view(record);
  }

  async define(spec: VmDefinition): Promise<VmInstance> {
    const parsed = vmDefinitionSchema.safeParse(spec);
    if (!parsed.success) throw new AgentError(ErrorCode.InvalidArgument, `invalid VM definition: ${parsed.error.issues[0]?.message}`);
    if (this.vms.has(spec.uuid)) throw new AgentError(ErrorCode.AlreadyExists, `a VM with uuid ${spec.uuid} exists already`);
    if (this.records().some((r) => r.spec.name === spec.name)) throw new AgentError(ErrorCode.AlreadyExists, `a VM named ${spec.name} exists already`);
    const record: SimVmRecord = { spec: parsed.data, state: 'stopped', stateChangedAt: this.now().toISOString(), bootedAt: null, transition: null };
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
        await this.transition(vm, 'shutdown', 'stopping', 'stopped', timeoutMs + SIM_DURATIONS_MS.stop);
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
      await this.transition(vm, 'reboot', 'rebooting', 'running', DEFAULT_SHUTDOWN_TIMEOUT_SECONDS * 1000, false);
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
    return { ...this.options.facts, hugepages: { ...hugepages, free: Math.max(0, Math.min(hugepages.free, hugepages.total - used)) } };
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
    return { cpuUsage: Math.min(1, Math.round((0.02 + cpuSeconds / cpuCount) * 1000) / 1000), memoryUsedBytes: Math.min(memoryBytes, memory) };
  }

  async health(): Promise<DriverHealth> {
    if (this.saveError) return { name: 'sim', status: 'degraded', message: `cannot save the VM state: ${this.saveError}` };
    const running = this.records().filter((r) => r.state === 'running').length;
    return { name: 'sim', status: 'ok', message: `${this.vms.size} VMs, ${running} running` };
  }

  async close(): Promise<void> {
    await this.persist();
  }

  private async operate(uuid: string, operation: SimOperation, run: (vm: SimVmRecord) => Promise<void>): Promise<VmInstance> {
    const vm = this.vms.get(uuid);
    if (!vm) throw new AgentError(ErrorCode.NotFound, `no VM ${uuid} on this node`);
    const holder = this.locks.get(uuid);
    if (holder) throw new AgentError(ErrorCode.FailedPrecondition, `VM ${vm.spec.name} is busy: a ${holder} operation is in progress; try again when it has finished`);
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
      throw new AgentError(ErrorCode.FailedPrecondition, `VM ${vm.spec.name} is ${vm.state}; only ${article} VM can be ${verb}`);
    }
  }

  /** Moves the VM through `during` to `target`, persisting both steps. */
  private async transition(vm: SimVmRecord, operation: SimOperation, during: VmState, target: VmState, durationMs: number, boots = true): Promise<void> {
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

  /** A record as loaded: an operation that was under way when the agent stopped is finished. */
  private settle(record: SimVmRecord): SimVmRecord {
    const vm = structuredClone(record);
    if (vm.transition) this.finish(vm, !(vm.transition.operation === 'reboot' && isHung(vm)));
    else if (vm.state === 'starting' || vm.state === 'rebooting' || vm.state === 'migrating') vm.state = 'running';
    else if (vm.state === 'stopping') vm.state = 'stopped';
    if (vm.state === 'running' && !vm.bootedAt) vm.bootedAt = vm.stateChangedAt;
    return vm;
  }

  private view(record: SimVmRecord): VmInstance {
    const now = this.now().getTime();
    const usage = simVmUsage(record.spec, record.state, now);
    const bootedAt = record.bootedAt ? Date.parse(record.bootedAt) : undefined;
    return {
      spec: structuredClone(record.spec),
      runtime: {
        state: record.state,
        cpuUsage: usage.cpuUsage,
        memoryUsedBytes: usage.memoryUsedBytes,
        uptimeSeconds: bootedAt !== undefined && record.state !== 'stopped' ? Math.max(0, Math.floor((now - bootedAt) / 1000)) : 0,
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
    try {
      await this.options.state.save(this.records());
      this.saveError = undefined;
    } catch (error) {
      this.saveError = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    }
  }
}

function isHung(vm: SimVmRecord): boolean {
  return vm.spec.labels[HUNG_GUEST_LABEL] === 'hung';
}
