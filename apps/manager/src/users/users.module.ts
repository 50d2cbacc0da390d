import { Module } from '@nestjs/common';
import { AclModule } from '../acl/acl.module';
import { TokensModule } from '../tokens/tokens.module';
import { PasswordPolicy } from './password-policy';
import { UserSessions } from './user-sessions';
import { UsersController } from './users.controller';
import { UsersRepository } from './users.repository';
import { UsersService } from './users.service';

/**
 * Users and their passwords. Owns `users`; removing a user removes its tokens and grants through
 * their owners, and ending its sessions goes through the rule SessionsModule registers with
 * UserSessions.
 */
@Module({
  imports: [AclModule, TokensModule],
  controllers: [UsersController],
  providers: [UsersService, UsersRepository, UserSessions, PasswordPolicy],
  exports: [UsersService, UserSessions],
})
export class UsersModule {}
