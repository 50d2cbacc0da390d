import { Module } from '@nestjs/common';
import { AgentsModule } from '../agents/agents.module';
import { MetricsModule } from '../health/metrics.module';
import { RemotesModule } from '../remotes/remotes.module';
import { ResourcesController } from './resources.controller';
import { KnownNodesRepository } from './known-nodes.repository';
import { ResourcesService } from './resources.service';

@Module({
  imports: [RemotesModule, AgentsModule, MetricsModule],
  controllers: [ResourcesController],
  providers: [ResourcesService, KnownNodesRepository],
  exports: [ResourcesService],
})
export class ResourcesModule {}
