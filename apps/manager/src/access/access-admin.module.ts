import { Module } from '@nestjs/common';
import { AccessAdminRepository } from './access-admin.repository';
import { AclController } from './acl.controller';
import { AclService } from './acl.service';
import { GroupsController } from './groups.controller';
import { GroupsService } from './groups.service';
import { PasswordPolicy } from './password-policy';
import { RemoteGroupsController } from './remote-groups.controller';
import { RemoteGroupsRepository } from './remote-groups.repository';
import { RemoteGroupsService } from './remote-groups.service';
import { TokensController } from './tokens.controller';
import { TokensService } from './tokens.service';
import { UsersController } from './users.controller';
import { UsersService } from './users.service';
import { VmOwnersController } from './vm-owners.controller';
import { VmOwnersService } from './vm-owners.service';

/**
 * Administration of identity and access: users, groups, ACL entries, API tokens, VM ownership and
 * remote groups (AuthModule, which it relies on for invalidation and rate limits, is global).
 */
@Module({
  controllers: [
    UsersController,
    GroupsController,
    AclController,
    TokensController,
    VmOwnersController,
    RemoteGroupsController,
  ],
  providers: [
    AccessAdminRepository,
    RemoteGroupsRepository,
    PasswordPolicy,
    UsersService,
    GroupsService,
    AclService,
    TokensService,
    VmOwnersService,
    RemoteGroupsService,
  ],
  exports: [PasswordPolicy],
})
export class AccessAdminModule {}
