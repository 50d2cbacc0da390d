import { ArgumentsHost, Catch, ExceptionFilter, HttpException } from '@nestjs/common';
import type { Request, Response } from 'express';
import { PinoLogger } from 'nestjs-pino';
import { AuditService } from '../audit/audit.service';
import { requestOrigin } from '../audit/request-origin';
import { CALLER_KEY, type Caller } from '../authz/caller';
import { RateLimited } from '../authz/rate-limiter.service';
import { MetricsService } from '../health/metrics.service';
import { DomainError, PermissionDenied } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { codeForStatus, ERROR_STATUS, type ErrorBody } from '../common/error-status';
import { traceIdOf } from '../common/trace-id';

/**
 * The one place where errors become HTTP answers: `{"error": {code, message, traceId}}`. Domain
 * errors keep their code and message; framework HTTP errors (unknown route, body too large) get the
 * code of their status; anything else is logged with the trace id and answered as a bare 500.
 * Anonymous callers get a generic message for failures on the manager's side (5xx). Every
 * permission denial, decided by the guard or by a service, is recorded here (audit entry and
 * authz_denials_total) before the answer goes out.
 */
@Catch()
export class ErrorFilter implements ExceptionFilter {
  constructor(
    private readonly logger: PinoLogger,
    private readonly audit: AuditService,
    private readonly metrics: MetricsService,
  ) {
    logger.setContext(ErrorFilter.name);
  }

  catch(exception: unknown, host: ArgumentsHost): void {
    const http = host.switchToHttp();
    const req = http.getRequest<Request>();
    const res = http.getResponse<Response>();
    const traceId = traceIdOf(req);
    const described = this.describe(exception, req, traceId);
    const { code } = described;
    const status = ERROR_STATUS[code];
    const message = this.forCaller(described, status, req, traceId);
    if (res.headersSent) {
      res.end();
      return;
    }
    const body: ErrorBody = { error: { code, message, traceId } };
    const answer = () => {
      if (!res.headersSent) res.status(status).json(body);
    };
    if (exception instanceof PermissionDenied)
      void this.recordDenial(exception, req).finally(answer);
    else if (exception instanceof RateLimited) {
      res.setHeader('Retry-After', String(exception.retryAfterSeconds));
      void this.recordRateLimit(exception, req).finally(answer);
    } else answer();
  }

  /**
   * A caller the manager does not know (no valid token or session) learns nothing of the manager's
   * insides from a failure on its side: a directory's URL, a realm's settings, an upstream message.
   * It gets a generic message with the trace id; the log has the details under that id.
   * (Readiness is the exception: `/readyz` names its failing checks, counts without addresses.)
   */
  private forCaller(
    { code, message }: { code: ErrorCode; message: string },
    status: number,
    req: Request,
    traceId: string,
  ): string {
    if (status < 500 || code === ErrorCode.NotReady) return message;
    const caller = (req as unknown as Record<string, Caller | undefined>)[CALLER_KEY];
    if (caller) return message;
    this.logger.warn(
      { traceId, detail: message },
      'a failure answered generically to an anonymous caller',
    );
    return `the request could not be completed; the manager's log has the details under trace id ${traceId}`;
  }

  private async recordDenial(denial: PermissionDenied, req: Request): Promise<void> {
    this.metrics.rpc.authzDenied();
    const caller = (req as unknown as Record<string, Caller | undefined>)[CALLER_KEY];
    if (!caller) return;
    // Written after the decision, best effort: the refusal stands whether or not the entry is written.
    await this.audit
      .denied(caller, denial.requirement, denial.params, requestOrigin(req))
      .catch((error: unknown) => {
        this.logger.error({ err: error }, 'cannot write the audit entry of a permission denial');
      });
  }

  private async recordRateLimit(hit: RateLimited, req: Request): Promise<void> {
    this.metrics.rpc.rateLimitViolation();
    const caller = (req as unknown as Record<string, Caller | undefined>)[CALLER_KEY];
    await this.audit
      .rateLimited(
        {
          principal: caller?.principal ?? null,
          limit: hit.limit,
          retryAfterSeconds: hit.retryAfterSeconds,
        },
        requestOrigin(req),
      )
      .catch((error: unknown) =>
        this.logger.error({ err: error }, 'cannot write the audit entry of a rate-limit hit'),
      );
  }

  private describe(
    exception: unknown,
    req: Request,
    traceId: string,
  ): { code: ErrorCode; message: string } {
    if (exception instanceof DomainError) {
      if (ERROR_STATUS[exception.code] >= 500 && exception.code !== ErrorCode.NotReady)
        this.logger.error({ err: exception, traceId }, 'request failed');
      return { code: exception.code, message: exception.message };
    }
    if (exception instanceof HttpException) {
      const status = exception.getStatus();
      const code = codeForStatus(status);
      if (code === ErrorCode.NotFound)
        return { code, message: `no route ${req.method} ${req.path}` };
      if (code !== ErrorCode.Internal && code !== ErrorCode.NotReady)
        return { code, message: safeHttpMessage(exception) };
    }
    this.logger.error({ err: exception, traceId }, 'unexpected error while handling a request');
    return {
      code: ErrorCode.Internal,
      message: `internal error; the manager's log has the details under trace id ${traceId}`,
    };
  }
}

/** Nest's own HTTP exceptions have short fixed messages ("Forbidden resource"); keep them, bounded. */
function safeHttpMessage(exception: HttpException): string {
  const message = exception.message || 'request failed';
  return message.length > 200 ? message.slice(0, 200) : message;
}
