import { Module } from '@nestjs/common';
import { AclController } from './acl.controller';
import { AclRepository } from './acl.repository';
import { AclService } from './acl.service';

/**
 * ACL entries: roles granted to users, groups and tokens on paths. Owns `acl_entries`; features
 * that grant, move or remove entries (tokens, users, groups, realms, remote groups, migration)
 * import this module and call AclService.
 */
@Module({
  controllers: [AclController],
  providers: [AclService, AclRepository],
  exports: [AclService],
})
export class AclModule {}
