import { ArgumentMetadata, Injectable, PipeTransform } from '@nestjs/common';
import { createZodValidationPipe } from 'nestjs-zod';
import { ZodError, type core } from 'zod';
import { DomainError } from './domain-error';
import { ErrorCode } from './error-code';

/** "endpoints.0: an endpoint is host:port …; id: a remote id is …" — every failing field with its path. */
export function describeZodError(error: unknown): string {
  if (!(error instanceof ZodError)) return 'invalid input';
  const parts = error.issues.slice(0, 10).map((issue: core.$ZodIssue) => {
    const path = issue.path.map(String).join('.') || '(body)';
    return `${path}: ${issue.message}`;
  });
  if (error.issues.length > 10) parts.push(`… and ${error.issues.length - 10} more`);
  return parts.join('; ');
}

const StrictZodPipe = createZodValidationPipe({
  strictSchemaDeclaration: true,
  createValidationException: (error: unknown) =>
    new DomainError(ErrorCode.ValidationFailed, describeZodError(error)),
});

/**
 * Validates every body, query and route parameter against its nestjs-zod DTO; a parameter without a
 * DTO is a programming error (strict). Custom parameter decorators (the caller's identity) are ours
 * and pass through.
 */
@Injectable()
export class ValidationPipe implements PipeTransform {
  private readonly zod = new StrictZodPipe();

  transform(value: unknown, metadata: ArgumentMetadata): unknown {
    if (metadata.type === 'custom') return value;
    return this.zod.transform(value, metadata);
  }
}
