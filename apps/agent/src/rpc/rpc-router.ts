import { isTraceId, permissionAllows, rpcLabels, type RpcMetrics } from '@debvisor/common';
import {
  status,
  type ServerDuplexStream,
  type handleBidiStreamingCall,
  type handleServerStreamingCall,
  type handleUnaryCall,
  type ServerUnaryCall,
} from '@grpc/grpc-js';
import { randomBytes } from 'node:crypto';
import type { z } from 'zod';
import { AgentError, ErrorCode } from '../shared/agent-error';
import { isEtcdUnreachable } from '../shared/etcd-client';
import type { Logger } from '../shared/logger';
import type { Authenticator } from './authenticator.service';
import { FORWARD_METADATA, type CallContext, type Caller } from './call-context';
import { ERROR_STATUS } from './error-status';
import { RPC_PERMISSIONS, type RpcName } from './permissions';
import { validate } from './request-validation';
import { presentedKeyId, rpcTarget, type RpcAudit, type ServedRpc } from './rpc-audit';

/** What every kind of server call offers (grpc-js does not export its ServerSurfaceCall). */
type SurfaceCall = Pick<
  ServerUnaryCall<unknown, unknown>,
  'metadata' | 'getDeadline' | 'getAuthContext' | 'getPeer'
>;
type ServiceErrorObject = { code: status; details: string };

/**
 * Turns handler functions into gRPC handlers. For every call, in this order: authenticate,
 * check the RPC's permission (from RPC_PERMISSIONS), validate the request with its zod schema,
 * run the handler, and map any error to a gRPC status with a safe message. Details of unexpected
 * errors go to the log only, under the call's trace id. With an audit file, every call is recorded
 * (a changing one also before it runs, and refused when that cannot be written).
 */
export class RpcRouter {
  constructor(
    private readonly authenticator: Authenticator,
    private readonly logger: Logger,
    /** rpc_requests_total and friends (agents started without metrics pass none). */
    private readonly metrics?: RpcMetrics,
    /** The audit file of served RPCs (config audit.file). */
    private readonly audit?: RpcAudit,
  ) {}

  unary<Req, Res, Input>(
    name: RpcName,
    schema: z.ZodType<Input>,
    handle: (input: Input, context: CallContext) => Promise<Res>,
  ): handleUnaryCall<Req, Res> {
    return (call, callback) => {
      void this.run(name, call, (context) => handle(validate(schema, call.request), context)).then(
        (response) => callback(null, response),
        (error: ServiceErrorObject) => callback(error),
      );
    };
  }

  /**
   * A server-streaming RPC: `handle` writes with `emit` and resolves when the stream is complete.
   * `signal` aborts when the caller goes away.
   */
  serverStream<Req, Res, Input>(
    name: RpcName,
    schema: z.ZodType<Input>,
    handle: (
      input: Input,
      context: CallContext,
      emit: (response: Res) => void,
      signal: AbortSignal,
    ) => Promise<void>,
  ): handleServerStreamingCall<Req, Res> {
    return (call) => {
      const abort = new AbortController();
      call.on('cancelled', () => abort.abort());
      const emit = (response: Res): void => {
        if (!abort.signal.aborted) call.write(response);
      };
      void this.run(name, call, (context) =>
        handle(validate(schema, call.request), context, emit, abort.signal),
      ).then(
        () => call.end(),
        (error: ServiceErrorObject) => call.emit('error', error),
      );
    };
  }

  /**
   * A unary RPC for cluster agents only, authenticated by the agent certificate alone (no API
   * key): RenewCertificate. `handle` gets the caller's node id and certificate (DER).
   */
  agentUnary<Req, Res, Input>(
    name: RpcName,
    schema: z.ZodType<Input>,
    handle: (input: Input, agent: { nodeId: string; certificate: Buffer }) => Promise<Res>,
  ): handleUnaryCall<Req, Res> {
    return (call, callback) => {
      const certificate = call.getAuthContext()?.sslPeerCertificate?.raw;
      let nodeId = '';
      const authenticate = async (): Promise<Caller> => {
        nodeId = this.authenticator.authenticateAgent(certificate);
        return { principal: `agent:${nodeId}`, permissions: [RPC_PERMISSIONS[name]] };
      };
      void this.run(
        name,
        call,
        () => handle(validate(schema, call.request), { nodeId, certificate: certificate! }),
        authenticate,
      ).then(
        (response) => callback(null, response),
        (error: ServiceErrorObject) => callback(error),
      );
    };
  }

