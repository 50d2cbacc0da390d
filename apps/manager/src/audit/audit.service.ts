import {
  entryLine,
  normalizeEvent,
  type AuditEntry,
  type AuditEventInput,
  type AuditOutcome,
} from '@debvisor/audit';
import { resolveAclPath } from '@debvisor/permissions';
import { HttpException, Injectable, type OnModuleDestroy } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { remoteAclPath, vmAclPath } from '../authz/acl-paths';
import { ownerPrincipal } from '../authz/caller';
import { ClockRepository } from '../common/clock.repository';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { ERROR_STATUS } from '../common/error-status';
import { currentTraceId } from '../common/trace-context';
import { MUTATING_AGENT_RPCS, SYSTEM_PRINCIPAL, type AuditAction } from './audit-actions';
import { currentAuditScope, runInAuditScope } from './audit-call-context';
import type { AuditFilter } from './audit-query.repository';
import type { AuditExportQuery, AuditQuery } from './audit.dto';
import { AuditQueryRepository } from './audit-query.repository';
import { AuditWriter } from './audit-writer';
import type { RequestOrigin } from './request-origin';

export { SYSTEM_PRINCIPAL };
/** A successful authentication of one token (or user) from one address is recorded at most this often. */
const AUTH_SUCCESS_INTERVAL_MS = 60_000;
/** The manager's own routine reads of a remote are summed up in one entry per remote this often. */
export const ROUTINE_SUMMARY_INTERVAL_MS = 10 * 60_000;

/** The manager's own reads of one remote since `from`, not recorded yet. */
interface RoutineCalls {
  readonly from: Date;
  to: Date;
  readonly calls: Record<string, { success: number; failure: number }>;
  failures: number;
  lastError: Record<string, unknown> | null;
}

/** A mutating API call as the audit log describes it. */
export interface AuditedCall {
  readonly action: AuditAction;
  readonly principal: string | null;
  /** The API token (its public id) the call was made with. */
  readonly tokenId?: string | null;
  readonly target: string | null;
  readonly origin: RequestOrigin;
}

/** An authentication attempt, whatever the method: API token today, realms (password, LDAP, OpenID Connect) later. */
export interface AuthenticationAttempt {
  readonly outcome: 'success' | 'failure';
  /** `api_token`, `password`, `oidc`, `ldap`, `tfa` … */
  readonly method: string;
  readonly realm?: string;
  /** Who authenticated, or who the attempt claimed to be (null when unknown). */
  readonly principal?: string | null;
  readonly tokenId?: string | null;
  /** Why it failed, in words that are safe to keep (never the presented secret). */
  readonly reason?: string;
}

/** A call the manager is about to make to an agent. */
export interface AgentCall {
  readonly remote: string;
  /** `VmService.StartVm` … */
  readonly rpc: string;
  readonly vm?: string;
  /** The public id of the agent API key used (`dvk_<id>_…`). */
  readonly keyId?: string;
}

/** A started agent call, to be completed with agentCallFinished. */
export interface AgentCallRecord extends AgentCall {
  readonly started: number;
  readonly principal: string;
  readonly traceId: string | null;
}

export interface FinishedTask {
  readonly id: string;
  readonly type: string;
  /** `principal!token`, as tasks name their owner. */
  readonly owner: string;
  readonly remoteId: string | null;
  readonly vmId: string | null;
  readonly state: 'succeeded' | 'failed' | 'cancelled';
  readonly error: string | null;
}

export interface AuditPage {
  readonly items: AuditEntry[];
  /** Pass as `cursor` for the next (older) page; null when this page is the last. */
  readonly nextCursor: number | null;
}

/**
 * What the manager records in its audit log and when. Entries written BEFORE a change (attempt,
 * and an agent call that changes something) are required: when one cannot be written, the change
 * is refused with 503 audit_unavailable. Entries written AFTER (outcomes, authentication, denials,
 * rate limits, agent reads, task outcomes) are best effort: a failure is logged and the answer
 * stays what it was. Details hold safe facts only; normalizeEvent redacts secrets besides.
 */
@Injectable()
export class AuditService implements OnModuleDestroy {
  private readonly recentAuthentications = new Map<string, number>();
  /** By remote: the routine reads not summed up in an entry yet. */
  private readonly routine = new Map<string, RoutineCalls>();

  constructor(
    private readonly writer: AuditWriter,
    private readonly query: AuditQueryRepository,
    private readonly clock: ClockRepository,
    private readonly logger: PinoLogger,
  ) {
    logger.setContext(AuditService.name);
  }

