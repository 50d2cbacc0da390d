import 'reflect-metadata';
import { fingerprintSha256 } from '@debvisor/pki';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { Logger as NestPinoLogger } from 'nestjs-pino';
import { isIP, type AddressInfo } from 'node:net';
import type { DestinationStream, Logger } from 'pino';
import { AppModule } from './app.module';
import { answerClientErrorsAsJson } from './common/client-error';
import { controlCharacterMiddleware } from './common/control-characters';
import { jsonBodyMiddleware } from './common/json-body.middleware';
import { createHttpLogger, createRootLogger } from './common/logging';
import { securityHeaders } from './common/security-headers';
import { traceContextMiddleware } from './common/trace-context';
import type { OperatorOutput } from './common/operator-console.repository';
import { AuthService } from './authn/auth.service';
import { CertificatesService } from './certificates/certificates.service';
import { HttpsEndpointRepository } from './certificates/https-endpoint.repository';
import { loadConfig, type ManagerConfig } from './config/manager-config';
import { EmbeddedPostgresRepository } from './database/embedded-postgres.repository';
import { prepareDatabase } from './database/prepare-database';
import { httpMetricsMiddleware } from './health/http-metrics.middleware';
import { startMetricsListener } from './health/metrics-listener';
import { MetricsService } from './health/metrics.service';
import { StateDirRepository } from './pki/state-dir.repository';
import { OpenApiService } from './openapi/openapi.service';
import { SchedulerService } from './scheduler/scheduler.service';
import { webUiMiddleware } from './web/web-ui.middleware';
import { ConsoleGatewayService } from './console/console-gateway.service';

export const MANAGER_VERSION = '0.1.0';

export interface StartOptions {
  /** Settings; the process environment by default. */
  env?: Readonly<Record<string, string | undefined>>;
  /** Where the JSON log goes; standard output by default. */
  logDestination?: DestinationStream;
  /** Where messages for the operator (the bootstrap token banner) go; standard output by default. */
  operatorOutput?: OperatorOutput;
}

export interface RunningManager {
  readonly config: ManagerConfig;
  /** The URL the manager announces (DEBVISOR_PUBLIC_URL, else https://<listen host>:<port>). */
  readonly url: string;
  /** The port actually bound (differs from the configuration when it asked for port 0). */
  readonly port: number;
  readonly app: NestExpressApplication;
  readonly logger: Logger;
  /** Stops in order: background jobs, HTTP, running tasks (grace period), database pools, embedded PostgreSQL. */
  stop(): Promise<void>;
}

/**
 * Starts the manager: configuration → state directory (certificates, secret key) → PostgreSQL
 * (embedded unless DATABASE_URL) → migrations as the owner and the runtime role's grants → Nest
 * with TypeORM, whose bootstrap starts the scheduler (interrupted tasks failed first, then the
 * pollers, syncs and schedules) → first admin token → HTTPS.
 */
