import { describe, expect, it } from 'vitest';
import type { ManagerConfig } from '../config/manager-config';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { PasswordPolicy } from './password-policy';

function policy(passwordMinLength = 12): PasswordPolicy {
  return new PasswordPolicy({ access: { passwordMinLength } } as ManagerConfig);
}

describe('PasswordPolicy', () => {
  it('accepts a long mixed password and a long single-class passphrase', () => {
    expect(policy().problems('correct-Horse-7', 'alice@local')).toEqual([]);
    expect(policy().problems('correct horse battery staple', 'alice@local')).toEqual([]);
  });

  it('refuses passwords shorter than the configured minimum, counting characters rather than bytes', () => {
    expect(policy(12).problems('Sh0rt-pass', 'alice@local')).toEqual([
      'it must be at least 12 characters long (it has 10)',
    ]);
    expect(policy(8).problems('Sh0rt-pass', 'alice@local')).toEqual([]);
    expect(policy(12).problems('Pässwörter-1', 'alice@local')).toEqual([]);
    expect(policy(13).problems('Pässwörter-1', 'alice@local')).toEqual([
      'it must be at least 13 characters long (it has 12)',
    ]);
  });

  it('refuses more than 1024 characters', () => {
    expect(policy().problems(`Aa1-${'x'.repeat(1021)}`, 'alice@local')).toEqual([
      'it must be at most 1024 characters long',
    ]);
    expect(policy().problems(`Aa1-${'x'.repeat(1020)}`, 'alice@local')).toEqual([]);
  });

  it('refuses a password of one character class below 16 characters, and not from 16 on', () => {
    expect(policy().problems('onlylowercase', 'alice@local')).toEqual([
      'a password shorter than 16 characters must mix at least two of lower-case letters, upper-case letters, digits and other characters',
    ]);
    expect(policy().problems('123456789012345', 'alice@local')).toHaveLength(1);
    expect(policy().problems('onlylowercasetoo', 'alice@local')).toEqual([]);
    expect(policy().problems('onlylowercasE', 'alice@local')).toEqual([]);
  });

  it('refuses a password of fewer than 5 different characters, however long', () => {
    expect(policy().problems('abababababababababab', 'alice@local')).toEqual([
      'it must hold at least 5 different characters',
    ]);
  });

  it('refuses the user name and the user id in any case', () => {
    expect(policy().problems('Alice.Liddell-1', 'alice.liddell-1@local')).toEqual([
      'it must not be the user name',
    ]);
    expect(policy(8).problems('BOB@LOCAL', 'bob@local')).toContain('it must not be the user name');
  });

  it('throws 400 validation_failed naming the field and every broken rule', () => {
    let error: unknown;
    try {
      policy().check('aaaa', 'alice@local', 'newPassword');
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(DomainError);
    expect((error as DomainError).code).toBe(ErrorCode.ValidationFailed);
    expect((error as DomainError).message).toBe(
      'newPassword: the password is too weak: it must be at least 12 characters long (it has 4); a password shorter than 16 characters must mix at least two of lower-case letters, upper-case letters, digits and other characters; it must hold at least 5 different characters',
    );
    expect(() => policy().check('correct-Horse-7', 'alice@local')).not.toThrow();
  });
});
