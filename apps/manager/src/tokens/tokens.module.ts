import { Module } from '@nestjs/common';
import { AclModule } from '../acl/acl.module';
import { TokensController } from './tokens.controller';
import { TokensRepository } from './tokens.repository';
import { TokensService } from './tokens.service';

/** API tokens of users and groups. Owns `api_tokens`; a token's own grants go through AclModule. */
@Module({
  imports: [AclModule],
  controllers: [TokensController],
  providers: [TokensService, TokensRepository],
  exports: [TokensService],
})
export class TokensModule {}
