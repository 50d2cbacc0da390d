import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  encodeFrame,
  FrameReader,
  helloSchema,
  migrationProof,
  parsePayload,
  verifyProof,
} from './sim-migration.wire';

describe('sim migration wire format', () => {
  it('reassembles frames split at any byte and joined in one chunk', () => {
    const bytes = Buffer.concat([
      encodeFrame('A', { postcopy: true }),
      encodeFrame('R', Buffer.alloc(5000, 7)),
      encodeFrame('K', 'E'),
    ]);
    for (const split of [1, 3, 4, 5, 6, 4100]) {
      const reader = new FrameReader();
      const frames = [
        ...reader.push(bytes.subarray(0, split)),
        ...reader.push(bytes.subarray(split)),
      ];
      expect(frames.map((f) => [f.type, f.payload.length])).toEqual([
        ['A', 17],
        ['R', 5000],
        ['K', 1],
      ]);
    }
  });

  it('rejects bytes that are not a migration stream', () => {
    expect(() => new FrameReader().push(Buffer.from('GET / HTTP/1.1\r\n'))).toThrow(
      /not a migration stream/,
    );
    const oversized = Buffer.alloc(5);
    oversized.write('R');
    oversized.writeUInt32BE(64 * 1024 * 1024, 1);
    expect(() => new FrameReader().push(oversized)).toThrow(/oversized/);
  });

  it('validates a hello and binds the PSK proof to the key, its identity and the migration', () => {
    const psk = { identity: 'id-1', key: randomBytes(32) };
    const proof = migrationProof(psk, 'mig-1');
    const hello = {
      version: 1,
      migrationId: 'mig-1',
      vmUuid: 'u',
      proof,
      postcopy: false,
      bootedAt: null,
    };
    expect(parsePayload(helloSchema, encodeFrame('H', hello).subarray(5))).toEqual(hello);
    expect(parsePayload(helloSchema, Buffer.from('{"version":2}'))).toBeUndefined();
    expect(verifyProof(psk, 'mig-1', proof)).toBe(true);
    expect(verifyProof(psk, 'mig-2', proof)).toBe(false);
    expect(verifyProof({ ...psk, identity: 'id-2' }, 'mig-1', proof)).toBe(false);
    expect(verifyProof({ ...psk, key: randomBytes(32) }, 'mig-1', proof)).toBe(false);
    expect(verifyProof(psk, 'mig-1', undefined)).toBe(false);
  });
});
