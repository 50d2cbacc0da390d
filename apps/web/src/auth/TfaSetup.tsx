import { useState, type FormEvent } from 'react';
import { errorMessage } from '../api/client';
import { useConfirmTotp, useEnrolTotp, useSetupDone, type EnrolledTotp } from './mutations';

/** Step 1: name the authenticator; the password is asked again (a fresh check), except after single sign-on. */
function EnrolForm({ askPassword, onEnrolled }: { askPassword: boolean; onEnrolled: (device: EnrolledTotp) => void }) {
  const [name, setName] = useState('authenticator app');
  const [password, setPassword] = useState('');
  const enrol = useEnrolTotp();
  const submit = (event: FormEvent) => {
    event.preventDefault();
    enrol.mutate({ name: name.trim(), ...(askPassword ? { password } : {}) }, { onSuccess: onEnrolled });
  };
  return (
    <form onSubmit={submit} aria-label="Add an authenticator">
      <label htmlFor="device-name">Name of the authenticator</label>
      <input
        id="device-name"
        name="deviceName"
        autoComplete="off"
        value={name}
        onChange={(e) => setName(e.target.value)}
        maxLength={64}
        required
      />
      {askPassword && (
        <>
          <label htmlFor="setup-password">Your password</label>
          <input
            id="setup-password"
            name="password"
            type="password"
            autoComplete="current-password"
            value={password}
            onChange={(e) => setPassword(e.target.value)}
            required
          />
        </>
      )}
      {enrol.isError && (
        <p role="alert" className="error">
          {errorMessage(enrol.error)}
        </p>
      )}
      <button type="submit" disabled={enrol.isPending}>
        {enrol.isPending ? 'Preparing…' : 'Continue'}
      </button>
    </form>
  );
}

/** `ABCDEFGHIJ` → `ABCD EFGH IJ`: easier to type; authenticator apps ignore the spaces. */
function groupsOfFour(secret: string): string {
  return secret.replace(/(.{4})(?=.)/g, '$1 ');
}

/** Step 2: the secret (QR code and text) goes into the app; the code it shows confirms the device. */
function ConfirmForm({ device, onConfirmed }: { device: EnrolledTotp; onConfirmed: (recoveryCodes: string[]) => void }) {
  const [code, setCode] = useState('');
  const confirm = useConfirmTotp();
  const submit = (event: FormEvent) => {
    event.preventDefault();
    confirm.mutate(
      { id: device.id, code: code.replace(/\s+/g, '') },
      { onSuccess: (answer) => onConfirmed(answer.recoveryCodes ?? []), onError: () => setCode('') },
    );
  };
  return (
    <form onSubmit={submit} aria-label="Confirm the authenticator">
      <p>Scan this QR code with your authenticator app (or type in the secret below), then enter the code the app shows.</p>
      <img className="qr" src={device.qrCode} alt="QR code of the authenticator secret" width={200} height={200} />
      <p>
        Secret for typing in by hand: <code className="secret">{groupsOfFour(device.secret)}</code>
      </p>
      <label htmlFor="setup-code">Code from your authenticator app</label>
      <input
        id="setup-code"
        name="code"
        autoComplete="one-time-code"
        inputMode="numeric"
        pattern="[0-9 ]{6,8}"
        title="The 6 digits your authenticator app shows now"
        maxLength={8}
        value={code}
        onChange={(e) => {
          setCode(e.target.value);
          if (confirm.isError) confirm.reset();
        }}
        required
      />
      {confirm.isError && (
        <p role="alert" className="error">
          {errorMessage(confirm.error)}
        </p>
      )}
      <button type="submit" disabled={confirm.isPending}>
        {confirm.isPending ? 'Checking…' : 'Confirm'}
      </button>
    </form>
  );
}

/** Step 3: the recovery codes, shown this once. */
function RecoveryCodes({ codes, onSaved }: { codes: string[]; onSaved: () => void }) {
  return (
    <section aria-labelledby="recovery-title">
      <h2 id="recovery-title">Your recovery codes</h2>
      <p>
        Each code signs you in once when the authenticator is not at hand. Keep them somewhere safe now: they are <strong>not shown again</strong>.
      </p>
      <ol className="recovery-codes" aria-label="Recovery codes">
        {codes.map((c) => (
          <li key={c}>
            <code>{c}</code>
          </li>
        ))}
      </ol>
      <button type="button" onClick={onSaved}>
        I saved them
      </button>
    </section>
  );
}

/**
 * The account must sign in with a second factor and has none yet: enrol an authenticator app
 * (POST /access/tfa/totp), confirm it with a code, then show the recovery codes once.
 */
export function TfaSetup({ user, askPassword, onLogOut }: { user: string; askPassword: boolean; onLogOut: () => void }) {
  const [device, setDevice] = useState<EnrolledTotp | null>(null);
  const [codes, setCodes] = useState<string[] | null>(null);
  const done = useSetupDone();
  return (
    <main className="narrow">
      <h1>Set up a second factor</h1>
      <p>
        The account <strong>{user}</strong> must sign in with a second factor. Add an authenticator app (TOTP) to continue.
      </p>
      {codes ? (
        <RecoveryCodes codes={codes} onSaved={() => void done()} />
      ) : device ? (
        <ConfirmForm
          device={device}
          onConfirmed={(recoveryCodes) => {
            if (recoveryCodes.length > 0) setCodes(recoveryCodes);
            else void done();
          }}
        />
      ) : (
        <EnrolForm askPassword={askPassword} onEnrolled={setDevice} />
      )}
      {!codes && (
        <button type="button" className="link" onClick={onLogOut}>
          Log out
        </button>
      )}
    </main>
  );
}
