import { Module } from '@nestjs/common';
import { AccessAdminRepository } from './access-admin.repository';
import { AclController } from '../acl/acl.controller';
import { AclService } from '../acl/acl.service';
import { GroupsController } from '../groups/groups.controller';
import { GroupsService } from '../groups/groups.service';
import { PasswordPolicy } from '../users/password-policy';
import { RemoteGroupsController } from '../remote-groups/remote-groups.controller';
import { RemoteGroupsRepository } from '../remote-groups/remote-groups.repository';
import { RemoteGroupsService } from '../remote-groups/remote-groups.service';
import { TokensController } from '../tokens/tokens.controller';
import { TokensService } from '../tokens/tokens.service';
import { UsersController } from '../users/users.controller';
import { UsersService } from '../users/users.service';
import { VmOwnersController } from '../acl/vm-owners.controller';
import { VmOwnersService } from '../acl/vm-owners.service';

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
