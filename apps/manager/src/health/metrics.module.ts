import { Global, Module } from '@nestjs/common';
import { MetricsService } from './metrics.service';

/** One metrics registry for the whole manager: every feature may count. */
@Global()
@Module({ providers: [MetricsService], exports: [MetricsService] })
export class MetricsModule {}
