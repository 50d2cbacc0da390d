import { Module } from '@nestjs/common';
import { MetricsModule } from '../health/metrics.module';
import { ResourcesModule } from '../resources/resources.module';
import { HealthController } from './health.controller';
import { HealthRepository } from './health.repository';
import { HealthService } from './health.service';

@Module({
  imports: [MetricsModule, ResourcesModule],
  controllers: [HealthController],
  providers: [HealthService, HealthRepository],
})
export class HealthModule {}
