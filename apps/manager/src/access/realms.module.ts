import { Module } from '@nestjs/common';
import { RealmsService } from './realms.service';

/** Realms: local, LDAP/AD and OpenID Connect; directory logins and syncs. */
@Module({ providers: [RealmsService], exports: [RealmsService] })
export class RealmsModule {}
