/** The client-side check of the change-password form (the manager's policy decides the rest): null when it may be sent. */
export function repeatProblem(newPassword: string, repeat: string): string | null {
  return newPassword === repeat ? null : 'the new password and its repetition differ';
}
