import { verifyFiles, type FileChainReport } from '@debvisor/audit';
import type { Command } from 'commander';
import { createWriteStream, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { CliError } from '../cli-error';
import type { CliRuntime } from '../cli-runtime';
import { EXIT } from '../exit-codes';
import { unwrap, type ApiClient } from '../http/api-client';
import { table } from '../output/render';

interface FilterOptions {
  from?: string;
  to?: string;
  principal?: string;
  action?: string;
  target?: string;
  outcome?: 'attempt' | 'success' | 'failure' | 'denied';
  system?: 'all' | 'no-routine' | 'none';
}

function filterOf(options: FilterOptions): FilterOptions {
  return Object.fromEntries(
    Object.entries({
      from: options.from,
      to: options.to,
      principal: options.principal,
      action: options.action,
      target: options.target,
      outcome: options.outcome,
      system: options.system,
    }).filter(([, v]) => v !== undefined),
  ) as FilterOptions;
}

function withFilters(command: Command): Command {
  return command
    .option('--from <time>', 'entries at or after this time (RFC 3339)')
    .option('--to <time>', 'entries before this time (RFC 3339)')
    .option('--principal <who>', 'who: admin@local, @group …')
    .option('--action <name>', 'this action and those below it (vm.power matches vm.power.start)')
    .option('--target <path>', 'this target and everything below it (/remotes/dc-east)')
    .option('--outcome <outcome>', 'attempt | success | failure | denied')
    .option('--system <which>', "the manager's own entries: all | no-routine | none");
}

/** Streams the export (JSON lines, oldest first) into `file`. */
async function exportTo(api: ApiClient, filter: FilterOptions, file: string): Promise<void> {
  const { response, error } = await api.GET('/api/v1/audit/export', {
    params: { query: filter },
    parseAs: 'stream',
  });
  if (!response.ok || !response.body) {
    // The error body was left unread as a stream: read it for the JSON error shape.
    let body: unknown = error;
    try {
      body = JSON.parse(await new Response(response.body).text());
    } catch {
      // not JSON: the status says enough
    }
    throw CliError.fromAnswer(response.status, body);
  }
  await pipeline(
    Readable.fromWeb(response.body as unknown as WebReadableStream<Uint8Array>),
    createWriteStream(file, { mode: 0o600 }),
  );
}

function describe(source: string, report: FileChainReport): string {
  const span =
    report.entries > 0
      ? `${report.entries} entries, seq ${report.firstSeq} to ${report.lastSeq}`
      : 'no entries';
  if (report.ok)
    return [
      `audit log intact (${source}): ${span}`,
      report.headHash ? `head: seq ${report.lastSeq} hash ${report.headHash}` : '',
      report.gaps > 0
        ? `${report.gaps} gaps in the sequence numbers were allowed (--allow-gaps)`
        : '',
    ]
      .filter(Boolean)
      .join('\n');
  const problem = report.problem!;
  const where = report.location ? ` (${report.location.file}, line ${report.location.line})` : '';
  return `audit log BROKEN (${source}): ${problem.kind} entry at seq ${problem.seq ?? '?'}${where}\n${problem.message}`;
}

/** `debvisor audit …`: query, export and verify the manager's hash-chained audit log. */
export function registerAudit(program: Command, runtime: CliRuntime): void {
  const audit = program
    .command('audit')
    .description('Query, export and verify the audit log (needs audit.read)')
    .addHelpText(
      'after',
      `
Examples:
  $ debvisor audit query --action vm.power --from 2026-12-01T00:00:00Z
  $ debvisor audit export --file audit-2026-12.jsonl --from 2026-12-01T00:00:00Z
  $ debvisor audit verify --file audit-2026-12.jsonl --allow-gaps
  $ debvisor audit verify`,
    );

  withFilters(audit.command('query'))
    .description('Audit entries, newest first')
    .option('--limit <n>', 'at most this many (1-1000)', '100')
    .option(
      '--cursor <seq>',
      'the next page: entries with a lower seq (nextCursor of the last page)',
    )
    .addHelpText(
      'after',
      '\nExamples:\n  $ debvisor audit query --principal alice@local --outcome denied\n  $ debvisor audit query --target /remotes/dc-east -o json | jq .items[].action',
    )
    .action(
      async (options: FilterOptions & { limit: string; cursor?: string }, command: Command) => {
        const api = await runtime.api(command);
        const page = await unwrap(
          api.GET('/api/v1/audit', {
            params: {
              query: {
                ...filterOf(options),
                system: options.system ?? 'no-routine',
                limit: Number(options.limit),
                ...(options.cursor ? { cursor: Number(options.cursor) } : {}),
              },
            },
          }),
        );
        runtime.print(
          command,
          page,
          () =>
            table(
              ['seq', 'time', 'principal', 'action', 'target', 'outcome', 'trace id'],
              page.items.map((e) => [
                e.seq,
                e.ts,
                e.principal,
                e.action,
                e.target,
                e.outcome,
                e.traceId,
              ]),
            ) + (page.nextCursor ? `\nmore: --cursor ${page.nextCursor}` : ''),
        );
      },
    );

  withFilters(audit.command('export'))
    .description(
      'Export entries as JSON lines, oldest first (with seq, prevHash, hash: verifiable)',
    )
    .requiredOption(
      '--file <file>',
      'where to write the export (created 0600; - for standard output)',
    )
    .addHelpText(
      'after',
      '\nExamples:\n  $ debvisor audit export --file audit.jsonl\n  $ debvisor audit export --file - --action auth | gzip > auth.jsonl.gz',
    )
    .action(async (options: FilterOptions & { file: string }, command: Command) => {
      const api = await runtime.api(command);
      if (options.file === '-') {
        const dir = mkdtempSync(join(tmpdir(), 'debvisor-audit-'));
        try {
          const temp = join(dir, 'export.jsonl');
          await exportTo(api, filterOf(options), temp);
          const { readFileSync } = await import('node:fs');
          runtime.io.stdout.write(readFileSync(temp, 'utf8'));
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
        return;
      }
      if (existsSync(options.file))
        throw CliError.usage(`${options.file} exists: not overwriting it`);
      await exportTo(api, filterOf(options), options.file);
      runtime.note(`exported to ${options.file}`);
    });

  audit
    .command('verify')
    .description(
      "Walk the hash chain of exported files, or (without --file) of the manager's whole log, exported now",
    )
    .option(
      '--file <file>',
      'a JSON-lines export; repeat for several, oldest first',
      (v: string, p: string[] = []) => [...p, v],
    )
    .option(
      '--allow-gaps',
      'for a filtered export: sequence numbers may jump (each entry is still checked)',
    )
    .addHelpText(
      'after',
      `
Exit code 9 when the chain is broken; the report names the first bad entry.

Examples:
  $ debvisor audit verify
  $ debvisor audit verify --file audit-2026-11.jsonl --file audit-2026-12.jsonl`,
    )
    .action(async (options: { file?: string[]; allowGaps?: boolean }, command: Command) => {
      let report: FileChainReport;
      let source: string;
      if (options.file?.length) {
        for (const file of options.file)
          if (!existsSync(file)) throw CliError.usage(`no such file: ${file}`);
        source = options.file.join(', ');
        report = await verifyFiles(options.file, { allowGaps: options.allowGaps ?? false });
      } else {
        const api = await runtime.api(command);
        const dir = mkdtempSync(join(tmpdir(), 'debvisor-audit-'));
        try {
          const temp = join(dir, 'export.jsonl');
          await exportTo(api, { system: 'all' }, temp);
          source = 'the manager, exported now';
          report = await verifyFiles([temp], {
            allowGaps: options.allowGaps ?? false,
            fromGenesis: true,
          });
          if (report.location) report = { ...report, location: undefined };
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      }
      runtime.print(command, report, () => describe(source, report));
      if (!report.ok) runtime.exitCode = EXIT.chainBroken;
    });
}
