import type {
  MigrateVmRequest,
  MigrationProgress__Output,
  PrepareMigrationRequest,
  PrepareMigrationResponse__Output,
  Vm__Output,
} from '@debvisor/proto';
import { fakeClock, strictMock } from '@debvisor/testing/strict-mock';
import type { PinoLogger } from 'nestjs-pino';
import type { AgentClientRepository, MigrationRef } from '../src/agents/agent-client.repository';
import type { AgentConnection } from '../src/agents/agent-connection';
import type { AclService } from '../src/acl/acl.service';
import type { ClockRepository } from '../src/common/clock.repository';
import type { MetricsService } from '../src/health/metrics.service';
import type { RemotesService } from '../src/remotes/remotes.service';
import type { ResourcesService } from '../src/resources/resources.service';
import type { TaskEntity } from '../src/tasks/task.entity';
import type { TaskContext } from '../src/tasks/tasks.service';
import type { MigrationFigures, MigrationOptions } from '../src/task-details/migration-details.dto';
import type { MigrationPhase } from '../src/migration/migration-journal';
import { MigrationPreflightService } from '../src/migration/migration-preflight.service';
import { InFlightMigrations } from '../src/migration/in-flight-migrations.service';
import { MigrationLinks } from '../src/migration/migration-links.service';
import { MigrationRunnerService } from '../src/migration/migration-runner.service';
import { MigrationEvents } from '../src/migration/migration-events';
import type { MigrationTimerRepository } from '../src/migration/migration-timer.repository';
import type { VmMigrationEntity } from '../src/migration/migration.entity';
import type { MigrationRepository } from '../src/migration/migration.repository';

/**
 * Fixtures of the migration service specs. Named *.test.ts so that the build leaves it out (it imports
 * vitest through strictMock); vitest runs only *.spec.ts.
 */

export const TASK_ID = '9d7f2a44-7a3c-4d2e-9f11-5c0f2b1a7e01';
export const VM = '11111111-1111-4111-8111-111111111111';
export const COOKIE = `dvmc_${'S'.repeat(43)}`;
export const EAST: AgentConnection = {
  remoteId: 'dc-east',
  endpoints: ['east:9443'],
  caCertPem: 'EAST-CA-PEM',
  apiKey: 'dvk_east',
};
export const WEST: AgentConnection = {
  remoteId: 'dc-west',
  endpoints: ['west:9443'],
  caCertPem: 'WEST-CA-PEM',
  apiKey: 'dvk_west',
};

export const OPTIONS: MigrationOptions = {
  online: true,
  transport: 'direct',
  mode: 'precopy',
  autoConverge: false,
  allowPostcopy: false,
  downtimeLimitMs: 300,
  bandwidthLimitBytes: 0,
  completionTimeoutSecondsPerGib: 60,
  storageMap: {},
  networkMap: {},
};

export function migrationRecord(overrides: Partial<VmMigrationEntity> = {}): VmMigrationEntity {
  const at = new Date('2026-01-01T00:00:00Z');
  return {
    taskId: TASK_ID,
    vmId: VM,
    sourceRemote: 'dc-east',
    sourceNode: null,
    targetRemote: 'dc-east',
    targetNode: 'node-2',
    targetCredentialId: null,
    options: OPTIONS,
    phase: 'preflight',
    progress: null,
    createdAt: at,
    transferStartedAt: null,
    finishedAt: null,
    updatedAt: at,
    ...overrides,
  };
}

export function vmOn(node: string, state = 'running'): Vm__Output {
  return {
    spec: {
      uuid: VM,
      name: 'web-1',
      vcpus: 1,
      memoryBytes: '268435456',
      disks: [],
      nics: [],
      cpuModel: 'host-model',
      hugepages: false,
      tenant: '',
      labels: {},
    },
    runtime: {
      state,
      nodeId: node,
      cpuUsage: 0,
      memoryUsedBytes: '0',
      uptimeSeconds: '0',
      stateChangedAt: '',
      lockedBy: '',
    },
  };
}

export function answer(
  overrides: Partial<PrepareMigrationResponse__Output> = {},
): PrepareMigrationResponse__Output {
  return {
    checks: [{ name: 'cpu', result: 'pass', reason: 'ok' }],
    ok: true,
    endpoint: '',
    cookie: '',
    cookieExpiresAt: '',
    nodeId: '',
    caPem: '',
    dataEndpoint: '',
    vmState: null,
    cpuModel: '',
    cpuFlags: [],
    disks: [],
    ...overrides,
  };
}

export function progress(
  phase: string,
  overrides: Partial<MigrationProgress__Output> = {},
): MigrationProgress__Output {
  return {
    phase,
    transferredBytes: '0',
    remainingBytes: '0',
    totalBytes: '0',
    dirtyRateBytes: '0',
    expectedDowntimeMs: 0,
    etaSeconds: 0,
    iteration: 0,
    message: '',
    downtimeMs: 0,
    totalTimeMs: 0,
    ...overrides,
  };
}

/** A progress stream the test feeds: push messages, then end or fail it. */
export class FakeStream implements AsyncIterable<MigrationProgress__Output> {
  private readonly queue: MigrationProgress__Output[] = [];
  private ended = false;
  private error: Error | undefined;
  private wake: (() => void) | undefined;
  opened = false;

