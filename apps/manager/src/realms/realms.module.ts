import {
  Module,
  type BeforeApplicationShutdown,
  type OnApplicationBootstrap,
} from '@nestjs/common';
import { LdapDirectoryRepository } from './ldap-directory.repository';
import { OidcClientRepository } from './oidc-client.repository';
import { RealmsController } from './realms.controller';
import { RealmsRepository } from './realms.repository';
import { RealmsService, SYNC_TICK_MS } from './realms.service';

/**
 * Realms: local, LDAP/AD and OpenID Connect; directory logins and syncs. Scheduled LDAP syncs run
 * from a timer started once the application is up and stopped before it shuts down.
 */
@Module({
  controllers: [RealmsController],
  providers: [RealmsService, RealmsRepository, LdapDirectoryRepository, OidcClientRepository],
  exports: [RealmsService, OidcClientRepository],
})
export class RealmsModule implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly realms: RealmsService) {}

  onApplicationBootstrap(): void {
    // runDueSyncs never throws and skips realms whose sync is still running.
    this.timer = setInterval(() => void this.realms.runDueSyncs(), SYNC_TICK_MS);
    this.timer.unref();
  }

  async beforeApplicationShutdown(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.realms.idle();
  }
}