export async function startManager(options: StartOptions = {}): Promise<RunningManager> {
  const config = loadConfig(options.env);
  const logger = createRootLogger(config.logLevel, options.logDestination);
  const state = new StateDirRepository(config.stateDir);
  const serverNames = StateDirRepository.defaultServerNames();
  // The HTTPS certificate also names the public URL's host and a specific listening address.
  for (const host of [
    config.publicUrl ? new URL(config.publicUrl).hostname.replace(/^\[|\]$/g, '') : undefined,
    config.listen.host,
  ]) {
    if (!host || host === '0.0.0.0' || host === '::') continue;
    const list = isIP(host) ? serverNames.ipAddresses : serverNames.dnsNames;
    if (!list.includes(host)) list.push(host);
  }
  const identity = await state.loadIdentity(serverNames);
  logger.info(
    { path: identity.client.caFile, fingerprintSha256: fingerprintSha256(identity.client.caPem) },
    "manager client CA: add this file to every agent's tls.clientCas",
  );

  let embedded: EmbeddedPostgresRepository | undefined;
  let embeddedSuperuserUrl: string | undefined;
  if (!config.databaseUrl) {
    embedded = new EmbeddedPostgresRepository(
      state.postgresDir,
      state.loadOrCreateDatabasePassword(),
      (message) => logger.warn({ dataDir: state.postgresDir }, message),
    );
    embeddedSuperuserUrl = await embedded.start();
    logger.info({ dataDir: state.postgresDir }, 'embedded PostgreSQL started');
  }

  let app: NestExpressApplication | undefined;
  let metricsListener: Awaited<ReturnType<typeof startMetricsListener>> | undefined;
  try {
    // Migrations as the owner, then the role the manager serves with (see docs/manager.md, "Audit log").
    const databaseUrl = await prepareDatabase(
      config,
      { embeddedSuperuserUrl, runtimePassword: () => state.loadOrCreateAppDatabasePassword() },
      logger,
    );
    // The stored ACME or uploaded certificate when there is one, else the self-signed default.
    const serving = CertificatesService.startupCertificate(config.stateDir, identity);
    app = await NestFactory.create<NestExpressApplication>(
      AppModule.forRoot({
        config,
        identity,
        databaseUrl,
        logger,
        operatorOutput: options.operatorOutput ?? process.stdout,
      }),
      {
        httpsOptions: { key: serving.keyPem, cert: serving.chainPem },
        bodyParser: false,
        bufferLogs: true,
        abortOnError: false,
        forceCloseConnections: true,
      },
    );
    app.useLogger(app.get(NestPinoLogger));
    app.disable('x-powered-by');
    answerClientErrorsAsJson(app.getHttpServer());
    // X-Forwarded-For names the client only when a listed proxy sent it (request.ip, requestOrigin).
    app.set(
      'trust proxy',
      config.access.trustedProxies.length > 0 ? [...config.access.trustedProxies] : false,
    );
    // Express middleware, in order, before Nest's routes: trace id and request log, security headers,
    // metrics, web UI, JSON body, control characters, then the trace context (currentTraceId) for
    // everything the request does.
    app.use(createHttpLogger(logger));
    app.use(securityHeaders());
    app.use(httpMetricsMiddleware(app.get(MetricsService)));
    const webUi = webUiMiddleware(config.webDir);
    if (webUi) app.use(webUi);
    else
      logger.info(
        { webDir: config.webDir },
        'no web UI found (no index.html); serving the API only',
      );
    app.use(...jsonBodyMiddleware());
    app.use(controlCharacterMiddleware());
    app.use(traceContextMiddleware());
    app.get(OpenApiService).generate(app, MANAGER_VERSION);

    await app.init();
    await app.get(AuthService).bootstrap();
    app.get(ConsoleGatewayService).start(app.getHttpServer());
    await app.listen(config.listen.port, config.listen.host);
    if (config.metricsListen) {
      const metrics = app.get(MetricsService);
      // The certificate HTTPS serves (ACME or uploaded, else the self-signed one), swapped with it.
      metricsListener = await startMetricsListener(
        config.metricsListen,
        { certPem: serving.chainPem, keyPem: serving.keyPem },
        () => metrics.render(),
      );
      logger.info({ listen: metricsListener.address }, 'metrics listener started');
    }
    app.get(HttpsEndpointRepository).attach(app.getHttpServer(), serving);
    if (metricsListener) app.get(HttpsEndpointRepository).follow(metricsListener.server);
    await app.get(CertificatesService).start();
  } catch (error) {
    await metricsListener?.close().catch(() => undefined);
    await app?.close().catch(() => undefined);
    await embedded?.stop().catch(() => undefined);
    throw error;
  }

  const running = app;
  const port = (running.getHttpServer().address() as AddressInfo).port;
  const host = ['0.0.0.0', '::'].includes(config.listen.host) ? 'localhost' : config.listen.host;
  const url = config.publicUrl ?? `https://${host.includes(':') ? `[${host}]` : host}:${port}`;
  // Lifecycle lines that supervisors wait for are logged whatever the configured level.
  const lifecycle = logger.child({}, { level: 'info' });
  lifecycle.info(
    { url, listen: `${config.listen.host}:${port}`, version: MANAGER_VERSION },
    'manager listening',
  );

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      // Background work first (pollers, syncs, schedules), its runs in flight awaited.
      await running.get(SchedulerService).stop();
      running.get(ConsoleGatewayService).stop();
      await running.get(CertificatesService).stop();
      await metricsListener?.close();
      await running.close();
      await embedded?.stop();
      lifecycle.info('manager stopped');
      logger.flush();
    })());
  return { config, url, port, app: running, logger, stop };
}
