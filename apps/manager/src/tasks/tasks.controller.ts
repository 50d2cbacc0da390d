import { Controller, Get, Param, Query } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import { ZodResponse } from 'nestjs-zod';
import { CurrentCaller, type Caller } from '../auth/caller';
import { RequirePrivilege } from '../auth/privilege.decorator';
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
}