  /**
   * A bidirectional stream whose caller authenticates inside the stream (the migration tunnel: a
   * one-time cookie in the first frame and a pinned certificate) instead of with an API key.
   * `authenticate` answers the caller and what the handler needs of the opening.
   */
  selfAuthenticatedBidi<Req, Res, Opening>(
    name: RpcName,
    authenticate: (
      call: ServerDuplexStream<Req, Res>,
    ) => Promise<{ caller: Caller; opening: Opening }>,
    handle: (
      call: ServerDuplexStream<Req, Res>,
      opening: Opening,
      context: CallContext,
    ) => Promise<void>,
  ): handleBidiStreamingCall<Req, Res> {
    return (call) => {
      let opening: Opening;
      const authenticated = async (): Promise<Caller> => {
        const answer = await authenticate(call);
        opening = answer.opening;
        return answer.caller;
      };
      void this.run(name, call, (context) => handle(call, opening, context), authenticated).then(
        () => undefined,
        (error: ServiceErrorObject) => call.emit('error', error),
      );
    };
  }

  /**
   * A bidirectional stream authenticated like a unary call (API key or a vouching peer): the
   * handler reads and writes `call` itself and resolves when the stream is over. Its messages are
   * validated by the handler (the first one usually says what to open).
   */
  bidi<Req, Res>(
    name: RpcName,
    handle: (call: ServerDuplexStream<Req, Res>, context: CallContext) => Promise<void>,
  ): handleBidiStreamingCall<Req, Res> {
    return (call) => {
      void this.run(name, call, (context) => handle(call, context)).then(
        () => call.end(),
        (error: ServiceErrorObject) => call.emit('error', error),
      );
    };
  }

  /** An RPC that a later milestone implements: authenticated and authorized, then UNIMPLEMENTED. */
  unimplemented<Req, Res>(name: RpcName, milestone: string): handleUnaryCall<Req, Res> {
    return (call, callback) => this.refuse(name, milestone, call, (error) => callback(error));
  }

  unimplementedServerStream<Req, Res>(
    name: RpcName,
    milestone: string,
  ): handleServerStreamingCall<Req, Res> {
    return (call) => this.refuse(name, milestone, call, (error) => call.emit('error', error));
  }

  unimplementedBidiStream<Req, Res>(
    name: RpcName,
    milestone: string,
  ): handleBidiStreamingCall<Req, Res> {
    return (call) => this.refuse(name, milestone, call, (error) => call.emit('error', error));
  }

  private refuse(
    name: RpcName,
    milestone: string,
    call: SurfaceCall,
    fail: (error: ServiceErrorObject) => void,
  ): void {
    const notYet = new AgentError(
      ErrorCode.Unimplemented,
      `${name} is not implemented yet: it arrives with the ${milestone} milestone`,
    );
    void this.run(name, call, () => Promise.reject(notYet)).catch(fail);
  }

  private async run<Res>(
    name: RpcName,
    call: SurfaceCall,
    handle: (context: CallContext) => Promise<Res>,
    authenticate?: () => Promise<Caller>,
  ): Promise<Res> {
    const started = performance.now();
    const traceId = traceIdOf(call);
    const log = this.logger.child({ rpc: name, traceId });
    let context: CallContext | undefined;
    const served = this.audit ? servedRpc(name, call, traceId) : undefined;
    try {
      const caller = await (
        authenticate
          ? authenticate()
          : this.authenticator.authenticate(
              call.metadata,
              call.getAuthContext()?.sslPeerCertificate?.raw,
            )
      ).catch((error: unknown) => {
        if (error instanceof AgentError && error.code === ErrorCode.Unauthenticated)
          this.metrics?.authAttempt(authMethodOf(call), 'failure');
        throw error;
      });
      this.metrics?.authAttempt(authMethodOf(call), 'success');
      if (served) served.caller = caller;
      const required = RPC_PERMISSIONS[name];
      if (!permissionAllows(caller.permissions, required)) {
        this.metrics?.authzDenied();
        throw new AgentError(
          ErrorCode.PermissionDenied,
          `${name} needs the permission ${required}, which ${caller.principal} does not hold`,
        );
      }
      const deadline = call.getDeadline();
      context = {
        caller,
        forwarded: caller.forwardedBy !== undefined,
        deadline:
          typeof deadline === 'number'
            ? Number.isFinite(deadline)
              ? deadline
              : undefined
            : deadline.getTime(),
        traceId,
      };
      if (served && !required.endsWith(':read')) await this.auditAttempt(served);
      const response = await handle(context);
      log[required.endsWith(':read') ? 'debug' : 'info'](
        { ...who(context), ms: elapsed(started) },
        'rpc ok',
      );
      this.observe(name, status.OK, started);
      await this.auditOutcome(served, status.OK, undefined, started);
      return response;
    } catch (error) {
      const answer = this.toStatus(error, log, traceId, context, started);
      this.observe(name, answer.code, started);
      await this.auditOutcome(served, answer.code, answer.details, started);
      throw answer;
    }
  }

