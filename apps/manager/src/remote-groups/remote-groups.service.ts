import { Injectable } from '@nestjs/common';
import { AuditService } from '../audit/audit.service';
import { AclService } from '../acl/acl.service';
import { remoteGroupAclPath } from '../authz/acl-paths';
import { CallerCache } from '../authz/caller-cache';
import { ClockRepository } from '../common/clock.repository';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { UnitOfWork } from '../database/unit-of-work.repository';
import type {
  CreateRemoteGroupInput,
  RemoteGroupView,
  UpdateRemoteGroupInput,
} from './remote-groups.dto';
import { RemoteGroupsRepository, type RemoteGroupRow } from './remote-groups.repository';

type EntryInput = CreateRemoteGroupInput['entries'][number];

/**
 * Remote groups: for each member remote, the credential the manager acts with when a grant on
 * `/groups/{id}` allows a call. Removing one removes the grants on its path with it.
 */
@Injectable()
export class RemoteGroupsService {
  constructor(
    private readonly repository: RemoteGroupsRepository,
    private readonly acl: AclService,
    private readonly db: UnitOfWork,
    private readonly callers: CallerCache,
    private readonly audit: AuditService,
    private readonly clock: ClockRepository,
  ) {}

  async list(): Promise<{ items: RemoteGroupView[] }> {
    return { items: (await this.repository.list()).map(view) };
  }

  async get(id: string): Promise<RemoteGroupView> {
    return view(await this.require(id));
  }

  async create(input: CreateRemoteGroupInput): Promise<RemoteGroupView> {
    const entries = await this.resolve(input.entries);
    const created = await this.repository.create(
      { id: input.id, comment: input.comment, createdAt: this.clock.now() },
      entries,
    );
    if (!created)
      throw new DomainError(ErrorCode.Conflict, `remote group ${input.id} already exists`);
    this.callers.invalidate();
    this.audit.note({ group: input.id, entries: input.entries });
    return this.get(input.id);
  }

  async update(id: string, input: UpdateRemoteGroupInput): Promise<RemoteGroupView> {
    await this.require(id);
    const entries = await this.resolve(input.entries);
    if (!(await this.repository.replace(id, input.comment, entries)))
      throw DomainError.notFound(`remote group ${id}`);
    this.callers.invalidate();
    this.audit.note({ group: id, entries: input.entries });
    return this.get(id);
  }

  async delete(id: string): Promise<void> {
    const deleted = await this.db.run(async () => {
      await this.acl.removeGrantsOn(remoteGroupAclPath(id));
      return this.repository.delete(id);
    });
    if (!deleted) throw DomainError.notFound(`remote group ${id}`);
    this.callers.invalidate();
    this.audit.note({ group: id });
  }

  /** Each remote must exist and the credential must be one of its own (by name). */
  private async resolve(
    entries: readonly EntryInput[],
  ): Promise<{ remoteId: string; credentialId: string }[]> {
    const remotes = [...new Set(entries.map((e) => e.remote))];
    const existing = await this.repository.existingRemotes(remotes);
    const missing = remotes.filter((r) => !existing.has(r));
    if (missing.length > 0)
      throw DomainError.notFound(
        `remote${missing.length > 1 ? 's' : ''} ${missing.slice(0, 10).join(', ')}`,
      );
    const credentials = await this.repository.credentialsOf(remotes);
    return entries.map((entry) => {
      const credential = credentials.find(
        (c) => c.remoteId === entry.remote && c.name === entry.credential,
      );
      if (!credential)
        throw DomainError.notFound(`credential ${entry.credential} of remote ${entry.remote}`);
      return { remoteId: entry.remote, credentialId: credential.id };
    });
  }

  private async require(id: string): Promise<RemoteGroupRow> {
    const group = await this.repository.get(id);
    if (!group) throw DomainError.notFound(`remote group ${id}`);
    return group;
  }
}

function view(group: RemoteGroupRow): RemoteGroupView {
  return {
    id: group.id,
    comment: group.comment,
    entries: group.entries.map((e) => ({ remote: e.remoteId, credential: e.credentialName })),
    createdAt: group.createdAt.toISOString(),
  };
}
