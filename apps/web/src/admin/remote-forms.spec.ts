import { describe, expect, it } from 'vitest';
import {
  chooseTrust,
  createRemoteBody,
  endpointsProblem,
  parseEndpoints,
  pemFingerprint,
  remoteFormProblems,
  shortFingerprint,
  newTrustKeysProblem,
  updateRemoteBody,
  validNow,
  type PresentedCertificate,
  type ProbeOutcome,
  type RemoteForm,
} from './remote-forms';

// A CA certificate made with openssl; its fingerprint as `openssl x509 -noout -fingerprint -sha256` printed it.
const FIXTURE_PEM = `-----BEGIN CERTIFICATE-----
MIIBjzCCATWgAwIBAgIUFO1yCzi2qV8e5SKxZGTC4SsMd8wwCgYIKoZIzj0EAwIw
HTEbMBkGA1UEAwwSZml4dHVyZSBjbHVzdGVyIENBMB4XDTI2MTEyMzE0MjkxN1oX
DTM2MTEyMDE0MjkxN1owHTEbMBkGA1UEAwwSZml4dHVyZSBjbHVzdGVyIENBMFkw
EwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEVFJqU+ehxv2i8IaFRMLhPnGevErHWLs9
v/TN2HqNM2FvmAaJicQLHRAsGYVgO6A4F986IXoRdERU0h87MY9Q6aNTMFEwHQYD
VR0OBBYEFP1wRlCcjaIdgQO60fG/3XderCL/MB8GA1UdIwQYMBaAFP1wRlCcjaId
gQO60fG/3XderCL/MA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIh
ALzp70ZVSs8Xw49QIT5sL+RkU7GLBP8gLoH/OfPnEfXiAiBz85krqhylS8ex+Fxq
3nTsk4ahQI+u0+CM+B2N2qRhHA==
-----END CERTIFICATE-----
`;
const FIXTURE_FINGERPRINT =
  'C5:D8:AD:98:6C:59:93:18:84:80:68:FD:DD:C6:0F:55:1D:61:13:84:A0:7F:1A:66:5F:43:85:8A:1E:E3:0A:D2';

const FP_A = 'AA:'.repeat(31) + 'AA';
const FP_B = 'BB:'.repeat(31) + 'BB';
const FP_LEAF = '11:'.repeat(31) + '11';

function certificate(
  fingerprint: string,
  isCa: boolean,
  subject = isCa ? 'CN=cluster CA' : 'CN=agent:node-1',
): PresentedCertificate {
  return {
    subject,
    issuer: 'CN=cluster CA',
    fingerprintSha256: fingerprint,
    isCa,
    notBefore: '2026-01-01T00:00:00Z',
    notAfter: '2027-01-01T00:00:00Z',
    pem: '',
  };
}
const answered = (endpoint: string, ...certificates: PresentedCertificate[]): ProbeOutcome => ({
  endpoint,
  certificates,
});
const failed = (endpoint: string): ProbeOutcome => ({ endpoint, error: 'cannot connect' });

const KEY = `dvk_0123456789abcdef_${'A'.repeat(43)}`;
function form(overrides: Partial<RemoteForm> = {}): RemoteForm {
  return {
    id: 'dc-east',
    description: ' Frankfurt ',
    endpoints: 'node1.example:9443\nnode2.example:9443',
    caCertPem: '',
    credentials: [{ name: 'admin', key: KEY }],
    addAnyway: false,
    ...overrides,
  };
}

describe('remote endpoints as typed', () => {
  it('splits on new lines, commas and spaces and keeps the order', () => {
    expect(parseEndpoints(' a.example:1,b.example:2\n\n c.example:3  [::1]:4 ')).toEqual([
      'a.example:1',
      'b.example:2',
      'c.example:3',
      '[::1]:4',
    ]);
  });

  it('names the first bad endpoint, a missing one, a port out of range and a repetition', () => {
    expect(endpointsProblem([])).toMatch(/at least one/);
    expect(endpointsProblem(['a.example'])).toMatch(/a\.example is not host:port/);
    expect(endpointsProblem(['a.example:70000'])).toMatch(/port must be 1-65535/);
    expect(endpointsProblem(['a.example:1', 'a.example:1'])).toMatch(/twice/);
    expect(endpointsProblem(['a.example:1', '[fd00::1]:9443'])).toBeNull();
  });
});

