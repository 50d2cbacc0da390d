import { Body, Controller, Delete, Get, HttpCode, Param, Post, Put } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import { ZodResponse } from 'nestjs-zod';
import { Audited } from '../audit/audited.decorator';
import { RequirePrivilege } from '../authz/privilege.decorator';
import {
  CreateGroupDto,
  GroupDto,
  GroupListDto,
  GroupMembersDto,
  GroupParamsDto,
  UpdateGroupDto,
} from './groups.dto';
import { GroupsService } from './groups.service';

@ApiTags('access')
@Controller('api/v1/access/groups')
export class GroupsController {
  constructor(private readonly groups: GroupsService) {}

  @Get()
  @RequirePrivilege('access.audit', '/')
  @ZodResponse({ type: GroupListDto, description: 'Groups with their member counts' })
  list() {
    return this.groups.list();
  }

  @Post()
  @RequirePrivilege('access.modify', '/')
  @Audited('access.group.create', { target: '/access' })
  @ZodResponse({ status: 201, type: GroupDto })
  create(@Body() body: CreateGroupDto) {
    return this.groups.create(body);
  }

  @Get(':group')
  @RequirePrivilege('access.audit', '/')
  @ZodResponse({
    type: GroupDto,
    description: 'The group with its members and where each membership comes from',
  })
  get(@Param() params: GroupParamsDto) {
    return this.groups.get(params.group);
  }

  @Put(':group')
  @RequirePrivilege('access.modify', '/')
  @Audited('access.group.update', { target: '/access' })
  @ZodResponse({ type: GroupDto })
  update(@Param() params: GroupParamsDto, @Body() body: UpdateGroupDto) {
    return this.groups.update(params.group, body);
  }

  @Delete(':group')
  @HttpCode(204)
  @RequirePrivilege('access.modify', '/')
  @Audited('access.group.delete', { target: '/access' })
  delete(@Param() params: GroupParamsDto): Promise<void> {
    return this.groups.delete(params.group);
  }

  @Put(':group/members')
  @RequirePrivilege('access.modify', '/')
  @Audited('access.group.update', { target: '/access' })
  @ZodResponse({
    type: GroupDto,
    description: 'Replaces the locally managed members; realm-managed ones stay',
  })
  setMembers(@Param() params: GroupParamsDto, @Body() body: GroupMembersDto) {
    return this.groups.setMembers(params.group, body.users);
  }
}
