import { Body, Controller, Delete, Get, HttpCode, Param, Post, Put } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import { ZodResponse } from 'nestjs-zod';
import { Audited } from '../audit/audited.decorator';
import { RequirePrivilege } from '../authz/privilege.decorator';
import {
  CreateRemoteGroupDto,
  RemoteGroupDto,
  RemoteGroupListDto,
  RemoteGroupParamsDto,
  UpdateRemoteGroupDto,
} from './remote-groups.dto';
import { RemoteGroupsService } from './remote-groups.service';

@ApiTags('remote-groups')
@Controller('api/v1/remote-groups')
export class RemoteGroupsController {
  constructor(private readonly groups: RemoteGroupsService) {}

  @Get()
  @RequirePrivilege('remote.audit', '/')
  @ZodResponse({ type: RemoteGroupListDto })
  list() {
    return this.groups.list();
  }

  @Post()
  @RequirePrivilege('remote.modify', '/')
  @Audited('access.remote-group.create', { target: '/groups/{body.id}' })
  @ZodResponse({ status: 201, type: RemoteGroupDto })
  create(@Body() body: CreateRemoteGroupDto) {
    return this.groups.create(body);
  }

  @Get(':group')
  @RequirePrivilege('remote.audit', '/')
  @ZodResponse({ type: RemoteGroupDto })
  get(@Param() params: RemoteGroupParamsDto) {
    return this.groups.get(params.group);
  }

  @Put(':group')
  @RequirePrivilege('remote.modify', '/')
  @Audited('access.remote-group.update', { target: '/groups/{group}' })
  @ZodResponse({ type: RemoteGroupDto, description: 'The entries replaced' })
  update(@Param() params: RemoteGroupParamsDto, @Body() body: UpdateRemoteGroupDto) {
    return this.groups.update(params.group, body);
  }

  @Delete(':group')
  @HttpCode(204)
  @RequirePrivilege('remote.modify', '/')
  @Audited('access.remote-group.delete', { target: '/groups/{group}' })
  delete(@Param() params: RemoteGroupParamsDto): Promise<void> {
    return this.groups.delete(params.group);
  }
}
