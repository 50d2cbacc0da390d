import { Module } from '@nestjs/common';
import { MetricsModule } from '../health/metrics.module';
import { SessionsModule } from './sessions.module';
import { OidcLoginController } from './oidc-login.controller';
import { OidcLoginRepository } from './oidc-login.repository';
import { OidcLoginService } from './oidc-login.service';
import { RealmsModule } from '../realms/realms.module';

/**
 * Browser logins through OpenID Connect realms (authorization code flow), ending in a LoginService
 * session. OidcClientRepository (with its discovery cache) comes from RealmsModule.
 */
@Module({
  imports: [SessionsModule, RealmsModule, MetricsModule],
  controllers: [OidcLoginController],
  providers: [OidcLoginService, OidcLoginRepository],
})
export class OidcLoginModule {}
