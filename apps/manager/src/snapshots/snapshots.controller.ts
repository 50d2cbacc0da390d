import { Body, Controller, Delete, Get, Param, Post } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import { ZodResponse } from 'nestjs-zod';
import { Audited } from '../audit/audited.decorator';
import { CurrentCaller, type Caller } from '../authz/caller';
import { RequirePrivilege } from '../authz/privilege.decorator';
import { VmTargetParamsDto } from '../vms/vm-power.dto';
import {
  CreateSnapshotBodyDto,
  RollbackBodyDto,
  SnapshotAcceptedDto,
  SnapshotListDto,
  SnapshotParamsDto,
} from './snapshots.dto';
import { SnapshotsService } from './snapshots.service';

const VM = '/remotes/{remote}/vms/{vmid}';

@ApiTags('snapshots')
@Controller('api/v1/remotes/:remote/vms/:vmid/snapshots')
export class SnapshotsController {
  constructor(private readonly snapshots: SnapshotsService) {}

  @Get()
  @RequirePrivilege('vm.audit', VM)
  @ZodResponse({
    type: SnapshotListDto,
    description:
      "The VM's snapshots as its remote has them, with consistency, disks, who took them and which schedule, and the caller's quota",
  })
  list(@CurrentCaller() caller: Caller, @Param() params: VmTargetParamsDto) {
    return this.snapshots.list(caller, params.remote, params.vmid);
  }

  @Post()
  @RequirePrivilege('vm.snapshot', VM)
  @Audited('vm.snapshot.create')
  @ZodResponse({
    status: 202,
    type: SnapshotAcceptedDto,
    description:
      'Accepted: the task at /api/v1/tasks/{taskId} takes the snapshot. 409 over the quota, for a name in use or while the VM has another operation',
  })
  create(
    @CurrentCaller() caller: Caller,
    @Param() params: VmTargetParamsDto,
    @Body() body: CreateSnapshotBodyDto,
  ) {
    return this.snapshots.create(caller, params.remote, params.vmid, body);
  }

  @Delete(':snapshot')
  @RequirePrivilege('vm.snapshot', VM)
  @Audited('vm.snapshot.delete')
  @ZodResponse({
    status: 202,
    type: SnapshotAcceptedDto,
    description:
      'Accepted: the task at /api/v1/tasks/{taskId} deletes the snapshot from every disk',
  })
  remove(@CurrentCaller() caller: Caller, @Param() params: SnapshotParamsDto) {
    return this.snapshots.remove(caller, params.remote, params.vmid, params.snapshot);
  }

  @Post(':snapshot/rollback')
  @RequirePrivilege('vm.snapshot', VM)
  @Audited('vm.snapshot.rollback')
  @ZodResponse({
    status: 202,
    type: SnapshotAcceptedDto,
    description:
      'Accepted: the task rolls every disk back (what was written since is lost). 409 when the VM is not stopped and stopFirst was not asked, or while it has another operation (a migration)',
  })
  rollback(
    @CurrentCaller() caller: Caller,
    @Param() params: SnapshotParamsDto,
    @Body() body: RollbackBodyDto,
  ) {
    return this.snapshots.rollback(caller, params.remote, params.vmid, params.snapshot, body);
  }
}
