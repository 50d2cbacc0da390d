import { ConfigError } from './config/manager-config';
import { startManager } from './manager-app';

/** The manager's entry point: start, then stop cleanly on SIGTERM or SIGINT. */
async function main(): Promise<void> {
  const manager = await startManager();
  let signalled = false;
  const shutdown = (signal: NodeJS.Signals) => {
    if (signalled) return;
    signalled = true;
    manager.logger.info({ signal }, 'stopping');
    const force = setTimeout(() => {
      manager.logger.error('shutdown took longer than 30 s; exiting');
      process.exit(1);
    }, 30_000);
    force.unref();
    manager.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        manager.logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
}

main().catch((error: unknown) => {
  // Start-up failed before the JSON log existed or while starting: say why, plainly, and stop.
  const message =
    error instanceof ConfigError
      ? error.message
      : error instanceof Error
        ? (error.stack ?? error.message)
        : String(error);
  process.stderr.write(`debvisor-manager: cannot start: ${message}\n`);
  process.exit(1);
});
