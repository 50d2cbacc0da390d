import { Module } from '@nestjs/common';
import { AgentsModule } from '../agents/agents.module';
import { RemotesModule } from '../remotes/remotes.module';
import { ResourcesModule } from '../resources/resources.module';
import { TasksModule } from '../tasks/tasks.module';
import { VmPowerController } from './vm-power.controller';
import { VmPowerService } from './vm-power.service';

@Module({
  imports: [TasksModule, RemotesModule, AgentsModule, ResourcesModule],
  controllers: [VmPowerController],
  providers: [VmPowerService],
})
export class VmsModule {}