  push(...messages: MigrationProgress__Output[]): void {
    this.queue.push(...messages);
    this.wake?.();
  }

  end(): void {
    this.ended = true;
    this.wake?.();
  }

  fail(error: Error): void {
    this.error = error;
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<MigrationProgress__Output> {
    this.opened = true;
    for (;;) {
      const next = this.queue.shift();
      if (next) {
        yield next;
        continue;
      }
      if (this.error) throw this.error;
      if (this.ended) return;
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }
}

export interface AgentScript {
  getVm?: (connection: AgentConnection, uuid: string) => Promise<Vm__Output>;
  prepareMigration?: (
    connection: AgentConnection,
    request: PrepareMigrationRequest,
  ) => Promise<PrepareMigrationResponse__Output>;
  migrateVm?: (
    connection: AgentConnection,
    request: MigrateVmRequest,
    signal?: AbortSignal,
  ) => AsyncIterable<MigrationProgress__Output>;
  cancelMigration?: (connection: AgentConnection, ref: MigrationRef) => Promise<boolean>;
  getMigration?: (
    connection: AgentConnection,
    ref: MigrationRef,
  ) => Promise<MigrationProgress__Output>;
}

/** Everything the runner touches, recorded: the repository writes, the task log, the agent calls. */
export function runnerSetup(
  script: AgentScript,
  record: VmMigrationEntity = migrationRecord(),
  options: {
    movedGrants?: number;
    grantMoveFailures?: number;
    linkCapBytes?: number;
    /** Each remote's connection (default: EAST and WEST). */
    connections?: Record<string, AgentConnection>;
    /** The agent endpoints the resource cache knows, by `remote/node`. */
    nodeEndpoints?: Record<string, string>;
    /** Recording this phase fails (the database went away). */
    failPhase?: MigrationPhase;
  } = {},
) {
  let grantMoveFailures = options.grantMoveFailures ?? 0;
  const phases: { phase: MigrationPhase; facts: Record<string, unknown> }[] = [];
  const figures: { figures: MigrationFigures; fraction: number }[] = [];
  const log: string[] = [];
  const refreshed: string[] = [];
  const moved: string[] = [];
  const outcomes: string[] = [];
  const clock = fakeClock();
  const events = new MigrationEvents();
  const repository = strictMock<MigrationRepository>('MigrationRepository', {
    get: async () => record,
    setPhase: async (
      _id: string,
      phase: MigrationPhase,
      _at: Date,
      facts: Record<string, unknown> = {},
    ) => {
      if (phase === options.failPhase) throw new Error('connection terminated unexpectedly');
      phases.push({ phase, facts });
    },
    // the figures, then the task's progress (context.progress) that goes with them
    setProgress: async (_id: string, f: MigrationFigures) => void (written = f),
  });
  let written: MigrationFigures | undefined;
  const acl = strictMock<AclService>('AclService', {
    moveVmGrants: async (vm: string, from: string, to: string) => {
      moved.push(`${vm} ${from}→${to}`);
      if (grantMoveFailures-- > 0) throw new Error('connection terminated unexpectedly');
      return options.movedGrants ?? 0;
    },
  });
  const agents = strictMock<AgentClientRepository>('AgentClientRepository', script);
  const inFlight = new InFlightMigrations(
    repository,
    agents,
    strictMock<RemotesService>('RemotesService', {
      connectionFor: async (remote: string) =>
        options.connections?.[remote] ?? (remote === 'dc-west' ? WEST : EAST),
    }),
    strictMock<ResourcesService>('ResourcesService', {
      refreshRemote: async (remote: string) => void refreshed.push(remote),
      vmMoved: (remote: string) => void refreshed.push(remote),
      cachedAgentEndpoint: (remote: string, node: string) =>
        options.nodeEndpoints?.[`${remote}/${node}`],
    }),
    acl,
    strictMock<MetricsService>('MetricsService', {
      observeMigration: (outcome: string) => void outcomes.push(outcome),
    }),
    strictMock<ClockRepository>('ClockRepository', { now: clock.now }),
    strictMock<MigrationTimerRepository>('MigrationTimerRepository', {
      sleep: async (ms: number) => clock.advance(ms),
    }),
    strictMock<PinoLogger>('PinoLogger', {
      setContext: () => undefined,
      error: () => undefined,
      info: () => undefined,
    }),
    events,
  );
  const runner = new MigrationRunnerService(
    inFlight,
    new MigrationPreflightService(agents),
    agents,
    new MigrationLinks({ migrationLinkCapBytes: options.linkCapBytes ?? 0 }),
  );
  const task = {
    id: TASK_ID,
    type: 'vm.migrate',
    state: 'running',
    remoteId: record.sourceRemote,
    vmId: VM,
    owner: 'alice@local!ci',
    credentialId: null,
    log: [],
  } as unknown as TaskEntity;
  const context: TaskContext = {
    task,
    log: async (message) => void log.push(message),
    progress: async (fraction) => {
      figures.push({ figures: written!, fraction });
      written = undefined;
    },
  };
  return {
    runner,
    inFlight,
    agents,
    acl,
    events,
    repository,
    phases,
    figures,
    log,
    refreshed,
    moved,
    outcomes,
    clock,
    context,
    task,
    record,
  };
}
