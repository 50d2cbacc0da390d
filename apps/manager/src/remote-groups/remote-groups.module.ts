import { Module } from '@nestjs/common';
import { AclModule } from '../acl/acl.module';
import { RemoteGroupsController } from './remote-groups.controller';
import { RemoteGroupsRepository } from './remote-groups.repository';
import { RemoteGroupsService } from './remote-groups.service';

/** Remote groups: which credential members act with on each remote. Owns `remote_groups`. */
@Module({
  imports: [AclModule],
  controllers: [RemoteGroupsController],
  providers: [RemoteGroupsService, RemoteGroupsRepository],
})
export class RemoteGroupsModule {}
