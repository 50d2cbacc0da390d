import { Controller, HttpCode, Param, Post } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { ZodResponse } from 'nestjs-zod';
import { Audited } from '../audit/audited.decorator';
import { CurrentCaller, type Caller } from '../authz/caller';
import { RequirePrivilege } from '../authz/privilege.decorator';
import { ConsoleTargetParamsDto, ConsoleTicketDto } from './console.dto';
import { ConsoleTicketService } from './console-ticket.service';

@ApiTags('vms')
@Controller('api/v1/remotes/:remote/vms/:vmid/console')
export class ConsoleController {
  constructor(private readonly tickets: ConsoleTicketService) {}

  @Post('ticket')
  @HttpCode(201)
  @ApiOperation({
    summary: "Issue a single-use ticket for the VM's console",
    description:
      'Answers a ticket for a WebSocket on this origin that carries the VM console (RFB/VNC, as noVNC speaks it). The ticket works once, within 30 s, for the same user, login session and VM. API tokens are refused unless the manager allows them. 409 when the VM is not running.',
  })
  @RequirePrivilege('vm.console', '/remotes/{remote}/vms/{vmid}')
  @Audited('vm.console.ticket')
  @ZodResponse({
    status: 201,
    type: ConsoleTicketDto,
    description: 'The ticket and where to use it',
  })
  issue(@CurrentCaller() caller: Caller, @Param() params: ConsoleTargetParamsDto) {
    return this.tickets.issue(caller, params.remote, params.vmid);
  }
}
