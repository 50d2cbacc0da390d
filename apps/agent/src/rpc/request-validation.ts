import { z } from 'zod';
import { AgentError, ErrorCode } from '../shared/agent-error';

/** A field that is either empty (meaning "the default") or valid for `schema`. */
export function emptyOr(schema: z.ZodType<string>, message: string): z.ZodType<string> {
  return z.string().refine((value) => value === '' || schema.safeParse(value).success, message);
}

/** Parses a request; an invalid one is INVALID_ARGUMENT naming each bad field as in the proto. */
export function validate<T>(schema: z.ZodType<T>, request: unknown): T {
  const result = schema.safeParse(request);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const field = issue.path
      .map((part) => (typeof part === 'number' ? `[${part}]` : snakeCase(String(part))))
      .join('.')
      .replace(/\.\[/g, '[');
    return `${field || 'request'}: ${issue.message}`;
  });
  throw new AgentError(ErrorCode.InvalidArgument, `invalid request: ${problems.join('; ')}`);
}

function snakeCase(value: string): string {
  return value.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}