  // --- mutating API calls ----------------------------------------------------------------------

  /** Records that `call` is about to be carried out; throws 503 audit_unavailable when it cannot. */
  async attempt(call: AuditedCall): Promise<void> {
    await this.record(this.callEvent(call, 'attempt', {}), true);
  }

  /**
   * Runs the call's work in an audit scope: agent calls it makes are attributed to the caller, and
   * services may note() safe details for the outcome entry.
   */
  runCall<T>(call: AuditedCall, work: () => T): T {
    return runInAuditScope({ principal: call.principal, notes: {} }, work);
  }

  /** Safe facts about the current API call (a created remote's endpoints, a task id) for its outcome entry. */
  note(details: Record<string, unknown>): void {
    const scope = currentAuditScope();
    if (scope) Object.assign(scope.notes, details);
  }

  /** Records how the call ended (best effort). `notes` are what services noted meanwhile. */
  async outcome(call: AuditedCall, notes: Record<string, unknown>, error?: unknown): Promise<void> {
    const failure = error === undefined ? {} : describeError(error);
    await this.record(
      this.callEvent(call, error === undefined ? 'success' : 'failure', { ...notes, ...failure }),
      false,
    );
  }

  // --- the guard -------------------------------------------------------------------------------

  /**
   * Records an authentication attempt (best effort). Failures always; a success once a minute per
   * token (or principal) and source address, so that a dashboard polling with a token does not
   * fill the log, while a token turning up from a new address is recorded at once.
   */
  async authentication(attempt: AuthenticationAttempt, origin: RequestOrigin): Promise<void> {
    // Token authentications happen on every request: a success is recorded once a minute per token and source.
    // Interactive logins (password, second factor, OIDC) are recorded every time.
    if (
      attempt.outcome === 'success' &&
      attempt.method === 'api_token' &&
      !this.firstInInterval(
        `auth|${attempt.tokenId ?? attempt.principal ?? ''}|${origin.source ?? ''}`,
      )
    )
      return;
    await this.record(
      {
        at: this.clock.now(),
        principal: attempt.principal ?? null,
        action: 'auth.login',
        target: null,
        outcome: attempt.outcome,
        traceId: origin.traceId,
        source: origin.source,
        details: {
          method: attempt.method,
          realm: attempt.realm,
          tokenId: attempt.tokenId,
          reason: attempt.reason,
          request: `${origin.method} ${origin.path}`,
        },
      },
      false,
    );
  }

  /** Records a request refused for a missing privilege (best effort). */
  async denied(
    who: { principal: string; tokenId?: string | null },
    requirement: { privilege: string; path: string } | undefined,
    params: Record<string, string | undefined>,
    origin: RequestOrigin,
  ): Promise<void> {
    await this.record(
      {
        at: this.clock.now(),
        principal: who.principal,
        action: 'authz.denied',
        target: requirement ? safeAclPath(requirement.path, params) : null,
        outcome: 'denied',
        traceId: origin.traceId,
        source: origin.source,
        details: {
          privilege: requirement?.privilege ?? null,
          reason: requirement ? undefined : 'the route declares no privilege',
          tokenId: who.tokenId,
          request: `${origin.method} ${origin.path}`,
        },
      },
      false,
    );
  }

  /**
   * Records a request refused by a rate limit (best effort). For the limits that come with
   * identity and access (login attempts, token creation): call it where the limit refuses.
   */
  async rateLimited(
    hit: { principal?: string | null; limit: string; scope?: string; retryAfterSeconds?: number },
    origin: RequestOrigin,
  ): Promise<void> {
    // A flood of refused requests must not flood the log: one entry per limit, principal and source a minute.
    if (
      !this.firstInInterval(`ratelimit|${hit.limit}|${hit.principal ?? ''}|${origin.source ?? ''}`)
    )
      return;
    await this.record(
      {
        at: this.clock.now(),
        principal: hit.principal ?? null,
        action: 'ratelimit.hit',
        target: null,
        outcome: 'denied',
        traceId: origin.traceId,
        source: origin.source,
        details: {
          limit: hit.limit,
          scope: hit.scope,
          retryAfterSeconds: hit.retryAfterSeconds,
          request: `${origin.method} ${origin.path}`,
        },
      },
      false,
    );
  }

  // --- agents and tasks ------------------------------------------------------------------------

