import type { MigrationInterface, QueryRunner } from 'typeorm';

/** Generated with the TypeORM CLI from the entities of the walking skeleton (see docs/manager.md). */
export class InitialSchema1795414043212 implements MigrationInterface {
  name = 'InitialSchema1795414043212';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
            CREATE TABLE "acl_entries" (
                "id" uuid NOT NULL,
                "path" character varying(1024) NOT NULL,
                "principal" character varying(255) NOT NULL,
                "role" character varying(16) NOT NULL,
                "created_at" TIMESTAMP WITH TIME ZONE NOT NULL,
                CONSTRAINT "PK_8ab66a564470696e3d75c430d69" PRIMARY KEY ("id")
            )
        `);
    await queryRunner.query(`
            CREATE UNIQUE INDEX "UQ_acl_entries_path_principal" ON "acl_entries" ("path", "principal")
        `);
    await queryRunner.query(`
            CREATE TABLE "api_tokens" (
                "id" character varying(16) NOT NULL,
                "principal" character varying(255) NOT NULL,
                "name" character varying(64) NOT NULL,
                "secret_hash" character varying(64) NOT NULL,
                "created_at" TIMESTAMP WITH TIME ZONE NOT NULL,
                "last_used_at" TIMESTAMP WITH TIME ZONE,
                "expires_at" TIMESTAMP WITH TIME ZONE,
                "revoked_at" TIMESTAMP WITH TIME ZONE,
                CONSTRAINT "PK_c587455266b5fa8dace7194caac" PRIMARY KEY ("id")
            )
        `);
    await queryRunner.query(`
            CREATE TABLE "remotes" (
                "id" character varying(63) NOT NULL,
                "description" character varying(500) NOT NULL DEFAULT '',
                "endpoints" jsonb NOT NULL,
                "ca_cert_pem" text,
                "ca_fingerprint" character varying(95) NOT NULL,
                "created_at" TIMESTAMP WITH TIME ZONE NOT NULL,
                "updated_at" TIMESTAMP WITH TIME ZONE NOT NULL,
                CONSTRAINT "PK_348bfb82ade95717a7a1a7bb541" PRIMARY KEY ("id")
            )
        `);
    await queryRunner.query(`
            CREATE TABLE "remote_credentials" (
                "id" uuid NOT NULL,
                "remote_id" character varying(63) NOT NULL,
                "name" character varying(64) NOT NULL,
                "key_id" character varying(16) NOT NULL,
                "sealed_key" text NOT NULL,
                "position" integer NOT NULL,
                "created_at" TIMESTAMP WITH TIME ZONE NOT NULL,
                CONSTRAINT "PK_8a796f3dc64857f13d14a28b22a" PRIMARY KEY ("id")
            )
        `);
    await queryRunner.query(`
            CREATE UNIQUE INDEX "UQ_remote_credentials_remote_name" ON "remote_credentials" ("remote_id", "name")
        `);
    await queryRunner.query(`
            CREATE TABLE "tasks" (
                "id" uuid NOT NULL,
                "type" character varying(64) NOT NULL,
                "state" character varying(16) NOT NULL,
                "remote_id" character varying(63),
                "vm_id" uuid,
                "owner" character varying(255) NOT NULL,
                "progress" double precision NOT NULL DEFAULT '0',
                "log" jsonb NOT NULL,
                "error" text,
                "created_at" TIMESTAMP WITH TIME ZONE NOT NULL,
                "started_at" TIMESTAMP WITH TIME ZONE,
                "finished_at" TIMESTAMP WITH TIME ZONE,
                "updated_at" TIMESTAMP WITH TIME ZONE NOT NULL,
                CONSTRAINT "PK_8d12ff38fcc62aaba2cab748772" PRIMARY KEY ("id")
            )
        `);
    await queryRunner.query(`
            CREATE INDEX "IDX_tasks_state" ON "tasks" ("state")
        `);
    await queryRunner.query(`
            CREATE INDEX "IDX_tasks_created_at" ON "tasks" ("created_at")
        `);
    await queryRunner.query(`
            CREATE TABLE "system_settings" (
                "key" character varying(128) NOT NULL,
                "value" jsonb NOT NULL,
                "updated_at" TIMESTAMP WITH TIME ZONE NOT NULL,
                CONSTRAINT "PK_b1b5bc664526d375c94ce9ad43d" PRIMARY KEY ("key")
            )
        `);
    await queryRunner.query(`
            ALTER TABLE "remote_credentials"
            ADD CONSTRAINT "FK_031dd5117db2ea6208600cb0e89" FOREIGN KEY ("remote_id") REFERENCES "remotes"("id") ON DELETE CASCADE ON UPDATE NO ACTION
        `);
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
            ALTER TABLE "remote_credentials" DROP CONSTRAINT "FK_031dd5117db2ea6208600cb0e89"
        `);
    await queryRunner.query(`
            DROP TABLE "system_settings"
        `);
    await queryRunner.query(`
            DROP INDEX "public"."IDX_tasks_created_at"
        `);
    await queryRunner.query(`
            DROP INDEX "public"."IDX_tasks_state"
        `);
    await queryRunner.query(`
            DROP TABLE "tasks"
        `);
    await queryRunner.query(`
            DROP INDEX "public"."UQ_remote_credentials_remote_name"
        `);
    await queryRunner.query(`
            DROP TABLE "remote_credentials"
        `);
    await queryRunner.query(`
            DROP TABLE "remotes"
        `);
    await queryRunner.query(`
            DROP TABLE "api_tokens"
        `);
    await queryRunner.query(`
            DROP INDEX "public"."UQ_acl_entries_path_principal"
        `);
    await queryRunner.query(`
            DROP TABLE "acl_entries"
        `);
  }
}
