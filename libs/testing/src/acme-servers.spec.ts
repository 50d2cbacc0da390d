import { request } from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBind9, type Bind9Instance } from './bind9';
import {
  startChallTestSrv,
  startPebble,
  type ChallTestSrvInstance,
  type PebbleInstance,
} from './pebble';

function getJson(url: string, ca: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    request(url, { ca, timeout: 5000 }, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
      res.on('end', () => resolve(JSON.parse(body) as Record<string, unknown>));
    })
      .on('error', reject)
      .end();
  });
}

describe('ACME test servers', () => {
  let bind: Bind9Instance;
  let chall: ChallTestSrvInstance;
  let pebble: PebbleInstance;
  beforeAll(async () => {
    bind = await startBind9({ zones: [{ name: 'example.test', records: ['www IN A 127.0.0.1'] }] });
    chall = await startChallTestSrv();
    pebble = await startPebble({ httpPort: 5002, dnsServer: chall.dnsServer });
  }, 60_000);
  afterAll(async () => {
    await pebble?.stop();
    await chall?.stop();
    await bind?.stop();
  });

  it('serves an authoritative zone with no TXT records yet', async () => {
    expect(await bind.txt('www.example.test')).toEqual([]);
    expect(bind.tsig.secret).toMatch(/^[A-Za-z0-9+/]+=*$/);
  });

  it('serves the ACME directory over HTTPS and an issuing root', async () => {
    const directory = await getJson(pebble.directoryUrl, pebble.tlsCaPem);
    expect(directory.newOrder).toMatch(/^https:\/\/127\.0\.0\.1:\d+\//);
    expect(await pebble.issuingRootPem()).toContain('-----BEGIN CERTIFICATE-----');
  });
});
