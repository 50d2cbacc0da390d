import { AuditEntryEntity } from '../audit/audit-entry.entity';
import { AclEntryEntity } from '../auth/acl-entry.entity';
import { ApiTokenEntity } from '../auth/api-token.entity';
import { RemoteCredentialEntity } from '../remotes/remote-credential.entity';
import { RemoteEntity } from '../remotes/remote.entity';
import { TaskEntity } from '../tasks/task.entity';
import { SystemSettingEntity } from './system-setting.entity';

/** Every entity of the manager; the migrations create exactly these tables (see schema.spec.ts). */
export const ENTITIES = [RemoteEntity, RemoteCredentialEntity, TaskEntity, ApiTokenEntity, AclEntryEntity, SystemSettingEntity, AuditEntryEntity];
