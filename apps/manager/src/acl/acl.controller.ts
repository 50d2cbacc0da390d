import { Body, Controller, Delete, Get, HttpCode, Put, Query } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import { ZodResponse } from 'nestjs-zod';
import { Audited } from '../audit/audited.decorator';
import { RequirePrivilege } from '../authz/privilege.decorator';
import {
  AclEntryDto,
  AclKeyBodyDto,
  AclKeyQueryDto,
  AclListDto,
  AclQueryDto,
  PutAclDto,
} from './acl.dto';
import { AclService } from './acl.service';

@ApiTags('access')
@Controller('api/v1/access/acl')
export class AclController {
  constructor(private readonly acl: AclService) {}

  @Get()
  @RequirePrivilege('access.audit', '/')
  @ZodResponse({
    type: AclListDto,
    description: 'ACL entries (on one path with ?path=, of one principal with ?principal=)',
  })
  list(@Query() query: AclQueryDto) {
    return this.acl.list(query);
  }

  @Put()
  @RequirePrivilege('access.modify', '/')
  @Audited('access.acl.grant', { target: '/access' })
  @ZodResponse({
    type: AclEntryDto,
    description: 'Granted (or the role on that path and principal changed)',
  })
  put(@Body() body: PutAclDto) {
    return this.acl.put(body);
  }

  @Delete()
  @HttpCode(204)
  @RequirePrivilege('access.modify', '/')
  @Audited('access.acl.revoke', { target: '/access' })
  revoke(@Query() query: AclKeyQueryDto, @Body() body: AclKeyBodyDto): Promise<void> {
    return this.acl.revoke({ query, body });
  }
}
