import { Module } from '@nestjs/common';
import { AuthModule } from '../authn/auth.module';
import { AccessService } from './access.service';
import { AuthController } from './auth.controller';
import { LoginRepository } from './login.repository';
import { LoginService } from './login.service';
import { SessionHousekeepingService } from './session-housekeeping.service';
import { RealmsModule } from '../realms/realms.module';
import { TfaController } from './tfa/tfa.controller';
import { TfaRepository } from './tfa/tfa.repository';
import { TfaService } from './tfa/tfa.service';
import { WebauthnVerifierRepository } from './tfa/webauthn-verifier.repository';
import { WebauthnController } from './tfa/webauthn.controller';
import { WebauthnService } from './tfa/webauthn.service';

/** Identity and access: login and sessions, second factors, users, groups, ACLs, tokens, realms. */
@Module({
  imports: [AuthModule, RealmsModule],
  controllers: [AuthController, TfaController, WebauthnController],
  providers: [
    AccessService,
    LoginService,
    LoginRepository,
    SessionHousekeepingService,
    TfaService,
    TfaRepository,
    WebauthnService,
    WebauthnVerifierRepository,
  ],
  exports: [LoginService, AccessService],
})
export class SessionsModule {}
