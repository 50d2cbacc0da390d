import { Controller, Get, Param, Query } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import { ZodResponse } from 'nestjs-zod';
import { CurrentCaller, type Caller } from '../auth/caller';
import { RequirePrivilege } from '../auth/privilege.decorator';
import {
  RefreshQueryDto,
  RemoteNodesDto,
  RemoteResourceParamsDto,
  RemoteStatusListDto,
  RemoteVmsDto,
  ResourceListDto,
  ResourceQueryDto,
  VmParamsDto,
  VmResourceDto,
} from './resources.dto';
import { ResourcesService } from './resources.service';

@ApiTags('resources')
@Controller('api/v1')
export class ResourcesController {
  constructor(private readonly resources: ResourcesService) {}

  @Get('resources')
  @RequirePrivilege('remote.audit', '/remotes', { partial: true })
  @ZodResponse({ type: ResourceListDto, description: 'Nodes and VMs of every remote the caller may see, from the cache, with each remote\'s status' })
  list(@CurrentCaller() caller: Caller, @Query() query: ResourceQueryDto) {
    return this.resources.list(caller, query);
  }

  // A GET: refreshing the cache reads the remotes and changes nothing, so read-only callers may ask for it.
  @Get('resources/refresh')
  @RequirePrivilege('remote.audit', '/remotes', { partial: true })
  @ZodResponse({ status: 200, type: RemoteStatusListDto, description: 'Reads every visible remote (or ?remote=) now: statuses after the refresh, or after the remote timeout' })
  refresh(@CurrentCaller() caller: Caller, @Query() query: RefreshQueryDto) {
    return this.resources.refreshNow(caller, query.remote);
  }

  @Get('remotes/:remote/nodes')
  @RequirePrivilege('remote.audit', '/remotes/{remote}')
  @ZodResponse({ type: RemoteNodesDto })
  nodes(@Param() params: RemoteResourceParamsDto) {
    return this.resources.nodesOf(params.remote);
  }

  @Get('remotes/:remote/vms')
  @RequirePrivilege('vm.audit', '/remotes/{remote}', { partial: true })
  @ZodResponse({ type: RemoteVmsDto })
  vms(@CurrentCaller() caller: Caller, @Param() params: RemoteResourceParamsDto) {
    return this.resources.vmsOf(caller, params.remote);
  }

  @Get('remotes/:remote/vms/:vmid')
  @RequirePrivilege('vm.audit', '/remotes/{remote}/vms/{vmid}')
  @ZodResponse({ type: VmResourceDto })
  vm(@Param() params: VmParamsDto) {
    return this.resources.vm(params.remote, params.vmid);
  }
}
