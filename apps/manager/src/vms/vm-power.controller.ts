import { Controller, Param, Post } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import { ZodResponse } from 'nestjs-zod';
import { Audited } from '../audit/audited.decorator';
import { CurrentCaller, type Caller } from '../authz/caller';
import { RequirePrivilege } from '../authz/privilege.decorator';
import { TaskAcceptedDto } from '../tasks/tasks.dto';
import { VmTargetParamsDto } from './vm-power.dto';
import { VmPowerService } from './vm-power.service';

const ACCEPTED = {
  status: 202,
  type: TaskAcceptedDto,
  description: 'Accepted: follow the task at /api/v1/tasks/{taskId}',
} as const;

@ApiTags('vms')
@Controller('api/v1/remotes/:remote/vms/:vmid')
export class VmPowerController {
  constructor(private readonly power: VmPowerService) {}

  @Post('start')
  @RequirePrivilege('vm.power', '/remotes/{remote}/vms/{vmid}')
  @Audited('vm.power.start')
  @ZodResponse(ACCEPTED)
  start(@CurrentCaller() caller: Caller, @Param() params: VmTargetParamsDto) {
    return this.power.request(caller, params.remote, params.vmid, 'start');
  }

  @Post('shutdown')
  @RequirePrivilege('vm.power', '/remotes/{remote}/vms/{vmid}')
  @Audited('vm.power.shutdown')
  @ZodResponse(ACCEPTED)
  shutdown(@CurrentCaller() caller: Caller, @Param() params: VmTargetParamsDto) {
    return this.power.request(caller, params.remote, params.vmid, 'shutdown');
  }

  @Post('reboot')
  @RequirePrivilege('vm.power', '/remotes/{remote}/vms/{vmid}')
  @Audited('vm.power.reboot')
  @ZodResponse(ACCEPTED)
  reboot(@CurrentCaller() caller: Caller, @Param() params: VmTargetParamsDto) {
    return this.power.request(caller, params.remote, params.vmid, 'reboot');
  }

  @Post('stop')
  @RequirePrivilege('vm.power', '/remotes/{remote}/vms/{vmid}')
  @Audited('vm.power.stop')
  @ZodResponse(ACCEPTED)
  stop(@CurrentCaller() caller: Caller, @Param() params: VmTargetParamsDto) {
    return this.power.request(caller, params.remote, params.vmid, 'stop');
  }
}
