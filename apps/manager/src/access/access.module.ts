import { Module } from '@nestjs/common';
import { AuthModule } from '../auth/auth.module';
import { AccessService } from './access.service';
import { AuthController } from './auth.controller';
import { LoginRepository } from './login.repository';
import { LoginService } from './login.service';
import { RealmsModule } from './realms.module';
import { TfaController } from './tfa.controller';
import { TfaRepository } from './tfa.repository';
import { TfaService } from './tfa.service';
import { WebauthnVerifierRepository } from './webauthn-verifier.repository';
import { WebauthnController } from './webauthn.controller';
import { WebauthnService } from './webauthn.service';

/** Identity and access: login and sessions, second factors, users, groups, ACLs, tokens, realms. */
@Module({
  imports: [AuthModule, RealmsModule],
  controllers: [AuthController, TfaController, WebauthnController],
  providers: [
    AccessService,
    LoginService,
    LoginRepository,
    TfaService,
    TfaRepository,
    WebauthnService,
    WebauthnVerifierRepository,
  ],
  exports: [LoginService, AccessService],
})
export class AccessModule {}
