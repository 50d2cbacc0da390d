import { Body, Controller, Delete, Get, HttpCode, Param, Put, Query } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import { ZodResponse } from 'nestjs-zod';
import { Audited } from '../audit/audited.decorator';
import { RequirePrivilege } from '../authz/privilege.decorator';
import {
  SetVmOwnerDto,
  VmOwnerDto,
  VmOwnerListDto,
  VmOwnerParamsDto,
  VmOwnerQueryDto,
} from './vm-owners.dto';
import { VmOwnersService } from './vm-owners.service';

@ApiTags('access')
@Controller('api/v1/access/vm-owners')
export class VmOwnersController {
  constructor(private readonly owners: VmOwnersService) {}

  @Get()
  @RequirePrivilege('access.audit', '/')
  @ZodResponse({ type: VmOwnerListDto, description: 'Which tenant group owns which VM' })
  list(@Query() query: VmOwnerQueryDto) {
    return this.owners.list(query.group);
  }

  @Put(':vmid')
  @RequirePrivilege('access.modify', '/')
  @Audited('access.vm-owner.set', { target: '/access' })
  @ZodResponse({ type: VmOwnerDto, description: 'The VM now belongs to the tenant group' })
  set(@Param() params: VmOwnerParamsDto, @Body() body: SetVmOwnerDto) {
    return this.owners.set(params.vmid, body.tenantGroup);
  }

  @Delete(':vmid')
  @HttpCode(204)
  @RequirePrivilege('access.modify', '/')
  @Audited('access.vm-owner.clear', { target: '/access' })
  clear(@Param() params: VmOwnerParamsDto): Promise<void> {
    return this.owners.clear(params.vmid);
  }
}
