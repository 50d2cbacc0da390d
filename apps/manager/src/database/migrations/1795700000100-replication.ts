import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Cross-cluster replication: pairs of remotes' pools (never the bootstrap secret that paired them)
 * and each mirrored VM's sites, DR roles, RPO target, schedule and pending DR action.
 */
export class Replication1795700000100 implements MigrationInterface {
  name = 'Replication1795700000100';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(
      `CREATE TABLE "replication_pairs" ("id" uuid NOT NULL, "remote_a" character varying(63) NOT NULL, "pool_a" character varying(63) NOT NULL, "remote_b" character varying(63) NOT NULL, "pool_b" character varying(63) NOT NULL, "state" character varying(16) NOT NULL, "error" text, "task_id" uuid NOT NULL, "created_at" TIMESTAMP WITH TIME ZONE NOT NULL, "updated_at" TIMESTAMP WITH TIME ZONE NOT NULL, CONSTRAINT "PK_85feb8cb2685026cc3f11a320f3" PRIMARY KEY ("id"))`,
    );
    await queryRunner.query(
      `CREATE UNIQUE INDEX "IDX_replication_pairs_ends" ON "replication_pairs" ("remote_a", "pool_a", "remote_b", "pool_b") `,
    );
    await queryRunner.query(
      `CREATE TABLE "vm_replications" ("vm_id" uuid NOT NULL, "vm_name" character varying(255) NOT NULL, "pair_id" uuid NOT NULL, "source_remote" character varying(63) NOT NULL, "source_pool" character varying(63) NOT NULL, "target_remote" character varying(63) NOT NULL, "target_pool" character varying(63) NOT NULL, "source_state" character varying(16) NOT NULL, "target_state" character varying(16) NOT NULL, "phase" character varying(16) NOT NULL, "disks" jsonb NOT NULL, "spec" jsonb NOT NULL, "rpo_target_seconds" integer NOT NULL, "schedule_interval" character varying(16) NOT NULL, "pending" jsonb, "last_change" text NOT NULL, "last_change_at" TIMESTAMP WITH TIME ZONE NOT NULL, "created_at" TIMESTAMP WITH TIME ZONE NOT NULL, CONSTRAINT "PK_aebcc72031909036ab8feab0806" PRIMARY KEY ("vm_id"))`,
    );
    await queryRunner.query(
      `CREATE INDEX "IDX_vm_replications_pair" ON "vm_replications" ("pair_id") `,
    );
    await queryRunner.query(
      `ALTER TABLE "vm_replications" ADD CONSTRAINT "FK_cf3f6e8e1f2a95b983ce8cced9c" FOREIGN KEY ("pair_id") REFERENCES "replication_pairs"("id") ON DELETE RESTRICT ON UPDATE NO ACTION`,
    );
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(
      `ALTER TABLE "vm_replications" DROP CONSTRAINT "FK_cf3f6e8e1f2a95b983ce8cced9c"`,
    );
    await queryRunner.query(`DROP INDEX "public"."IDX_vm_replications_pair"`);
    await queryRunner.query(`DROP TABLE "vm_replications"`);
    await queryRunner.query(`DROP INDEX "public"."IDX_replication_pairs_ends"`);
    await queryRunner.query(`DROP TABLE "replication_pairs"`);
  }
}
