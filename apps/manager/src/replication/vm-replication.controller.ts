import { Body, Controller, Delete, Get, HttpCode, Param, Post, Query } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import { ZodResponse } from 'nestjs-zod';
import { Audited } from '../audit/audited.decorator';
import { CurrentCaller, type Caller } from '../authz/caller';
import { RequirePrivilege } from '../authz/privilege.decorator';
import { TaskAcceptedDto } from '../tasks/tasks.dto';
import { VmTargetParamsDto } from '../vms/vm-power.dto';
import {
  EmptyBodyDto,
  EnableReplicationDto,
  FailoverDto,
  FailoverPreviewDto,
  SwitchoverDto,
  VmReplicationDto,
  VmReplicationListDto,
  VmReplicationQueryDto,
} from './replication.dto';
import { VmReplicationService } from './vm-replication.service';

const ACCEPTED = {
  status: 202,
  type: TaskAcceptedDto,
  description: 'Accepted: follow the task at /api/v1/tasks/{taskId}',
} as const;
const VM = '/remotes/{remote}/vms/{vmid}';

/**
 * A VM's mirroring and DR actions, at either of its two remotes. vm.replicate (Manage) enables,
 * disables, switches over and resyncs; vm.failover (Admin) fails over; vm.audit reads.
 */
@ApiTags('replication')
@Controller('api/v1/remotes/:remote/vms/:vmid/replication')
export class VmReplicationController {
  constructor(private readonly replication: VmReplicationService) {}

  @Get()
  @RequirePrivilege('vm.audit', VM)
  @ZodResponse({
    status: 200,
    type: VmReplicationDto,
    description: 'DR state, RPO against its target, and every image at both sites, read now',
  })
  get(@Param() params: VmTargetParamsDto) {
    return this.replication.get(params.remote, params.vmid);
  }

  @Post()
  @RequirePrivilege('vm.replicate', VM)
  @Audited('vm.replication.enable')
  @ZodResponse(ACCEPTED)
  enable(
    @CurrentCaller() caller: Caller,
    @Param() params: VmTargetParamsDto,
    @Body() body: EnableReplicationDto,
  ) {
    return this.replication.enable(caller, params.remote, params.vmid, body);
  }

  @Delete()
  @HttpCode(202)
  @RequirePrivilege('vm.replicate', VM)
  @Audited('vm.replication.disable')
  @ZodResponse(ACCEPTED)
  disable(@CurrentCaller() caller: Caller, @Param() params: VmTargetParamsDto) {
    return this.replication.disable(caller, params.remote, params.vmid);
  }

  @Post('switchover')
  @RequirePrivilege('vm.replicate', VM)
  @Audited('vm.replication.switchover')
  @ZodResponse(ACCEPTED)
  switchover(
    @CurrentCaller() caller: Caller,
    @Param() params: VmTargetParamsDto,
    @Body() body: SwitchoverDto,
  ) {
    return this.replication.switchover(caller, params.remote, params.vmid, body);
  }

  @Get('failover')
  @RequirePrivilege('vm.audit', VM)
  @ZodResponse({
    status: 200,
    type: FailoverPreviewDto,
    description:
      'The data at risk (RPO, last mirrored snapshot) and what a failover would require — shown before the operator confirms',
  })
  failoverPreview(@Param() params: VmTargetParamsDto) {
    return this.replication.failoverPreview(params.remote, params.vmid);
  }

  @Post('failover')
  @RequirePrivilege('vm.failover', VM)
  @Audited('vm.replication.failover')
  @ZodResponse(ACCEPTED)
  failover(
    @CurrentCaller() caller: Caller,
    @Param() params: VmTargetParamsDto,
    @Body() body: FailoverDto,
  ) {
    return this.replication.failover(caller, params.remote, params.vmid, body);
  }

  @Post('resync')
  @RequirePrivilege('vm.replicate', VM)
  @Audited('vm.replication.resync')
  @ZodResponse(ACCEPTED)
  resync(
    @CurrentCaller() caller: Caller,
    @Param() params: VmTargetParamsDto,
    @Body() _body: EmptyBodyDto,
  ) {
    return this.replication.resync(caller, params.remote, params.vmid);
  }
}

/** Every mirrored VM the caller may see. */
@ApiTags('replication')
@Controller('api/v1/replication/vms')
export class ReplicationVmsController {
  constructor(private readonly replication: VmReplicationService) {}

  @Get()
  @RequirePrivilege('vm.audit', '/', { partial: true })
  @ZodResponse({
    status: 200,
    type: VmReplicationListDto,
    description: "Mirrored VMs (a tenant's only), DR state and RPO from the last status poll",
  })
  list(@CurrentCaller() caller: Caller, @Query() query: VmReplicationQueryDto) {
    return this.replication.list(caller, query);
  }
}
