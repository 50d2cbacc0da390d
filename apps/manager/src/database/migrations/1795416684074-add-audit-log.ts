import type { MigrationInterface, QueryRunner } from 'typeorm';

/** Generated with the TypeORM CLI from AuditEntryEntity (see docs/manager.md). */
export class AddAuditLog1795416684074 implements MigrationInterface {
  name = 'AddAuditLog1795416684074';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
            CREATE TABLE "audit_log" (
                "seq" bigint NOT NULL,
                "ts" TIMESTAMP WITH TIME ZONE NOT NULL,
                "principal" character varying(255),
                "action" character varying(64) NOT NULL,
                "target" character varying(1024),
                "outcome" character varying(16) NOT NULL,
                "trace_id" character varying(128),
                "source" character varying(255),
                "details" jsonb NOT NULL,
                "prev_hash" character varying(64) NOT NULL,
                "hash" character varying(64) NOT NULL,
                CONSTRAINT "PK_ce5b9b7d945cab0a6c604bafd9e" PRIMARY KEY ("seq")
            )
        `);
    await queryRunner.query(`
            CREATE INDEX "IDX_audit_log_action_seq" ON "audit_log" ("action", "seq")
        `);
    await queryRunner.query(`
            CREATE INDEX "IDX_audit_log_principal_seq" ON "audit_log" ("principal", "seq")
        `);
    await queryRunner.query(`
            CREATE INDEX "IDX_audit_log_ts" ON "audit_log" ("ts")
        `);
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
            DROP INDEX "public"."IDX_audit_log_ts"
        `);
    await queryRunner.query(`
            DROP INDEX "public"."IDX_audit_log_principal_seq"
        `);
    await queryRunner.query(`
            DROP INDEX "public"."IDX_audit_log_action_seq"
        `);
    await queryRunner.query(`
            DROP TABLE "audit_log"
        `);
  }
}
