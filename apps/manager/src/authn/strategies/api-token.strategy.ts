import { Injectable } from '@nestjs/common';
import { PassportStrategy } from '@nestjs/passport';
import type { Request } from 'express';
import { Strategy } from 'passport-custom';
import { AuthService, type AuthenticatedCaller } from '../auth.service';
import { privateRegistry, type CallerStrategy } from './caller-strategy';

export const API_TOKEN_STRATEGY = 'api-token';

/**
 * `Authorization: Bearer dvdm_…`: an API token of a user or a group. A request with an
 * Authorization header is judged by it alone (a session cookie beside it is ignored).
 */
@Injectable()
export class ApiTokenStrategy
  extends PassportStrategy(Strategy, API_TOKEN_STRATEGY)
  implements CallerStrategy
{
  readonly method = 'token';

  constructor(private readonly auth: AuthService) {
    super();
  }

  presentedBy(request: Request): boolean {
    return request.headers.authorization !== undefined;
  }

  validate(request: Request): Promise<AuthenticatedCaller> {
    return this.auth.authenticate({
      authorization: request.headers.authorization,
      safeMethod: true,
    });
  }

  getPassportInstance() {
    return privateRegistry();
  }
}
