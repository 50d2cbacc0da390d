import {
  Body,
  Controller,
  Delete,
  Get,
  Header,
  HttpCode,
  Param,
  Post,
  Put,
  Query,
} from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import { ZodResponse } from 'nestjs-zod';
import { Audited } from '../audit/audited.decorator';
import { CurrentCaller, type Caller } from '../authz/caller';
import { RequirePrivilege, SelfService } from '../authz/privilege.decorator';
import { AclEntryDto } from '../acl/acl.dto';
import {
  CreatedTokenDto,
  CreateOwnTokenDto,
  CreateTokenDto,
  OwnTokenAclDto,
  OwnTokenAclQueryDto,
  TokenAclListDto,
  TokenDto,
  TokenListDto,
  TokenParamsDto,
  TokenQueryDto,
  UpdateTokenDto,
} from './tokens.dto';
import { TokensService } from './tokens.service';

/**
 * API tokens. `/mine…`: the caller's own tokens, through a login session (a token cannot mint or
 * change tokens). The others: any user's or group's tokens, for administrators.
 */
@ApiTags('access')
@Controller('api/v1/access/tokens')
export class TokensController {
  constructor(private readonly tokens: TokensService) {}

  @Get()
  @RequirePrivilege('access.audit', '/')
  @ZodResponse({ type: TokenListDto, description: 'Every token (never a secret)' })
  list(@Query() query: TokenQueryDto) {
    return this.tokens.list(query);
  }

  @Post()
  @Header('Cache-Control', 'no-store')
  @RequirePrivilege('access.modify', '/')
  @Audited('access.token.create', { target: '/access' })
  @ZodResponse({
    status: 201,
    type: CreatedTokenDto,
    description: 'The token of a user or a group; its secret is in this answer only',
  })
  create(@Body() body: CreateTokenDto) {
    return this.tokens.create(body);
  }

  @Put(':id')
  @RequirePrivilege('access.modify', '/')
  @Audited('access.token.update', { target: '/access' })
  @ZodResponse({ type: TokenDto })
  update(@Param() params: TokenParamsDto, @Body() body: UpdateTokenDto) {
    return this.tokens.update(params.id, body);
  }

  @Delete(':id')
  @HttpCode(204)
  @RequirePrivilege('access.modify', '/')
  @Audited('access.token.revoke', { target: '/access' })
  revoke(@Param() params: TokenParamsDto): Promise<void> {
    return this.tokens.revoke(params.id);
  }

  @Get('mine')
  @SelfService()
  @ZodResponse({ type: TokenListDto, description: 'Your own tokens (never a secret)' })
  listMine(@CurrentCaller() caller: Caller) {
    return this.tokens.listMine(caller);
  }

  @Post('mine')
  @Header('Cache-Control', 'no-store')
  @SelfService()
  @Audited('access.token.create', { target: '/access' })
  @ZodResponse({
    status: 201,
    type: CreatedTokenDto,
    description: 'A token of your own (you@realm!name); its secret is in this answer only',
  })
  createMine(@CurrentCaller() caller: Caller, @Body() body: CreateOwnTokenDto) {
    return this.tokens.createMine(caller, body);
  }

  @Put('mine/:id')
  @SelfService()
  @Audited('access.token.update', { target: '/access' })
  @ZodResponse({ type: TokenDto })
  updateMine(
    @CurrentCaller() caller: Caller,
    @Param() params: TokenParamsDto,
    @Body() body: UpdateTokenDto,
  ) {
    return this.tokens.updateMine(caller, params.id, body);
  }

  @Delete('mine/:id')
  @HttpCode(204)
  @SelfService()
  @Audited('access.token.revoke', { target: '/access' })
  revokeMine(@CurrentCaller() caller: Caller, @Param() params: TokenParamsDto): Promise<void> {
    return this.tokens.revokeMine(caller, params.id);
  }

  @Get('mine/:id/acl')
  @SelfService()
  @ZodResponse({ type: TokenAclListDto, description: 'The own ACL entries of your limited token' })
  listMineAcl(@CurrentCaller() caller: Caller, @Param() params: TokenParamsDto) {
    return this.tokens.listMineAcl(caller, params.id);
  }

  @Put('mine/:id/acl')
  @SelfService()
  @Audited('access.acl.grant', { target: '/access' })
  @ZodResponse({
    type: AclEntryDto,
    description: 'A role for your limited token on a path: it still never holds more than you',
  })
  putMineAcl(
    @CurrentCaller() caller: Caller,
    @Param() params: TokenParamsDto,
    @Body() body: OwnTokenAclDto,
  ) {
    return this.tokens.putMineAcl(caller, params.id, body);
  }

  @Delete('mine/:id/acl')
  @HttpCode(204)
  @SelfService()
  @Audited('access.acl.revoke', { target: '/access' })
  deleteMineAcl(
    @CurrentCaller() caller: Caller,
    @Param() params: TokenParamsDto,
    @Query() query: OwnTokenAclQueryDto,
  ): Promise<void> {
    return this.tokens.deleteMineAcl(caller, params.id, query.path);
  }
}
