import { Module } from '@nestjs/common';
import { AclModule } from '../acl/acl.module';
import { AgentsModule } from '../agents/agents.module';
import { MetricsModule } from '../health/metrics.module';
import { RemotesModule } from '../remotes/remotes.module';
import { ResourcesModule } from '../resources/resources.module';
import { TasksModule } from '../tasks/tasks.module';
import { InFlightMigrations } from './in-flight-migrations.service';
import { MigrationEvents } from './migration-events';
import { MigrationLinks } from './migration-links.service';
import { MigrationPreflightService } from './migration-preflight.service';
import { MigrationRecoveryService } from './migration-recovery.service';
import { MigrationRunnerService } from './migration-runner.service';
import { MigrationTimerRepository } from './migration-timer.repository';
import { MigrationController } from './migration.controller';
import { MigrationRepository } from './migration.repository';
import { MigrationService } from './migration.service';

@Module({
  imports: [AclModule, TasksModule, RemotesModule, AgentsModule, ResourcesModule, MetricsModule],
  controllers: [MigrationController],
  providers: [
    MigrationEvents,
    MigrationService,
    InFlightMigrations,
    MigrationLinks,
    MigrationRunnerService,
    MigrationRecoveryService,
    MigrationPreflightService,
    MigrationRepository,
    MigrationTimerRepository,
  ],
  // The DR switchover (replication/) moves a stopped VM's definition through the same offline migration.
  // The replication feature hears of VMs that changed remotes (its DR roles follow them).
  exports: [MigrationService, MigrationEvents],
})
export class MigrationModule {}
