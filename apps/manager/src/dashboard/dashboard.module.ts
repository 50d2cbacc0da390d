import { Module } from '@nestjs/common';
import { AuthModule } from '../authn/auth.module';
import { ResourcesModule } from '../resources/resources.module';
import { DashboardController } from './dashboard.controller';
import { DashboardRepository } from './dashboard.repository';
import { DashboardService } from './dashboard.service';

@Module({
  imports: [AuthModule, ResourcesModule],
  controllers: [DashboardController],
  providers: [DashboardService, DashboardRepository],
})
export class DashboardModule {}
