import type { MigrationInterface, QueryRunner } from 'typeorm';

/** VM snapshots: the manager's records of the snapshots it took (quota, retention), snapshot task parameters, schedules. */
export class VmSnapshots1795700000200 implements MigrationInterface {
  name = 'VmSnapshots1795700000200';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(
      `CREATE TABLE "snapshot_schedules" ("id" uuid NOT NULL, "name" character varying(64) NOT NULL, "target_type" character varying(8) NOT NULL, "remote_id" character varying(63) NOT NULL, "vm_id" uuid, "labels" jsonb, "pool" character varying(64), "interval_seconds" integer, "cron" character varying(120), "keep" integer NOT NULL, "freeze" boolean NOT NULL, "enabled" boolean NOT NULL, "owner" character varying(255) NOT NULL, "credential_id" uuid, "created_at" TIMESTAMP WITH TIME ZONE NOT NULL, "updated_at" TIMESTAMP WITH TIME ZONE NOT NULL, "last_run_at" TIMESTAMP WITH TIME ZONE, "last_task_id" uuid, "next_run_at" TIMESTAMP WITH TIME ZONE NOT NULL, CONSTRAINT "PK_a104b398faa25a028217e15bad2" PRIMARY KEY ("id"))`,
    );
    await queryRunner.query(
      `CREATE INDEX "IDX_snapshot_schedules_next_run_at" ON "snapshot_schedules" ("next_run_at") `,
    );
    await queryRunner.query(
      `CREATE TABLE "vm_snapshot_tasks" ("task_id" uuid NOT NULL, "snapshot" character varying(64), "schedule_id" uuid, "options" jsonb NOT NULL, CONSTRAINT "PK_0d4f785256c1cd0b22bbc521478" PRIMARY KEY ("task_id"))`,
    );
    await queryRunner.query(
      `CREATE TABLE "vm_snapshots" ("id" uuid NOT NULL, "remote_id" character varying(63) NOT NULL, "vm_id" uuid NOT NULL, "name" character varying(64) NOT NULL, "created_by" character varying(255) NOT NULL, "schedule_id" uuid, "description" character varying(200), "state" character varying(16) NOT NULL, "consistency" character varying(16), "requested_at" TIMESTAMP WITH TIME ZONE NOT NULL, "taken_at" TIMESTAMP WITH TIME ZONE, CONSTRAINT "UQ_vm_snapshots_remote_vm_name" UNIQUE ("remote_id", "vm_id", "name"), CONSTRAINT "PK_5625d74977487a69e417f4307e5" PRIMARY KEY ("id"))`,
    );
    await queryRunner.query(
      `CREATE INDEX "IDX_vm_snapshots_schedule_id" ON "vm_snapshots" ("schedule_id") `,
    );
    await queryRunner.query(
      `CREATE INDEX "IDX_vm_snapshots_vm_created_by" ON "vm_snapshots" ("vm_id", "created_by") `,
    );
    await queryRunner.query(
      `ALTER TABLE "vm_snapshot_tasks" ADD CONSTRAINT "FK_0d4f785256c1cd0b22bbc521478" FOREIGN KEY ("task_id") REFERENCES "tasks"("id") ON DELETE CASCADE ON UPDATE NO ACTION`,
    );
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(
      `ALTER TABLE "vm_snapshot_tasks" DROP CONSTRAINT "FK_0d4f785256c1cd0b22bbc521478"`,
    );
    await queryRunner.query(`DROP INDEX "public"."IDX_vm_snapshots_vm_created_by"`);
    await queryRunner.query(`DROP INDEX "public"."IDX_vm_snapshots_schedule_id"`);
    await queryRunner.query(`DROP TABLE "vm_snapshots"`);
    await queryRunner.query(`DROP TABLE "vm_snapshot_tasks"`);
    await queryRunner.query(`DROP INDEX "public"."IDX_snapshot_schedules_next_run_at"`);
    await queryRunner.query(`DROP TABLE "snapshot_schedules"`);
  }
}
