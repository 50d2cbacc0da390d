import { Module } from '@nestjs/common';
import { AgentsModule } from '../agents/agents.module';
import { RemoteEvents } from './remote-events';
import { RemotesController } from './remotes.controller';
import { RemotesRepository } from './remotes.repository';
import { RemotesService } from './remotes.service';

@Module({
  imports: [AgentsModule],
  controllers: [RemotesController],
  providers: [RemotesService, RemotesRepository, RemoteEvents],
  exports: [RemotesService, RemoteEvents],
})
export class RemotesModule {}
