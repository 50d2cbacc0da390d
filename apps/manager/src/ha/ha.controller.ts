import { Body, Controller, Delete, Get, HttpCode, Param, Post, Put } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import { ZodResponse } from 'nestjs-zod';
import { Audited } from '../audit/audited.decorator';
import { CurrentCaller, type Caller } from '../authz/caller';
import { RequirePrivilege } from '../authz/privilege.decorator';
import { TaskAcceptedDto } from '../tasks/tasks.dto';
import {
  HaNodeDto,
  HaNodeParamsDto,
  HaOverviewDto,
  HaPolicyDto,
  HaRemoteParamsDto,
  HaVmParamsDto,
  RemoteHaDto,
  VmHaDto,
} from './ha.dto';
import { HaService } from './ha.service';

const VM = '/remotes/{remote}/vms/{vmid}';
const REMOTE = '/remotes/{remote}';
const NODE = '/remotes/{remote}/nodes/{node}';

/**
 * High availability inside each remote, as the manager shows and steers it: the overview, one
 * remote's HA state, one VM's, its policy (vm.ha), and node maintenance (node.maintenance).
 */
@ApiTags('ha')
@Controller('api/v1')
export class HaController {
  constructor(private readonly ha: HaService) {}

  @Get('ha')
  @RequirePrivilege('remote.audit', '/remotes', { partial: true })
  @ZodResponse({
    status: 200,
    type: HaOverviewDto,
    description:
      "Every remote's HA summary (coordinator, nodes and VMs by HA state, alerts) from the last HA poll",
  })
  overview(@CurrentCaller() caller: Caller) {
    return this.ha.overview(caller);
  }

  @Get('remotes/:remote/ha')
  @RequirePrivilege('remote.audit', REMOTE)
  @ZodResponse({
    status: 200,
    type: RemoteHaDto,
    description:
      "The remote's HA state read now: coordinator and fencing epoch, every node's HA state, health score and fence, the HA VMs",
  })
  remote(@CurrentCaller() caller: Caller, @Param() params: HaRemoteParamsDto) {
    return this.ha.remote(caller, params.remote);
  }

  @Get('remotes/:remote/vms/:vmid/ha')
  @RequirePrivilege('vm.audit', VM)
  @ZodResponse({
    status: 200,
    type: VmHaDto,
    description: "The VM's HA state and policy read now, and its node's HA state",
  })
  vm(@CurrentCaller() caller: Caller, @Param() params: HaVmParamsDto) {
    return this.ha.vm(caller, params.remote, params.vmid);
  }

  @Put('remotes/:remote/vms/:vmid/ha')
  @RequirePrivilege('vm.ha', VM)
  @Audited('vm.ha.policy.set')
  @ZodResponse({
    status: 200,
    type: VmHaDto,
    description: 'The VM is under HA with this policy (kept in the cluster): its HA state now',
  })
  setPolicy(
    @CurrentCaller() caller: Caller,
    @Param() params: HaVmParamsDto,
    @Body() body: HaPolicyDto,
  ) {
    return this.ha.setPolicy(caller, params.remote, params.vmid, body);
  }

  @Delete('remotes/:remote/vms/:vmid/ha')
  @HttpCode(204)
  @RequirePrivilege('vm.ha', VM)
  @Audited('vm.ha.policy.remove')
  removePolicy(@CurrentCaller() caller: Caller, @Param() params: HaVmParamsDto): Promise<void> {
    return this.ha.removePolicy(caller, params.remote, params.vmid);
  }

  @Post('remotes/:remote/nodes/:node/maintenance')
  @RequirePrivilege('node.maintenance', REMOTE)
  @Audited('node.maintenance.enter', { target: NODE })
  @ZodResponse({
    status: 202,
    type: TaskAcceptedDto,
    description:
      'Accepted: the node drains — HA places nothing on it, the cluster live-migrates its VMs to other nodes, and it is in maintenance once none is left; follow the ha.drain task at /api/v1/tasks/{taskId}',
  })
  enterMaintenance(@CurrentCaller() caller: Caller, @Param() params: HaNodeParamsDto) {
    return this.ha.enterMaintenance(caller, params.remote, params.node);
  }

  @Delete('remotes/:remote/nodes/:node/maintenance')
  @RequirePrivilege('node.maintenance', REMOTE)
  @Audited('node.maintenance.exit', { target: NODE })
  @ZodResponse({
    status: 200,
    type: HaNodeDto,
    description: 'The node is back in service: its HA state now',
  })
  exitMaintenance(@CurrentCaller() caller: Caller, @Param() params: HaNodeParamsDto) {
    return this.ha.exitMaintenance(caller, params.remote, params.node);
  }
}
