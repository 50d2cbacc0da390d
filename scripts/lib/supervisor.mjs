// The demo's process supervisor: a child that exits while the demo runs is reported and started
// again after a back-off (1 s, 2 s, 4 s … at most 30 s; back to 1 s once it ran for a minute). An
// operator holds one (stops it and keeps it stopped) by creating a file named after it in the hold
// directory, and lets it start again by removing the file.
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const DEFAULT_BACKOFF = { initialMs: 1000, maxMs: 30_000, stableMs: 60_000 };

/**
 * Supervises one child. `start()` starts it and answers its ManagedProcess (libs/testing) once it
 * is up; `say` reports. The supervisor writes the child's pid to `<pidDir>/<id>.pid` and looks
 * for `<holdDir>/<id>` every `pollMs`. `shuttingDown()` true: the whole demo is stopping (Ctrl-C
 * reaches every child of the terminal at once), so an exit is expected and nothing is restarted.
 */
export class Supervised {
  constructor({
    id,
    start,
    say,
    holdDir,
    pidDir,
    backoff = DEFAULT_BACKOFF,
    pollMs = 1000,
    shuttingDown = () => false,
  }) {
    Object.assign(this, {
      id,
      startChild: start,
      say,
      holdDir,
      pidDir,
      backoff,
      pollMs,
      shuttingDown,
    });
    this.current = undefined;
    this.stopping = false;
    this.held = false;
    this.restarts = 0;
    this.delayMs = backoff.initialMs;
    this.timer = undefined;
    this.poller = undefined;
  }

  /** Starts the child (a failure to start is the caller's: the demo cannot begin without it). */
  async start() {
    await this.launch();
    this.poller = setInterval(() => void this.checkHold(), this.pollMs);
    this.poller.unref?.();
    return this.current;
  }

  /** Stops the child for good (Ctrl-C). */
  async stop(graceMs) {
    this.stopping = true;
    clearInterval(this.poller);
    clearTimeout(this.timer);
    await this.current?.stop(graceMs);
    rmSync(this.pidFile(), { force: true });
  }

  pidFile() {
    return join(this.pidDir, `${this.id}.pid`);
  }

  async launch() {
    const child = await this.startChild();
    this.current = child;
    const startedAt = Date.now();
    mkdirSync(this.pidDir, { recursive: true });
    writeFileSync(this.pidFile(), `${child.child.pid}\n`);
    void child.exited.then((code) => this.exited(child, code, Date.now() - startedAt));
  }

  exited(child, code, ranMs) {
    if (this.stopping || this.shuttingDown() || child !== this.current) return;
    rmSync(this.pidFile(), { force: true });
    if (this.held) return; // stopped on purpose: checkHold starts it again
    if (ranMs >= this.backoff.stableMs) this.delayMs = this.backoff.initialMs;
    const how =
      code === null ? `by signal ${child.child.signalCode ?? 'unknown'}` : `with code ${code}`;
    this.restarts += 1;
    this.say(
      `${child.name} exited ${how}; starting it again in ${(this.delayMs / 1000).toFixed(1)} s (restart ${this.restarts})`,
    );
    const delay = this.delayMs;
    this.delayMs = Math.min(this.delayMs * 2, this.backoff.maxMs);
    this.timer = setTimeout(() => void this.relaunch(), delay);
  }

  async relaunch() {
    if (this.stopping || this.shuttingDown() || this.held) return;
    try {
      await this.launch();
      this.say(`${this.current.name} is running again`);
    } catch (error) {
      // Not up (it exited during its start): the next attempt waits longer.
      const delay = this.delayMs;
      this.delayMs = Math.min(this.delayMs * 2, this.backoff.maxMs);
      this.say(
        `${this.id} did not start (${error.message.split('\n')[0]}); trying again in ${(delay / 1000).toFixed(1)} s`,
      );
      this.timer = setTimeout(() => void this.relaunch(), delay);
    }
  }

  async checkHold() {
    if (this.stopping || this.busy) return;
    const wanted = existsSync(join(this.holdDir, this.id));
    if (wanted === this.held) return;
    this.busy = true;
    try {
      this.held = wanted;
      if (wanted) {
        clearTimeout(this.timer);
        this.say(`holding ${this.id} (${join(this.holdDir, this.id)} exists): stopping it`);
        await this.current?.stop(15_000);
      } else {
        this.say(`${this.id} released: starting it`);
        this.delayMs = this.backoff.initialMs;
        await this.relaunch();
      }
    } finally {
      this.busy = false;
    }
  }
}
