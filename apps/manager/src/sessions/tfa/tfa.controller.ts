import { Body, Controller, Delete, Get, Header, HttpCode, Param, Post, Req } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import type { Request } from 'express';
import { ZodResponse } from 'nestjs-zod';
import { Audited } from '../../audit/audited.decorator';
import { requestOrigin } from '../../audit/request-origin';
import { CurrentCaller, type Caller } from '../../authz/caller';
import { RequirePrivilege, SelfService } from '../../authz/privilege.decorator';
import {
  ConfirmedTotpDto,
  ConfirmTotpDto,
  DeviceParamsDto,
  EnrolledTotpDto,
  EnrolmentCodeDto,
  EnrolTotpDto,
  PasswordCheckDto,
  RecoveryCodesDto,
  TfaOverviewDto,
  UserParamsDto,
} from './tfa.dto';
import { TfaService } from './tfa.service';

/** Second factors: your own TOTP devices and recovery codes, and an administrator's unlock and reset. */
@ApiTags('access')
@Controller('api/v1/access')
export class TfaController {
  constructor(private readonly tfa: TfaService) {}

  @Get('tfa')
  @SelfService({ duringTfaSetup: true })
  @ZodResponse({
    type: TfaOverviewDto,
    description: 'Your TOTP devices, unused recovery codes and second-factor locks',
  })
  overview(@CurrentCaller() caller: Caller) {
    return this.tfa.overview(caller);
  }

  @Post('tfa/totp')
  @SelfService({ duringTfaSetup: true })
  @Audited('access.tfa.enrol', { target: '/access/tfa/totp' })
  @ZodResponse({
    status: 201,
    type: EnrolledTotpDto,
    description: 'An unconfirmed device; its secret (URI, QR code) is shown only now',
  })
  enrol(@CurrentCaller() caller: Caller, @Body() body: EnrolTotpDto, @Req() req: Request) {
    return this.tfa.enrol(caller, body, requestOrigin(req));
  }

  @Post('tfa/totp/:id/confirm')
  @HttpCode(200)
  @SelfService({ duringTfaSetup: true })
  @Audited('access.tfa.confirm', { target: '/access/tfa/totp/{id}' })
  @ZodResponse({
    status: 200,
    type: ConfirmedTotpDto,
    description: 'Confirmed; with the first device, 10 recovery codes shown only now',
  })
  confirm(
    @CurrentCaller() caller: Caller,
    @Param() params: DeviceParamsDto,
    @Body() body: ConfirmTotpDto,
  ) {
    return this.tfa.confirm(caller, params.id, body.code);
  }

  @Delete('tfa/totp/:id')
  @HttpCode(204)
  @SelfService()
  @Audited('access.tfa.remove', { target: '/access/tfa/totp/{id}' })
  removeDevice(
    @CurrentCaller() caller: Caller,
    @Param() params: DeviceParamsDto,
    @Body() body: PasswordCheckDto,
    @Req() req: Request,
  ): Promise<void> {
    return this.tfa.removeDevice(caller, params.id, body.password, requestOrigin(req));
  }

  @Post('tfa/recovery')
  @HttpCode(200)
  @SelfService()
  @Audited('access.tfa.recovery', { target: '/access/tfa/recovery' })
  @ZodResponse({
    status: 200,
    type: RecoveryCodesDto,
    description: '10 new recovery codes, shown only now; the old ones stop working',
  })
  regenerateRecoveryCodes(
    @CurrentCaller() caller: Caller,
    @Body() body: PasswordCheckDto,
    @Req() req: Request,
  ) {
    return this.tfa.regenerateRecoveryCodes(caller, body.password, requestOrigin(req));
  }

  @Post('users/:user/tfa/enrolment-code')
  @Header('Cache-Control', 'no-store')
  @RequirePrivilege('access.modify', '/')
  @Audited('access.tfa.enrolment_code', { target: '/access/users/{user}' })
  @ZodResponse({
    status: 201,
    type: EnrolmentCodeDto,
    description: 'The one-time enrolment code, shown only now',
  })
  issueEnrolmentCode(@Param() params: UserParamsDto) {
    return this.tfa.issueEnrolmentCode(params.user);
  }

  @Post('users/:user/tfa/unlock')
  @HttpCode(204)
  @RequirePrivilege('access.modify', '/')
  @Audited('access.user.unlock', { target: '/access/users/{user}' })
  unlock(@Param() params: UserParamsDto): Promise<void> {
    return this.tfa.unlock(params.user);
  }

  @Delete('users/:user/tfa')
  @HttpCode(204)
  @RequirePrivilege('access.modify', '/')
  @Audited('access.tfa.remove', { target: '/access/users/{user}' })
  removeAll(@Param() params: UserParamsDto): Promise<void> {
    return this.tfa.removeAll(params.user);
  }
}
