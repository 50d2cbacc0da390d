import { Controller, Get, Header } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import { prometheusContentType } from 'prom-client';
import { Public } from '../auth/privilege.decorator';
import { HealthService } from './health.service';

const PROMETHEUS_CONTENT_TYPE: string = prometheusContentType;

@ApiTags('operations')
@Controller()
export class HealthController {
  constructor(private readonly health: HealthService) {}

  /** The process is alive (answers even when the database is not). */
  @Get('healthz')
  @Public()
  live() {
    return { status: 'ok' };
  }

  @Get('readyz')
  @Public()
  ready() {
    return this.health.readiness();
  }

  /** Prometheus text format. */
  @Get('metrics')
  @Public()
  @Header('Content-Type', PROMETHEUS_CONTENT_TYPE)
  metrics() {
    return this.health.metricsText();
  }
}
