import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import { ZodResponse } from 'nestjs-zod';
import { Audited } from '../audit/audited.decorator';
import { CurrentCaller, type Caller } from '../authz/caller';
import { RequirePrivilege } from '../authz/privilege.decorator';
import { TaskAcceptedDto } from '../tasks/tasks.dto';
import {
  CreateScheduleBodyDto,
  ScheduleDto,
  ScheduleListDto,
  ScheduleParamsDto,
  UpdateScheduleBodyDto,
} from './snapshot-schedules.dto';
import { SnapshotSchedulesService } from './snapshot-schedules.service';

/**
 * The routes need the privilege somewhere (partial); the service requires it on each schedule's
 * target — its VM, or its remote for label and pool targets — and lists only what the caller may see.
 */
@ApiTags('snapshots')
@Controller('api/v1/snapshot-schedules')
export class SnapshotSchedulesController {
  constructor(private readonly schedules: SnapshotSchedulesService) {}

  @Get()
  @RequirePrivilege('vm.audit', '/', { partial: true })
  @ZodResponse({
    type: ScheduleListDto,
    description: 'The schedules whose target (VM, or remote) the caller holds vm.audit on',
  })
  list(@CurrentCaller() caller: Caller) {
    return this.schedules.list(caller);
  }

  @Post()
  @RequirePrivilege('vm.snapshot', '/', { partial: true })
  @Audited('vm.snapshot.schedule.create', { target: '/snapshot-schedules' })
  @ZodResponse({
    status: 201,
    type: ScheduleDto,
    description: 'The schedule, with its first run planned. Needs vm.snapshot on the target',
  })
  create(@CurrentCaller() caller: Caller, @Body() body: CreateScheduleBodyDto) {
    return this.schedules.create(caller, body);
  }

  @Get(':id')
  @RequirePrivilege('vm.audit', '/', { partial: true })
  @ZodResponse({
    type: ScheduleDto,
    description: 'One schedule (404 when the caller may not see its target)',
  })
  get(@CurrentCaller() caller: Caller, @Param() params: ScheduleParamsDto) {
    return this.schedules.get(caller, params.id);
  }

  @Patch(':id')
  @RequirePrivilege('vm.snapshot', '/', { partial: true })
  @Audited('vm.snapshot.schedule.update', { target: '/snapshot-schedules/{id}' })
  @ZodResponse({
    type: ScheduleDto,
    description:
      'The changed schedule; a new timing (or enabling it again) plans the next run from now',
  })
  update(
    @CurrentCaller() caller: Caller,
    @Param() params: ScheduleParamsDto,
    @Body() body: UpdateScheduleBodyDto,
  ) {
    return this.schedules.update(caller, params.id, body);
  }

  @Delete(':id')
  @HttpCode(204)
  @RequirePrivilege('vm.snapshot', '/', { partial: true })
  @Audited('vm.snapshot.schedule.delete', { target: '/snapshot-schedules/{id}' })
  remove(@CurrentCaller() caller: Caller, @Param() params: ScheduleParamsDto): Promise<void> {
    return this.schedules.remove(caller, params.id);
  }

  @Post(':id/run')
  @RequirePrivilege('vm.snapshot', '/', { partial: true })
  @Audited('vm.snapshot.schedule.run', { target: '/snapshot-schedules/{id}' })
  @ZodResponse({
    status: 202,
    type: TaskAcceptedDto,
    description: 'Accepted: a run now (vm.snapshot.schedule task); the timing is unchanged',
  })
  run(@CurrentCaller() caller: Caller, @Param() params: ScheduleParamsDto) {
    return this.schedules.runNow(caller, params.id);
  }
}
