import {
  createClusterPki,
  createWanLink,
  spawnManaged,
  type ManagedProcess,
  type WanLink,
} from '@debvisor/testing';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ENDPOINT = join(__dirname, 'fixtures/data-path-endpoint.mjs');
const MiB = 1024 * 1024;

interface EndpointLine {
  listening?: number;
  tokens?: string[];
  done?: boolean;
  digests?: string[];
  ms?: number;
}

/**
 * The migration data path across an emulated WAN: each end in a network namespace of its own,
 * joined by a link with 20 ms of round trip and 1 Gbit/s each way (createWanLink: this kernel has
 * no sch_netem, so a user-space wire delays and shapes the packets between two TUN devices). The ends run
 * the agent's own data-path code (the port's TLS front and TunnelDataServer at the target,
 * TunnelDataClientRepository at the source) from apps/agent/dist.
 */
describe('migration data path over an emulated WAN (ip netns, a user-space netem wire)', () => {
  let link: WanLink;
  let pki: Awaited<ReturnType<typeof createClusterPki>>;
  const processes: ManagedProcess[] = [];

  beforeAll(async () => {
    [link, pki] = await Promise.all([
      createWanLink({ rttMs: 20, rateMbit: 1000 }),
      createClusterPki('wan'),
    ]);
  });
  afterAll(async () => {
    await Promise.all(processes.map((p) => p.stop()));
    await link?.destroy();
  });

  async function endpoint(end: 0 | 1, args: Record<string, unknown>) {
    const [command, ...prefix] = link.exec(end);
    const child = spawnManaged(`data-path ${String(args.role)}`, command!, [
      ...prefix,
      process.execPath,
      ENDPOINT,
      JSON.stringify(args),
    ]);
    processes.push(child);
    return child;
  }

  /** The JSON line of `child` that has `key`. */
  async function line(child: ManagedProcess, key: keyof EndpointLine): Promise<EndpointLine> {
    const match = await child.waitFor(new RegExp(`^\\{"${key}":.*\\}$`, 'm'), 60_000);
    return JSON.parse(match[0]) as EndpointLine;
  }

  it('carries two channels intact through the TLS data path, and refuses a wrong token there', async () => {
    const [source, target] = await Promise.all([pki.agent('node-1'), pki.agent('node-2')]);
    const identity = (own: typeof source, peerNodeId: string) => ({
      caPem: pki.ca.certPem,
      certPem: own.certPem,
      keyPem: own.keyPem,
      peerNodeId,
    });
    const common = { mode: 'tunnel', channels: 2, bytesPerChannel: 32 * MiB };
    const sink = await endpoint(1, {
      ...common,
      role: 'sink',
      host: link.addresses[1],
      pki: identity(target, 'node-1'),
    });
    const { listening, tokens } = await line(sink, 'listening');
    const run = (withTokens: string[]) =>
      endpoint(0, {
        ...common,
        role: 'source',
        host: link.addresses[1],
        port: listening,
        tokens: withTokens,
        pki: identity(source, 'node-2'),
      });

    // A token the target never handed out: refused before a byte of QEMU's goes anywhere.
    const impostor = await run(tokens!.map(() => 'ab'.repeat(32)));
    expect(await impostor.exited).not.toBe(0);
    expect(impostor.output()).toMatch(
      /refused data channel \d: unknown or used data channel token/,
    );

    const sender = await run(tokens!);
    const [sent, received] = await Promise.all([line(sender, 'done'), line(sink, 'done')]);
    expect(received.digests).toHaveLength(2);
    expect([...received.digests!].sort()).toEqual([...sent.digests!].sort());
  });
});
