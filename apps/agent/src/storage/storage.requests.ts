import { labelSchema, uuidSchema } from '@debvisor/common';
import { z } from 'zod';
import { emptyOr } from '../rpc/request-validation';

const POOL = 'a pool name is 1-64 letters, digits, dots, underscores and inner hyphens';
const IMAGE = 'an image name is 1-64 letters, digits, dots, underscores and inner hyphens';
const SNAPSHOT = 'a snapshot name is 1-64 letters, digits, dots, underscores and inner hyphens';
const SITE = 'a site name is 1-64 letters, digits, dots, underscores and inner hyphens';

/** A name that is a label (no leading '-', nothing a shell or the rbd CLI reads as syntax), with a message naming what it is. */
function name(message: string): z.ZodType<string> {
  return z.string().refine((value) => labelSchema.safeParse(value).success, message);
}

/** An empty pool means Ceph's default pool ('rbd'). */
const pool = emptyOr(labelSchema, POOL);
const image = name(IMAGE);
const snapshot = name(SNAPSHOT);

export const listImagesRequestSchema = z.object({ pool });

export const imageRefSchema = z.object({ pool, image });
export type ImageRefInput = z.infer<typeof imageRefSchema>;

export const imageSnapshotRequestSchema = z.object({ pool, image, snapshot });
export type ImageSnapshotInput = z.infer<typeof imageSnapshotRequestSchema>;

export const snapshotVmRequestSchema = z.object({
  vmUuid: uuidSchema,
  snapshot,
  freeze: z.boolean(),
});
export type SnapshotVmInput = z.infer<typeof snapshotVmRequestSchema>;

export const vmRefSchema = z.object({ uuid: uuidSchema });

export const vmSnapshotRefSchema = z.object({ vmUuid: uuidSchema, snapshot });
export type VmSnapshotRefInput = z.infer<typeof vmSnapshotRefSchema>;

/** rbd mirror snapshot schedule intervals: a count of minutes, hours or days ("5m", "1h", "1d"). */
const interval = z
  .string()
  .regex(
    /^(|[1-9][0-9]{0,3}[mhd])$/,
    'a schedule interval is empty or a number of minutes, hours or days such as 5m, 1h or 1d',
  );

export const enableMirroringRequestSchema = z.object({
  pool,
  image,
  mode: z
    .enum(['', 'snapshot', 'journal'])
    .refine(
      (mode) => mode !== 'journal',
      'only snapshot-based mirroring is supported (mode "snapshot" or empty)',
    ),
  scheduleInterval: interval,
});
export type EnableMirroringInput = z.infer<typeof enableMirroringRequestSchema>;

export const disableMirroringRequestSchema = z.object({ pool, image, force: z.boolean() });
export const promoteImageRequestSchema = z.object({ pool, image, force: z.boolean() });

export const poolMirrorRequestSchema = z.object({ pool, siteName: emptyOr(labelSchema, SITE) });
export type PoolMirrorInput = z.infer<typeof poolMirrorRequestSchema>;

/**
 * A peer bootstrap token is base64 (of JSON holding the peer's monitors and a Ceph key). It is a
 * secret: a bad one is refused without repeating it.
 */
export const importPeerBootstrapRequestSchema = z.object({
  pool,
  siteName: emptyOr(labelSchema, SITE),
  token: z
    .string()
    .min(1, 'the bootstrap token is missing')
    .max(8192, 'a bootstrap token is at most 8192 characters')
    .regex(/^[A-Za-z0-9+/=_\s-]+$/, 'a bootstrap token is base64 text'),
  direction: z.enum(['', 'rx-tx', 'rx-only']),
});
export type ImportPeerBootstrapInput = z.infer<typeof importPeerBootstrapRequestSchema>;
