import { Module } from '@nestjs/common';
import { MetricsModule } from '../health/metrics.module';
import { AgentClientRepository } from './agent-client.repository';

@Module({
  imports: [MetricsModule],
  providers: [AgentClientRepository],
  exports: [AgentClientRepository],
})
export class AgentsModule {}