  /** Records a changing call before it runs; refuses it when that cannot be written. */
  private async auditAttempt(served: ServedRpc): Promise<void> {
    try {
      await this.audit!.attempt(served);
    } catch (error) {
      this.logger.error(
        { err: error, rpc: served.rpc, traceId: served.traceId },
        'cannot write the audit file; refusing the change',
      );
      throw new AgentError(
        ErrorCode.Unavailable,
        'this agent cannot write its audit log, so it makes no changes; try again later',
      );
    }
  }

  /** Records how a call ended: awaited for changing calls, in the background for reads. */
  private async auditOutcome(
    served: ServedRpc | undefined,
    code: status,
    reason: string | undefined,
    started: number,
  ): Promise<void> {
    if (!served) return;
    const writing = this.audit!.outcome(
      served,
      code,
      code === status.OK ? undefined : reason,
      elapsed(started),
    );
    if (!RPC_PERMISSIONS[served.rpc as RpcName].endsWith(':read')) await writing;
  }

  private observe(name: RpcName, code: status, started: number): void {
    const { service, method } = rpcLabels(name);
    this.metrics?.observeCall(service, method, code, (performance.now() - started) / 1000);
  }

  private toStatus(
    error: unknown,
    log: Logger,
    traceId: string,
    context: CallContext | undefined,
    started: number,
  ): ServiceErrorObject {
    const fields = { ...(context ? who(context) : {}), ms: elapsed(started) };
    if (error instanceof AgentError && error.code !== ErrorCode.Internal) {
      const level =
        error.code === ErrorCode.Unauthenticated || error.code === ErrorCode.PermissionDenied
          ? 'warn'
          : 'info';
      log[level]({ ...fields, code: error.code, reason: error.message }, 'rpc failed');
      return { code: ERROR_STATUS[error.code], details: error.message };
    }
    if (isEtcdUnreachable(error)) {
      log.warn({ ...fields, err: error }, 'rpc failed: etcd unreachable');
      this.metrics?.backendConnectionError('etcd');
      return {
        code: status.UNAVAILABLE,
        details: 'the cluster etcd cannot be reached; try again later',
      };
    }
    log.error({ ...fields, err: error }, 'rpc failed unexpectedly');
    return { code: status.INTERNAL, details: `internal error in the agent (trace id ${traceId})` };
  }
}

/** What the audit file records of a call before it is authenticated. */
function servedRpc(name: RpcName, call: SurfaceCall, traceId: string): ServedRpc {
  let peer: string | null = null;
  try {
    peer = call.getPeer();
  } catch {
    peer = null;
  }
  return {
    rpc: name,
    caller: undefined,
    presentedKeyId: presentedKeyId(call.metadata),
    target: rpcTarget((call as { request?: unknown }).request),
    traceId,
    peer,
  };
}

function traceIdOf(call: SurfaceCall): string {
  const given = call.metadata.get(FORWARD_METADATA.traceId)[0];
  return isTraceId(given) ? given : randomBytes(8).toString('hex');
}

/** How the caller authenticates: a peer agent vouching for a forwarded caller, or an API key. */
function authMethodOf(call: SurfaceCall): 'forwarded' | 'api_key' {
  return call.metadata.get(FORWARD_METADATA.principal).length > 0 ? 'forwarded' : 'api_key';
}

function who(context: CallContext): Record<string, string | undefined> {
  return {
    principal: context.caller.principal,
    keyId: context.caller.keyId,
    forwardedBy: context.caller.forwardedBy,
  };
}

function elapsed(started: number): number {
  return Math.round(performance.now() - started);
}
