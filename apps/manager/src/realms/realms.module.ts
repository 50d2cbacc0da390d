import { Module, type BeforeApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { AclModule } from '../acl/acl.module';
import { GroupsModule } from '../groups/groups.module';
import { SchedulerService } from '../scheduler/scheduler.service';
import { TokensModule } from '../tokens/tokens.module';
import { UsersModule } from '../users/users.module';
import { LdapBindStrategy } from './ldap-bind.strategy';
import { LdapDirectoryRepository } from './ldap-directory.repository';
import { OidcClientRepository } from './oidc-client.repository';
import { RealmsController } from './realms.controller';
import { RealmSyncService } from './realm-sync.service';
import { RealmsRepository } from './realms.repository';
import { RealmsService, SYNC_TICK_MS } from './realms.service';

/** The scheduler job that starts the LDAP realms' scheduled syncs when they are due. */
export const REALM_SYNC_JOB = 'realms.sync';

/**
 * Realms: local, LDAP/AD and OpenID Connect; directory logins and syncs. Scheduled LDAP syncs run
 * as a scheduler job; syncs asked for through the API are awaited before the application shuts down.
 */
@Module({
  imports: [AclModule, GroupsModule, TokensModule, UsersModule],
  controllers: [RealmsController],
  providers: [
    RealmsService,
    RealmsRepository,
    RealmSyncService,
    LdapDirectoryRepository,
    LdapBindStrategy,
    OidcClientRepository,
  ],
  exports: [RealmsService, OidcClientRepository],
})
export class RealmsModule implements OnModuleInit, BeforeApplicationShutdown {
  constructor(
    private readonly realms: RealmsService,
    private readonly scheduler: SchedulerService,
  ) {}

  onModuleInit(): void {
    this.scheduler.register({
      name: REALM_SYNC_JOB,
      timing: { everyMs: SYNC_TICK_MS },
      run: () => this.realms.runDueSyncs(),
    });
  }

  async beforeApplicationShutdown(): Promise<void> {
    await this.realms.idle();
  }
}
