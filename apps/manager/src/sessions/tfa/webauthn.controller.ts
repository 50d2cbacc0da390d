import { Body, Controller, Delete, HttpCode, Param, Post, Req } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import type { Request } from 'express';
import { ZodResponse } from 'nestjs-zod';
import { Audited } from '../../audit/audited.decorator';
import { requestOrigin } from '../../audit/request-origin';
import { CurrentCaller, type Caller } from '../../authz/caller';
import { SelfService } from '../../authz/privilege.decorator';
import { PasswordCheckDto } from './tfa.dto';
import {
  WebauthnCreationOptionsDto,
  WebauthnOptionsBodyDto,
  WebauthnParamsDto,
  WebauthnRegisterBodyDto,
  WebauthnRegisteredDto,
} from './webauthn.dto';
import { WebauthnService } from './webauthn.service';

/** Your own WebAuthn credentials (security keys, platform authenticators) as a second factor. */
@ApiTags('access')
@Controller('api/v1/access/tfa/webauthn')
export class WebauthnController {
  constructor(private readonly webauthn: WebauthnService) {}

  @Post('options')
  @HttpCode(200)
  @SelfService({ duringTfaSetup: true })
  @Audited('access.tfa.enrol', { target: '/access/tfa/webauthn' })
  @ZodResponse({
    status: 200,
    type: WebauthnCreationOptionsDto,
    description:
      'Options for navigator.credentials.create(); answer with POST /api/v1/access/tfa/webauthn within 2 minutes',
  })
  options(
    @CurrentCaller() caller: Caller,
    @Body() body: WebauthnOptionsBodyDto,
    @Req() req: Request,
  ) {
    return this.webauthn.registrationOptions(caller, body, req.headers.host, requestOrigin(req));
  }

  @Post()
  @SelfService({ duringTfaSetup: true })
  @Audited('access.tfa.confirm', { target: '/access/tfa/webauthn' })
  @ZodResponse({
    status: 201,
    type: WebauthnRegisteredDto,
    description:
      'The credential is stored; with the first second factor, 10 recovery codes shown only now',
  })
  register(
    @CurrentCaller() caller: Caller,
    @Body() body: WebauthnRegisterBodyDto,
    @Req() req: Request,
  ) {
    return this.webauthn.register(caller, body.response, req.headers.host);
  }

  @Delete(':id')
  @HttpCode(204)
  @SelfService()
  @Audited('access.tfa.remove', { target: '/access/tfa/webauthn/{id}' })
  remove(
    @CurrentCaller() caller: Caller,
    @Param() params: WebauthnParamsDto,
    @Body() body: PasswordCheckDto,
    @Req() req: Request,
  ): Promise<void> {
    return this.webauthn.remove(caller, params.id, body.password, requestOrigin(req));
  }
}
