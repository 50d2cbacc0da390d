import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import type { MigrationPsk } from '../hypervisor.driver';

/**
 * The sim's migration stream: frames of [type: 1 byte][length: uint32 BE][payload]. Like QEMU's,
 * it runs both ways (the return path carries the destination's answers), so a tunnel between the
 * ends must carry bytes in both directions.
 *
 * Source → destination: H hello (JSON), R a round's pages (filler bytes), P switch to post-copy,
 * E end of stream. Destination → source: A accepted (JSON), X refused (JSON reason), K acknowledged
 * (payload 'P' or 'E').
 */
export const FRAME_TYPES = ['H', 'R', 'P', 'E', 'A', 'X', 'K'] as const;
export type FrameType = (typeof FRAME_TYPES)[number];

export interface Frame {
  type: FrameType;
  payload: Buffer;
}

const HEADER_BYTES = 5;
/** Larger frames are garbage, not a sim peer. */
export const MAX_FRAME_BYTES = 1024 * 1024;

const timestamp = z.iso.datetime({ offset: true });

export const helloSchema = z.strictObject({
  version: z.literal(1),
  migrationId: z.string().min(1).max(128),
  vmUuid: z.string().min(1).max(64),
  /** Direct transport: HMAC-SHA256 over the migration id with the PSK key (stands in for TLS-PSK). */
  pskIdentity: z.string().max(256).optional(),
  proof: z
    .string()
    .regex(/^[0-9a-f]{64}$/)
    .optional(),
  /** The source enabled post-copy (it may switch). */
  postcopy: z.boolean(),
  /** When the guest booted, so that its uptime goes on at the destination. */
  bootedAt: timestamp.nullable(),
});
export type Hello = z.infer<typeof helloSchema>;

export const acceptSchema = z.strictObject({ postcopy: z.boolean() });
export const refuseSchema = z.strictObject({ reason: z.string().max(1000) });

export function encodeFrame(
  type: FrameType,
  payload: Buffer | string | object = Buffer.alloc(0),
): Buffer {
  const body = Buffer.isBuffer(payload)
    ? payload
    : Buffer.from(typeof payload === 'string' ? payload : JSON.stringify(payload), 'utf8');
  if (body.length > MAX_FRAME_BYTES)
    throw new RangeError(`a migration frame holds at most ${MAX_FRAME_BYTES} bytes`);
  const header = Buffer.alloc(HEADER_BYTES);
  header.write(type, 0, 'ascii');
  header.writeUInt32BE(body.length, 1);
  return Buffer.concat([header, body]);
}

/** Reassembles frames from stream chunks; throws on bytes that are not a sim migration stream. */
export class FrameReader {
  private buffered: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Frame[] {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    const frames: Frame[] = [];
    while (this.buffered.length >= HEADER_BYTES) {
      const type = this.buffered.toString('ascii', 0, 1);
      if (!isFrameType(type)) throw new Error('not a migration stream (unknown frame type)');
      const length = this.buffered.readUInt32BE(1);
      if (length > MAX_FRAME_BYTES) throw new Error('not a migration stream (oversized frame)');
      if (this.buffered.length < HEADER_BYTES + length) break;
      frames.push({ type, payload: this.buffered.subarray(HEADER_BYTES, HEADER_BYTES + length) });
      this.buffered = this.buffered.subarray(HEADER_BYTES + length);
    }
    return frames;
  }
}

/** Parses a JSON frame payload with `schema`; undefined when it does not fit. */
export function parsePayload<T>(schema: z.ZodType<T>, payload: Buffer): T | undefined {
  let value: unknown;
  try {
    value = JSON.parse(payload.toString('utf8'));
  } catch {
    return undefined;
  }
  const parsed = schema.safeParse(value);
  return parsed.success ? parsed.data : undefined;
}

/** What proves the source holds the PSK: only a holder of the key can compute it for this migration. */
export function migrationProof(psk: MigrationPsk, migrationId: string): string {
  return createHmac('sha256', psk.key)
    .update(`debvisor-sim-migration\0${psk.identity}\0${migrationId}`)
    .digest('hex');
}

export function verifyProof(
  psk: MigrationPsk,
  migrationId: string,
  proof: string | undefined,
): boolean {
  if (proof === undefined) return false;
  const expected = Buffer.from(migrationProof(psk, migrationId), 'hex');
  const presented = Buffer.from(proof, 'hex');
  return presented.length === expected.length && timingSafeEqual(presented, expected);
}

function isFrameType(type: string): type is FrameType {
  return (FRAME_TYPES as readonly string[]).includes(type);
}
