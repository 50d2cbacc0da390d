import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import { ZodResponse } from 'nestjs-zod';
import { Audited } from '../audit/audited.decorator';
import { CurrentCaller, type Caller } from '../authz/caller';
import { RequirePrivilege } from '../authz/privilege.decorator';
import {
  AddCredentialDto,
  CreatedRemoteDto,
  CreateRemoteDto,
  CredentialParamsDto,
  ProbeDto,
  ProbeResultDto,
  RemoteDto,
  RemoteListDto,
  RemoteParamsDto,
  UpdateRemoteDto,
} from './remotes.dto';
import { RemotesService } from './remotes.service';

@ApiTags('remotes')
@Controller('api/v1/remotes')
export class RemotesController {
  constructor(private readonly remotes: RemotesService) {}

  @Get()
  @RequirePrivilege('remote.audit', '/remotes', { partial: true })
  @ZodResponse({ type: RemoteListDto, description: 'The remotes the caller may see' })
  list(@CurrentCaller() caller: Caller) {
    return this.remotes.list(caller);
  }

  @Post()
  @RequirePrivilege('remote.modify', '/remotes')
  @Audited('remote.create', { target: '/remotes/{body.id}' })
  @ZodResponse({
    status: 201,
    type: CreatedRemoteDto,
    description: 'Added; the connection test result included',
  })
  create(@Body() body: CreateRemoteDto) {
    return this.remotes.create(body);
  }

  @Post('probe')
  @HttpCode(200)
  @RequirePrivilege('remote.modify', '/remotes')
  @Audited('remote.probe')
  @ZodResponse({
    status: 200,
    type: ProbeResultDto,
    description: 'The certificate chain the endpoint presents',
  })
  probe(@Body() body: ProbeDto) {
    return this.remotes.probe(body.endpoint);
  }

  @Get(':remote')
  @RequirePrivilege('remote.audit', '/remotes/{remote}')
  @ZodResponse({ type: RemoteDto })
  get(@Param() params: RemoteParamsDto) {
    return this.remotes.get(params.remote);
  }

  @Patch(':remote')
  @RequirePrivilege('remote.modify', '/remotes/{remote}')
  @Audited('remote.update')
  @ZodResponse({ type: RemoteDto })
  update(
    @CurrentCaller() caller: Caller,
    @Param() params: RemoteParamsDto,
    @Body() body: UpdateRemoteDto,
  ) {
    return this.remotes.update(caller, params.remote, body);
  }

  @Delete(':remote')
  @HttpCode(204)
  @RequirePrivilege('remote.modify', '/remotes/{remote}')
  @Audited('remote.delete')
  delete(@Param() params: RemoteParamsDto): Promise<void> {
    return this.remotes.delete(params.remote);
  }

  @Post(':remote/credentials')
  @RequirePrivilege('remote.modify', '/remotes/{remote}')
  @Audited('remote.credential.add')
  @ZodResponse({
    status: 201,
    type: CreatedRemoteDto,
    description: 'Added; the check of the key included',
  })
  addCredential(@Param() params: RemoteParamsDto, @Body() body: AddCredentialDto) {
    return this.remotes.addCredential(params.remote, body);
  }

  @Delete(':remote/credentials/:name')
  @RequirePrivilege('remote.modify', '/remotes/{remote}')
  @Audited('remote.credential.remove')
  @ZodResponse({ type: RemoteDto })
  removeCredential(@Param() params: CredentialParamsDto) {
    return this.remotes.removeCredential(params.remote, params.name);
  }
}
