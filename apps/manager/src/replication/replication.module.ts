import { AclModule } from '../acl/acl.module';
import { Module } from '@nestjs/common';
import { AgentsModule } from '../agents/agents.module';
import { MetricsModule } from '../health/metrics.module';
import { MigrationModule } from '../migration/migration.module';
import { RemotesModule } from '../remotes/remotes.module';
import { ResourcesModule } from '../resources/resources.module';
import { TasksModule } from '../tasks/tasks.module';
import { DrRecoveryService } from './dr-recovery.service';
import { DrRunnerService } from './dr-runner.service';
import { ReplicationPairsController } from './replication-pairs.controller';
import { ReplicationPairsService } from './replication-pairs.service';
import { ReplicationPollerService } from './replication-poller.service';
import { ReplicationStatusService } from './replication-status.service';
import { ReplicationTimerRepository } from './replication-timer.repository';
import { ReplicationRepository } from './replication.repository';
import { ReplicationVmsController, VmReplicationController } from './vm-replication.controller';
import { VmReplicationService } from './vm-replication.service';

/** Cross-cluster RBD mirroring and disaster recovery: pool pairs, mirrored VMs, DR tasks, the status poll. */
@Module({
  imports: [
    TasksModule,
    RemotesModule,
    AgentsModule,
    ResourcesModule,
    MetricsModule,
    MigrationModule,
    AclModule,
  ],
  controllers: [ReplicationPairsController, VmReplicationController, ReplicationVmsController],
  providers: [
    ReplicationRepository,
    ReplicationStatusService,
    ReplicationPairsService,
    VmReplicationService,
    DrRunnerService,
    DrRecoveryService,
    ReplicationPollerService,
    ReplicationTimerRepository,
  ],
  exports: [ReplicationPollerService],
})
export class ReplicationModule {}
