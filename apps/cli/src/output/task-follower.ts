import { SingleBar } from 'cli-progress';
import { CliError } from '../cli-error';
import type { CliRuntime } from '../cli-runtime';
import { EXIT } from '../exit-codes';
import { unwrap, type ApiClient, type Schemas } from '../http/api-client';
import { bytes, duration } from './render';

type Task = Schemas['TaskDto_Output'];

const FINAL = new Set(['succeeded', 'failed', 'cancelled']);

/** What the bar says after the percentage: the migration's phase and figures, else the last log line. */
function detail(task: Task): { eta: string; text: string } {
  const m = task.migration;
  if (m?.progress) {
    const p = m.progress;
    const eta = p.etaSeconds > 0 ? duration(p.etaSeconds) : '-';
    return {
      eta,
      text: `${m.phase} ${bytes(p.transferredBytes)}/${bytes(p.totalBytes)} pass ${p.iteration}`,
    };
  }
  if (m) return { eta: '-', text: m.phase };
  return { eta: '-', text: task.log.at(-1)?.message ?? task.state };
}

/**
 * Follows a task to its end with a progress bar (percentage, ETA, phase) on stderr, and answers
 * the final task. A task that ends failed or cancelled is exit code 8, with the task's error.
 */
export async function followTask(runtime: CliRuntime, api: ApiClient, id: string): Promise<Task> {
  const stream = runtime.io.stderr as NodeJS.WritableStream & { isTTY?: boolean };
  const bar = new SingleBar({
    stream,
    format: '{bar} {percentage}% | ETA {etaText} | {state} {detail}',
    barsize: 30,
    hideCursor: !!stream.isTTY,
    noTTYOutput: true,
    notTTYSchedule: 1000,
    etaBuffer: 20,
  });
  let task = await unwrap(api.GET('/api/v1/tasks/{id}', { params: { path: { id } } }));
  const started = Date.now();
  bar.start(100, Math.round(task.progress * 100), { state: task.state, etaText: '-', detail: '' });
  const interval = runtime.io.pollIntervalMs ?? 500;
  try {
    while (!FINAL.has(task.state)) {
      await new Promise((resolve) => setTimeout(resolve, interval));
      task = await unwrap(api.GET('/api/v1/tasks/{id}', { params: { path: { id } } }));
      const d = detail(task);
      const percent = Math.round(task.progress * 100);
      // Our own estimate from the rate so far when the task has no figure of its own.
      const elapsed = (Date.now() - started) / 1000;
      const own = task.progress > 0 ? (elapsed / task.progress) * (1 - task.progress) : NaN;
      bar.update(percent, {
        state: task.state,
        etaText: d.eta !== '-' ? d.eta : duration(own),
        detail: d.text,
      });
    }
    const d = detail(task);
    bar.update(task.state === 'succeeded' ? 100 : Math.round(task.progress * 100), {
      state: task.state,
      etaText: task.state === 'succeeded' ? '0s' : '-',
      detail: d.text,
    });
  } finally {
    bar.stop();
  }
  if (task.state !== 'succeeded')
    throw new CliError(
      `task ${task.id} (${task.type}) ended ${task.state}${task.error ? `: ${task.error}` : ''}`,
      EXIT.taskFailed,
    );
  return task;
}
