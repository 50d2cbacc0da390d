import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Written by hand (triggers are not part of the entities): the audit log refuses UPDATE, DELETE
 * and TRUNCATE for everyone, table owner and superuser included, as long as the trigger is enabled.
 * The runtime role's grants (SELECT, INSERT only) are the second barrier; see RuntimeRoleRepository.
 */
export class AuditLogAppendOnly1795416684075 implements MigrationInterface {
  name = 'AuditLogAppendOnly1795416684075';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE FUNCTION "audit_log_refuse_change"() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        RAISE EXCEPTION 'the audit log is append-only: % on audit_log is refused', TG_OP
          USING ERRCODE = 'restrict_violation', HINT = 'audit entries can only be added';
      END
      $$
    `);
    await queryRunner.query(`
      CREATE TRIGGER "audit_log_append_only"
      BEFORE UPDATE OR DELETE OR TRUNCATE ON "audit_log"
      FOR EACH STATEMENT EXECUTE FUNCTION "audit_log_refuse_change"()
    `);
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TRIGGER "audit_log_append_only" ON "audit_log"`);
    await queryRunner.query(`DROP FUNCTION "audit_log_refuse_change"()`);
  }
}
