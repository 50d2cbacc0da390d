import type { MigrationInterface, QueryRunner } from 'typeorm';

/** Live migration: the record of each vm.migrate task (ends, options, phase, last figures). */
export class VmMigrations1795600000000 implements MigrationInterface {
  name = 'VmMigrations1795600000000';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(
      `CREATE TABLE "vm_migrations" ("task_id" uuid NOT NULL, "vm_id" uuid NOT NULL, "source_remote" character varying(63) NOT NULL, "source_node" character varying(63), "target_remote" character varying(63) NOT NULL, "target_node" character varying(63) NOT NULL, "target_credential_id" uuid, "options" jsonb NOT NULL, "phase" character varying(16) NOT NULL, "progress" jsonb, "created_at" TIMESTAMP WITH TIME ZONE NOT NULL, "transfer_started_at" TIMESTAMP WITH TIME ZONE, "finished_at" TIMESTAMP WITH TIME ZONE, "updated_at" TIMESTAMP WITH TIME ZONE NOT NULL, CONSTRAINT "PK_ea4defee63917b9a355c5772d71" PRIMARY KEY ("task_id"))`,
    );
    await queryRunner.query(`CREATE INDEX "IDX_vm_migrations_vm_id" ON "vm_migrations" ("vm_id") `);
    await queryRunner.query(
      `ALTER TABLE "vm_migrations" ADD CONSTRAINT "FK_ea4defee63917b9a355c5772d71" FOREIGN KEY ("task_id") REFERENCES "tasks"("id") ON DELETE CASCADE ON UPDATE NO ACTION`,
    );
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(
      `ALTER TABLE "vm_migrations" DROP CONSTRAINT "FK_ea4defee63917b9a355c5772d71"`,
    );
    await queryRunner.query(`DROP INDEX "public"."IDX_vm_migrations_vm_id"`);
    await queryRunner.query(`DROP TABLE "vm_migrations"`);
  }
}
