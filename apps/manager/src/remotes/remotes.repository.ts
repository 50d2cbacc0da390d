import { parseAgentApiKey } from '@debvisor/common';
import { Inject, Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { randomUUID } from 'node:crypto';
import { DataSource, type EntityManager } from 'typeorm';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { isUniqueViolation } from '../database/unique-violation';
import { MANAGER_IDENTITY, type ManagerIdentity } from '../pki/state-dir.repository';
import { SecretBox } from '../pki/secret-box';
import type { NewCredential, Remote } from './remote.model';
import { RemoteCredentialEntity } from './remote-credential.entity';
import { RemoteEntity } from './remote.entity';

export interface NewRemote {
  readonly id: string;
  readonly description: string;
  readonly endpoints: readonly string[];
  readonly caCertPem: string | null;
  readonly caFingerprint: string;
  readonly credentials: readonly NewCredential[];
  readonly at: Date;
}

export interface RemotePatch {
  readonly description?: string;
  readonly endpoints?: readonly string[];
  readonly caCertPem?: string | null;
  readonly caFingerprint?: string;
  /** New keys for existing credentials (by name), written in the same transaction. */
  readonly credentials?: readonly NewCredential[];
}

/**
 * Remotes and their credentials in PostgreSQL. API keys are sealed (AES-256-GCM with the key from
 * the state directory) on the way in and only opened for a call to the remote.
 */
@Injectable()
export class RemotesRepository {
  private readonly box: SecretBox;

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    @Inject(MANAGER_IDENTITY) identity: ManagerIdentity,
  ) {
    this.box = new SecretBox(identity.secretKey);
  }

  async list(): Promise<Remote[]> {
    const remotes = await this.dataSource
      .getRepository(RemoteEntity)
      .find({ order: { id: 'ASC' } });
    const credentials = await this.dataSource
      .getRepository(RemoteCredentialEntity)
      .find({ order: { remoteId: 'ASC', position: 'ASC' } });
    return remotes.map((remote) =>
      toModel(
        remote,
        credentials.filter((c) => c.remoteId === remote.id),
      ),
    );
  }

  async listIds(): Promise<string[]> {
    const rows = await this.dataSource
      .getRepository(RemoteEntity)
      .find({ select: { id: true }, order: { id: 'ASC' } });
    return rows.map((row) => row.id);
  }

  async get(id: string): Promise<Remote | null> {
    const remote = await this.dataSource.getRepository(RemoteEntity).findOneBy({ id });
    if (!remote) return null;
    const credentials = await this.dataSource
      .getRepository(RemoteCredentialEntity)
      .find({ where: { remoteId: id }, order: { position: 'ASC' } });
    return toModel(remote, credentials);
  }

  /** Stores a new remote with its credentials; 409 when the id is taken. */
  async create(remote: NewRemote): Promise<Remote> {
    await this.conflictsAsDomainError(`remote ${remote.id} already exists`, () =>
      this.dataSource.transaction(async (tx) => {
        await tx.getRepository(RemoteEntity).insert({
          id: remote.id,
          description: remote.description,
          endpoints: [...remote.endpoints],
          caCertPem: remote.caCertPem,
          caFingerprint: remote.caFingerprint,
          createdAt: remote.at,
          updatedAt: remote.at,
        });
        for (const [position, credential] of remote.credentials.entries()) {
          await this.insertCredential(tx, remote.id, credential, position, remote.at);
        }
      }),
    );
    return (await this.get(remote.id))!;
  }

  /** Answers the updated remote, or null when it does not exist. */
  async update(id: string, patch: RemotePatch, at: Date): Promise<Remote | null> {
    const changes: Partial<RemoteEntity> = { updatedAt: at };
    if (patch.description !== undefined) changes.description = patch.description;
    if (patch.endpoints !== undefined) changes.endpoints = [...patch.endpoints];
    if (patch.caCertPem !== undefined) changes.caCertPem = patch.caCertPem;
    if (patch.caFingerprint !== undefined) changes.caFingerprint = patch.caFingerprint;
    const affected = await this.dataSource.transaction(async (tx) => {
      const result = await tx.getRepository(RemoteEntity).update({ id }, changes);
      for (const credential of patch.credentials ?? []) {
        const parsed = parseAgentApiKey(credential.key);
        if (!parsed) throw new Error('credential key was not validated');
        await tx.getRepository(RemoteCredentialEntity).update(
          { remoteId: id, name: credential.name },
          {
            keyId: parsed.id,
            sealedKey: this.box.seal(credential.key, sealContext(id, credential.name)),
            permissions: credential.permissions ? [...credential.permissions] : null,
          },
        );
      }
      return result.affected ?? 0;
    });
    return affected ? this.get(id) : null;
  }

  /** Removes a remote and (cascading) its credentials; false when it did not exist. */
  async delete(id: string): Promise<boolean> {
    const result = await this.dataSource.getRepository(RemoteEntity).delete({ id });
    return (result.affected ?? 0) > 0;
  }

  /** Appends a credential (last in order of preference); 409 when the name is taken. */
  async addCredential(remoteId: string, credential: NewCredential, at: Date): Promise<void> {
    await this.conflictsAsDomainError(
      `remote ${remoteId} already has a credential named ${credential.name}`,
      () =>
        this.dataSource.transaction(async (tx) => {
          // Serialises concurrent additions to the same remote so that positions stay unique.
          await tx
            .getRepository(RemoteEntity)
            .createQueryBuilder('r')
            .setLock('pessimistic_write')
            .where('r.id = :remoteId', { remoteId })
            .getOne();
          const last = await tx
            .getRepository(RemoteCredentialEntity)
            .createQueryBuilder('c')
            .select('MAX(c.position)', 'max')
            .where('c.remote_id = :remoteId', { remoteId })
            .getRawOne<{ max: number | null }>();
          await this.insertCredential(tx, remoteId, credential, (last?.max ?? -1) + 1, at);
        }),
    );
  }

  async removeCredential(remoteId: string, name: string): Promise<boolean> {
    const result = await this.dataSource
      .getRepository(RemoteCredentialEntity)
      .delete({ remoteId, name });
    return (result.affected ?? 0) > 0;
  }

  /**
   * A credential of the remote — the given one, or the first (the default) — with its plaintext key
   * and its cluster permissions when known; null when there is none.
   */
  async credential(
    remoteId: string,
    credentialId: string | null,
  ): Promise<{ name: string; key: string; permissions: string[] | null } | null> {
    const repository = this.dataSource.getRepository(RemoteCredentialEntity);
    const credential = credentialId
      ? await repository.findOneBy({ remoteId, id: credentialId })
      : await repository.findOne({ where: { remoteId }, order: { position: 'ASC' } });
    if (!credential) return null;
    return {
      name: credential.name,
      key: this.box.open(credential.sealedKey, sealContext(remoteId, credential.name)),
      permissions: credential.permissions,
    };
  }

  private async insertCredential(
    tx: EntityManager,
    remoteId: string,
    credential: NewCredential,
    position: number,
    at: Date,
  ): Promise<void> {
    const parsed = parseAgentApiKey(credential.key);
    if (!parsed) throw new Error('credential key was not validated');
    await tx.getRepository(RemoteCredentialEntity).insert({
      id: randomUUID(),
      remoteId,
      name: credential.name,
      keyId: parsed.id,
      sealedKey: this.box.seal(credential.key, sealContext(remoteId, credential.name)),
      permissions: credential.permissions ? [...credential.permissions] : null,
      position,
      createdAt: at,
    });
  }

  private async conflictsAsDomainError<T>(message: string, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (error) {
      if (isUniqueViolation(error)) {
        throw new DomainError(ErrorCode.Conflict, message);
      }
      throw error;
    }
  }
}

/** What a sealed key is bound to: moving it to another row makes it unreadable. */
function sealContext(remoteId: string, credentialName: string): string {
  return `remote-credential:${remoteId}:${credentialName}`;
}

function toModel(remote: RemoteEntity, credentials: RemoteCredentialEntity[]): Remote {
  return {
    id: remote.id,
    description: remote.description,
    endpoints: remote.endpoints,
    caCertPem: remote.caCertPem,
    caFingerprint: remote.caFingerprint,
    credentials: credentials.map((c) => ({ name: c.name, keyId: c.keyId, createdAt: c.createdAt })),
    createdAt: remote.createdAt,
    updatedAt: remote.updatedAt,
  };
}
