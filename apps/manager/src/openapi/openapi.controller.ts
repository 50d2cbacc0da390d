import { Controller, Get } from '@nestjs/common';
import { ApiExcludeEndpoint } from '@nestjs/swagger';
import { RequirePrivilege } from '../authz/privilege.decorator';
import { OpenApiService } from './openapi.service';

@Controller('api/v1')
export class OpenApiController {
  constructor(private readonly openApi: OpenApiService) {}

  @Get('openapi.json')
  @RequirePrivilege('system.audit', '/')
  @ApiExcludeEndpoint()
  document() {
    return this.openApi.get();
  }
}
