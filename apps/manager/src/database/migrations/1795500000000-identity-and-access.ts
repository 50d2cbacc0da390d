import type { MigrationInterface, QueryRunner } from 'typeorm';

/** Identity and access: realms, users, groups, sessions, second factors, remote groups, VM ownership. */
export class IdentityAndAccess1795500000000 implements MigrationInterface {
  name = 'IdentityAndAccess1795500000000';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP INDEX "public"."UQ_acl_entries_path_principal"`);
    await queryRunner.query(
      `CREATE TABLE "realms" ("id" character varying(32) NOT NULL, "type" character varying(16) NOT NULL, "comment" character varying(255) NOT NULL DEFAULT '', "settings" jsonb NOT NULL DEFAULT '{}', "sealed_secret" text, "require_tfa" boolean NOT NULL DEFAULT false, "group_mappings" jsonb NOT NULL DEFAULT '[]', "sync_interval_minutes" integer, "last_sync_at" TIMESTAMP WITH TIME ZONE, "last_sync_error" text, "created_at" TIMESTAMP WITH TIME ZONE NOT NULL, CONSTRAINT "PK_1183281bd15a5f2f55adf6ee955" PRIMARY KEY ("id"))`,
    );
    await queryRunner.query(
      `CREATE TABLE "users" ("id" character varying(255) NOT NULL, "realm_id" character varying(32) NOT NULL, "username" character varying(200) NOT NULL, "display_name" character varying(255), "email" character varying(255), "enabled" boolean NOT NULL DEFAULT true, "password_hash" text, "password_changed_at" TIMESTAMP WITH TIME ZONE, "external_id" text, "require_tfa" boolean NOT NULL DEFAULT false, "failed_logins" integer NOT NULL DEFAULT '0', "locked_until" TIMESTAMP WITH TIME ZONE, "totp_locked" boolean NOT NULL DEFAULT false, "tfa_failures" integer NOT NULL DEFAULT '0', "tfa_locked_until" TIMESTAMP WITH TIME ZONE, "sessions_valid_after" TIMESTAMP WITH TIME ZONE, "created_at" TIMESTAMP WITH TIME ZONE NOT NULL, "synced_at" TIMESTAMP WITH TIME ZONE, CONSTRAINT "PK_a3ffb1c0c8416b9fc6f907b7433" PRIMARY KEY ("id"))`,
    );
    await queryRunner.query(`CREATE INDEX "IDX_users_realm" ON "users" ("realm_id")`);
    await queryRunner.query(
      `CREATE TABLE "groups" ("id" character varying(128) NOT NULL, "comment" character varying(255) NOT NULL DEFAULT '', "tenant" boolean NOT NULL DEFAULT false, "require_tfa" boolean NOT NULL DEFAULT false, "created_at" TIMESTAMP WITH TIME ZONE NOT NULL, CONSTRAINT "PK_659d1483316afb28afd3a90646e" PRIMARY KEY ("id"))`,
    );
    await queryRunner.query(
      `CREATE TABLE "group_members" ("group_id" character varying(128) NOT NULL, "user_id" character varying(255) NOT NULL, "source" character varying(32) NOT NULL, CONSTRAINT "PK_f5939ee0ad233ad35e03f5c65c1" PRIMARY KEY ("group_id", "user_id"))`,
    );
    await queryRunner.query(`CREATE INDEX "IDX_group_members_user" ON "group_members" ("user_id")`);
    await queryRunner.query(
      `CREATE TABLE "tfa_recovery_codes" ("id" uuid NOT NULL, "user_id" character varying(255) NOT NULL, "code_hash" character varying(64) NOT NULL, "used_at" TIMESTAMP WITH TIME ZONE, "created_at" TIMESTAMP WITH TIME ZONE NOT NULL, CONSTRAINT "PK_19bc7541c11ec1def76ac4bb84b" PRIMARY KEY ("id"))`,
    );
    await queryRunner.query(
      `CREATE INDEX "IDX_tfa_recovery_codes_user" ON "tfa_recovery_codes" ("user_id")`,
    );
    await queryRunner.query(
      `CREATE TABLE "remote_groups" ("id" character varying(63) NOT NULL, "comment" character varying(255) NOT NULL DEFAULT '', "created_at" TIMESTAMP WITH TIME ZONE NOT NULL, CONSTRAINT "PK_23248aec48a93f6c2b0170a6fd9" PRIMARY KEY ("id"))`,
    );
    await queryRunner.query(
      `CREATE TABLE "remote_group_entries" ("group_id" character varying(63) NOT NULL, "remote_id" character varying(63) NOT NULL, "credential_id" uuid NOT NULL, CONSTRAINT "PK_996d413c358fa3f7eeea6c2c506" PRIMARY KEY ("group_id", "remote_id"))`,
    );
    await queryRunner.query(
      `CREATE INDEX "IDX_remote_group_entries_remote" ON "remote_group_entries" ("remote_id")`,
    );
    await queryRunner.query(
      `CREATE TABLE "sessions" ("id" character varying(64) NOT NULL, "user_id" character varying(255) NOT NULL, "stage" character varying(8) NOT NULL, "created_at" TIMESTAMP WITH TIME ZONE NOT NULL, "last_seen_at" TIMESTAMP WITH TIME ZONE NOT NULL, "expires_at" TIMESTAMP WITH TIME ZONE NOT NULL, "source_ip" character varying(64), CONSTRAINT "PK_3238ef96f18b355b671619111bc" PRIMARY KEY ("id"))`,
    );
    await queryRunner.query(`CREATE INDEX "IDX_sessions_user" ON "sessions" ("user_id")`);
    await queryRunner.query(
      `CREATE TABLE "tfa_totp_devices" ("id" uuid NOT NULL, "user_id" character varying(255) NOT NULL, "name" character varying(64) NOT NULL, "sealed_secret" text NOT NULL, "confirmed" boolean NOT NULL DEFAULT false, "last_step" bigint, "created_at" TIMESTAMP WITH TIME ZONE NOT NULL, CONSTRAINT "PK_fc8e84a8560a2ae4d46b4454013" PRIMARY KEY ("id"))`,
    );
    await queryRunner.query(
      `CREATE UNIQUE INDEX "UQ_tfa_totp_devices_user_name" ON "tfa_totp_devices" ("user_id", "name")`,
    );
    await queryRunner.query(
      `CREATE TABLE "vm_ownership" ("vm_uuid" uuid NOT NULL, "tenant_group" character varying(128) NOT NULL, "created_at" TIMESTAMP WITH TIME ZONE NOT NULL, CONSTRAINT "PK_43175084bf74564a0114d586def" PRIMARY KEY ("vm_uuid"))`,
    );
    await queryRunner.query(
      `CREATE INDEX "IDX_vm_ownership_group" ON "vm_ownership" ("tenant_group")`,
    );
    await queryRunner.query(`ALTER TABLE "remote_credentials" ADD "permissions" text array`);
    await queryRunner.query(`ALTER TABLE "tasks" ADD "credential_id" uuid`);
    await queryRunner.query(
      `ALTER TABLE "acl_entries" ADD "principal_type" character varying(8) NOT NULL DEFAULT 'user'`,
    );
    await queryRunner.query(
      `ALTER TABLE "acl_entries" ADD "propagate" boolean NOT NULL DEFAULT true`,
    );
    await queryRunner.query(
      `ALTER TABLE "api_tokens" ADD "owner_type" character varying(8) NOT NULL DEFAULT 'user'`,
    );
    await queryRunner.query(
      `ALTER TABLE "api_tokens" ADD "comment" character varying(255) NOT NULL DEFAULT ''`,
    );
    await queryRunner.query(
      `ALTER TABLE "api_tokens" ADD "limited" boolean NOT NULL DEFAULT false`,
    );
    await queryRunner.query(
      `CREATE INDEX "IDX_acl_entries_principal" ON "acl_entries" ("principal_type", "principal")`,
    );
    await queryRunner.query(
      `CREATE UNIQUE INDEX "UQ_acl_entries_path_principal" ON "acl_entries" ("path", "principal_type", "principal")`,
    );
    await queryRunner.query(
      `CREATE UNIQUE INDEX "UQ_api_tokens_owner_name" ON "api_tokens" ("owner_type", "principal", "name")`,
    );
    await queryRunner.query(
      `ALTER TABLE "users" ADD CONSTRAINT "FK_69a8ec23491be275cf203ae11c8" FOREIGN KEY ("realm_id") REFERENCES "realms"("id") ON DELETE CASCADE ON UPDATE NO ACTION`,
    );
    await queryRunner.query(
      `ALTER TABLE "group_members" ADD CONSTRAINT "FK_2c840df5db52dc6b4a1b0b69c6e" FOREIGN KEY ("group_id") REFERENCES "groups"("id") ON DELETE CASCADE ON UPDATE NO ACTION`,
    );
    await queryRunner.query(
      `ALTER TABLE "group_members" ADD CONSTRAINT "FK_20a555b299f75843aa53ff8b0ee" FOREIGN KEY ("user_id") REFERENCES "users"("id") ON DELETE CASCADE ON UPDATE NO ACTION`,
    );
    await queryRunner.query(
      `ALTER TABLE "tfa_recovery_codes" ADD CONSTRAINT "FK_40464fb1e7169e76109f866ab8a" FOREIGN KEY ("user_id") REFERENCES "users"("id") ON DELETE CASCADE ON UPDATE NO ACTION`,
    );
    await queryRunner.query(
      `ALTER TABLE "remote_group_entries" ADD CONSTRAINT "FK_faa8fffdb30992660a9673d1c4d" FOREIGN KEY ("group_id") REFERENCES "remote_groups"("id") ON DELETE CASCADE ON UPDATE NO ACTION`,
    );
    await queryRunner.query(
      `ALTER TABLE "remote_group_entries" ADD CONSTRAINT "FK_03145306d4dc2625bdf5a1579dc" FOREIGN KEY ("remote_id") REFERENCES "remotes"("id") ON DELETE CASCADE ON UPDATE NO ACTION`,
    );
    await queryRunner.query(
      `ALTER TABLE "remote_group_entries" ADD CONSTRAINT "FK_af628418d66290a0ece539ee0e0" FOREIGN KEY ("credential_id") REFERENCES "remote_credentials"("id") ON DELETE CASCADE ON UPDATE NO ACTION`,
    );
    await queryRunner.query(
      `ALTER TABLE "sessions" ADD CONSTRAINT "FK_085d540d9f418cfbdc7bd55bb19" FOREIGN KEY ("user_id") REFERENCES "users"("id") ON DELETE CASCADE ON UPDATE NO ACTION`,
    );
    await queryRunner.query(
      `ALTER TABLE "tfa_totp_devices" ADD CONSTRAINT "FK_d18fa5b7030516a23a61988299b" FOREIGN KEY ("user_id") REFERENCES "users"("id") ON DELETE CASCADE ON UPDATE NO ACTION`,
    );
    await queryRunner.query(
      `ALTER TABLE "vm_ownership" ADD CONSTRAINT "FK_1d95f0973e281d308707b3a8345" FOREIGN KEY ("tenant_group") REFERENCES "groups"("id") ON DELETE CASCADE ON UPDATE NO ACTION`,
    );
    // Data: the local realm always exists; tokens of an installation bootstrapped before users existed
    // belong to root@local, which becomes a local user without a password (it can only use its tokens).
    await queryRunner.query(
      `INSERT INTO "realms" ("id", "type", "comment", "created_at") VALUES ('local', 'local', 'Users with a password stored in the manager', now())`,
    );
    await queryRunner.query(
      `INSERT INTO "users" ("id", "realm_id", "username", "created_at") SELECT DISTINCT "principal", 'local', split_part("principal", '@', 1), now() FROM "api_tokens" WHERE "owner_type" = 'user' AND "principal" LIKE '%@local' ON CONFLICT DO NOTHING`,
    );
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE "tasks" DROP COLUMN "credential_id"`);
    await queryRunner.query(
      `ALTER TABLE "vm_ownership" DROP CONSTRAINT "FK_1d95f0973e281d308707b3a8345"`,
    );
    await queryRunner.query(
      `ALTER TABLE "tfa_totp_devices" DROP CONSTRAINT "FK_d18fa5b7030516a23a61988299b"`,
    );
    await queryRunner.query(
      `ALTER TABLE "sessions" DROP CONSTRAINT "FK_085d540d9f418cfbdc7bd55bb19"`,
    );
    await queryRunner.query(
      `ALTER TABLE "remote_group_entries" DROP CONSTRAINT "FK_af628418d66290a0ece539ee0e0"`,
    );
    await queryRunner.query(
      `ALTER TABLE "remote_group_entries" DROP CONSTRAINT "FK_03145306d4dc2625bdf5a1579dc"`,
    );
    await queryRunner.query(
      `ALTER TABLE "remote_group_entries" DROP CONSTRAINT "FK_faa8fffdb30992660a9673d1c4d"`,
    );
    await queryRunner.query(
      `ALTER TABLE "tfa_recovery_codes" DROP CONSTRAINT "FK_40464fb1e7169e76109f866ab8a"`,
    );
    await queryRunner.query(
      `ALTER TABLE "group_members" DROP CONSTRAINT "FK_20a555b299f75843aa53ff8b0ee"`,
    );
    await queryRunner.query(
      `ALTER TABLE "group_members" DROP CONSTRAINT "FK_2c840df5db52dc6b4a1b0b69c6e"`,
    );
    await queryRunner.query(`ALTER TABLE "users" DROP CONSTRAINT "FK_69a8ec23491be275cf203ae11c8"`);
    await queryRunner.query(`DROP INDEX "public"."UQ_api_tokens_owner_name"`);
    await queryRunner.query(`DROP INDEX "public"."UQ_acl_entries_path_principal"`);
    await queryRunner.query(`DROP INDEX "public"."IDX_acl_entries_principal"`);
    await queryRunner.query(`ALTER TABLE "api_tokens" DROP COLUMN "limited"`);
    await queryRunner.query(`ALTER TABLE "api_tokens" DROP COLUMN "comment"`);
    await queryRunner.query(`ALTER TABLE "api_tokens" DROP COLUMN "owner_type"`);
    await queryRunner.query(`ALTER TABLE "acl_entries" DROP COLUMN "propagate"`);
    await queryRunner.query(`ALTER TABLE "acl_entries" DROP COLUMN "principal_type"`);
    await queryRunner.query(`ALTER TABLE "remote_credentials" DROP COLUMN "permissions"`);
    await queryRunner.query(`DROP INDEX "public"."IDX_vm_ownership_group"`);
    await queryRunner.query(`DROP TABLE "vm_ownership"`);
    await queryRunner.query(`DROP INDEX "public"."UQ_tfa_totp_devices_user_name"`);
    await queryRunner.query(`DROP TABLE "tfa_totp_devices"`);
    await queryRunner.query(`DROP INDEX "public"."IDX_sessions_user"`);
    await queryRunner.query(`DROP TABLE "sessions"`);
    await queryRunner.query(`DROP INDEX "public"."IDX_remote_group_entries_remote"`);
    await queryRunner.query(`DROP TABLE "remote_group_entries"`);
    await queryRunner.query(`DROP TABLE "remote_groups"`);
    await queryRunner.query(`DROP INDEX "public"."IDX_tfa_recovery_codes_user"`);
    await queryRunner.query(`DROP TABLE "tfa_recovery_codes"`);
    await queryRunner.query(`DROP INDEX "public"."IDX_group_members_user"`);
    await queryRunner.query(`DROP TABLE "group_members"`);
    await queryRunner.query(`DROP TABLE "groups"`);
    await queryRunner.query(`DROP INDEX "public"."IDX_users_realm"`);
    await queryRunner.query(`DROP TABLE "users"`);
    await queryRunner.query(`DROP TABLE "realms"`);
    await queryRunner.query(
      `CREATE UNIQUE INDEX "UQ_acl_entries_path_principal" ON "acl_entries" ("path", "principal")`,
    );
  }
}
