import { Body, Controller, Delete, Get, HttpCode, Param, Post, Put } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import { ZodResponse } from 'nestjs-zod';
import { Audited } from '../audit/audited.decorator';
import { RequirePrivilege } from '../authz/privilege.decorator';
import {
  ChangedRealmDto,
  CreateRealmDto,
  RealmDto,
  RealmListDto,
  RealmParamsDto,
  SyncSummaryDto,
  UpdateRealmDto,
} from './realms.dto';
import { RealmsService } from './realms.service';

@ApiTags('access')
@Controller('api/v1/access/realms')
export class RealmsController {
  constructor(private readonly realms: RealmsService) {}

  @Get()
  @RequirePrivilege('access.audit', '/')
  @ZodResponse({
    type: RealmListDto,
    description: 'Every realm (local, LDAP, OpenID Connect); secrets never included',
  })
  list() {
    return this.realms.list();
  }

  @Post()
  @RequirePrivilege('access.modify', '/')
  @Audited('access.realm.create', { target: '/realms/{body.id}' })
  @ZodResponse({
    status: 201,
    type: ChangedRealmDto,
    description: 'Added; for LDAP the connection test result included',
  })
  create(@Body() body: CreateRealmDto) {
    return this.realms.create(body);
  }

  @Get(':realm')
  @RequirePrivilege('access.audit', '/')
  @ZodResponse({ type: RealmDto })
  get(@Param() params: RealmParamsDto) {
    return this.realms.get(params.realm);
  }

  @Put(':realm')
  @RequirePrivilege('access.modify', '/')
  @Audited('access.realm.update', { target: '/realms/{realm}' })
  @ZodResponse({ type: ChangedRealmDto, description: 'Changed; absent fields stay as they were' })
  update(@Param() params: RealmParamsDto, @Body() body: UpdateRealmDto) {
    return this.realms.update(params.realm, body);
  }

  @Delete(':realm')
  @HttpCode(204)
  @RequirePrivilege('access.modify', '/')
  @Audited('access.realm.delete', { target: '/realms/{realm}' })
  delete(@Param() params: RealmParamsDto): Promise<void> {
    return this.realms.delete(params.realm);
  }

  @Post(':realm/sync')
  @HttpCode(200)
  @RequirePrivilege('access.modify', '/')
  @Audited('access.realm.sync', { target: '/realms/{realm}' })
  @ZodResponse({
    status: 200,
    type: SyncSummaryDto,
    description: 'The LDAP realm’s users and groups synced from its directory',
  })
  sync(@Param() params: RealmParamsDto) {
    return this.realms.sync(params.realm);
  }
}
