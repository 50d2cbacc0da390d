import { Body, Controller, HttpCode, Param, Post } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import { ZodResponse } from 'nestjs-zod';
import { Audited } from '../audit/audited.decorator';
import { CurrentCaller, type Caller } from '../authz/caller';
import { RequirePrivilege } from '../authz/privilege.decorator';
import { TaskAcceptedDto } from '../tasks/tasks.dto';
import { VmTargetParamsDto } from '../vms/vm-power.dto';
import { MigrateBodyDto, PreflightAnswerDto } from './migration.dto';
import { MigrationService } from './migration.service';

/** vm.migrate on the VM here; the service also requires it on the target remote (`/remotes/{targetRemote}`). */
@ApiTags('vms')
@Controller('api/v1/remotes/:remote/vms/:vmid/migrate')
export class MigrationController {
  constructor(private readonly migration: MigrationService) {}

  @Post('preflight')
  @HttpCode(200)
  @RequirePrivilege('vm.migrate', '/remotes/{remote}/vms/{vmid}')
  @Audited('vm.migrate.preflight')
  @ZodResponse({
    status: 200,
    type: PreflightAnswerDto,
    description:
      "Both ends' checks, each pass, warn or fail with a reason; ok when none failed. Nothing is reserved",
  })
  preflight(
    @CurrentCaller() caller: Caller,
    @Param() params: VmTargetParamsDto,
    @Body() body: MigrateBodyDto,
  ) {
    return this.migration.preflight(caller, params.remote, params.vmid, body);
  }

  @Post()
  @RequirePrivilege('vm.migrate', '/remotes/{remote}/vms/{vmid}')
  @Audited('vm.migrate')
  @ZodResponse({
    status: 202,
    type: TaskAcceptedDto,
    description: 'Accepted: follow the migration at /api/v1/tasks/{taskId}',
  })
  migrate(
    @CurrentCaller() caller: Caller,
    @Param() params: VmTargetParamsDto,
    @Body() body: MigrateBodyDto,
  ) {
    return this.migration.request(caller, params.remote, params.vmid, body);
  }
}
