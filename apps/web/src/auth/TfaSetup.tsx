import { useId, useState, type FormEvent } from 'react';
import { errorMessage } from '../api/client';
import { useConfirmTotp, useEnrolTotp, useSetupDone, type EnrolledTotp } from './mutations';

/**
 * Step 1: name the authenticator; the password is asked again (a fresh check), except after single
 * sign-on. An account that must have a second factor and has none also gives the one-time code its
 * administrator issued (unless the manager lets the password alone do: DEBVISOR_TFA_ENROLMENT).
 */
function EnrolForm({
  askPassword,
  askEnrolmentCode,
  onEnrolled,
}: {
  askPassword: boolean;
  askEnrolmentCode: boolean;
  onEnrolled: (device: EnrolledTotp) => void;
}) {
  const [name, setName] = useState('authenticator app');
  const [password, setPassword] = useState('');
  const [enrolmentCode, setEnrolmentCode] = useState('');
  const enrol = useEnrolTotp();
  const nameId = useId();
  const passwordId = useId();
  const enrolmentCodeId = useId();
  const submit = (event: FormEvent) => {
    event.preventDefault();
    enrol.mutate(
      {
        name: name.trim(),
        ...(askPassword ? { password } : {}),
        ...(askEnrolmentCode && enrolmentCode.trim()
          ? { enrolmentCode: enrolmentCode.trim() }
          : {}),
      },
      { onSuccess: onEnrolled },
    );
  };
  return (
    <form onSubmit={submit} aria-label="Add an authenticator">
      <label htmlFor={nameId}>Name of the authenticator</label>
      <input
        id={nameId}
        name="deviceName"
        autoComplete="off"
        value={name}
        onChange={(e) => setName(e.target.value)}
        maxLength={64}
        required
      />
      {askPassword && (
        <>
          <label htmlFor={passwordId}>Your password</label>
          <input
            id={passwordId}
            name="password"
            type="password"
            autoComplete="current-password"
            value={password}
            onChange={(e) => setPassword(e.target.value)}
            required
          />
        </>
      )}
      {askEnrolmentCode && (
        <>
          <label htmlFor={enrolmentCodeId}>Enrolment code from your administrator</label>
          <input
            id={enrolmentCodeId}
            name="enrolmentCode"
            autoComplete="off"
            value={enrolmentCode}
            onChange={(e) => setEnrolmentCode(e.target.value)}
            maxLength={200}
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
function ConfirmForm({
  device,
  onConfirmed,
}: {
  device: EnrolledTotp;
  onConfirmed: (recoveryCodes: string[]) => void;
}) {
  const [code, setCode] = useState('');
  const confirm = useConfirmTotp();
  const codeId = useId();
  const submit = (event: FormEvent) => {
    event.preventDefault();
    confirm.mutate(
      { id: device.id, code: code.replace(/\s+/g, '') },
      {
        onSuccess: (answer) => onConfirmed(answer.recoveryCodes ?? []),
        onError: () => setCode(''),
      },
    );
  };
  return (
    <form onSubmit={submit} aria-label="Confirm the authenticator">
      <p>
        Scan this QR code with your authenticator app (or type in the secret below), then enter the
        code the app shows.
      </p>
      <img
        className="qr"
        src={device.qrCode}
        alt="QR code of the authenticator secret"
        width={200}
        height={200}
      />
      <p>
        Secret for typing in by hand: <code className="secret">{groupsOfFour(device.secret)}</code>
      </p>
      <label htmlFor={codeId}>Code from your authenticator app</label>
      <input
        id={codeId}
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

/** Step 3 (and any new set): the recovery codes, shown this once. */
export function RecoveryCodes({ codes, onSaved }: { codes: string[]; onSaved: () => void }) {
  const titleId = useId();
  return (
    <section aria-labelledby={titleId}>
      <h2 id={titleId}>Your recovery codes</h2>
      <p>
        Each code signs you in once when the authenticator is not at hand. Keep them somewhere safe
        now: they are <strong>not shown again</strong>.
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
 * Adding an authenticator app: name it (with a fresh password check), scan the secret, confirm a
 * code, then the recovery codes once when the manager answers them (the first second factor).
 * `onConfirmed` follows the confirmation, `onDone` the last step; `cancel` is offered until the codes show.
 */
export function TotpEnrolment({
  askPassword,
  askEnrolmentCode = false,
  onDone,
  onConfirmed,
  cancel,
}: {
  askPassword: boolean;
  /** The account must have a second factor and has none: its administrator's one-time code. */
  askEnrolmentCode?: boolean;
  onDone: () => void;
  onConfirmed?: () => void;
  cancel?: { label: string; onCancel: () => void };
}) {
  const [device, setDevice] = useState<EnrolledTotp | null>(null);
  const [codes, setCodes] = useState<string[] | null>(null);
  return (
    <>
      {codes ? (
        <RecoveryCodes codes={codes} onSaved={onDone} />
      ) : device ? (
        <ConfirmForm
          device={device}
          onConfirmed={(recoveryCodes) => {
            onConfirmed?.();
            if (recoveryCodes.length > 0) setCodes(recoveryCodes);
            else onDone();
          }}
        />
      ) : (
        <EnrolForm
          askPassword={askPassword}
          askEnrolmentCode={askEnrolmentCode}
          onEnrolled={setDevice}
        />
      )}
      {!codes && cancel && (
        <button type="button" className="link" onClick={cancel.onCancel}>
          {cancel.label}
        </button>
      )}
    </>
  );
}

/**
 * The account must sign in with a second factor and has none yet: enrol an authenticator app
 * (POST /access/tfa/totp), confirm it with a code, then show the recovery codes once.
 */
export function TfaSetup({
  user,
  askPassword,
  onLogOut,
}: {
  user: string;
  askPassword: boolean;
  onLogOut: () => void;
}) {
  const done = useSetupDone();
  return (
    <main className="narrow">
      <h1>Set up a second factor</h1>
      <p>
        The account <strong>{user}</strong> must sign in with a second factor. Add an authenticator
        app (TOTP) to continue, with the one-time enrolment code your administrator gave you.
      </p>
      <TotpEnrolment
        askPassword={askPassword}
        askEnrolmentCode
        onDone={() => void done()}
        cancel={{ label: 'Log out', onCancel: onLogOut }}
      />
    </main>
  );
}
