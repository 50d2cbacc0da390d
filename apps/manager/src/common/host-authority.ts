import { fqdnSchema, ipAddressSchema } from '@debvisor/common';
import { z } from 'zod';

/** A Host header's `host[:port]` (IPv6 in brackets), lower-cased; undefined for anything else (paths, credentials, spaces …). */
export function hostAuthority(value: string): string | undefined {
  const match = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$/.exec(value);
  if (!match) return undefined;
  const [, hostPart, portPart] = match;
  if (portPart !== undefined && (Number(portPart) < 1 || Number(portPart) > 65535))
    return undefined;
  const bracketed = hostPart!.startsWith('[');
  const host = bracketed ? hostPart!.slice(1, -1) : hostPart!;
  if (
    bracketed
      ? !z.ipv6().safeParse(host).success
      : !ipAddressSchema.safeParse(host).success && !fqdnSchema.safeParse(host).success
  )
    return undefined;
  return `${hostPart!.toLowerCase()}${portPart === undefined ? '' : `:${Number(portPart)}`}`;
}