  /**
   * Before an agent call: a call that changes something (a VM power action) is recorded first and
   * not made when that fails (503 audit_unavailable); reads are recorded with their outcome only.
   */
  async agentCallStarting(call: AgentCall): Promise<AgentCallRecord> {
    const record: AgentCallRecord = {
      ...call,
      started: performance.now(),
      principal: currentAuditScope()?.principal ?? SYSTEM_PRINCIPAL,
      traceId: currentTraceId() ?? null,
    };
    if (MUTATING_AGENT_RPCS.has(call.rpc))
      await this.record(this.agentEvent(record, 'attempt', {}), true);
    return record;
  }

  /**
   * After an agent call (best effort): its outcome, time taken and, on failure, the error code. The
   * manager's own reads (the poller's) are not recorded one by one but summed up per remote, one
   * entry per ROUTINE_SUMMARY_INTERVAL_MS (agent.call.summary).
   */
  async agentCallFinished(record: AgentCallRecord, error?: unknown): Promise<void> {
    if (record.principal === SYSTEM_PRINCIPAL && !MUTATING_AGENT_RPCS.has(record.rpc))
      return this.routineCall(record, error);
    const extra = {
      ms: Math.round(performance.now() - record.started),
      ...(error === undefined ? {} : describeError(error)),
    };
    await this.record(
      this.agentEvent(record, error === undefined ? 'success' : 'failure', extra),
      false,
    );
  }

  /** Writes the routine reads not recorded yet (at shutdown). */
  async onModuleDestroy(): Promise<void> {
    await this.flushRoutine(() => true);
  }

  private async routineCall(record: AgentCallRecord, error?: unknown): Promise<void> {
    const now = this.clock.now();
    let calls = this.routine.get(record.remote);
    if (!calls)
      this.routine.set(
        record.remote,
        (calls = { from: now, to: now, calls: {}, failures: 0, lastError: null }),
      );
    const counts = (calls.calls[record.rpc] ??= { success: 0, failure: 0 });
    if (error === undefined) {
      counts.success += 1;
    } else {
      counts.failure += 1;
      calls.failures += 1;
      calls.lastError = { rpc: record.rpc, at: now.toISOString(), ...describeError(error) };
    }
    calls.to = now;
    await this.flushRoutine(
      (summary) => now.getTime() - summary.from.getTime() >= ROUTINE_SUMMARY_INTERVAL_MS,
    );
  }

  /** Writes one agent.call.summary entry per remote whose summary is `due`. */
  private async flushRoutine(due: (calls: RoutineCalls) => boolean): Promise<void> {
    for (const [remote, calls] of [...this.routine]) {
      if (!due(calls)) continue;
      this.routine.delete(remote);
      await this.record(
        {
          at: this.clock.now(),
          principal: SYSTEM_PRINCIPAL,
          action: 'agent.call.summary',
          target: targetOf(remote, null),
          outcome: calls.failures > 0 ? 'failure' : 'success',
          traceId: null,
          source: null,
          details: {
            remote,
            from: calls.from.toISOString(),
            to: calls.to.toISOString(),
            calls: calls.calls,
            ...(calls.lastError ? { lastError: calls.lastError } : {}),
          },
        },
        false,
      );
    }
  }

  /** Runs background work (a task) on behalf of `principal`: the agent calls it makes are attributed to them. */
  runAs<T>(principal: string, work: () => T): T {
    return runInAuditScope({ principal, notes: {} }, work);
  }

  /**
   * Records something the manager did on its own (a scheduled directory sync), as the manager
   * (best effort).
   */
  async systemEvent(event: {
    action: AuditAction;
    target: string | null;
    outcome: 'success' | 'failure';
    details: Record<string, unknown>;
  }): Promise<void> {
    await this.record(
      {
        at: this.clock.now(),
        principal: SYSTEM_PRINCIPAL,
        action: event.action,
        target: event.target,
        outcome: event.outcome,
        traceId: null,
        source: null,
        details: event.details,
      },
      false,
    );
  }

  /** Records a task's end (best effort). */
  async taskFinished(task: FinishedTask): Promise<void> {
    await this.record(
      {
        at: this.clock.now(),
        principal: ownerPrincipal(task.owner),
        action: 'task.finish',
        target: targetOf(task.remoteId, task.vmId),
        outcome: task.state === 'succeeded' ? 'success' : 'failure',
        traceId: currentTraceId() ?? null,
        source: null,
        details: {
          taskId: task.id,
          type: task.type,
          owner: task.owner,
          state: task.state,
          error: task.error,
        },
      },
      false,
    );
  }

