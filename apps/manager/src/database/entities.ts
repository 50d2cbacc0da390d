import { GroupMemberEntity } from '../access/group-member.entity';
import { LoginThrottleEntity } from '../access/login-throttle.entity';
import { GroupEntity } from '../access/group.entity';
import { RealmEntity } from '../access/realm.entity';
import { RecoveryCodeEntity } from '../access/recovery-code.entity';
import { RemoteGroupEntryEntity } from '../access/remote-group-entry.entity';
import { RemoteGroupEntity } from '../access/remote-group.entity';
import { SessionEntity } from '../access/session.entity';
import { TfaEnrolmentCodeEntity } from '../access/tfa-enrolment-code.entity';
import { TotpDeviceEntity } from '../access/totp-device.entity';
import { UserEntity } from '../access/user.entity';
import { WebauthnCredentialEntity } from '../access/webauthn-credential.entity';
import { VmOwnershipEntity } from '../access/vm-ownership.entity';
import { AuditEntryEntity } from '../audit/audit-entry.entity';
import { AclEntryEntity } from '../access/acl-entry.entity';
import { ApiTokenEntity } from '../access/api-token.entity';
import { VmMigrationEntity } from '../migration/migration.entity';
import { ReplicationPairEntity } from '../replication/replication-pair.entity';
import { VmReplicationEntity } from '../replication/vm-replication.entity';
import { RemoteCredentialEntity } from '../remotes/remote-credential.entity';
import { RemoteEntity } from '../remotes/remote.entity';
import { KnownNodeEntity } from '../resources/known-node.entity';
import { TaskEntity } from '../tasks/task.entity';
import { SnapshotScheduleEntity } from '../snapshots/snapshot-schedule.entity';
import { VmSnapshotTaskEntity } from '../snapshots/vm-snapshot-task.entity';
import { VmSnapshotEntity } from '../snapshots/vm-snapshot.entity';
import { SystemSettingEntity } from './system-setting.entity';

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
