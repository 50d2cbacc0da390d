import { readJsonLines } from './rotating-file';
import { UnreadableLine, verifyChain, type ChainReport, type VerifyOptions } from './verify';

export interface FileChainReport extends ChainReport {
  /** Where the problem is: the file and its line number. */
  readonly location?: { readonly file: string; readonly line: number };
}

/**
 * Verifies JSON-lines audit files as one chain, in the order given (rotated files oldest first,
 * then the live file). The first entry's prevHash is taken as given unless `fromGenesis`.
 */
export async function verifyFiles(
  files: readonly string[],
  options: VerifyOptions = {},
): Promise<FileChainReport> {
  const places: { file: string; line: number }[] = [];
  async function* entries(): AsyncGenerator<unknown> {
    for (const file of files) {
      for await (const item of readJsonLines(file)) {
        places.push({ file, line: item.line });
        yield 'error' in item ? new UnreadableLine(item.error) : item.value;
      }
    }
  }
  const report = await verifyChain(entries(), options);
  return report.problem ? { ...report, location: places[report.problem.position - 1] } : report;
}
