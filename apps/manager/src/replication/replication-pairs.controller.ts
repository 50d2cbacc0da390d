import { Body, Controller, Delete, Get, HttpCode, Param, Post, Query } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import { ZodResponse } from 'nestjs-zod';
import { Audited } from '../audit/audited.decorator';
import { CurrentCaller, type Caller } from '../authz/caller';
import { RequirePrivilege } from '../authz/privilege.decorator';
import { ReplicationPairsService } from './replication-pairs.service';
import {
  CreatePairDto,
  PairAcceptedDto,
  PairDto,
  PairListDto,
  PairParamsDto,
  PairQueryDto,
} from './replication.dto';

/** Pairs of remotes' pools: configuration of the federation, remote.modify on `/` to change. */
@ApiTags('replication')
@Controller('api/v1/replication/pairs')
export class ReplicationPairsController {
  constructor(private readonly pairs: ReplicationPairsService) {}

  @Post()
  @RequirePrivilege('remote.modify', '/')
  @Audited('replication.pair.create')
  @ZodResponse({
    status: 202,
    type: PairAcceptedDto,
    description:
      "Accepted: the task hands A's peer bootstrap token to B (in memory only); follow it at /api/v1/tasks/{taskId}",
  })
  create(@CurrentCaller() caller: Caller, @Body() body: CreatePairDto) {
    return this.pairs.create(caller, body);
  }

  @Get()
  @RequirePrivilege('remote.audit', '/')
  @ZodResponse({
    status: 200,
    type: PairListDto,
    description:
      'Every pair, each with both sides’ pool mirroring health (GetPoolMirrorStatus; an unreachable side says so)',
  })
  list(@Query() query: PairQueryDto) {
    return this.pairs.list(query.health);
  }

  @Get(':id')
  @RequirePrivilege('remote.audit', '/')
  @ZodResponse({
    status: 200,
    type: PairDto,
    description: 'The pair, with both sides’ pool mirroring health read now',
  })
  get(@Param() params: PairParamsDto) {
    return this.pairs.get(params.id);
  }

  @Delete(':id')
  @HttpCode(204)
  @RequirePrivilege('remote.modify', '/')
  @Audited('replication.pair.delete')
  async delete(@Param() params: PairParamsDto): Promise<void> {
    await this.pairs.delete(params.id);
  }
}
