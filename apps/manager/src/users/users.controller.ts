import { Body, Controller, Delete, Get, HttpCode, Param, Post, Put, Query } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import { ZodResponse } from 'nestjs-zod';
import { Audited } from '../audit/audited.decorator';
import { CurrentCaller, type Caller } from '../authz/caller';
import { RequirePrivilege, SelfService } from '../authz/privilege.decorator';
import {
  ChangePasswordDto,
  CreateUserDto,
  ResetPasswordDto,
  UpdateUserDto,
  UserDto,
  UserListDto,
  UserParamsDto,
  UserQueryDto,
} from './users.dto';
import { UsersService } from './users.service';

@ApiTags('access')
@Controller('api/v1/access')
export class UsersController {
  constructor(private readonly users: UsersService) {}

  @Get('users')
  @RequirePrivilege('access.audit', '/')
  @ZodResponse({
    type: UserListDto,
    description: 'Users (of one realm with ?realm=), with their groups',
  })
  list(@Query() query: UserQueryDto) {
    return this.users.list(query.realm);
  }

  @Post('users')
  @RequirePrivilege('access.modify', '/')
  @Audited('access.user.create', { target: '/access' })
  @ZodResponse({ status: 201, type: UserDto })
  create(@Body() body: CreateUserDto) {
    return this.users.create(body);
  }

  @Get('users/:user')
  @RequirePrivilege('access.audit', '/')
  @ZodResponse({ type: UserDto })
  get(@Param() params: UserParamsDto) {
    return this.users.get(params.user);
  }

  @Put('users/:user')
  @RequirePrivilege('access.modify', '/')
  @Audited('access.user.update', { target: '/access' })
  @ZodResponse({
    type: UserDto,
    description: 'Disabling ends the user’s sessions and stops its API tokens',
  })
  update(
    @CurrentCaller() caller: Caller,
    @Param() params: UserParamsDto,
    @Body() body: UpdateUserDto,
  ) {
    return this.users.update(caller, params.user, body);
  }

  @Delete('users/:user')
  @HttpCode(204)
  @RequirePrivilege('access.modify', '/')
  @Audited('access.user.delete', { target: '/access' })
  delete(@CurrentCaller() caller: Caller, @Param() params: UserParamsDto): Promise<void> {
    return this.users.delete(caller, params.user);
  }

  @Post('users/:user/password')
  @HttpCode(204)
  @RequirePrivilege('access.modify', '/')
  @Audited('access.password.reset', { target: '/access' })
  resetPassword(@Param() params: UserParamsDto, @Body() body: ResetPasswordDto): Promise<void> {
    return this.users.resetPassword(params.user, body.password);
  }

  @Post('password')
  @HttpCode(204)
  @SelfService()
  @Audited('access.password.change', { target: '/access' })
  changePassword(@CurrentCaller() caller: Caller, @Body() body: ChangePasswordDto): Promise<void> {
    return this.users.changeOwnPassword(caller, body.currentPassword, body.newPassword);
  }
}
