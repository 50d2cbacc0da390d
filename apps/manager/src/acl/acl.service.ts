import { Injectable } from '@nestjs/common';
import { AuditService } from '../audit/audit.service';
import { AuthService } from '../authn/auth.service';
import { ClockRepository } from '../common/clock.repository';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { RandomRepository } from '../common/random.repository';
import { describeZodError } from '../common/validation.pipe';
import { AccessAdminRepository, type AclFilter } from '../access/access-admin.repository';
import type { AclEntryEntity } from './acl-entry.entity';
import { aclKeySchema, type AclEntryView, type AclKey, type PutAclInput } from './acl.dto';

/** The ACL: roles granted to users, groups and limited tokens on paths. */
@Injectable()
export class AclService {
  constructor(
    private readonly repository: AccessAdminRepository,
    private readonly auth: AuthService,
    private readonly audit: AuditService,
    private readonly clock: ClockRepository,
    private readonly random: RandomRepository,
  ) {}

  async list(filter: AclFilter): Promise<{ items: AclEntryView[] }> {
    return { items: (await this.repository.listAcl(filter)).map(aclEntryView) };
  }

  /** Grants `role` on `path` to the principal, or changes the role it has there; the principal must exist. */
  async put(input: PutAclInput): Promise<AclEntryView> {
    if (!(await this.repository.principalExists(input.principalType, input.principal)))
      throw DomainError.notFound(`${input.principalType} ${input.principal}`);
    const stored = await this.repository.upsertAcl({
      id: this.random.uuid(),
      path: input.path,
      principalType: input.principalType,
      principal: input.principal,
      role: input.role,
      propagate: input.propagate,
      createdAt: this.clock.now(),
    });
    this.auth.invalidate();
    this.audit.note({
      path: stored.path,
      principalType: stored.principalType,
      principal: stored.principal,
      role: stored.role,
      propagate: stored.propagate,
    });
    return aclEntryView(stored);
  }

  /** Takes back the entry named in the body, or else in the query. */
  async revoke(sources: {
    query: Partial<Record<keyof AclKey, string>>;
    body: Partial<Record<keyof AclKey, string>> | undefined;
  }): Promise<void> {
    const given =
      sources.body && Object.keys(sources.body).length > 0 ? sources.body : sources.query;
    const parsed = aclKeySchema.safeParse(given);
    if (!parsed.success)
      throw new DomainError(
        ErrorCode.ValidationFailed,
        `name the entry with path, principalType and principal (in the body or the query): ${describeZodError(parsed.error)}`,
      );
    const key = parsed.data;
    if (!(await this.repository.deleteAcl(key.path, key.principalType, key.principal))) {
      throw DomainError.notFound(
        `ACL entry of ${key.principalType} ${key.principal} on ${key.path}`,
      );
    }
    this.auth.invalidate();
    this.audit.note({ path: key.path, principalType: key.principalType, principal: key.principal });
  }
}

export function aclEntryView(entry: AclEntryEntity): AclEntryView {
  return {
    path: entry.path,
    principalType: entry.principalType,
    principal: entry.principal,
    role: entry.role,
    propagate: entry.propagate,
    createdAt: entry.createdAt.toISOString(),
  };
}
