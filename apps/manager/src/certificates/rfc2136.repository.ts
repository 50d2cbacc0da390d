import { Injectable } from '@nestjs/common';
import { execFile } from 'node:child_process';
import { Resolver } from 'node:dns/promises';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ChallengeSetupError } from './acme.repository';

/** How the manager reaches the zone's primary for RFC 2136 updates (as lego's and certbot's rfc2136). */
export interface Rfc2136Settings {
  /** IP address or host name of the primary that accepts updates. */
  readonly server: string;
  readonly port: number;
  readonly keyName: string;
  readonly algorithm: 'hmac-sha256' | 'hmac-sha512';
  /** The TSIG secret, base64. */
  readonly secret: string;
  /** How long to wait until every authoritative server answers the record. */
  readonly propagationTimeoutSeconds: number;
  readonly ttl: number;
}

const NAME =
  /^(?=.{1,253}$)([A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?$/;
const TXT_VALUE = /^[A-Za-z0-9_-]{1,255}$/;
const KEY_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/;
const SECRET = /^[A-Za-z0-9+/]+={0,2}$/;

/**
 * DNS-01 records through RFC 2136 dynamic updates signed with TSIG, sent by `nsupdate` (Debian
 * bind9-dnsutils) with a key file that exists only for the call; CNAMEs at `_acme-challenge` are
 * followed (alias mode); propagation is checked by asking each of the zone's authoritative servers.
 */
@Injectable()
export class Rfc2136Repository {
  /** The name the TXT record goes to: `_acme-challenge.<name>`, or where a CNAME there points. */
  async recordName(settings: Rfc2136Settings, identifier: string): Promise<string> {
    let name = `_acme-challenge.${identifier}`;
    const resolver = await this.resolverFor(settings.server, settings.port);
    for (let hops = 0; hops < 8; hops++) {
      const target = await resolver.resolveCname(name).then(
        (answers) => answers[0],
        () => undefined,
      );
      if (!target) return name;
      name = target.replace(/\.$/, '');
    }
    throw new ChallengeSetupError(`the CNAME chain at _acme-challenge.${identifier} is too long`);
  }

  async addTxt(settings: Rfc2136Settings, name: string, value: string): Promise<string> {
    const zone = await this.zoneOf(settings, name);
    await this.update(
      settings,
      zone,
      [`update add ${name}. ${settings.ttl} IN TXT "${value}"`],
      name,
      value,
    );
    return zone;
  }

  async deleteTxt(settings: Rfc2136Settings, name: string, value: string): Promise<void> {
    const zone = await this.zoneOf(settings, name);
    await this.update(settings, zone, [`update delete ${name}. IN TXT "${value}"`], name, value);
  }

  /** Resolves once every authoritative server of `zone` answers `value` at `name`; fails at the deadline. */
  async waitForPropagation(
    settings: Rfc2136Settings,
    zone: string,
    name: string,
    value: string,
  ): Promise<void> {
    const primary = await this.resolverFor(settings.server, settings.port);
    const nsNames = await primary.resolveNs(zone).catch(() => [] as string[]);
    const addresses = new Set<string>();
    for (const ns of nsNames) {
      const found = await primary
        .resolve4(ns)
        .catch(() => new Resolver({ timeout: 2000, tries: 2 }).resolve4(ns))
        .catch(() => [] as string[]);
      for (const address of found) addresses.add(address);
    }
    if (addresses.size === 0)
      throw new ChallengeSetupError(
        `no authoritative server of ${zone} could be found (its NS records and their addresses)`,
      );
    const deadline = Date.now() + settings.propagationTimeoutSeconds * 1000;
    const pending = new Set(addresses);
    for (;;) {
      for (const address of [...pending]) {
        const resolver = new Resolver({ timeout: 1000, tries: 1 });
        resolver.setServers([`${address}:${settings.port}`]);
        const answers = await resolver.resolveTxt(name).catch(() => [] as string[][]);
        if (answers.some((parts) => parts.join('') === value)) pending.delete(address);
      }
      if (pending.size === 0) return;
      if (Date.now() > deadline)
        throw new ChallengeSetupError(
          `the TXT record ${name} did not reach every authoritative server of ${zone} within ${settings.propagationTimeoutSeconds} s (missing at ${[...pending].join(', ')})`,
        );
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }

  /** The zone holding `name`: the closest enclosing name the primary answers an SOA for. */
  private async zoneOf(settings: Rfc2136Settings, name: string): Promise<string> {
    const resolver = await this.resolverFor(settings.server, settings.port);
    const labels = name.split('.');
    for (let i = 0; i < labels.length - 1; i++) {
      const candidate = labels.slice(i).join('.');
      const soa = await resolver.resolveSoa(candidate).catch(() => undefined);
      if (soa) return candidate;
    }
    throw new ChallengeSetupError(
      `${settings.server}:${settings.port} is not authoritative for any zone holding ${name}`,
    );
  }

  private async update(
    settings: Rfc2136Settings,
    zone: string,
    commands: string[],
    name: string,
    value: string,
  ): Promise<void> {
    if (!NAME.test(name) || !NAME.test(zone))
      throw new ChallengeSetupError(`not a DNS name: ${name}`);
    if (!TXT_VALUE.test(value)) throw new ChallengeSetupError('the TXT value is not base64url');
    if (!KEY_NAME.test(settings.keyName))
      throw new ChallengeSetupError('the TSIG key name is not valid');
    if (!SECRET.test(settings.secret))
      throw new ChallengeSetupError('the TSIG secret is not base64');
    const server = await this.serverAddress(settings.server);
    const dir = mkdtempSync(join(tmpdir(), 'debvisor-nsupdate-'));
    try {
      const keyFile = join(dir, 'tsig.key');
      writeFileSync(
        keyFile,
        `key "${settings.keyName}" { algorithm ${settings.algorithm}; secret "${settings.secret}"; };\n`,
        { mode: 0o600 },
      );
      const commandFile = join(dir, 'commands');
      writeFileSync(
        commandFile,
        [`server ${server} ${settings.port}`, `zone ${zone}.`, ...commands, 'send', ''].join('\n'),
        { mode: 0o600 },
      );
      await new Promise<void>((resolve, reject) => {
        execFile(
          'nsupdate',
          ['-k', keyFile, '-t', '10', '-u', '5', '--', commandFile],
          { timeout: 30_000, encoding: 'utf8' },
          (error, stdout, stderr) => {
            if (!error) return resolve();
            if ((error as NodeJS.ErrnoException).code === 'ENOENT')
              return reject(
                new ChallengeSetupError(
                  'nsupdate is not installed: install the Debian package bind9-dnsutils',
                ),
              );
            reject(new ChallengeSetupError(explainFailure(settings, `${stdout}\n${stderr}`)));
          },
        );
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  private async serverAddress(server: string): Promise<string> {
    if (isIP(server)) return server;
    const [address] = await new Resolver({ timeout: 2000, tries: 2 })
      .resolve4(server)
      .catch(() => [] as string[]);
    if (!address) throw new ChallengeSetupError(`the DNS server ${server} cannot be resolved`);
    return address;
  }

  private async resolverFor(server: string, port: number): Promise<Resolver> {
    const resolver = new Resolver({ timeout: 2000, tries: 2 });
    const address = await this.serverAddress(server);
    resolver.setServers([`${address.includes(':') ? `[${address}]` : address}:${port}`]);
    return resolver;
  }
}

/** nsupdate's output turned into a sentence for the operator (never the secret: nsupdate does not print it). */
function explainFailure(settings: Rfc2136Settings, output: string): string {
  const where = `${settings.server}:${settings.port}`;
  if (/BADKEY|BADSIG|tsig verify failure|tsig indicates error|BADTIME/i.test(output))
    return `the DNS server ${where} refused the TSIG key "${settings.keyName}" (${/BADKEY|BADSIG|BADTIME/.exec(output)?.[0] ?? 'signature not accepted'}): check the key name, algorithm and secret`;
  if (/REFUSED/.test(output))
    return `the DNS server ${where} refused the update (REFUSED): its allow-update or update-policy does not admit the key "${settings.keyName}" for this name`;
  if (/NOTAUTH/.test(output))
    return `the DNS server ${where} is not authoritative for the zone (NOTAUTH)`;
  if (/timed out|could not reach|connection refused/i.test(output))
    return `the DNS server ${where} did not answer the update`;
  const line = output
    .split('\n')
    .map((l) => l.trim())
    .find((l) => /failed|error/i.test(l));
  return `the DNS update at ${where} failed${line ? `: ${line.slice(0, 200)}` : ''}`;
}
