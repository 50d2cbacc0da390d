import { z } from 'zod';

/** RFC 1123 host name label: what node ids, cluster ids and remote ids look like. */
const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

export const nodeIdSchema = z
  .string()
  .regex(LABEL, 'a node id is 1-63 lower-case letters, digits and inner hyphens');

export const clusterIdSchema = z
  .string()
  .regex(LABEL, 'a cluster id is 1-63 lower-case letters, digits and inner hyphens');

export const remoteIdSchema = z
  .string()
  .regex(LABEL, 'a remote id is 1-63 lower-case letters, digits and inner hyphens');

export const hostnameSchema = z
  .string()
  .max(253)
  .regex(
    /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/,
    'a host name is one DNS label (letters, digits, inner hyphens)',
  );

export const fqdnSchema = z
  .string()
  .max(253)
  .regex(
    /^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/,
    'not a valid fully qualified domain name',
  );

export const ipAddressSchema = z.union([z.ipv4(), z.ipv6()], {
  error: 'not a valid IPv4 or IPv6 address',
});

export const uuidSchema = z.uuid({ error: 'not a valid UUID' });

/** A VM name: a DNS label, also allowing upper case and dots inside. */
export const vmNameSchema = z
  .string()
  .regex(
    /^[A-Za-z0-9]([A-Za-z0-9.-]{0,62}[A-Za-z0-9])?$/,
    'a VM name is 1-64 letters, digits, dots and inner hyphens',
  );

/** Label keys and values (tenant names, VM labels, bridge names, pool and image names). */
export const labelSchema = z
  .string()
  .regex(
    /^[A-Za-z0-9]([A-Za-z0-9._-]{0,62}[A-Za-z0-9])?$/,
    'a label is 1-64 letters, digits, dots, underscores and inner hyphens',
  );

/** host:port, with an IPv6 host in brackets. */
export const endpointSchema = z
  .string()
  .max(300)
  .refine(
    (value) => parseEndpoint(value) !== undefined,
    'an endpoint is host:port (IPv6 in brackets), port 1-65535',
  );

export function parseEndpoint(value: string): { host: string; port: number } | undefined {
  const match = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(value);
  if (!match) return undefined;
  const port = Number(match[2]);
  if (port < 1 || port > 65535) return undefined;
  const host = match[1].startsWith('[') ? match[1].slice(1, -1) : match[1];
  if (
    !match[1].startsWith('[') &&
    !ipAddressSchema.safeParse(host).success &&
    !fqdnSchema.safeParse(host).success
  )
    return undefined;
  return { host, port };
}
