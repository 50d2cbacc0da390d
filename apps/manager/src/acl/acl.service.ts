import { Injectable } from '@nestjs/common';
import { AuditService } from '../audit/audit.service';
import { vmAclPath } from '../authz/acl-paths';
import { CallerCache } from '../authz/caller-cache';
import { ClockRepository } from '../common/clock.repository';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { RandomRepository } from '../common/random.repository';
import { describeZodError } from '../common/validation.pipe';
import type { AclEntryEntity, PrincipalType } from './acl-entry.entity';
import { AclRepository, type AclFilter } from './acl.repository';
import { aclKeySchema, type AclEntryView, type AclKey, type PutAclInput } from './acl.dto';

/** A grant as another feature hands it over: the ACL gives it an id and a time. */
export type NewAclEntry = Pick<
  AclEntryEntity,
  'path' | 'principalType' | 'principal' | 'role' | 'propagate'
>;

/**
 * The ACL: roles granted to users, groups and limited tokens on paths. The owner of
 * `acl_entries`: other features change entries through this service only.
 */
@Injectable()
export class AclService {
  constructor(
    private readonly repository: AclRepository,
    private readonly callers: CallerCache,
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
    const stored = await this.grant(input);
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
    this.callers.invalidate();
    this.audit.note({ path: key.path, principalType: key.principalType, principal: key.principal });
  }

  // --- for the features whose principals and objects the entries name ----------------------------

  /** True when the user, group or token an entry would name exists (a token: revoked ones too). */
  principalExists(type: PrincipalType, id: string): Promise<boolean> {
    return this.repository.principalExists(type, id);
  }

  entriesOf(principalType: PrincipalType, principal: string): Promise<AclEntryEntity[]> {
    return this.repository.listAcl({ principalType, principal });
  }

  /** Grants the role, or changes the one the principal has on the path; answers what is stored. */
  async grant(entry: NewAclEntry): Promise<AclEntryEntity> {
    const stored = await this.repository.upsertAcl({
      id: this.random.uuid(),
      path: entry.path,
      principalType: entry.principalType,
      principal: entry.principal,
      role: entry.role,
      propagate: entry.propagate,
      createdAt: this.clock.now(),
    });
    this.callers.invalidate();
    return stored;
  }

  /** Grants the role unless the principal already has an entry on the path (which stays). */
  async grantUnlessPresent(entry: NewAclEntry & Pick<AclEntryEntity, 'createdAt'>): Promise<void> {
    await this.repository.insertUnlessPresent({ id: this.random.uuid(), ...entry });
    this.callers.invalidate();
  }

  /** Takes back one entry; false when there was none. */
  async remove(path: string, principalType: PrincipalType, principal: string): Promise<boolean> {
    const removed = await this.repository.deleteAcl(path, principalType, principal);
    if (removed) this.callers.invalidate();
    return removed;
  }

  /** Every entry naming these principals (they are being removed). */
  async removeGrantsOf(principalType: PrincipalType, principals: readonly string[]): Promise<void> {
    if (principals.length === 0) return;
    await this.repository.deleteGrantsOf(principalType, principals);
    this.callers.invalidate();
  }

  /** Every entry on the path (the object it names is being removed). */
  async removeGrantsOn(path: string): Promise<void> {
    await this.repository.deleteGrantsOn(path);
    this.callers.invalidate();
  }

  /**
   * Grants on a VM follow it to its new remote (a migration, a DR failover): entries on the VM's
   * path at `fromRemote` now name it at `toRemote`; an entry whose principal already has one there
   * stays where it was. Idempotent. Answers how many moved.
   */
  async moveVmGrants(vmId: string, fromRemote: string, toRemote: string): Promise<number> {
    const moved = await this.repository.movePath(
      vmAclPath(fromRemote, vmId),
      vmAclPath(toRemote, vmId),
    );
    if (moved > 0) this.callers.invalidate();
    return moved;
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
