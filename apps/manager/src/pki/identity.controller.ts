import { Controller, Get } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import { ZodResponse } from 'nestjs-zod';
import { RequirePrivilege } from '../authz/privilege.decorator';
import { ManagerIdentityDto } from './identity.dto';
import { IdentityService } from './identity.service';

@ApiTags('manager')
@Controller('api/v1/manager')
export class IdentityController {
  constructor(private readonly identity: IdentityService) {}

  @Get('identity')
  @RequirePrivilege('system.audit', '/')
  @ZodResponse({
    type: ManagerIdentityDto,
    description: "The manager's client CA (for agents' tls.clientCas) and HTTPS certificate",
  })
  get() {
    return this.identity.describe();
  }
}
