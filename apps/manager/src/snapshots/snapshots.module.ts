import { Module } from '@nestjs/common';
import { AgentsModule } from '../agents/agents.module';
import { RemotesModule } from '../remotes/remotes.module';
import { ResourcesModule } from '../resources/resources.module';
import { TasksModule } from '../tasks/tasks.module';
import { SnapshotSchedulesController } from './snapshot-schedules.controller';
import { SnapshotSchedulesRepository } from './snapshot-schedules.repository';
import { SnapshotSchedulesService } from './snapshot-schedules.service';
import { SnapshotsController } from './snapshots.controller';
import { SnapshotsRepository } from './snapshots.repository';
import { SnapshotsService } from './snapshots.service';

/** VM snapshots (create, list, delete, rollback as tasks) and snapshot schedules with retention. */
@Module({
  imports: [TasksModule, RemotesModule, AgentsModule, ResourcesModule],
  controllers: [SnapshotsController, SnapshotSchedulesController],
  providers: [
    SnapshotsService,
    SnapshotsRepository,
    SnapshotSchedulesService,
    SnapshotSchedulesRepository,
  ],
  exports: [SnapshotSchedulesService],
})
export class SnapshotsModule {}
