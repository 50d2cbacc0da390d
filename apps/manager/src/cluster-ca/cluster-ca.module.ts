import { Module } from '@nestjs/common';
import { AgentsModule } from '../agents/agents.module';
import { RemotesModule } from '../remotes/remotes.module';
import { TasksModule } from '../tasks/tasks.module';
import { ClusterCaController } from './cluster-ca.controller';
import { ClusterCaService } from './cluster-ca.service';

@Module({
  imports: [AgentsModule, RemotesModule, TasksModule],
  controllers: [ClusterCaController],
  providers: [ClusterCaService],
})
export class ClusterCaModule {}
