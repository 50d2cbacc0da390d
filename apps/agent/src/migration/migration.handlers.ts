import type { MigrationServiceHandlers } from '@debvisor/proto';
import type { RpcRouter } from '../rpc/rpc-router';

const MIGRATION = 'live migration';

/** Authenticated and authorized like every RPC, then UNIMPLEMENTED until the live-migration milestone. */
export function migrationServiceHandlers(rpc: RpcRouter): MigrationServiceHandlers {
  return {
    PrepareMigration: rpc.unimplemented('MigrationService.PrepareMigration', MIGRATION),
    MigrateVm: rpc.unimplementedServerStream('MigrationService.MigrateVm', MIGRATION),
    CancelMigration: rpc.unimplemented('MigrationService.CancelMigration', MIGRATION),
    FailoverVm: rpc.unimplemented('MigrationService.FailoverVm', MIGRATION),
    Tunnel: rpc.unimplementedBidiStream('MigrationService.Tunnel', MIGRATION),
  };
}
