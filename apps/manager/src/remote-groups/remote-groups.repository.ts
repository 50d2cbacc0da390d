import { Injectable } from '@nestjs/common';
import { In, type EntityManager } from 'typeorm';
import { UnitOfWork } from '../database/unit-of-work.repository';
import { insertedUnlessTaken } from '../database/unique-violation';
import { RemoteCredentialEntity } from '../remotes/remote-credential.entity';
import { RemoteEntity } from '../remotes/remote.entity';
import { RemoteGroupEntryEntity } from './remote-group-entry.entity';
import { RemoteGroupEntity } from './remote-group.entity';

/** One entry of a remote group as stored: the remote and its credential (id and name). */
export interface RemoteGroupEntryRow {
  readonly remoteId: string;
  readonly credentialId: string;
  readonly credentialName: string;
}

export interface RemoteGroupRow extends RemoteGroupEntity {
  readonly entries: readonly RemoteGroupEntryRow[];
}

/** A credential of a remote, by name. */
export interface CredentialRef {
  readonly id: string;
  readonly remoteId: string;
  readonly name: string;
}

/** The owner of `remote_groups` and their entries: the only code that writes them. */
@Injectable()
export class RemoteGroupsRepository {
  constructor(private readonly db: UnitOfWork) {}

  async list(): Promise<RemoteGroupRow[]> {
    const groups = await this.db.manager
      .getRepository(RemoteGroupEntity)
      .find({ order: { id: 'ASC' } });
    const entries = await this.entriesOf(groups.map((g) => g.id));
    return groups.map((g) => ({ ...g, entries: entries.get(g.id) ?? [] }));
  }

  async get(id: string): Promise<RemoteGroupRow | null> {
    const group = await this.db.manager.getRepository(RemoteGroupEntity).findOneBy({ id });
    if (!group) return null;
    return { ...group, entries: (await this.entriesOf([id])).get(id) ?? [] };
  }

  /** The ids among `ids` that are remotes. */
  async existingRemotes(ids: readonly string[]): Promise<Set<string>> {
    if (ids.length === 0) return new Set();
    const rows = await this.db.manager
      .getRepository(RemoteEntity)
      .find({ select: { id: true }, where: { id: In([...ids]) } });
    return new Set(rows.map((r) => r.id));
  }

  /** Every credential of the given remotes. */
  async credentialsOf(remoteIds: readonly string[]): Promise<CredentialRef[]> {
    if (remoteIds.length === 0) return [];
    return this.db.manager.getRepository(RemoteCredentialEntity).find({
      select: { id: true, remoteId: true, name: true },
      where: { remoteId: In([...remoteIds]) },
    });
  }

  /** Stores a new group with its entries; false when the id is taken. */
  create(
    group: RemoteGroupEntity,
    entries: readonly { remoteId: string; credentialId: string }[],
  ): Promise<boolean> {
    return insertedUnlessTaken(() =>
      this.db.run(async () => {
        const tx = this.db.manager;
        await tx.getRepository(RemoteGroupEntity).insert(group);
        await insertEntries(tx, group.id, entries);
      }),
    );
  }

  /** Replaces the entries (and the comment, when given) of a group; false when it does not exist. */
  async replace(
    id: string,
    comment: string | undefined,
    entries: readonly { remoteId: string; credentialId: string }[],
  ): Promise<boolean> {
    return this.db.run(async () => {
      const tx = this.db.manager;
      const found = await tx
        .getRepository(RemoteGroupEntity)
        .findOne({ where: { id }, lock: { mode: 'pessimistic_write' } });
      if (!found) return false;
      if (comment !== undefined)
        await tx.getRepository(RemoteGroupEntity).update({ id }, { comment });
      await tx.getRepository(RemoteGroupEntryEntity).delete({ groupId: id });
      await insertEntries(tx, id, entries);
      return true;
    });
  }

  /** Removes the group with its entries (by cascade); false when absent. */
  async delete(id: string): Promise<boolean> {
    const result = await this.db.manager.getRepository(RemoteGroupEntity).delete({ id });
    return (result.affected ?? 0) > 0;
  }

  private async entriesOf(
    groupIds: readonly string[],
  ): Promise<Map<string, RemoteGroupEntryRow[]>> {
    const byGroup = new Map<string, RemoteGroupEntryRow[]>();
    if (groupIds.length === 0) return byGroup;
    const rows: { group_id: string; remote_id: string; credential_id: string; name: string }[] =
      await this.db.manager.query(
        `SELECT e.group_id, e.remote_id, e.credential_id, c.name FROM remote_group_entries e JOIN remote_credentials c ON c.id = e.credential_id
       WHERE e.group_id = ANY($1::varchar[]) ORDER BY e.group_id, e.remote_id`,
        [[...groupIds]],
      );
    for (const row of rows) {
      const list = byGroup.get(row.group_id) ?? [];
      list.push({
        remoteId: row.remote_id,
        credentialId: row.credential_id,
        credentialName: row.name,
      });
      byGroup.set(row.group_id, list);
    }
    return byGroup;
  }
}

async function insertEntries(
  tx: EntityManager,
  groupId: string,
  entries: readonly { remoteId: string; credentialId: string }[],
): Promise<void> {
  if (entries.length === 0) return;
  await tx
    .getRepository(RemoteGroupEntryEntity)
    .insert(entries.map((e) => ({ groupId, remoteId: e.remoteId, credentialId: e.credentialId })));
}
