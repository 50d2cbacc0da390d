import { Module } from '@nestjs/common';
import { AclModule } from '../acl/acl.module';
import { TokensModule } from '../tokens/tokens.module';
import { GroupsController } from './groups.controller';
import { GroupsRepository } from './groups.repository';
import { GroupsService } from './groups.service';
import { VmOwnersController } from './vm-owners.controller';
import { VmOwnersService } from './vm-owners.service';

/**
 * Manager groups, their members and the VMs tenant groups own. Owns `groups`, `group_members` and
 * `vm_ownership`; removing a group removes its tokens and grants through their owners.
 */
@Module({
  imports: [AclModule, TokensModule],
  controllers: [GroupsController, VmOwnersController],
  providers: [GroupsService, VmOwnersService, GroupsRepository],
  exports: [GroupsService],
})
export class GroupsModule {}
