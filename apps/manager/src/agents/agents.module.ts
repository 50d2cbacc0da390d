import { Module } from '@nestjs/common';
import { AgentClientRepository } from './agent-client.repository';

@Module({ providers: [AgentClientRepository], exports: [AgentClientRepository] })
export class AgentsModule {}
