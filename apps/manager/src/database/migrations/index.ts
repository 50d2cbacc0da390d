import { InitialSchema1795414043212 } from './1795414043212-initial-schema';
import { AddAuditLog1795416684074 } from './1795416684074-add-audit-log';
import { AuditLogAppendOnly1795416684075 } from './1795416684075-audit-log-append-only';
import { IdentityAndAccess1795500000000 } from './1795500000000-identity-and-access';
import { Webauthn1795500000001 } from './1795500000001-webauthn';
import { VmMigrations1795600000000 } from './1795600000000-vm-migrations';
import { VmSnapshots1795700000200 } from './1795700000200-vm-snapshots';
import { Replication1795700000100 } from './1795700000100-replication';
import { KnownNodes1795800000000 } from './1795800000000-known-nodes';
import { LoginThrottles1795900000100 } from './1795900000100-login-throttles';
import { TfaEnrolmentCodes1795900000200 } from './1795900000200-tfa-enrolment-codes';

/** Every migration, in order. New ones are generated from the entities (see docs/manager.md). */
export const MIGRATIONS = [
  InitialSchema1795414043212,
  AddAuditLog1795416684074,
  AuditLogAppendOnly1795416684075,
  IdentityAndAccess1795500000000,
  Webauthn1795500000001,
  VmMigrations1795600000000,
  Replication1795700000100,
  VmSnapshots1795700000200,
  KnownNodes1795800000000,
  LoginThrottles1795900000100,
  TfaEnrolmentCodes1795900000200,
];
