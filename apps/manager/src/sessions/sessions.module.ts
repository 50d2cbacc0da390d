import { Module } from '@nestjs/common';
import { AccessService } from './access.service';
import { AuthController } from './auth.controller';
import { LoginRepository } from './login.repository';
import { LoginService } from './login.service';
import { SessionHousekeepingService } from './session-housekeeping.service';
import { RealmsModule } from '../realms/realms.module';
import { UsersModule } from '../users/users.module';
import { MANAGER_IDENTITY, type ManagerIdentity } from '../pki/state-dir.repository';
import { CsrfTokens } from './session-secrets';
import { SessionsService } from './sessions.service';
import { TfaController } from './tfa/tfa.controller';
import { TfaRepository } from './tfa/tfa.repository';
import { TfaService } from './tfa/tfa.service';
import { WebauthnVerifierRepository } from './tfa/webauthn-verifier.repository';
import { WebauthnController } from './tfa/webauthn.controller';
import { WebauthnService } from './tfa/webauthn.service';

/**
 * Login and sessions, second factors (TOTP, WebAuthn, recovery codes). Owns `sessions`,
 * `login_throttles` and the second-factor tables; SessionsService holds the one rule for ending
 * a user's sessions.
 */
@Module({
  imports: [RealmsModule, UsersModule],
  controllers: [AuthController, TfaController, WebauthnController],
  providers: [
    AccessService,
    LoginService,
    LoginRepository,
    SessionHousekeepingService,
    SessionsService,
    {
      provide: CsrfTokens,
      useFactory: (identity: ManagerIdentity) => new CsrfTokens(identity.secretKey),
      inject: [MANAGER_IDENTITY],
    },
    TfaService,
    TfaRepository,
    WebauthnService,
    WebauthnVerifierRepository,
  ],
  exports: [LoginService, AccessService, SessionsService],
})
export class SessionsModule {}
