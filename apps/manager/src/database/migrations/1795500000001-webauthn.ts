import type { MigrationInterface, QueryRunner } from 'typeorm';

/** WebAuthn second factors: users' credentials, and the single-use challenge a session asked for. */
export class Webauthn1795500000001 implements MigrationInterface {
  name = 'Webauthn1795500000001';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(
      `CREATE TABLE "tfa_webauthn_credentials" ("id" uuid NOT NULL, "user_id" character varying(255) NOT NULL, "name" character varying(64) NOT NULL, "credential_id" character varying(1366) NOT NULL, "public_key" text NOT NULL, "counter" bigint NOT NULL DEFAULT '0', "transports" text array NOT NULL, "created_at" TIMESTAMP WITH TIME ZONE NOT NULL, "last_used_at" TIMESTAMP WITH TIME ZONE, CONSTRAINT "PK_0d306be2e386f9e6a6d766f2f03" PRIMARY KEY ("id"))`,
    );
    await queryRunner.query(
      `CREATE UNIQUE INDEX "UQ_tfa_webauthn_credentials_credential_id" ON "tfa_webauthn_credentials" ("credential_id") `,
    );
    await queryRunner.query(
      `CREATE UNIQUE INDEX "UQ_tfa_webauthn_credentials_user_name" ON "tfa_webauthn_credentials" ("user_id", "name") `,
    );
    await queryRunner.query(
      `ALTER TABLE "sessions" ADD "webauthn_challenge" character varying(128)`,
    );
    await queryRunner.query(
      `ALTER TABLE "sessions" ADD "webauthn_challenge_expires_at" TIMESTAMP WITH TIME ZONE`,
    );
    await queryRunner.query(
      `ALTER TABLE "sessions" ADD "webauthn_pending_name" character varying(64)`,
    );
    await queryRunner.query(
      `ALTER TABLE "tfa_webauthn_credentials" ADD CONSTRAINT "FK_4b659f75d289d4d968d5d6bde77" FOREIGN KEY ("user_id") REFERENCES "users"("id") ON DELETE CASCADE ON UPDATE NO ACTION`,
    );
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(
      `ALTER TABLE "tfa_webauthn_credentials" DROP CONSTRAINT "FK_4b659f75d289d4d968d5d6bde77"`,
    );
    await queryRunner.query(`ALTER TABLE "sessions" DROP COLUMN "webauthn_pending_name"`);
    await queryRunner.query(`ALTER TABLE "sessions" DROP COLUMN "webauthn_challenge_expires_at"`);
    await queryRunner.query(`ALTER TABLE "sessions" DROP COLUMN "webauthn_challenge"`);
    await queryRunner.query(`DROP INDEX "public"."UQ_tfa_webauthn_credentials_user_name"`);
    await queryRunner.query(`DROP INDEX "public"."UQ_tfa_webauthn_credentials_credential_id"`);
    await queryRunner.query(`DROP TABLE "tfa_webauthn_credentials"`);
  }
}