describe('the add-remote form check', () => {
  it('accepts a complete form', () => {
    expect(remoteFormProblems(form())).toEqual([]);
  });

  it('refuses a bad id, a key that is not an agent key, repeated credential names and a pasted text that is not PEM', () => {
    const problems = remoteFormProblems(
      form({
        id: 'DC_East',
        caCertPem: 'not a certificate',
        credentials: [
          { name: 'admin', key: 'secret' },
          { name: 'admin', key: KEY },
        ],
      }),
    );
    expect(problems).toEqual([
      expect.stringMatching(/remote id/),
      expect.stringMatching(/PEM/),
      expect.stringMatching(/key of credential admin is not an agent API key/),
      expect.stringMatching(/unique/),
    ]);
  });
});

describe('the SHA-256 fingerprint of a pasted certificate', () => {
  it('equals what openssl computes, in the manager’s notation', async () => {
    expect(await pemFingerprint(FIXTURE_PEM)).toBe(FIXTURE_FINGERPRINT);
    expect(await pemFingerprint(`some text before\n${FIXTURE_PEM}`)).toBe(FIXTURE_FINGERPRINT);
  });

  it('is null for text that is not a PEM certificate', async () => {
    expect(await pemFingerprint('hello')).toBeNull();
    expect(
      await pemFingerprint('-----BEGIN CERTIFICATE-----\n%%%\n-----END CERTIFICATE-----'),
    ).toBeNull();
  });
});

describe('the CA a new remote trusts after the connection test', () => {
  it('without a pasted CA: the root CA the endpoints present, when they all present it', () => {
    const choice = chooseTrust(
      [
        answered('n1:1', certificate(FP_LEAF, false), certificate(FP_A, true)),
        answered('n2:1', certificate(FP_A, true)),
        failed('n3:1'),
      ],
      null,
    );
    expect(choice).toMatchObject({
      ok: true,
      fingerprint: FP_A,
      source: 'presented',
      unreachable: ['n3:1'],
      withoutIt: [],
    });
  });

  it('refuses when endpoints present different CAs, naming them', () => {
    const choice = chooseTrust(
      [answered('n1:1', certificate(FP_A, true)), answered('n2:1', certificate(FP_B, true))],
      null,
    );
    expect(choice).toMatchObject({
      ok: false,
      problem: expect.stringMatching(/^n2:1 presented a different CA than n1:1/),
    });
  });

  it('refuses when the first answering endpoint presents no CA, or none answered', () => {
    expect(
      chooseTrust([failed('n1:1'), answered('n2:1', certificate(FP_LEAF, false))], null),
    ).toMatchObject({
      ok: false,
      problem: expect.stringMatching(/n2:1 presented no CA certificate/),
      unreachable: ['n1:1'],
    });
    expect(chooseTrust([failed('n1:1')], null)).toMatchObject({
      ok: false,
      problem: expect.stringMatching(/no endpoint answered/),
    });
  });

  it('with a pasted CA: that one, with the presented certificate that matches and the endpoints that do not carry it', () => {
    const choice = chooseTrust(
      [
        answered('n1:1', certificate(FP_LEAF, false), certificate(FP_A, true)),
        answered('n2:1', certificate(FP_LEAF, false)),
      ],
      FP_A,
    );
    expect(choice).toMatchObject({
      ok: true,
      fingerprint: FP_A,
      source: 'pasted',
      withoutIt: ['n2:1'],
    });
    expect(choice.ok && choice.certificate?.subject).toBe('CN=cluster CA');
    expect(chooseTrust([failed('n1:1')], FP_B)).toMatchObject({
      ok: true,
      fingerprint: FP_B,
      certificate: null,
      unreachable: ['n1:1'],
    });
  });

  it('tells whether a certificate is valid now', () => {
    const c = certificate(FP_A, true);
    expect(validNow(c, new Date('2026-06-01T00:00:00Z'))).toBe(true);
    expect(validNow(c, new Date('2027-06-01T00:00:00Z'))).toBe(false);
    expect(validNow(c, new Date('2025-06-01T00:00:00Z'))).toBe(false);
  });
});

