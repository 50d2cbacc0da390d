import type { MigrationServiceHandlers, TunnelFrame, TunnelFrame__Output } from '@debvisor/proto';
import type { ServerDuplexStream } from '@grpc/grpc-js';
import type { RpcRouter } from '../rpc/rpc-router';
import type { FailoverService } from '../ha/failover.service';
import { failoverVmRequestSchema } from '../ha/ha.requests';
import { validate } from '../rpc/request-validation';
import { AgentError, ErrorCode } from '../shared/agent-error';
import type {
  MigrationTargetService,
  Reservation,
  TunnelOpening,
} from './migration-target.service';
import type { MigrationService } from './migration.service';
import {
  migrateVmRequestSchema,
  migrationRefSchema,
  prepareMigrationRequestSchema,
  tunnelOpeningSchema,
} from './migration.requests';

/** How long a tunnel may take to send its first frame. */
const OPENING_TIMEOUT_MS = 10_000;

type TunnelCall = ServerDuplexStream<TunnelFrame__Output, TunnelFrame>;

export function migrationServiceHandlers(
  rpc: RpcRouter,
  migrations: MigrationService,
  target: MigrationTargetService,
  /** HA: starts a fenced node's VM here for the coordinator (apps/agent/src/ha). */
  failover: Pick<FailoverService, 'failover'>,
): MigrationServiceHandlers {
  return {
    PrepareMigration: rpc.unary(
      'MigrationService.PrepareMigration',
      prepareMigrationRequestSchema,
      (input, context) => migrations.prepare(input, context),
    ),
    MigrateVm: rpc.serverStream(
      'MigrationService.MigrateVm',
      migrateVmRequestSchema,
      (input, context, emit) => migrations.migrate(input, context, emit),
    ),
    CancelMigration: rpc.unary(
      'MigrationService.CancelMigration',
      migrationRefSchema,
      (ref, context) => migrations.cancel(ref, context),
    ),
    GetMigration: rpc.unary('MigrationService.GetMigration', migrationRefSchema, (ref, context) =>
      migrations.progress(ref, context),
    ),
    FailoverVm: rpc.unary(
      'MigrationService.FailoverVm',
      failoverVmRequestSchema,
      (input, context) => failover.failover(input, context),
    ),
    Tunnel: rpc.selfAuthenticatedBidi<
      TunnelFrame__Output,
      TunnelFrame,
      { opening: TunnelOpening; reservation: Reservation; sourceNode: string }
    >(
      'MigrationService.Tunnel',
      async (call) => {
        const opening = validate(tunnelOpeningSchema, await firstFrame(call));
        const { sourceNode, reservation } = await target.claim(
          opening,
          call.getAuthContext()?.sslPeerCertificate?.raw,
        );
        return {
          caller: { principal: `agent:${sourceNode}`, permissions: ['migration:vm:migrate'] },
          opening: { opening, reservation, sourceNode },
        };
      },
      (call, { opening, reservation, sourceNode }) =>
        target.carry(call, reservation, sourceNode, opening.controlOnly),
    ),
  };
}

/** The tunnel's first frame, which carries the cookie; refused when it does not come in time. */
function firstFrame(call: TunnelCall): Promise<TunnelFrame__Output> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () =>
        fail(
          new AgentError(ErrorCode.DeadlineExceeded, 'the tunnel sent no opening frame in time'),
        ),
      OPENING_TIMEOUT_MS,
    );
    const onData = (frame: TunnelFrame__Output): void => {
      cleanup();
      call.pause();
      resolve(frame);
    };
    const onEnd = (): void =>
      fail(new AgentError(ErrorCode.InvalidArgument, 'the tunnel ended before its opening frame'));
    const fail = (error: AgentError): void => {
      cleanup();
      reject(error);
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      call.off('data', onData);
      call.off('end', onEnd);
    };
    call.on('data', onData);
    call.on('end', onEnd);
  });
}
