import { useState, type FormEvent } from 'react';
import { errorMessage } from '../api/client';
import { useSecondFactor } from './mutations';
import type { TfaMethod } from './queries';

const LABELS: Record<TfaMethod, string> = {
  totp: 'Use the authenticator app instead',
  webauthn: 'Use a security key instead',
  recovery: 'Use a recovery code instead',
};

/** The second step of a login: a security key, the code of an authenticator app, or one of the recovery codes. */
export function TfaStep({
  user,
  methods,
  onCancel,
}: {
  user: string;
  methods: readonly TfaMethod[];
  onCancel: () => void;
}) {
  const [method, setMethod] = useState<TfaMethod>(
    methods.includes('webauthn') ? 'webauthn' : methods.includes('totp') ? 'totp' : 'recovery',
  );
  const [value, setValue] = useState('');
  const secondFactor = useSecondFactor();
  const submit = (event: FormEvent) => {
    event.preventDefault();
    const answer =
      method === 'webauthn'
        ? 'webauthn'
        : method === 'totp'
          ? { code: value.replace(/\s+/g, '') }
          : { recoveryCode: value.trim() };
    secondFactor.mutate(answer, { onError: () => setValue('') });
  };
  // A new attempt: the previous answer's error no longer applies.
  const edit = (next: string) => {
    setValue(next);
    if (secondFactor.isError) secondFactor.reset();
  };
  const others = (['webauthn', 'totp', 'recovery'] as const).filter(
    (m) => m !== method && methods.includes(m),
  );
  const switchTo = (next: TfaMethod) => {
    setMethod(next);
    setValue('');
    secondFactor.reset();
  };
  return (
    <form onSubmit={submit} aria-label="Second factor">
      <p>
        Signing in as <strong>{user}</strong>.
      </p>
      {method === 'webauthn' ? (
        <p>
          Use your security key or this device's authenticator (fingerprint, PIN) when the browser
          asks.
        </p>
      ) : method === 'totp' ? (
        <>
          <label htmlFor="tfa-code">Code from your authenticator app</label>
          <input
            key="totp"
            id="tfa-code"
            name="code"
            autoComplete="one-time-code"
            inputMode="numeric"
            pattern="[0-9 ]{6,8}"
            title="The 6 digits your authenticator app shows now"
            maxLength={8}
            value={value}
            onChange={(e) => edit(e.target.value)}
            autoFocus
            required
          />
        </>
      ) : (
        <>
          <label htmlFor="tfa-recovery">Recovery code</label>
          <input
            key="recovery"
            id="tfa-recovery"
            name="recoveryCode"
            autoComplete="off"
            autoCapitalize="none"
            spellCheck={false}
            value={value}
            onChange={(e) => edit(e.target.value)}
            autoFocus
            required
          />
          <span className="muted">Each recovery code works once.</span>
        </>
      )}
      {secondFactor.isError && (
        <p role="alert" className="error">
          {errorMessage(secondFactor.error)}
        </p>
      )}
      <button type="submit" disabled={secondFactor.isPending}>
        {secondFactor.isPending
          ? 'Checking…'
          : method === 'webauthn'
            ? 'Use security key'
            : 'Verify'}
      </button>
      {others.map((other) => (
        <button key={other} type="button" className="link" onClick={() => switchTo(other)}>
          {LABELS[other]}
        </button>
      ))}
      <button type="button" className="link" onClick={onCancel}>
        Back to the password
      </button>
    </form>
  );
}