describe('remote request bodies', () => {
  it('pins the confirmed fingerprint when no CA was pasted', () => {
    const trust = chooseTrust([answered('n1:1', certificate(FP_A, true))], null);
    if (!trust.ok) throw new Error('expected a trust anchor');
    expect(
      createRemoteBody(form({ credentials: [{ name: ' admin ', key: ` ${KEY} ` }] }), trust),
    ).toEqual({
      id: 'dc-east',
      description: 'Frankfurt',
      endpoints: ['node1.example:9443', 'node2.example:9443'],
      caFingerprint: FP_A,
      credentials: [{ name: 'admin', key: KEY }],
      addAnyway: false,
    });
  });

  it('sends the pasted CA certificate itself when there is one', () => {
    const trust = chooseTrust([], FIXTURE_FINGERPRINT);
    if (!trust.ok) throw new Error('expected a trust anchor');
    const body = createRemoteBody(form({ caCertPem: `\n${FIXTURE_PEM}\n` }), trust);
    expect(body.caCertPem).toBe(FIXTURE_PEM.trim());
    expect(body).not.toHaveProperty('caFingerprint');
  });

  it('updates only what changed, and nothing when nothing did', () => {
    const current = { description: 'Frankfurt', endpoints: ['a.example:1', 'b.example:1'] };
    expect(
      updateRemoteBody(
        { description: 'Frankfurt ', endpoints: 'a.example:1\nb.example:1', caCertPem: '' },
        current,
      ),
    ).toBeNull();
    expect(
      updateRemoteBody(
        {
          description: 'Berlin',
          endpoints: 'b.example:1 a.example:1',
          caCertPem: ` ${FIXTURE_PEM}`,
        },
        current,
      ),
    ).toEqual({
      description: 'Berlin',
      endpoints: ['b.example:1', 'a.example:1'],
      caCertPem: FIXTURE_PEM.trim(),
    });
  });

  it('sends a new CA only with every credential’s key entered again (issue 14 item 1)', () => {
    const current = {
      description: 'Frankfurt',
      endpoints: ['a.example:1'],
      credentials: [{ name: 'admin' }, { name: 'reader' }],
    };
    const edit = {
      description: 'Frankfurt',
      endpoints: 'a.example:1',
      caCertPem: FIXTURE_PEM,
      keys: { admin: ' dvk_a ' },
    };
    expect(newTrustKeysProblem(edit, current.credentials)).toMatch(/enter the key of reader again/);
    expect(
      newTrustKeysProblem(
        { ...edit, keys: { admin: 'dvk_a', reader: 'dvk_r' } },
        current.credentials,
      ),
    ).toBeNull();
    expect(newTrustKeysProblem({ ...edit, caCertPem: '' }, current.credentials)).toBeNull();
    expect(
      updateRemoteBody({ ...edit, keys: { admin: 'dvk_a', reader: 'dvk_r' } }, current),
    ).toEqual({
      caCertPem: FIXTURE_PEM.trim(),
      credentials: [
        { name: 'admin', key: 'dvk_a' },
        { name: 'reader', key: 'dvk_r' },
      ],
    });
  });

  it('shortens a fingerprint to its first and last four pairs', () => {
    expect(shortFingerprint(FIXTURE_FINGERPRINT)).toBe('C5:D8:AD:98:…:1E:E3:0A:D2');
    expect(shortFingerprint('AB:CD')).toBe('AB:CD');
  });
});
