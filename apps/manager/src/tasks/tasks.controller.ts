import { Controller, Get, Param, Post, Query } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import { ZodResponse } from 'nestjs-zod';
import { Audited } from '../audit/audited.decorator';
import { CurrentCaller, type Caller } from '../authz/caller';
import { RequirePrivilege } from '../authz/privilege.decorator';
import { TaskDto, TaskListDto, TaskParamsDto, TaskQueryDto } from './tasks.dto';
import { TasksService } from './tasks.service';

@ApiTags('tasks')
@Controller('api/v1/tasks')
export class TasksController {
  constructor(private readonly tasks: TasksService) {}

  @Get()
  @RequirePrivilege('task.audit', '/', { partial: true })
  @ZodResponse({ type: TaskListDto, description: 'Tasks the caller may see, newest first' })
  list(@CurrentCaller() caller: Caller, @Query() query: TaskQueryDto) {
    return this.tasks.list(caller, query);
  }

  @Get(':id')
  @RequirePrivilege('task.audit', '/', { partial: true })
  @ZodResponse({ type: TaskDto })
  get(@CurrentCaller() caller: Caller, @Param() params: TaskParamsDto) {
    return this.tasks.get(caller, params.id);
  }

  /** task.cancel is checked on the task's VM (else its remote) by the service: the route cannot name it. */
  @Post(':id/cancel')
  @RequirePrivilege('task.cancel', '/', { partial: true })
  @Audited('task.cancel', { target: '/tasks/{id}' })
  @ZodResponse({
    status: 202,
    type: TaskDto,
    description:
      'Accepted: a queued task is cancelled at once; a running one ends cancelled once it has stopped',
  })
  cancel(@CurrentCaller() caller: Caller, @Param() params: TaskParamsDto) {
    return this.tasks.cancel(caller, params.id);
  }
}
