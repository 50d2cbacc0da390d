import type { MigrationInterface, QueryRunner } from 'typeorm';

/** The nodes the resource cache has seen: kept past their lease and the manager's restarts until an operator forgets them. */
export class KnownNodes1795800000000 implements MigrationInterface {
  name = 'KnownNodes1795800000000';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(
      `CREATE TABLE "known_nodes" ("remote_id" character varying(63) NOT NULL, "node_id" character varying(253) NOT NULL, "state" character varying(16) NOT NULL, "since" TIMESTAMP WITH TIME ZONE NOT NULL, "last_seen_at" TIMESTAMP WITH TIME ZONE, "node" jsonb NOT NULL, "vms" jsonb NOT NULL, CONSTRAINT "PK_caedd57a5f9b936a93a4b57d1c5" PRIMARY KEY ("remote_id", "node_id"))`,
    );
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE "known_nodes"`);
  }
}
