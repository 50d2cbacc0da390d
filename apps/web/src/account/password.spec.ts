import { describe, expect, it } from 'vitest';
import { repeatProblem } from './password';

describe('change-password form check', () => {
  it('accepts a repetition equal to the new password', () => {
    expect(repeatProblem('Correct-Horse-9', 'Correct-Horse-9')).toBeNull();
  });

  it('refuses a repetition that differs, even only in case or a trailing space', () => {
    expect(repeatProblem('Correct-Horse-9', 'correct-horse-9')).toBe(
      'the new password and its repetition differ',
    );
    expect(repeatProblem('Correct-Horse-9', 'Correct-Horse-9 ')).toBe(
      'the new password and its repetition differ',
    );
  });
});
