import { Global, Module } from '@nestjs/common';
import { SchedulerTimerRepository } from './scheduler-timer.repository';
import { SchedulerService } from './scheduler.service';

/**
 * The one scheduler of background work, global like the metrics: any feature registers its jobs
 * with SchedulerService without importing this module (and without a folder cycle).
 */
@Global()
@Module({
  providers: [SchedulerService, SchedulerTimerRepository],
  exports: [SchedulerService],
})
export class SchedulerModule {}
