import { Controller, Get } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import { ZodResponse } from 'nestjs-zod';
import { CurrentCaller, type Caller } from '../authz/caller';
import { RequirePrivilege } from '../authz/privilege.decorator';
import { DashboardDto } from './dashboard.dto';
import { DashboardService } from './dashboard.service';

@ApiTags('dashboard')
@Controller('api/v1/dashboard')
export class DashboardController {
  constructor(private readonly dashboard: DashboardService) {}

  @Get()
  @RequirePrivilege('remote.audit', '/remotes', { partial: true })
  @ZodResponse({
    type: DashboardDto,
    description:
      'Every remote the caller may see with its figures, recent use and alerts; the totals; the tasks in progress',
  })
  get(@CurrentCaller() caller: Caller) {
    return this.dashboard.get(caller);
  }
}
