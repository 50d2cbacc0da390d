import { randomBytes } from 'node:crypto';
import { Resolver } from 'node:dns/promises';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { requireBinary } from './binaries';
import { freePort } from './ports';
import { spawnManaged, type ManagedProcess } from './processes';
import { tempDir } from './temp';

export interface Bind9Zone {
  /** The zone's name without the final dot, e.g. example.test. */
  name: string;
  /** Extra records in zone-file syntax, relative to the zone (`www IN A 127.0.0.1`). */
  records?: string[];
}

export interface Bind9Options {
  zones: Bind9Zone[];
  /** TSIG algorithm of the update key; hmac-sha256 by default. */
  algorithm?: 'hmac-sha256' | 'hmac-sha512';
  /**
   * Answer recursive queries (from 127.0.0.1 only) so that a CNAME into another of its zones is
   * followed, as a resolver would; names outside its zones are not resolved (no root hints used).
   */
  recursion?: boolean;
}

export interface Bind9Instance {
  /** 127.0.0.1 */
  readonly host: string;
  /** The port named answers on (UDP and TCP); every zone's NS is ns1.<zone> → 127.0.0.1. */
  readonly port: number;
  /** host:port, for pebble's -dnsserver. */
  readonly server: string;
  /** The TSIG key allowed to update every zone. */
  readonly tsig: { readonly name: string; readonly algorithm: string; readonly secret: string };
  readonly process: ManagedProcess;
  /** The TXT strings at `name` as named answers now. */
  txt(name: string): Promise<string[]>;
  stop(): Promise<void>;
}

/**
 * A throw-away authoritative Bind9 (Debian package bind9) on a free loopback port, with the given
 * zones accepting RFC 2136 updates signed with one TSIG key; no rndc.
 */
export async function startBind9(options: Bind9Options): Promise<Bind9Instance> {
  const named = requireBinary('named', 'bind9');
  if (options.zones.length === 0) throw new Error('startBind9 needs at least one zone');
  for (const zone of options.zones) {
    if (!/^[a-z0-9-]+(\.[a-z0-9-]+)+$/.test(zone.name))
      throw new Error(`not a zone name: ${zone.name}`);
  }
  const dir = tempDir('debvisor-bind9-');
  try {
    const port = await freePort();
    const tsig = {
      name: 'debvisor-acme',
      algorithm: options.algorithm ?? 'hmac-sha256',
      secret: randomBytes(32).toString('base64'),
    };
    const zonesDir = join(dir, 'zones');
    mkdirSync(zonesDir);
    for (const zone of options.zones) {
      writeFileSync(
        join(zonesDir, `${zone.name}.zone`),
        [
          `$ORIGIN ${zone.name}.`,
          '$TTL 60',
          `@ IN SOA ns1.${zone.name}. hostmaster.${zone.name}. 1 60 60 600 60`,
          `@ IN NS ns1.${zone.name}.`,
          'ns1 IN A 127.0.0.1',
          ...(zone.records ?? []),
          '',
        ].join('\n'),
      );
    }
    const configFile = join(dir, 'named.conf');
    writeFileSync(
      configFile,
      [
        `key "${tsig.name}" { algorithm ${tsig.algorithm}; secret "${tsig.secret}"; };`,
        'options {',
        `  directory "${dir}";`,
        `  pid-file "${join(dir, 'named.pid')}";`,
        `  session-keyfile "${join(dir, 'session.key')}";`,
        `  listen-on port ${port} { 127.0.0.1; };`,
        '  listen-on-v6 { none; };',
        ...(options.recursion
          ? ['  recursion yes;', '  allow-recursion { 127.0.0.1; };', '  forwarders { };']
          : ['  recursion no;']),
        '  dnssec-validation no;',
        '  notify no;',
        '};',
        'controls { };',
        ...options.zones.map(
          (zone) =>
            `zone "${zone.name}" { type primary; file "${join(zonesDir, `${zone.name}.zone`)}"; ` +
            `allow-update { key "${tsig.name}"; }; };`,
        ),
        '',
      ].join('\n'),
      { mode: 0o600 },
    );
    const child = spawnManaged('named', named, ['-g', '-4', '-c', configFile]);
    const resolver = new Resolver({ timeout: 1000, tries: 1 });
    resolver.setServers([`127.0.0.1:${port}`]);
    try {
      await child.waitFor(/^\S+ \S+ running$/m, 30_000);
      for (const zone of options.zones) await resolver.resolveSoa(zone.name);
    } catch (error) {
      await child.kill();
      throw new Error(
        `named did not start: ${(error as Error).message}\n${child.output().slice(-4000)}`,
      );
    }
    return {
      host: '127.0.0.1',
      port,
      server: `127.0.0.1:${port}`,
      tsig,
      process: child,
      async txt(name) {
        try {
          return (await resolver.resolveTxt(name)).map((parts) => parts.join(''));
        } catch (error) {
          if ((error as { code?: string }).code === 'ENODATA') return [];
          if ((error as { code?: string }).code === 'ENOTFOUND') return [];
          throw error;
        }
      },
      async stop() {
        await child.stop();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}
