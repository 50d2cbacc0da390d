#!/usr/bin/env node
// debvisor-agent-admin: administration of a DebVisor cluster's agents (API keys, node deny list).
import { API_KEY_USAGE, runApiKeyCommand } from './apikeys/api-key.cli';
import { CA_USAGE, runCaCommand } from './trust/ca.cli';
import { PEER_USAGE, runPeerCommand } from './trust/peer.cli';
import { NODE_USAGE, runNodeCommand } from './trust/trust.cli';

const io = {
  out: (text: string) => process.stdout.write(`${text}\n`),
  err: (text: string) => process.stderr.write(`${text}\n`),
};

async function main(argv: string[]): Promise<number> {
  const [group, ...rest] = argv;
  if (group === 'apikey') return runApiKeyCommand(rest, io);
  if (group === 'node') return runNodeCommand(rest, io);
  if (group === 'peer') return runPeerCommand(rest, io);
  if (group === 'ca') return runCaCommand(rest, io);
  if (group === '--help' || group === '-h' || group === 'help') {
    io.out(`${API_KEY_USAGE}\n\n${NODE_USAGE}\n\n${PEER_USAGE}\n\n${CA_USAGE}`);
    return 0;
  }
  io.err(
    `debvisor-agent-admin: ${group ? `unknown command group "${group}"` : 'name a command group'}\n\n${API_KEY_USAGE}\n\n${NODE_USAGE}\n\n${PEER_USAGE}\n\n${CA_USAGE}`,
  );
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    io.err(`debvisor-agent-admin: ${(error as Error).message}`);
    process.exit(1);
  },
);
