import { Body, Controller, Get, HttpCode, Post, Req, Res } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { ZodResponse } from 'nestjs-zod';
import { Audited } from '../audit/audited.decorator';
import { requestOrigin } from '../audit/request-origin';
import { CurrentCaller, type Caller } from '../authz/caller';
import { Public, SelfService } from '../authz/privilege.decorator';
import { CSRF_HEADER, SESSION_COOKIE, SIGNED_IN_COOKIE, cookieValue } from './session-secrets';
import { CurrentSessionDto, LoginBodyDto, SessionDto, TfaBodyDto } from './auth.dto';
import { WebauthnRequestOptionsDto } from './tfa/webauthn.dto';
import { AccessService } from './access.service';
import { LoginService, type LoginOutcome } from './login.service';
import { LoginRealmListDto } from '../realms/realms.dto';
import { RealmsService } from '../realms/realms.service';

@ApiTags('auth')
@Controller('api/v1/auth')
export class AuthController {
  constructor(
    private readonly login: LoginService,
    private readonly access: AccessService,
    private readonly realms: RealmsService,
  ) {}

  @Get('realms')
  @Public()
  @ZodResponse({
    type: LoginRealmListDto,
    description:
      'The realms to offer on a login page: id, type and comment, nothing of their settings',
  })
  loginRealms() {
    return this.realms.loginChoices();
  }

  @Post('login')
  @HttpCode(200)
  @Public()
  @ZodResponse({
    status: 200,
    type: SessionDto,
    description:
      'A session cookie (HttpOnly, Secure, SameSite=Strict) and its CSRF token; stage tells whether a second factor follows',
  })
  async passwordLogin(
    @Body() body: LoginBodyDto,
    @Req() req: Request,
    @Res({ passthrough: true }) res: Response,
  ) {
    return answer(res, await this.login.passwordLogin(body, requestOrigin(req)));
  }

  @Post('tfa')
  @HttpCode(200)
  @Public()
  @ZodResponse({
    status: 200,
    type: SessionDto,
    description:
      'The second step of a login: needs the cookie and CSRF token of the first step; answers a new session',
  })
  async secondFactor(
    @Body() body: TfaBodyDto,
    @Req() req: Request,
    @Res({ passthrough: true }) res: Response,
  ) {
    const csrf = req.headers[CSRF_HEADER];
    const outcome = await this.login.secondFactor(
      cookieValue(req.headers.cookie, SESSION_COOKIE),
      typeof csrf === 'string' ? csrf : undefined,
      body,
      requestOrigin(req),
      req.headers.host,
    );
    return answer(res, outcome);
  }

  @Post('tfa/webauthn/options')
  @HttpCode(200)
  @Public()
  @ZodResponse({
    status: 200,
    type: WebauthnRequestOptionsDto,
    description:
      'WebAuthn options for the second step (cookie and CSRF token of the first step); answer with POST /api/v1/auth/tfa {webauthn}',
  })
  webauthnOptions(@Req() req: Request, @Res({ passthrough: true }) res: Response) {
    const csrf = req.headers[CSRF_HEADER];
    res.setHeader('Cache-Control', 'no-store');
    return this.login.webauthnOptions(
      cookieValue(req.headers.cookie, SESSION_COOKIE),
      typeof csrf === 'string' ? csrf : undefined,
      req.headers.host,
      requestOrigin(req),
    );
  }

  @Get('session')
  @SelfService({ duringTfaSetup: true, whileSecondFactorPending: true })
  @ZodResponse({
    type: CurrentSessionDto,
    description: 'Who is logged in, the CSRF token, and the privileges held on /',
  })
  session(@CurrentCaller() caller: Caller) {
    // A login waiting for its second factor learns its stage, CSRF token and methods here (after a reload, or after SSO).
    return this.access.describeCaller(caller);
  }

  @Post('logout')
  @HttpCode(204)
  @SelfService({ duringTfaSetup: true, whileSecondFactorPending: true })
  @Audited('auth.logout', { target: '/' })
  async logout(
    @CurrentCaller() caller: Caller,
    @Req() req: Request,
    @Res({ passthrough: true }) res: Response,
  ) {
    await this.login.logout(caller.sessionId!, requestOrigin(req), caller.principal);
    clearCookie(res);
  }

  @Post('logout-everywhere')
  @HttpCode(204)
  @SelfService({ duringTfaSetup: true })
  @Audited('auth.logout', { target: '/' })
  async logoutEverywhere(
    @CurrentCaller() caller: Caller,
    @Req() req: Request,
    @Res({ passthrough: true }) res: Response,
  ) {
    await this.login.logoutEverywhere(caller.principal, requestOrigin(req));
    clearCookie(res);
  }
}

/** Sets the session cookie and answers the session without its secret. */
export function answer(res: Response, outcome: LoginOutcome) {
  res.cookie(SESSION_COOKIE, outcome.sessionSecret, {
    httpOnly: true,
    secure: true,
    sameSite: 'strict',
    path: '/',
    expires: outcome.expiresAt,
  });
  res.cookie(SIGNED_IN_COOKIE, '1', {
    secure: true,
    sameSite: 'strict',
    path: '/',
    expires: outcome.expiresAt,
  });
  res.setHeader('Cache-Control', 'no-store');
  return {
    stage: outcome.stage,
    user: outcome.user,
    csrfToken: outcome.csrfToken,
    expiresAt: outcome.expiresAt.toISOString(),
    methods: [...outcome.methods],
  };
}

function clearCookie(res: Response): void {
  res.clearCookie(SESSION_COOKIE, { httpOnly: true, secure: true, sameSite: 'strict', path: '/' });
  res.clearCookie(SIGNED_IN_COOKIE, { secure: true, sameSite: 'strict', path: '/' });
}
