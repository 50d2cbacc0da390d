import { z } from 'zod';

/** Realm ids: `local`, `corp`, `sso` … */
export const realmIdSchema = z
  .string()
  .regex(
    /^[a-z][a-z0-9-]{0,31}$/,
    'a realm id is 1-32 lowercase letters, digits or dashes, starting with a letter',
  );

/** A user name within its realm (directory names may hold dots, dashes, `@` for e-mail-like names). */
export const usernameSchema = z
  .string()
  .min(1)
  .max(200)
  .regex(/^[A-Za-z0-9._@+-]+$/, 'a user name may hold letters, digits and . _ @ + -')
  .refine((v) => !v.startsWith('-'), 'a user name must not start with a dash');

/** `name@realm`. */
export const userIdSchema = z
  .string()
  .max(255)
  .regex(/^[A-Za-z0-9._@+-]+@[a-z][a-z0-9-]{0,31}$/, 'a user id is name@realm, e.g. alice@local');

/** Manager group ids: `debvisor-admin`, `debvisor-tenant-acme`. Never an `@` (user ids have one). */
export const groupIdSchema = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/,
    'a group id is 1-128 letters, digits or . _ -, starting with a letter or digit',
  );

/** The name of an API token, unique per owner: `ci`, `terraform-prod`. */
export const tokenNameSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'a token name is 1-64 letters, digits or . _ -');

export function formatUserId(username: string, realm: string): string {
  return `${username}@${realm}`;
}

export function splitUserId(id: string): { username: string; realm: string } {
  const at = id.lastIndexOf('@');
  return { username: id.slice(0, at), realm: id.slice(at + 1) };
}
