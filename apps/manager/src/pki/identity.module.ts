import { Module } from '@nestjs/common';
import { MANAGER_CONFIG, type ManagerConfig } from '../config/manager-config';
import { MetricsModule } from '../health/metrics.module';
import { SchedulerModule } from '../scheduler/scheduler.module';
import {
  ClientCertificateService,
  RENEWAL_JITTER,
  uniformJitter,
} from './client-certificate.service';
import { IdentityController } from './identity.controller';
import { IdentityService } from './identity.service';
import { StateDirRepository } from './state-dir.repository';

@Module({
  // The scheduler is global; imported here too so that the renewal runs wherever this module does.
  imports: [MetricsModule, SchedulerModule],
  controllers: [IdentityController],
  providers: [
    IdentityService,
    ClientCertificateService,
    {
      provide: StateDirRepository,
      useFactory: (config: ManagerConfig) => new StateDirRepository(config.stateDir),
      inject: [MANAGER_CONFIG],
    },
    { provide: RENEWAL_JITTER, useValue: uniformJitter },
  ],
  exports: [ClientCertificateService],
})
export class IdentityModule {}
