import { Controller, Get, Param, Req, Res } from '@nestjs/common';
import {
  ApiFoundResponse,
  ApiNotFoundResponse,
  ApiTags,
  ApiUnauthorizedResponse,
} from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { requestOrigin } from '../audit/request-origin';
import { Public } from '../authz/privilege.decorator';
import { cookieValue } from './session-secrets';
import { answer } from './auth.controller';
import { OidcRealmParamsDto } from './oidc-login.dto';
import { OIDC_COOKIE, OIDC_COOKIE_PATH, OidcLoginService } from './oidc-login.service';

/**
 * Browser logins through an OpenID Connect realm. Lax (not Strict) on the attempt cookie: the
 * identity provider's redirect back is a cross-site top-level navigation, which Lax cookies go with.
 */
const ATTEMPT_COOKIE = {
  httpOnly: true,
  secure: true,
  sameSite: 'lax',
  path: OIDC_COOKIE_PATH,
} as const;

@ApiTags('auth')
@Controller('api/v1/auth/oidc')
export class OidcLoginController {
  constructor(private readonly oidc: OidcLoginService) {}

  @Get(':realm/login')
  @Public()
  @ApiFoundResponse({
    description:
      "To the realm's identity provider; the login attempt rides in a sealed cookie (debvisor_oidc, 10 minutes)",
  })
  @ApiNotFoundResponse({ description: 'No OpenID Connect realm of this id' })
  async begin(
    @Param() params: OidcRealmParamsDto,
    @Req() req: Request,
    @Res() res: Response,
  ): Promise<void> {
    const start = await this.oidc.beginLogin(params.realm, req.headers.host);
    res.cookie(OIDC_COOKIE, start.cookie, { ...ATTEMPT_COOKIE, expires: start.expiresAt });
    res.setHeader('Cache-Control', 'no-store');
    res.redirect(302, start.authorizationUrl);
  }

  @Get('callback')
  @Public()
  @ApiFoundResponse({
    description:
      'Logged in: the session cookie is set; to / (or /?login=tfa, /?login=setup when a second factor follows)',
  })
  @ApiUnauthorizedResponse({
    description:
      'No, an expired or an altered login attempt; the identity provider refused; the account is disabled',
  })
  async callback(@Req() req: Request, @Res() res: Response): Promise<void> {
    // The attempt is single-use whatever the outcome.
    res.clearCookie(OIDC_COOKIE, ATTEMPT_COOKIE);
    const done = await this.oidc.completeLogin(
      cookieValue(req.headers.cookie, OIDC_COOKIE),
      req.originalUrl,
      requestOrigin(req),
    );
    answer(res, done.outcome);
    res.redirect(302, done.redirectTo);
  }
}
