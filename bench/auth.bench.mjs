// npm run bench -- auth
//
// What authentication and authorization add to a request: the same authenticated GET
// (/api/v1/remotes) through the whole HTTPS stack of one manager, alternately
//   token    — with a real API token (the guard authenticates, checks the privilege, rate-limits);
//   baseline — the same route with the guard replaced by one that only attaches the same caller
//              (no authentication, no authorization, no rate limit).
// Requests are sequential over one keep-alive connection, in alternating blocks so that drift
// hits both alike. Also counts password hash verifications during the token phase (must be 0:
// no password hashing on the token path).
//
// Prints one JSON document on stdout (and writes bench-results/auth.json); progress on stderr.
// Environment: BENCH_REQUESTS (per phase, 4000), BENCH_BLOCK (200).
import { createRequire } from 'node:module';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request, Agent } from 'node:https';
import { join } from 'node:path';
import { Writable } from 'node:stream';

const require = createRequire(import.meta.url);
const root = join(import.meta.dirname, '..');
const testing = require(join(root, 'libs/testing/dist/index.js'));
const { startManager } = require(join(root, 'apps/manager/dist/manager-app.js'));
const { AuthGuard } = require(join(root, 'apps/manager/dist/auth/auth.guard.js'));
const { AuthService } = require(join(root, 'apps/manager/dist/auth/auth.service.js'));
const { PasswordHasherRepository } = require(
  join(root, 'apps/manager/dist/access/password-hasher.repository.js'),
);
const { CALLER_KEY } = require(join(root, 'apps/manager/dist/auth/caller.js'));

const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 4000);
const BLOCK = Number(process.env.BENCH_BLOCK ?? 200);
const log = (message) => process.stderr.write(`[bench auth] ${message}\n`);
const round = (value, digits = 3) => Math.round(value * 10 ** digits) / 10 ** digits;
const percentile = (values, p) => {
  const sorted = [...values].sort((a, b) => a - b);
  return round(sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]);
};

const postgres = await testing.startPostgres();
const stateDir = testing.tempDir('debvisor-bench-auth-');
let operator = '';
const manager = await startManager({
  env: {
    DEBVISOR_STATE_DIR: stateDir,
    DEBVISOR_LISTEN: '127.0.0.1:0',
    DATABASE_URL: await postgres.createDatabase(),
    DEBVISOR_LOG_LEVEL: 'silent',
    DEBVISOR_WEB_DIR: join(stateDir, 'no-web'),
    DEBVISOR_RATE_LIMIT_PER_PRINCIPAL: '10000000',
    DEBVISOR_RATE_LIMIT_GLOBAL: '10000000',
  },
  operatorOutput: { write: (text) => ((operator += text), true) },
  logDestination: new Writable({ write: (_chunk, _encoding, done) => done() }),
});
const token = /bootstrap admin token: (dvdm_\S+)/.exec(operator)[1];
const agent = new Agent({
  keepAlive: true,
  maxSockets: 1,
  ca: readFileSync(join(stateDir, 'pki/server-ca.crt')),
});

function get(headers) {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const req = request(`${manager.url}/api/v1/remotes`, { agent, headers }, (res) => {
      res.resume();
      res.on('end', () =>
        res.statusCode === 200
          ? resolve(performance.now() - started)
          : reject(new Error(`status ${res.statusCode}`)),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

// The baseline guard attaches the caller the real guard would, and nothing else.
// The guard is an application-wide provider (APP_GUARD): switch its method on the prototype.
const guard = AuthGuard.prototype;
const realCanActivate = guard.canActivate;
const caller = await manager.app
  .get(AuthService)
  .authenticate({ authorization: `Bearer ${token}`, safeMethod: true });
const baselineCanActivate = (context) => {
  context.switchToHttp().getRequest()[CALLER_KEY] = caller;
  return true;
};
let hashVerifications = 0;
const hasher = manager.app.get(PasswordHasherRepository);
for (const method of ['verify', 'burn', 'hash']) {
  const original = hasher[method].bind(hasher);
  hasher[method] = (...args) => {
    hashVerifications += 1;
    return original(...args);
  };
}

const times = { token: [], baseline: [] };
log('warming up');
for (let i = 0; i < 300; i += 1) await get({ authorization: `Bearer ${token}` });
log(`measuring ${REQUESTS} requests per phase in blocks of ${BLOCK}`);
for (let done = 0; done < REQUESTS; done += BLOCK) {
  guard.canActivate = realCanActivate;
  for (let i = 0; i < BLOCK; i += 1)
    times.token.push(await get({ authorization: `Bearer ${token}` }));
  guard.canActivate = baselineCanActivate;
  for (let i = 0; i < BLOCK; i += 1) times.baseline.push(await get({}));
}
guard.canActivate = realCanActivate;

const summary = (values) => ({
  p50: percentile(values, 50),
  p99: percentile(values, 99),
  mean: round(values.reduce((a, b) => a + b, 0) / values.length),
});
const tokenStats = summary(times.token);
const baseStats = summary(times.baseline);
const result = {
  benchmark: 'auth',
  route: 'GET /api/v1/remotes',
  requestsPerPhase: times.token.length,
  unit: 'ms',
  token: tokenStats,
  baseline: baseStats,
  overhead: {
    p50: round(tokenStats.p50 - baseStats.p50),
    p99: round(tokenStats.p99 - baseStats.p99),
    mean: round(tokenStats.mean - baseStats.mean),
  },
  aim: { overheadP50BelowMs: 0.5 },
  passwordHashesOnTokenPath: hashVerifications,
};
agent.destroy();
await manager.stop();
await postgres.stop();
testing.cleanupTempDirs();
mkdirSync(join(root, 'bench-results'), { recursive: true });
writeFileSync(join(root, 'bench-results/auth.json'), `${JSON.stringify(result, null, 2)}\n`);
process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
