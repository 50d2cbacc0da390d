import { DynamicModule, Global, Module } from '@nestjs/common';
import { MetricsModule } from '../health/metrics.module';
import { AuditController } from './audit.controller';
import { AuditFileSinkRepository, AUDIT_FILE } from './audit-file-sink.repository';
import { AuditLogRepository, AUDIT_DATABASE_URL } from './audit-log.repository';
import { AuditQueryRepository } from './audit-query.repository';
import { AuditWriter } from './audit-writer';
import { AuditService } from './audit.service';

/** The audit log: global, because every feature records into it (the guard, agent calls, tasks). */
@Global()
@Module({})
export class AuditModule {
  static forRoot(options: { databaseUrl: string; auditFile: string | undefined }): DynamicModule {
    return {
      module: AuditModule,
      imports: [MetricsModule],
      controllers: [AuditController],
      providers: [
        { provide: AUDIT_DATABASE_URL, useValue: options.databaseUrl },
        { provide: AUDIT_FILE, useValue: options.auditFile },
        AuditLogRepository,
        AuditFileSinkRepository,
        AuditQueryRepository,
        AuditWriter,
        AuditService,
      ],
      exports: [AuditService],
    };
  }
}
