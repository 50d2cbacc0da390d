import { Module } from '@nestjs/common';
import { AgentsModule } from '../agents/agents.module';
import { MetricsModule } from '../health/metrics.module';
import { RemotesModule } from '../remotes/remotes.module';
import { ResourcesModule } from '../resources/resources.module';
import { SchedulerModule } from '../scheduler/scheduler.module';
import { TasksModule } from '../tasks/tasks.module';
import { HaController } from './ha.controller';
import { HaEpisodesService } from './ha-episodes.service';
import { HaMetrics } from './ha-metrics';
import { HaPollerService } from './ha-poller.service';
import { HaService } from './ha.service';

/** High availability inside the remotes, as the manager shows and steers it (issue 17). */
@Module({
  imports: [
    TasksModule,
    RemotesModule,
    AgentsModule,
    MetricsModule,
    SchedulerModule,
    ResourcesModule,
  ],
  controllers: [HaController],
  providers: [HaService, HaPollerService, HaEpisodesService, HaMetrics],
  exports: [HaPollerService],
})
export class HaModule {}
