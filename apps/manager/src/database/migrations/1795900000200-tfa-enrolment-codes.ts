import type { MigrationInterface, QueryRunner } from 'typeorm';

/** Administrators' one-time second-factor enrolment codes (issue 14: a password alone does not enrol a required factor). */
export class TfaEnrolmentCodes1795900000200 implements MigrationInterface {
  name = 'TfaEnrolmentCodes1795900000200';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(
      `CREATE TABLE "tfa_enrolment_codes" ("user_id" character varying(255) NOT NULL, "code_hash" character varying(64) NOT NULL, "expires_at" TIMESTAMP WITH TIME ZONE NOT NULL, "created_at" TIMESTAMP WITH TIME ZONE NOT NULL, CONSTRAINT "PK_0a5e618434825ce422613036e2a" PRIMARY KEY ("user_id"))`,
    );
    await queryRunner.query(
      `ALTER TABLE "tfa_enrolment_codes" ADD CONSTRAINT "FK_0a5e618434825ce422613036e2a" FOREIGN KEY ("user_id") REFERENCES "users"("id") ON DELETE CASCADE ON UPDATE NO ACTION`,
    );
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(
      `ALTER TABLE "tfa_enrolment_codes" DROP CONSTRAINT "FK_0a5e618434825ce422613036e2a"`,
    );
    await queryRunner.query(`DROP TABLE "tfa_enrolment_codes"`);
  }
}
