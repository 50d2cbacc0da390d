import { Module } from '@nestjs/common';
import { MetricsModule } from '../health/metrics.module';
import { ResourcesModule } from '../resources/resources.module';
import { TasksController } from './tasks.controller';
import { TasksRepository } from './tasks.repository';
import { TasksService } from './tasks.service';

@Module({
  imports: [MetricsModule, ResourcesModule],
  controllers: [TasksController],
  providers: [TasksService, TasksRepository],
  exports: [TasksService],
})
export class TasksModule {}
