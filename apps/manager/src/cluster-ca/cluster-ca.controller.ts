import { Body, Controller, Get, Param, Post } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import { ZodResponse } from 'nestjs-zod';
import { Audited } from '../audit/audited.decorator';
import { CurrentCaller, type Caller } from '../authz/caller';
import { RequirePrivilege } from '../authz/privilege.decorator';
import { TaskAcceptedDto } from '../tasks/tasks.dto';
import { CaRotationRequestDto, CaRotationStatusDto, RemoteParamsDto } from './cluster-ca.dto';
import { ClusterCaService } from './cluster-ca.service';

@ApiTags('remotes')
@Controller('api/v1/remotes/:remote/ca-rotation')
export class ClusterCaController {
  constructor(private readonly clusterCa: ClusterCaService) {}

  @Get()
  @RequirePrivilege('remote.audit', '/remotes/{remote}')
  @ZodResponse({
    type: CaRotationStatusDto,
    description: "The cluster's CAs, the manager's trust for the remote, each node's issuing CA",
  })
  status(@Param() params: RemoteParamsDto) {
    return this.clusterCa.status(params.remote);
  }

  @Post()
  @RequirePrivilege('remote.trust', '/remotes/{remote}')
  @Audited('remote.ca-rotation')
  @ZodResponse({
    status: 202,
    type: TaskAcceptedDto,
    description: 'Accepted: follow the task at /api/v1/tasks/{taskId}',
  })
  rotate(
    @CurrentCaller() caller: Caller,
    @Param() params: RemoteParamsDto,
    @Body() body: CaRotationRequestDto,
  ) {
    return this.clusterCa.request(caller, params.remote, body);
  }
}
