import { Inject, Injectable } from '@nestjs/common';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { MANAGER_CONFIG, type ManagerConfig } from '../config/manager-config';

/** Longer passwords are refused: argon2 would hash them, but nobody types more and it bounds the work. */
export const PASSWORD_MAX_LENGTH = 1024;
/** From this length on, a passphrase of one character class (all lower-case words) is fine. */
export const PASSPHRASE_LENGTH = 16;
/** At least this many different characters, whatever the length (`aaaaaaaaaaaaaaaaaaaa` is no password). */
export const PASSWORD_MIN_DISTINCT = 5;

const CLASSES: readonly { name: string; test: RegExp }[] = [
  { name: 'lower-case letters', test: /\p{Ll}/u },
  { name: 'upper-case letters', test: /\p{Lu}/u },
  { name: 'digits', test: /\p{Nd}/u },
  { name: 'other characters', test: /[^\p{Ll}\p{Lu}\p{Nd}]/u },
];

/**
 * The rules for passwords stored by the manager (local realm), in the spirit of NIST SP 800-63B:
 * length matters most, no composition rules for passphrases.
 *
 * - at least `DEBVISOR_PASSWORD_MIN_LENGTH` characters (default 12), at most 1024;
 * - shorter than 16 characters: at least two character classes (lower case, upper case, digits,
 *   other characters);
 * - at least 5 different characters;
 * - not the user's name or id (case-insensitive).
 *
 * Lengths count Unicode code points, not bytes.
 */
@Injectable()
export class PasswordPolicy {
  constructor(@Inject(MANAGER_CONFIG) private readonly config: ManagerConfig) {}

  /** What is wrong with `password` for `userId`, one sentence per broken rule; empty when it is acceptable. */
  problems(password: string, userId: string): string[] {
    const min = this.config.access.passwordMinLength;
    const characters = [...password];
    const problems: string[] = [];
    if (characters.length < min)
      problems.push(`it must be at least ${min} characters long (it has ${characters.length})`);
    if (characters.length > PASSWORD_MAX_LENGTH)
      problems.push(`it must be at most ${PASSWORD_MAX_LENGTH} characters long`);
    const classes = CLASSES.filter((c) => c.test.test(password)).length;
    if (characters.length < PASSPHRASE_LENGTH && classes < 2) {
      problems.push(
        `a password shorter than ${PASSPHRASE_LENGTH} characters must mix at least two of lower-case letters, upper-case letters, digits and other characters`,
      );
    }
    if (new Set(characters).size < PASSWORD_MIN_DISTINCT)
      problems.push(`it must hold at least ${PASSWORD_MIN_DISTINCT} different characters`);
    const lowered = password.toLowerCase();
    const at = userId.lastIndexOf('@');
    const username = at > 0 ? userId.slice(0, at) : userId;
    if (lowered === userId.toLowerCase() || lowered === username.toLowerCase())
      problems.push('it must not be the user name');
    return problems;
  }

  /** Throws 400 validation_failed naming every broken rule. */
  check(password: string, userId: string, field = 'password'): void {
    const problems = this.problems(password, userId);
    if (problems.length > 0)
      throw new DomainError(
        ErrorCode.ValidationFailed,
        `${field}: the password is too weak: ${problems.join('; ')}`,
      );
  }
}