  // --- reading ---------------------------------------------------------------------------------

  /** Newest first, `limit` at a time; `cursor` continues below the seq it names. */
  async list(query: AuditQuery): Promise<AuditPage> {
    const items = await this.query.page(filterOf(query), query.limit, query.cursor);
    const last = items[items.length - 1];
    return { items, nextCursor: items.length === query.limit && last.seq > 1 ? last.seq : null };
  }

  /**
   * JSON lines, oldest first, with the chain fields: what `npm run audit:verify -- --file` checks.
   * The first batch is read before answering, so that a database failure is a plain error answer
   * rather than a cut-off stream.
   */
  async export(query: AuditExportQuery): Promise<AsyncIterable<string>> {
    const batches = this.query.inChainOrder(filterOf(query));
    const first = await batches.next();
    const lines = (batch: AuditEntry[]) => batch.map((entry) => `${entryLine(entry)}\n`).join('');
    return (async function* () {
      if (first.done) return;
      yield lines(first.value);
      for await (const batch of batches) yield lines(batch);
    })();
  }

  // --- internals -------------------------------------------------------------------------------

  private callEvent(
    call: AuditedCall,
    outcome: AuditOutcome,
    details: Record<string, unknown>,
  ): AuditEventInput {
    return {
      at: this.clock.now(),
      principal: call.principal,
      action: call.action,
      target: call.target,
      outcome,
      traceId: call.origin.traceId,
      source: call.origin.source,
      details: {
        request: `${call.origin.method} ${call.origin.path}`,
        tokenId: call.tokenId,
        ...details,
      },
    };
  }

  private agentEvent(
    record: AgentCallRecord,
    outcome: AuditOutcome,
    details: Record<string, unknown>,
  ): AuditEventInput {
    return {
      at: this.clock.now(),
      principal: record.principal,
      action: 'agent.call',
      target: targetOf(record.remote, record.vm ?? null),
      outcome,
      traceId: record.traceId,
      source: null,
      details: { rpc: record.rpc, remote: record.remote, keyId: record.keyId, ...details },
    };
  }

  /**
   * Writes one entry. `required`: throws 503 audit_unavailable when it cannot be written (the
   * caller then does not make its change); otherwise the failure is logged and swallowed.
   */
  private async record(input: AuditEventInput, required: boolean): Promise<void> {
    const event = normalizeEvent(input);
    try {
      await this.writer.write(event);
    } catch (error) {
      this.logger.error(
        { err: error, action: event.action, outcome: event.outcome, traceId: event.traceId },
        'cannot write the audit log',
      );
      if (required) {
        throw new DomainError(
          ErrorCode.AuditUnavailable,
          'the audit log cannot be written, so nothing was changed; try again later',
          { cause: error },
        );
      }
    }
  }

  /** True at most once per `AUTH_SUCCESS_INTERVAL_MS` for one key (bounded memory). */
  private firstInInterval(key: string): boolean {
    const now = this.clock.now().getTime();
    const last = this.recentAuthentications.get(key);
    if (last !== undefined && now - last < AUTH_SUCCESS_INTERVAL_MS) return false;
    this.recentAuthentications.set(key, now);
    if (this.recentAuthentications.size > 10_000) {
      for (const [k, at] of this.recentAuthentications)
        if (now - at >= AUTH_SUCCESS_INTERVAL_MS) this.recentAuthentications.delete(k);
    }
    return true;
  }
}

/** How a failure is recorded: its code and HTTP status, and its message when it is one we show callers anyway. */
function describeError(error: unknown): Record<string, unknown> {
  if (error instanceof DomainError)
    return { code: error.code, status: ERROR_STATUS[error.code], error: error.message };
  if (error instanceof HttpException)
    return { status: error.getStatus(), error: error.message.slice(0, 200) };
  return { code: ErrorCode.Internal, status: 500 };
}

function filterOf(query: AuditExportQuery): AuditFilter {
  return {
    from: query.from ? new Date(query.from) : undefined,
    to: query.to ? new Date(query.to) : undefined,
    principal: query.principal,
    action: query.action,
    target: query.target,
    outcome: query.outcome,
    system: query.system,
  };
}

function targetOf(remoteId: string | null, vmId: string | null): string | null {
  if (!remoteId) return null;
  return vmId ? vmAclPath(remoteId, vmId) : remoteAclPath(remoteId);
}

function safeAclPath(template: string, params: Record<string, string | undefined>): string {
  try {
    return resolveAclPath(template, params);
  } catch {
    return template;
  }
}
