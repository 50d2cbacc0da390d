import { createCa, issueCertificate } from '@debvisor/pki';
import {
  freePort,
  startBind9,
  startChallTestSrv,
  startPebble,
  tempDir,
  type Bind9Instance,
  type ChallTestSrvInstance,
  type PebbleInstance,
} from '@debvisor/testing';
import { X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { Agent, request as httpsRequest } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  startTestDatabases,
  startTestManager,
  type Json,
  type TestDatabases,
  type TestManager,
} from './manager-harness';

const PUBLIC_HOST = 'manager.example.test';
const EAB_KID = 'kid-debvisor';
const EAB_KEY = 'zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W';

interface Answer {
  status: number;
  body: Json;
  socket: TLSSocket;
  /** The certificate the connection was served with. */
  peer: X509Certificate;
}

describe("the manager's HTTPS certificate over ACME", () => {
  let databases: TestDatabases;
  let chall: ChallTestSrvInstance;
  let pebbleHttp: PebbleInstance;
  let pebbleDns: PebbleInstance;
  let pebbleEab: PebbleInstance;
  let bind: Bind9Instance;
  let manager: TestManager;
  /** The bootstrap admin token (printed at the first start only). */
  let token: string;
  let httpPort: number;
  let uploadCa: { certPem: string; keyPem: string };
  /** Every root a certificate the manager serves may chain to. */
  let trusted: string[];

  beforeAll(async () => {
    databases = await startTestDatabases();
    httpPort = await freePort();
    chall = await startChallTestSrv();
    bind = await startBind9({
      // pebble resolves through it: follow the alias CNAME into validation.test as a resolver would.
      recursion: true,
      zones: [
        {
          name: 'example.test',
          records: [
            'manager IN A 127.0.0.1',
            // Alias mode: the challenge of alias.example.test is answered in another zone.
            '_acme-challenge.alias IN CNAME _acme-challenge.alias.validation.test.',
          ],
        },
        { name: 'validation.test' },
      ],
    });
    pebbleHttp = await startPebble({ httpPort, dnsServer: chall.dnsServer });
    pebbleDns = await startPebble({ httpPort: await freePort(), dnsServer: bind.server });
    pebbleEab = await startPebble({
      httpPort,
      dnsServer: chall.dnsServer,
      externalAccountBinding: { required: true, macKeys: { [EAB_KID]: EAB_KEY } },
    });
    uploadCa = await createCa('DebVisor test upload CA');
    const extraCa = `${tempDir('debvisor-extra-ca-')}/extra-ca.pem`;
    writeFileSync(
      extraCa,
      [pebbleHttp.tlsCaPem, pebbleDns.tlsCaPem, pebbleEab.tlsCaPem, uploadCa.certPem].join(''),
    );
    manager = await startTestManager({
      databaseUrl: await databases.fresh(),
      env: {
        DEBVISOR_HTTP_LISTEN: `127.0.0.1:${httpPort}`,
        DEBVISOR_EXTRA_CA_FILE: extraCa,
        DEBVISOR_PUBLIC_URL: `https://${PUBLIC_HOST}`,
      },
    });
    token = manager.token!;
    trusted = [
      readFileSync(`${manager.stateDir}/pki/server-ca.crt`, 'utf8'),
      await pebbleHttp.issuingRootPem(),
      await pebbleDns.issuingRootPem(),
      uploadCa.certPem,
    ];
  }, 120_000);

  afterAll(async () => {
    await manager?.stop();
    for (const server of [pebbleEab, pebbleDns, pebbleHttp, chall, bind]) await server?.stop();
    await databases?.stop();
  });

  /** A request to the manager that checks the chain against every root the test knows. */
  function api(
    method: string,
    path: string,
    body?: unknown,
    options: { agent?: Agent; token?: string | null } = {},
  ): Promise<Answer> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string | number> = {};
    const bearer = options.token === undefined ? token : options.token;
    if (bearer) headers.authorization = `Bearer ${bearer}`;
    if (payload !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = Buffer.byteLength(payload);
    }
    return new Promise((resolve, reject) => {
      const req = httpsRequest(
        `https://127.0.0.1:${manager.manager.port}${path}`,
        {
          method,
          headers,
          agent: options.agent ?? false,
          ca: trusted,
          servername: PUBLIC_HOST,
          // Only the names differ between the certificates (self-signed: localhost …); the chain is checked.
          checkServerIdentity: () => undefined,
          timeout: 60_000,
        },
        (res) => {
          const socket = res.socket as TLSSocket;
          const peer = new X509Certificate(socket.getPeerCertificate().raw);
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => (text += chunk));
          res.on('end', () =>
            resolve({
              status: res.statusCode ?? 0,
              body: text && res.headers['content-type']?.includes('json') ? JSON.parse(text) : text,
              socket,
              peer,
            }),
          );
        },
      );
      req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer`)));
      req.on('error', reject);
      req.end(payload);
    });
  }

  function plainHttp(path: string): Promise<{ status: number; location?: string; body: string }> {
    return new Promise((resolve, reject) => {
      httpRequest(`http://127.0.0.1:${httpPort}${path}`, { timeout: 5000 }, (res) => {
        let body = '';
        res.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, location: res.headers.location, body }),
        );
      })
        .on('error', reject)
        .end();
    });
  }

  async function servedLeaf(): Promise<X509Certificate> {
    return (await api('GET', '/healthz', undefined, { token: null })).peer;
  }

  async function account(name: string, directoryUrl: string, extra: object = {}) {
    const created = await api('POST', '/api/v1/system/certificates/acme/accounts', {
      name,
      directoryUrl,
      email: 'ops@example.test',
      termsOfServiceAgreed: true,
      ...extra,
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    return created.body.id as string;
  }

  let httpAccount: string;

  it('starts with the self-signed certificate; the HTTP listener only answers challenges and redirects', async () => {
    const status = await api('GET', '/api/v1/system/certificates');
    expect(status.status).toBe(200);
    expect(status.body.current.source).toBe('self-signed');
    expect(status.body.httpChallengeListener).toEqual({ port: httpPort, problem: null });
    expect(await plainHttp('/api/v1/remotes?x=1')).toMatchObject({
      status: 301,
      location: `https://${PUBLIC_HOST}/api/v1/remotes?x=1`,
    });
    expect((await plainHttp('/.well-known/acme-challenge/unknown-token-0123456789')).status).toBe(
      404,
    );
  });

  it('orders over HTTP-01 for several names and swaps it in under a streaming keep-alive client', async () => {
    httpAccount = await account('pebble-http', pebbleHttp.directoryUrl);
    const settings = await api('PUT', '/api/v1/system/certificates/acme/settings', {
      accountId: httpAccount,
      domains: [PUBLIC_HOST, 'www.example.test'],
      challenge: 'http-01',
    });
    expect(settings.status, JSON.stringify(settings.body)).toBe(200);
    const before = await servedLeaf();

    // One keep-alive connection streams requests during the whole order.
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const sockets = new Set<TLSSocket>();
    const seen = new Set<string>();
    let streamed = 0;
    const failures: string[] = [];
    let streaming = true;
    const stream = (async () => {
      while (streaming) {
        try {
          const answer = await api('GET', '/healthz', undefined, { agent, token: null });
          sockets.add(answer.socket);
          seen.add(answer.peer.serialNumber);
          if (answer.status === 200) streamed++;
          else failures.push(`status ${answer.status}`);
        } catch (error) {
          failures.push((error as Error).message);
        }
      }
    })();
    try {
      const ordered = await api('POST', '/api/v1/system/certificates/acme/order');
      expect(ordered.status, JSON.stringify(ordered.body)).toBe(200);
      expect(ordered.body.current.source).toBe('acme');
      expect(ordered.body.current.names).toEqual([PUBLIC_HOST, 'www.example.test']);
      // Keep streaming over the swap until the old connection has served requests after it.
      const after = streamed;
      while (streamed < after + 20 && failures.length === 0)
        await new Promise((resolve) => setImmediate(resolve));
    } finally {
      streaming = false;
      await stream;
      agent.destroy();
    }
    expect(failures).toEqual([]);
    expect(streamed).toBeGreaterThan(20);
    expect(sockets.size).toBe(1);
    // The streaming connection kept the certificate it started with; a new one gets the new certificate.
    expect([...seen]).toEqual([before.serialNumber]);
    const now = await servedLeaf();
    expect(now.serialNumber).not.toBe(before.serialNumber);
    expect(now.issuer).toMatch(/Pebble Intermediate/);
    expect(now.subjectAltName).toContain(`DNS:${PUBLIC_HOST}`);
    expect(await pebbleHttp.certificateStatus(now.serialNumber)).toBe('Valid');
  });

  it('renews: ordering again serves a new certificate and reports when the next renewal is due', async () => {
    const old = await servedLeaf();
    const renewed = await api('POST', '/api/v1/system/certificates/acme/order');
    expect(renewed.status, JSON.stringify(renewed.body)).toBe(200);
    const now = await servedLeaf();
    expect(now.serialNumber).not.toBe(old.serialNumber);
    const status = await api('GET', '/api/v1/system/certificates');
    // pebble offers no renewal information (ARI): two thirds of the lifetime.
    expect(status.body.renewal.basis).toBe('two-thirds');
    const notBefore = new Date(now.validFrom).getTime();
    const lifetime = new Date(now.validTo).getTime() - notBefore;
    expect(
      Math.abs(new Date(status.body.renewal.dueAt).getTime() - (notBefore + (lifetime * 2) / 3)),
    ).toBeLessThan(1000);
    const metrics = await api('GET', '/metrics');
    expect(metrics.body).toContain(
      `debvisor_certificate_expiry_timestamp_seconds{cert="https"} ${Math.floor(new Date(now.validTo).getTime() / 1000)}`,
    );
  });

  it('keeps the old certificate serving when a challenge fails', async () => {
    const old = await servedLeaf();
    // Pebble finds this name at 127.0.0.2, where nothing listens: its HTTP-01 validation fails.
    await chall.setA('unreachable.example.test', '127.0.0.2');
    expect(
      (
        await api('PUT', '/api/v1/system/certificates/acme/settings', {
          accountId: httpAccount,
          domains: ['unreachable.example.test'],
          challenge: 'http-01',
        })
      ).status,
    ).toBe(200);
    const failed = await api('POST', '/api/v1/system/certificates/acme/order');
    expect(failed.status).toBe(422);
    expect(failed.body.error.code).toBe('certificate_order_failed');
    expect(failed.body.error.message).toMatch(/the CA refused ordering the certificate/);
    expect((await servedLeaf()).serialNumber).toBe(old.serialNumber);
    const status = await api('GET', '/api/v1/system/certificates');
    expect(status.body.current.source).toBe('acme');
    expect(status.body.renewal.failures).toBe(1);
    expect(status.body.renewal.lastError).toMatch(/127\.0\.0\.2|connection refused|unreachable/i);
  });

  it('revokes the ACME certificate at the CA and goes back to the self-signed one', async () => {
    const acmeLeaf = await servedLeaf();
    const revoked = await api('POST', '/api/v1/system/certificates/acme/revoke');
    expect(revoked.status, JSON.stringify(revoked.body)).toBe(200);
    expect(revoked.body.current.source).toBe('self-signed');
    expect(await pebbleHttp.certificateStatus(acmeLeaf.serialNumber)).toBe('Revoked');
    expect((await servedLeaf()).issuer).toMatch(/DebVisor manager .* HTTPS CA/);
    const again = await api('POST', '/api/v1/system/certificates/acme/revoke');
    expect(again.status).toBe(409);
  });

  it('registers an account with External Account Binding only with a valid binding', async () => {
    const without = await api('POST', '/api/v1/system/certificates/acme/accounts', {
      name: 'pebble-eab-missing',
      directoryUrl: pebbleEab.directoryUrl,
      termsOfServiceAgreed: true,
    });
    expect(without.status).toBe(422);
    expect(without.body.error.message, without.body.error.message).toMatch(
      /externalAccountBinding/,
    );
    const wrong = await api('POST', '/api/v1/system/certificates/acme/accounts', {
      name: 'pebble-eab-wrong',
      directoryUrl: pebbleEab.directoryUrl,
      termsOfServiceAgreed: true,
      externalAccountBinding: { keyId: EAB_KID, hmacKey: EAB_KEY.replace(/^z/, 'y') },
    });
    expect(wrong.status).toBe(422);
    const id = await account('pebble-eab', pebbleEab.directoryUrl, {
      externalAccountBinding: { keyId: EAB_KID, hmacKey: EAB_KEY },
    });
    const status = await api('GET', '/api/v1/system/certificates');
    const listed = status.body.accounts.find((a: Json) => a.id === id);
    expect(listed).toMatchObject({ name: 'pebble-eab', externalAccountBinding: true });
    expect(JSON.stringify(status.body)).not.toContain(EAB_KEY);
    // The account key is sealed at rest.
    const stored = readFileSync(`${manager.stateDir}/https/acme.json`, 'utf8');
    expect(stored).not.toContain('PRIVATE KEY');
  });

  it.each([
    [
      'dns-01 without its DNS server',
      { domains: ['example.test'], challenge: 'dns-01' },
      /dns: dns-01 needs the dns settings/,
    ],
    [
      'a wildcard over http-01',
      { domains: ['*.example.test'], challenge: 'http-01' },
      /wildcard names can only be validated with dns-01/,
    ],
    ['a name that is not a DNS name', { domains: ['exa mple'], challenge: 'http-01' }, /domains/],
    [
      'a TSIG secret that is not base64',
      {
        domains: ['example.test'],
        challenge: 'dns-01',
        dns: { server: '127.0.0.1', keyName: 'k', secret: 'not base64 !' },
      },
      /dns\.secret/,
    ],
  ])('refuses settings with %s (400)', async (_what, body, message) => {
    const answer = await api('PUT', '/api/v1/system/certificates/acme/settings', {
      accountId: httpAccount,
      ...body,
    });
    expect(answer.status).toBe(400);
    expect(answer.body.error.message).toMatch(message);
  });

  it('refuses an account for an unknown id and without agreeing to the terms (400)', async () => {
    const unknown = await api('PUT', '/api/v1/system/certificates/acme/settings', {
      accountId: '00000000-0000-4000-8000-000000000000',
      domains: ['example.test'],
      challenge: 'http-01',
    });
    expect(unknown.status).toBe(400);
    const terms = await api('POST', '/api/v1/system/certificates/acme/accounts', {
      name: 'no-terms',
      directoryUrl: pebbleHttp.directoryUrl,
      termsOfServiceAgreed: false,
    });
    expect(terms.status).toBe(400);
    expect(terms.body.error.message).toMatch(/terms of service/);
  });

  describe('DNS-01 through RFC 2136', () => {
    let dnsAccount: string;
    const dnsSettings = (secret: string, domains: string[]) => ({
      accountId: dnsAccount,
      domains,
      challenge: 'dns-01',
      dns: {
        server: bind.host,
        port: bind.port,
        keyName: bind.tsig.name,
        algorithm: bind.tsig.algorithm,
        secret,
        propagationTimeoutSeconds: 20,
      },
    });

    it('refuses a wrong TSIG key with a clear error and keeps the served certificate', async () => {
      dnsAccount = await account('pebble-dns', pebbleDns.directoryUrl);
      const before = await servedLeaf();
      const wrongSecret = Buffer.from('not the secret of this key, 32b!').toString('base64');
      const saved = await api(
        'PUT',
        '/api/v1/system/certificates/acme/settings',
        dnsSettings(wrongSecret, ['example.test']),
      );
      expect(saved.status).toBe(200);
      expect(JSON.stringify(saved.body)).not.toContain(wrongSecret);
      const failed = await api('POST', '/api/v1/system/certificates/acme/order');
      expect(failed.status).toBe(422);
      expect(failed.body.error.message).toMatch(
        /refused the TSIG key "debvisor-acme" \(BADSIG\): check the key name, algorithm and secret/,
      );
      expect((await servedLeaf()).serialNumber).toBe(before.serialNumber);
      expect(await bind.txt('_acme-challenge.example.test')).toEqual([]);
    });

    it('orders a name and its wildcard over DNS-01 and cleans the records up', async () => {
      const saved = await api(
        'PUT',
        '/api/v1/system/certificates/acme/settings',
        dnsSettings(bind.tsig.secret, ['example.test', '*.example.test']),
      );
      expect(saved.status).toBe(200);
      const ordered = await api('POST', '/api/v1/system/certificates/acme/order');
      expect(ordered.status, JSON.stringify(ordered.body)).toBe(200);
      expect(ordered.body.current.names).toEqual(['example.test', '*.example.test']);
      const leaf = await servedLeaf();
      expect(leaf.issuer).toMatch(/Pebble Intermediate/);
      expect(await pebbleDns.certificateStatus(leaf.serialNumber)).toBe('Valid');
      expect(await bind.txt('_acme-challenge.example.test')).toEqual([]);
      // The TSIG secret is sealed at rest.
      expect(readFileSync(`${manager.stateDir}/https/acme.json`, 'utf8')).not.toContain(
        bind.tsig.secret,
      );
    });

    it('follows a CNAME at _acme-challenge into another zone (alias mode)', async () => {
      const saved = await api(
        'PUT',
        '/api/v1/system/certificates/acme/settings',
        dnsSettings(bind.tsig.secret, ['alias.example.test']),
      );
      expect(saved.status).toBe(200);
      const ordered = await api('POST', '/api/v1/system/certificates/acme/order');
      expect(ordered.status, JSON.stringify(ordered.body)).toBe(200);
      expect(ordered.body.current.names).toEqual(['alias.example.test']);
      expect(await bind.txt('_acme-challenge.alias.validation.test')).toEqual([]);
    });
  });

  describe('uploading a custom certificate', () => {
    async function upload(chainPem: string, keyPem: string) {
      return api('PUT', '/api/v1/system/certificates/custom', { chainPem, keyPem });
    }

    it.each([
      ['a key of another certificate', 'the private key does not belong'],
      ['an expired certificate', 'expired on'],
      ['a chain that does not reach a trusted root', 'does not end at a trusted root'],
      ['a certificate that does not name the public host', `does not name ${PUBLIC_HOST}`],
      ['text that is no certificate', 'holds no PEM certificate'],
    ])('refuses %s with a clear 400', async (what, message) => {
      const good = await issueCertificate(uploadCa, {
        commonName: PUBLIC_HOST,
        dnsNames: [PUBLIC_HOST],
        usage: 'server',
      });
      let chainPem = good.certPem;
      let keyPem = good.keyPem;
      if (what.startsWith('a key of another')) {
        keyPem = (
          await issueCertificate(uploadCa, {
            commonName: 'x',
            dnsNames: ['x.test'],
            usage: 'server',
          })
        ).keyPem;
      } else if (what.startsWith('an expired')) {
        const expired = await issueCertificate(uploadCa, {
          commonName: PUBLIC_HOST,
          dnsNames: [PUBLIC_HOST],
          usage: 'server',
          notBefore: new Date(Date.now() - 10 * 86_400_000),
          notAfter: new Date(Date.now() - 86_400_000),
        });
        ({ certPem: chainPem, keyPem } = expired);
      } else if (what.startsWith('a chain that')) {
        const stranger = await createCa('Somebody else');
        ({ certPem: chainPem, keyPem } = await issueCertificate(stranger, {
          commonName: PUBLIC_HOST,
          dnsNames: [PUBLIC_HOST],
          usage: 'server',
        }));
      } else if (what.startsWith('a certificate that')) {
        ({ certPem: chainPem, keyPem } = await issueCertificate(uploadCa, {
          commonName: 'other.example.test',
          dnsNames: ['other.example.test'],
          usage: 'server',
        }));
      } else {
        chainPem = 'hello';
      }
      const before = await servedLeaf();
      const answer = await upload(chainPem, keyPem);
      expect(answer.status).toBe(400);
      expect(answer.body.error.message).toContain(message);
      expect((await servedLeaf()).serialNumber).toBe(before.serialNumber);
    });

    it('serves a valid upload at once and keeps it across a restart', async () => {
      const good = await issueCertificate(uploadCa, {
        commonName: PUBLIC_HOST,
        dnsNames: [PUBLIC_HOST, '*.example.test'],
        usage: 'server',
      });
      const answer = await upload(good.certPem, good.keyPem);
      expect(answer.status, JSON.stringify(answer.body)).toBe(200);
      expect(answer.body.current).toMatchObject({
        source: 'custom',
        names: [PUBLIC_HOST, '*.example.test'],
      });
      const served = await servedLeaf();
      expect(served.fingerprint256).toBe(new X509Certificate(good.certPem).fingerprint256);
      expect(readFileSync(`${manager.stateDir}/https/served.json`, 'utf8')).not.toContain(
        'PRIVATE KEY',
      );

      const stateDir = manager.stateDir;
      const databaseUrl = manager.databaseUrl;
      await manager.stop();
      manager = await startTestManager({
        stateDir,
        databaseUrl,
        token,
        env: {
          DEBVISOR_HTTP_LISTEN: `127.0.0.1:${httpPort}`,
          DEBVISOR_PUBLIC_URL: `https://${PUBLIC_HOST}`,
        },
      });
      expect((await servedLeaf()).fingerprint256).toBe(served.fingerprint256);
    });

    it('records every change in the audit log', async () => {
      const audit = await api('GET', '/api/v1/audit?action=system.certificate&limit=100');
      expect(audit.status).toBe(200);
      const actions = new Set(
        (audit.body.items as Json[]).filter((e) => e.outcome === 'success').map((e) => e.action),
      );
      for (const action of [
        'system.certificate.account.create',
        'system.certificate.settings',
        'system.certificate.order',
        'system.certificate.revoke',
        'system.certificate.upload',
      ])
        expect(actions).toContain(action);
      expect(JSON.stringify(audit.body)).not.toContain(bind.tsig.secret);
    });
  });
});
