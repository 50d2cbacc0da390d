import { Controller, Get, Header } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiProduces, ApiTags } from '@nestjs/swagger';
import { prometheusContentType } from 'prom-client';
import { Public, RequirePrivilege } from '../authz/privilege.decorator';
import { HealthService } from './health.service';

const PROMETHEUS_CONTENT_TYPE: string = prometheusContentType;

@ApiTags('operations')
@Controller()
export class HealthController {
  constructor(private readonly health: HealthService) {}

  /** The process is alive (answers even when the database is not). */
  @Get('healthz')
  @Public()
  @ApiOperation({ summary: 'Liveness: the process answers' })
  @ApiOkResponse({
    description: 'Alive',
    schema: {
      type: 'object',
      properties: { status: { type: 'string', enum: ['ok'] } },
      required: ['status'],
    },
  })
  live() {
    return { status: 'ok' };
  }

  @Get('readyz')
  @Public()
  @ApiOperation({ summary: 'Readiness: database, poller and remotes (503 naming what is not)' })
  @ApiOkResponse({
    description: 'Ready',
    schema: {
      type: 'object',
      properties: {
        status: { type: 'string', enum: ['ready'] },
        checks: {
          type: 'object',
          properties: {
            database: { type: 'string' },
            poller: { type: 'string' },
            remotes: { type: 'string' },
          },
          required: ['database', 'poller', 'remotes'],
        },
      },
      required: ['status', 'checks'],
    },
  })
  ready() {
    return this.health.readiness();
  }

  /**
   * Prometheus text format, to a token with system.audit on / (or without one on the listener of
   * DEBVISOR_METRICS_LISTEN): remote ids and counts are not for anonymous callers.
   */
  @Get('metrics')
  @RequirePrivilege('system.audit', '/')
  @ApiOperation({ summary: 'Prometheus metrics of the manager' })
  @ApiProduces('text/plain')
  @ApiOkResponse({
    description: 'The Prometheus text exposition format',
    content: { 'text/plain': { schema: { type: 'string' } } },
  })
  @Header('Content-Type', PROMETHEUS_CONTENT_TYPE)
  metrics() {
    return this.health.metricsText();
  }
}
