import { GroupMemberEntity } from './groups/group-member.entity';
import { LoginThrottleEntity } from './sessions/login-throttle.entity';
import { GroupEntity } from './groups/group.entity';
import { RealmEntity } from './realms/realm.entity';
import { RecoveryCodeEntity } from './sessions/tfa/recovery-code.entity';
import { RemoteGroupEntryEntity } from './remote-groups/remote-group-entry.entity';
import { RemoteGroupEntity } from './remote-groups/remote-group.entity';
import { SessionEntity } from './sessions/session.entity';
import { TfaEnrolmentCodeEntity } from './sessions/tfa/tfa-enrolment-code.entity';
import { TotpDeviceEntity } from './sessions/tfa/totp-device.entity';
import { UserEntity } from './users/user.entity';
import { WebauthnCredentialEntity } from './sessions/tfa/webauthn-credential.entity';
import { VmOwnershipEntity } from './groups/vm-ownership.entity';
import { AuditEntryEntity } from './audit/audit-entry.entity';
import { AclEntryEntity } from './acl/acl-entry.entity';
import { ApiTokenEntity } from './tokens/api-token.entity';
import { VmMigrationEntity } from './migration/migration.entity';
import { ReplicationPairEntity } from './replication/replication-pair.entity';
import { VmReplicationEntity } from './replication/vm-replication.entity';
import { RemoteCredentialEntity } from './remotes/remote-credential.entity';
import { RemoteEntity } from './remotes/remote.entity';
import { KnownNodeEntity } from './resources/known-node.entity';
import { TaskEntity } from './tasks/task.entity';
import { SnapshotScheduleEntity } from './snapshots/snapshot-schedule.entity';
import { VmSnapshotTaskEntity } from './snapshots/vm-snapshot-task.entity';
import { VmSnapshotEntity } from './snapshots/vm-snapshot.entity';
import { SystemSettingEntity } from './database/system-setting.entity';

/** Every entity of the manager; the migrations create exactly these tables (see schema.spec.ts). */
export const ENTITIES = [
  RemoteEntity,
  RemoteCredentialEntity,
  TaskEntity,
  ApiTokenEntity,
  AclEntryEntity,
  SystemSettingEntity,
  AuditEntryEntity,
  RealmEntity,
  UserEntity,
  GroupEntity,
  GroupMemberEntity,
  SessionEntity,
  LoginThrottleEntity,
  TfaEnrolmentCodeEntity,
  TotpDeviceEntity,
  RecoveryCodeEntity,
  WebauthnCredentialEntity,
  VmOwnershipEntity,
  RemoteGroupEntity,
  RemoteGroupEntryEntity,
  VmMigrationEntity,
  VmSnapshotEntity,
  VmSnapshotTaskEntity,
  SnapshotScheduleEntity,
  ReplicationPairEntity,
  VmReplicationEntity,
  KnownNodeEntity,
];
