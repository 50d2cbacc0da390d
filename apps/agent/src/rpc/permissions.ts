/**
 * The permission each RPC requires, `service:resource:action`. A key grants it through the exact
 * permission, `service:*` or `*` (permissionAllows in @debvisor/common). permissions.spec.ts fails
 * when an RPC of proto/debvisor.proto has no entry here.
 */
export const RPC_PERMISSIONS = {
  'NodeService.RegisterNode': 'node:registry:write',
  'NodeService.Heartbeat': 'node:registry:write',
  'NodeService.ListNodes': 'node:registry:read',
  'NodeService.GetHealth': 'node:health:read',
  'NodeService.GetClusterInfo': 'node:registry:read',
  // Agents only, by their certificate (no API key grants it in practice).
  'NodeService.RenewCertificate': 'node:certificate:renew',
  'NodeService.GetCaRotation': 'node:ca:read',
  'NodeService.BeginCaRotation': 'node:ca:rotate',
  'NodeService.FinishCaRotation': 'node:ca:rotate',

  'VmService.ListVms': 'vm:instance:read',
  'VmService.GetVm': 'vm:instance:read',
  'VmService.StartVm': 'vm:instance:power',
  'VmService.ShutdownVm': 'vm:instance:power',
  'VmService.RebootVm': 'vm:instance:power',
  'VmService.StopVm': 'vm:instance:power',
  'VmService.DefineVm': 'vm:instance:define',
  'VmService.UndefineVm': 'vm:instance:define',
  'VmService.Console': 'vm:instance:console',

  'MigrationService.PrepareMigration': 'migration:vm:migrate',
  'MigrationService.MigrateVm': 'migration:vm:migrate',
  'MigrationService.CancelMigration': 'migration:vm:migrate',
  'MigrationService.GetMigration': 'migration:vm:migrate',
  'MigrationService.FailoverVm': 'migration:vm:failover',
  'MigrationService.Tunnel': 'migration:vm:migrate',

  'StorageService.ListImages': 'storage:rbd:read',
  'StorageService.SnapshotRbd': 'storage:rbd:snapshot',
  'StorageService.ListSnapshots': 'storage:rbd:read',
  'StorageService.RollbackRbd': 'storage:rbd:snapshot',
  'StorageService.SnapshotVm': 'storage:rbd:snapshot',
  'StorageService.ListVmSnapshots': 'storage:rbd:read',
  'StorageService.DeleteVmSnapshot': 'storage:rbd:snapshot',
  'StorageService.RollbackVm': 'storage:rbd:snapshot',
  'StorageService.EnableMirroring': 'storage:rbd:mirror',
  'StorageService.DisableMirroring': 'storage:rbd:mirror',
  'StorageService.GetMirrorStatus': 'storage:rbd:read',
  'StorageService.CreateMirrorSnapshot': 'storage:rbd:mirror',
  'StorageService.PromoteImage': 'storage:rbd:mirror',
  'StorageService.DemoteImage': 'storage:rbd:mirror',
  'StorageService.ResyncImage': 'storage:rbd:mirror',
  'StorageService.CreatePeerBootstrap': 'storage:mirror:pair',
  'StorageService.ImportPeerBootstrap': 'storage:mirror:pair',
  'StorageService.GetPoolMirrorStatus': 'storage:rbd:read',
  'StorageService.FenceImage': 'storage:rbd:fence',

  'AccessService.SyncUsersGroups': 'access:directory:sync',

  'HaService.GetHaStatus': 'ha:status:read',
  'HaService.SetHaPolicy': 'ha:policy:write',
  'HaService.RemoveHaPolicy': 'ha:policy:write',
  'HaService.SetMaintenance': 'ha:node:maintenance',
  'HaService.ListHaEvents': 'ha:status:read',
} as const;

export type RpcName = keyof typeof RPC_PERMISSIONS;
