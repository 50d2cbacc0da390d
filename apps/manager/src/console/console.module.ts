import { Module } from '@nestjs/common';
import { AgentsModule } from '../agents/agents.module';
import { RemotesModule } from '../remotes/remotes.module';
import { ResourcesModule } from '../resources/resources.module';
import { ConsoleController } from './console.controller';
import { ConsoleGatewayService } from './console-gateway.service';
import { ConsoleTicketRepository } from './console-ticket.repository';
import { ConsoleTicketService } from './console-ticket.service';

/** VM consoles: single-use tickets and the WebSocket that carries VNC to the VM's agent. */
@Module({
  imports: [RemotesModule, AgentsModule, ResourcesModule],
  controllers: [ConsoleController],
  providers: [ConsoleTicketRepository, ConsoleTicketService, ConsoleGatewayService],
  exports: [ConsoleGatewayService],
})
export class ConsoleModule {}
