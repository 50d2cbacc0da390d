import { createCa, splitPemBundle } from '@debvisor/pki';
import { cleanupTempDirs, tempDir } from '@debvisor/testing';
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AgentError, ErrorCode } from '../shared/agent-error';
import { CaRotation, nextCaFile } from './ca-rotation.service';
import type { ClusterCas, NodeCert } from './cluster-trust.repository';

afterAll(() => cleanupTempDirs());

/** The cluster's trust in etcd, in memory. */
function memoryStore(nodes: NodeCert[] = []) {
  const state: { cas?: ClusterCas; nodes: NodeCert[] } = { nodes };
  return {
    state,
    getCas: async () => state.cas,
    putCas: async (record: ClusterCas) => void (state.cas = record),
    listNodeCerts: async () => state.nodes,
  };
}

async function issuerFiles() {
  const dir = tempDir();
  const ca = await createCa('DebVisor cluster test CA');
  const files = { cert: join(dir, 'cluster-ca.crt'), key: join(dir, 'cluster-ca.key') };
  writeFileSync(files.cert, ca.certPem);
  writeFileSync(files.key, ca.keyPem);
  return { files, oldFingerprint: new X509Certificate(ca.certPem).fingerprint256 };
}

const node = (nodeId: string, issuerFingerprint: string): NodeCert => ({
  nodeId,
  issuerFingerprint,
  notBefore: '2026-12-07T00:00:00Z',
  notAfter: '2026-12-08T00:00:00Z',
});

describe('CaRotation', () => {
  it('refuses begin and finish on a node that holds no CA key', async () => {
    const rotation = new CaRotation(memoryStore(), undefined);
    for (const attempt of [rotation.begin(), rotation.finish(false)])
      await expect(attempt).rejects.toEqual(
        new AgentError(
          ErrorCode.FailedPrecondition,
          'this node holds no cluster CA key (tls.issuer); ask a node that does',
        ),
      );
    expect((await rotation.status()).issuingFingerprint).toBe('');
  });

  it('begins: a new CA signs from now on (cross-certified by the old), both trusted, renewals asked for; a second begin is refused', async () => {
    const { files, oldFingerprint } = await issuerFiles();
    const store = memoryStore();
    const rotation = new CaRotation(store, files);
    const { newCaFingerprint, newCaPem } = await rotation.begin();
    expect(newCaFingerprint).not.toBe(oldFingerprint);
    expect(readFileSync(nextCaFile(files.cert), 'utf8')).toBe(newCaPem);
    const cross = new X509Certificate(readFileSync(files.cert, 'utf8'));
    const newCa = new X509Certificate(newCaPem);
    expect(cross.subject).toBe(newCa.subject);
    expect(cross.publicKey.export({ format: 'der', type: 'spki' })).toEqual(
      newCa.publicKey.export({ format: 'der', type: 'spki' }),
    );
    expect(cross.issuer).not.toBe(cross.subject); // signed by the old CA
    expect(store.state.cas?.renewBefore).toBeTruthy();
    const status = await rotation.status();
    expect(status.rotating).toBe(true);
    expect(status.cas.map((ca) => ca.fingerprint)).toEqual([oldFingerprint, newCaFingerprint]);
    expect(status.issuingFingerprint).toBe(newCaFingerprint);
    await expect(rotation.begin()).rejects.toThrow('a CA rotation is under way already');
  });

  it('finishes only once every node holds a certificate of the new CA (unless forced), then trusts the new CA alone', async () => {
    const { files, oldFingerprint } = await issuerFiles();
    const store = memoryStore();
    const rotation = new CaRotation(store, files);
    await expect(rotation.finish(false)).rejects.toThrow('no CA rotation is under way');
    const { newCaFingerprint, newCaPem } = await rotation.begin();
    store.state.nodes = [node('n1', newCaFingerprint), node('n2', oldFingerprint)];
    await expect(rotation.finish(false)).rejects.toThrow(
      'nodes still hold a certificate of an old CA: n2',
    );
    expect(existsSync(nextCaFile(files.cert))).toBe(true);
    const done = await rotation.finish(true);
    expect(done).toEqual({ caFingerprint: newCaFingerprint, caPem: newCaPem });
    expect(readFileSync(files.cert, 'utf8')).toBe(newCaPem);
    expect(existsSync(nextCaFile(files.cert))).toBe(false);
    expect(store.state.cas).toMatchObject({ casPem: newCaPem, renewBefore: null });
    const status = await rotation.status();
    expect(status.rotating).toBe(false);
    expect(status.issuingFingerprint).toBe(newCaFingerprint);
    expect(splitPemBundle(status.cas[0].pem)).toHaveLength(1);
  });
});
