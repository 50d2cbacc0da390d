import { permissionAllows } from '@debvisor/common';
import { status, type handleBidiStreamingCall, type handleServerStreamingCall, type handleUnaryCall, type ServerUnaryCall } from '@grpc/grpc-js';
import { randomBytes } from 'node:crypto';
import type { z } from 'zod';
import { AgentError, ErrorCode } from '../shared/agent-error';
import { isEtcdUnreachable } from '../shared/etcd-client';
import type { Logger } from '../shared/logger';
import type { Authenticator } from './authenticator.service';
import { FORWARD_METADATA, type CallContext } from './call-context';
import { ERROR_STATUS } from './error-status';
import { RPC_PERMISSIONS, type RpcName } from './permissions';
import { validate } from './request-validation';

/** What every kind of server call offers (grpc-js does not export its ServerSurfaceCall). */
type SurfaceCall = Pick<ServerUnaryCall<unknown, unknown>, 'metadata' | 'getDeadline' | 'getAuthContext'>;
type ServiceErrorObject = { code: status; details: string };

/**
 * Turns handler functions into gRPC handlers. For every call, in this order: authenticate,
 * check the RPC's permission (from RPC_PERMISSIONS), validate the request with its zod schema,
 * run the handler, and map any error to a gRPC status with a safe message. Details of unexpected
 * errors go to the log only, under the call's trace id.
 */
export class RpcRouter {
  constructor(
    private readonly authenticator: Authenticator,
    private readonly logger: Logger,
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

  /** An RPC that a later milestone implements: authenticated and authorized, then UNIMPLEMENTED. */
  unimplemented<Req, Res>(name: RpcName, milestone: string): handleUnaryCall<Req, Res> {
    return (call, callback) => this.refuse(name, milestone, call, (error) => callback(error));
  }

  unimplementedServerStream<Req, Res>(name: RpcName, milestone: string): handleServerStreamingCall<Req, Res> {
    return (call) => this.refuse(name, milestone, call, (error) => call.emit('error', error));
  }

  unimplementedBidiStream<Req, Res>(name: RpcName, milestone: string): handleBidiStreamingCall<Req, Res> {
    return (call) => this.refuse(name, milestone, call, (error) => call.emit('error', error));
  }

  private refuse(name: RpcName, milestone: string, call: SurfaceCall, fail: (error: ServiceErrorObject) => void): void {
    const notYet = new AgentError(ErrorCode.Unimplemented, `${name} is not implemented yet: it arrives with the ${milestone} milestone`);
    void this.run(name, call, () => Promise.reject(notYet)).catch(fail);
  }

  private async run<Res>(name: RpcName, call: SurfaceCall, handle: (context: CallContext) => Promise<Res>): Promise<Res> {
    const started = performance.now();
    const traceId = traceIdOf(call);
    const log = this.logger.child({ rpc: name, traceId });
    let context: CallContext | undefined;
    try {
      const caller = await this.authenticator.authenticate(call.metadata, call.getAuthContext()?.sslPeerCertificate?.raw);
      const required = RPC_PERMISSIONS[name];
      if (!permissionAllows(caller.permissions, required)) {
        throw new AgentError(ErrorCode.PermissionDenied, `${name} needs the permission ${required}, which ${caller.principal} does not hold`);
      }
      const deadline = call.getDeadline();
      context = {
        caller,
        forwarded: caller.forwardedBy !== undefined,
        deadline: typeof deadline === 'number' ? (Number.isFinite(deadline) ? deadline : undefined) : deadline.getTime(),
        traceId,
      };
      const response = await handle(context);
      log[required.endsWith(':read') ? 'debug' : 'info']({ ...who(context), ms: elapsed(started) }, 'rpc ok');
      return response;
    } catch (error) {
      throw this.toStatus(error, log, traceId, context, started);
    }
  }

  private toStatus(error: unknown, log: Logger, traceId: string, context: CallContext | undefined, started: number): ServiceErrorObject {
    const fields = { ...(context ? who(context) : {}), ms: elapsed(started) };
    if (error instanceof AgentError && error.code !== ErrorCode.Internal) {
      const level = error.code === ErrorCode.Unauthenticated || error.code === ErrorCode.PermissionDenied ? 'warn' : 'info';
      log[level]({ ...fields, code: error.code, reason: error.message }, 'rpc failed');
      return { code: ERROR_STATUS[error.code], details: error.message };
    }
    if (isEtcdUnreachable(error)) {
      log.warn({ ...fields, err: error }, 'rpc failed: etcd unreachable');
      return { code: status.UNAVAILABLE, details: 'the cluster etcd cannot be reached; try again later' };
    }
    log.error({ ...fields, err: error }, 'rpc failed unexpectedly');
    return { code: status.INTERNAL, details: `internal error in the agent (trace id ${traceId})` };
  }
}

function traceIdOf(call: SurfaceCall): string {
  const given = call.metadata.get(FORWARD_METADATA.traceId)[0];
  return typeof given === 'string' && /^[A-Za-z0-9-]{8,64}$/.test(given) ? given : randomBytes(8).toString('hex');
}

function who(context: CallContext): Record<string, string | undefined> {
  return { principal: context.caller.principal, keyId: context.caller.keyId, forwardedBy: context.caller.forwardedBy };
}

function elapsed(started: number): number {
  return Math.round(performance.now() - started);
}
