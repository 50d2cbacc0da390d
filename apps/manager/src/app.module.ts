import { DynamicModule, Global, Module, RequestMethod } from '@nestjs/common';
import { APP_FILTER, APP_GUARD, APP_INTERCEPTOR, APP_PIPE } from '@nestjs/core';
import { TypeOrmModule } from '@nestjs/typeorm';
import { ZodSerializerInterceptor } from 'nestjs-zod';
import { LoggerModule } from 'nestjs-pino';
import type { Logger } from 'pino';
import { AclModule } from './acl/acl.module';
import { AgentsModule } from './agents/agents.module';
import { AuditModule } from './audit/audit.module';
import { AuditInterceptor } from './audit/audit.interceptor';
import { AuthGuard } from './authn/auth.guard';
import { AuthModule } from './authn/auth.module';
import { CertificatesModule } from './certificates/certificates.module';
import { ConsoleModule } from './console/console.module';
import { ClockRepository } from './common/clock.repository';
import { BodylessRouteInterceptor } from './common/bodyless-route.interceptor';
import { ErrorFilter } from './http/error.filter';
import {
  OPERATOR_OUTPUT,
  OperatorConsoleRepository,
  type OperatorOutput,
} from './common/operator-console.repository';
import { RandomRepository } from './common/random.repository';
import { ValidationPipe } from './common/validation.pipe';
import { MANAGER_CONFIG, type ManagerConfig } from './config/manager-config';
import { DashboardModule } from './dashboard/dashboard.module';
import { GroupsModule } from './groups/groups.module';
import { HaModule } from './ha/ha.module';
import { dataSourceOptions } from './database/data-source-options';
import { UnitOfWork } from './database/unit-of-work.repository';
import { HealthModule } from './probes/health.module';
import { MetricsModule } from './health/metrics.module';
import { MigrationModule } from './migration/migration.module';
import { ClusterCaModule } from './cluster-ca/cluster-ca.module';
import { IdentityModule } from './pki/identity.module';
import { MANAGER_IDENTITY, type ManagerIdentity } from './pki/state-dir.repository';
import { OpenApiModule } from './openapi/openapi.module';
import { RemoteGroupsModule } from './remote-groups/remote-groups.module';
import { RemotesModule } from './remotes/remotes.module';
import { ReplicationModule } from './replication/replication.module';
import { ResourcesModule } from './resources/resources.module';
import { SchedulerModule } from './scheduler/scheduler.module';
import { OidcLoginModule } from './sessions/oidc-login.module';
import { SessionsModule } from './sessions/sessions.module';
import { SnapshotsModule } from './snapshots/snapshots.module';
import { TasksModule } from './tasks/tasks.module';
import { TokensModule } from './tokens/tokens.module';
import { UsersModule } from './users/users.module';
import { VmsModule } from './vms/vms.module';

/** What start-up prepared before Nest: configuration, state-dir identity, database, logger. */
export interface ManagerRuntime {
  readonly config: ManagerConfig;
  readonly identity: ManagerIdentity;
  readonly databaseUrl: string;
  readonly logger: Logger;
  readonly operatorOutput: OperatorOutput;
}

/** Configuration, identity and the small repositories every feature may use. */
@Global()
@Module({})
class RuntimeModule {
  static forRoot(runtime: ManagerRuntime): DynamicModule {
    const providers = [
      { provide: MANAGER_CONFIG, useValue: runtime.config },
      { provide: MANAGER_IDENTITY, useValue: runtime.identity },
      { provide: OPERATOR_OUTPUT, useValue: runtime.operatorOutput },
      ClockRepository,
      RandomRepository,
      OperatorConsoleRepository,
      UnitOfWork,
    ];
    return { module: RuntimeModule, providers, exports: providers };
  }
}

@Module({})
export class AppModule {
  static forRoot(runtime: ManagerRuntime): DynamicModule {
    return {
      module: AppModule,
      imports: [
        RuntimeModule.forRoot(runtime),
        // pino-http runs as the first Express middleware (see manager-app.ts) so that every request,
        // even one refused by the body parser, has its trace id; this binds its logger for Nest code.
        LoggerModule.forRoot({
          pinoHttp: { logger: runtime.logger },
          useExisting: true,
          forRoutes: [{ path: '{*splat}', method: RequestMethod.ALL }],
        }),
        // Migrations ran before, as the database owner (prepareDatabase); the application serves with the runtime role.
        TypeOrmModule.forRoot({
          ...dataSourceOptions(runtime.databaseUrl),
          migrationsRun: false,
          retryAttempts: 3,
          retryDelay: 2000,
        }),
        AuditModule.forRoot({
          databaseUrl: runtime.databaseUrl,
          auditFile: runtime.config.auditFile,
        }),
        AuthModule,
        SessionsModule,
        UsersModule,
        GroupsModule,
        AclModule,
        TokensModule,
        RemoteGroupsModule,
        OidcLoginModule,
        AgentsModule,
        MetricsModule,
        SchedulerModule,
        IdentityModule,
        CertificatesModule,
        ClusterCaModule,
        RemotesModule,
        ResourcesModule,
        DashboardModule,
        TasksModule,
        VmsModule,
        ConsoleModule,
        MigrationModule,
        ReplicationModule,
        SnapshotsModule,
        HaModule,
        HealthModule,
        OpenApiModule,
      ],
      providers: [
        { provide: APP_PIPE, useClass: ValidationPipe },
        { provide: APP_INTERCEPTOR, useClass: BodylessRouteInterceptor },
        { provide: APP_INTERCEPTOR, useClass: AuditInterceptor },
        { provide: APP_INTERCEPTOR, useClass: ZodSerializerInterceptor },
        { provide: APP_FILTER, useClass: ErrorFilter },
        { provide: APP_GUARD, useClass: AuthGuard },
      ],
    };
  }
}
