import { Controller, Delete, Get, HttpCode, Param, Post, Query } from '@nestjs/common';
import { Audited } from '../audit/audited.decorator';
import { ApiTags } from '@nestjs/swagger';
import { ZodResponse } from 'nestjs-zod';
import { CurrentCaller, type Caller } from '../authz/caller';
import { RequirePrivilege } from '../authz/privilege.decorator';
import {
  RefreshQueryDto,
  RemoteNodesDto,
  RemoteResourceParamsDto,
  RemoteStatusListDto,
  RemoteVmsDto,
  ResourceListDto,
  ResourceQueryDto,
  NodeParamsDto,
  VmDetailDto,
  VmParamsDto,
} from './resources.dto';
import { ResourcesService } from './resources.service';

@ApiTags('resources')
@Controller('api/v1')
export class ResourcesController {
  constructor(private readonly resources: ResourcesService) {}

  @Get('resources')
  @RequirePrivilege('remote.audit', '/remotes', { partial: true })
  @ZodResponse({
    type: ResourceListDto,
    description:
      "One page of the nodes and VMs of every remote the caller may see that match the query (from the cache), how many match, and each remote's status",
  })
  list(@CurrentCaller() caller: Caller, @Query() query: ResourceQueryDto) {
    return this.resources.list(caller, query);
  }

  // A GET: refreshing the cache reads the remotes and changes nothing, so read-only callers may ask for it.
  @Get('resources/refresh')
  @RequirePrivilege('remote.audit', '/remotes', { partial: true })
  @ZodResponse({
    status: 200,
    type: RemoteStatusListDto,
    description:
      'Reads every visible remote (or ?remote=) now: statuses after the refresh, or after the remote timeout',
  })
  refresh(@CurrentCaller() caller: Caller, @Query() query: RefreshQueryDto) {
    return this.resources.refreshNow(caller, query.remote);
  }

  @Get('remotes/:remote/nodes')
  @RequirePrivilege('remote.audit', '/remotes/{remote}')
  @ZodResponse({ type: RemoteNodesDto })
  nodes(@CurrentCaller() caller: Caller, @Param() params: RemoteResourceParamsDto) {
    return this.resources.nodesOf(caller, params.remote);
  }

  // Known nodes never vanish on their own: decommissioning or forgetting one that does not answer
  // is an operator's decision, audited.
  @Post('remotes/:remote/nodes/:node/decommission')
  @HttpCode(204)
  @RequirePrivilege('remote.modify', '/remotes/{remote}')
  @Audited('remote.node.decommission', { target: '/remotes/{remote}/nodes/{node}' })
  decommissionNode(@Param() params: NodeParamsDto): Promise<void> {
    return this.resources.decommissionNode(params.remote, params.node);
  }

  @Delete('remotes/:remote/nodes/:node')
  @HttpCode(204)
  @RequirePrivilege('remote.modify', '/remotes/{remote}')
  @Audited('remote.node.forget', { target: '/remotes/{remote}/nodes/{node}' })
  forgetNode(@Param() params: NodeParamsDto): Promise<void> {
    return this.resources.forgetNode(params.remote, params.node);
  }

  @Get('remotes/:remote/vms')
  @RequirePrivilege('vm.audit', '/remotes/{remote}', { partial: true })
  @ZodResponse({ type: RemoteVmsDto })
  vms(@CurrentCaller() caller: Caller, @Param() params: RemoteResourceParamsDto) {
    return this.resources.vmsOf(caller, params.remote);
  }

  @Get('remotes/:remote/vms/:vmid')
  @RequirePrivilege('vm.audit', '/remotes/{remote}/vms/{vmid}')
  @ZodResponse({
    type: VmDetailDto,
    description:
      'The VM with its disks, NICs and CPU baseline, and the privileges the caller holds on it',
  })
  vm(@CurrentCaller() caller: Caller, @Param() params: VmParamsDto) {
    return this.resources.vm(caller, params.remote, params.vmid);
  }
}
