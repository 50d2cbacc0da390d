import type { MigrationInterface, QueryRunner } from 'typeorm';

/** Failed logins per account and source address (issue 14): throttling with back-off instead of a lock anyone can trigger. */
export class LoginThrottles1795900000100 implements MigrationInterface {
  name = 'LoginThrottles1795900000100';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(
      `CREATE TABLE "login_throttles" ("account" character varying(600) NOT NULL, "source" character varying(64) NOT NULL, "failures" integer NOT NULL, "blocked_until" TIMESTAMP WITH TIME ZONE, "updated_at" TIMESTAMP WITH TIME ZONE NOT NULL, CONSTRAINT "PK_d40cf839bc8e551117c73bf5d58" PRIMARY KEY ("account", "source"))`,
    );
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE "login_throttles"`);
  }
}
