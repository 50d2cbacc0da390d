#!/usr/bin/env node
// debvisor-rpcd: the DebVisor node agent. Usage: debvisor-rpcd --config /etc/debvisor/agent.json
import { parseArgs } from 'node:util';
import { startAgent, type RunningAgent } from './agent';
import { ConfigError, loadAgentConfig } from './config/agent-config.loader';
import { createLogger, lifecycleLogger } from './shared/logger';

const USAGE = 'usage: debvisor-rpcd --config <file.json>';

function readOptions(): string {
  try {
    const { values } = parseArgs({
      options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
    });
    if (values.help) {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    }
    if (!values.config) throw new Error('--config is required');
    return values.config;
  } catch (error) {
    process.stderr.write(`debvisor-rpcd: ${(error as Error).message}\n${USAGE}\n`);
    process.exit(2);
  }
}

function main(): void {
  const path = readOptions();
  let config;
  try {
    config = loadAgentConfig(path);
  } catch (error) {
    process.stderr.write(`debvisor-rpcd: ${(error as Error).message}\n`);
    process.exit(2);
  }
  const logger = createLogger(config.logLevel, {
    clusterId: config.clusterId,
    nodeId: config.nodeId,
  });
  const fatal = (message: string) => (error: unknown) => {
    logger.fatal({ err: error }, message);
    process.exit(1);
  };
  process.on('uncaughtException', fatal('uncaught exception'));
  process.on('unhandledRejection', fatal('unhandled promise rejection'));

  const starting: Promise<RunningAgent> = startAgent(config, logger);
  starting.catch((error: unknown) => {
    if (error instanceof ConfigError) {
      logger.fatal(error.message);
      process.stderr.write(`debvisor-rpcd: ${error.message}\n`);
      process.exit(2);
    }
    fatal('start-up failed')(error);
  });

  let stopping = false;
  const lifecycle = lifecycleLogger(logger);
  const shutdown = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    lifecycle.info({ signal }, 'shutting down');
    starting
      .then((agent) => agent.stop())
      .then(() => {
        lifecycle.info('agent stopped');
        process.exit(0);
      }, fatal('unclean shutdown'));
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
}

main();
