import { useEffect, useState, type FormEvent } from 'react';
import { CheckField, SelectField, TextAreaField, TextField } from '../admin/parts';
import { may } from '../auth/permissions';
import type { SignedIn } from '../auth/queries';
import { ErrorNote } from '../ui/ErrorNote';
import { Timestamp } from '../ui/Timestamp';
import {
  useCreateAcmeAccount,
  useDeleteAcmeAccount,
  useOrderCertificate,
  useSaveAcmeSettings,
  useUploadCertificate,
} from './mutations';
import { useCertificates, type CertificatesStatus } from './queries';
import './certificates.css';

const DIRECTORIES = [
  {
    value: 'https://acme-v02.api.letsencrypt.org/directory',
    label: "Let's Encrypt",
  },
  {
    value: 'https://acme-staging-v02.api.letsencrypt.org/directory',
    label: "Let's Encrypt staging (test certificates)",
  },
  { value: '', label: 'Another CA (enter its directory URL)' },
] as const;

const SOURCES: Record<CertificatesStatus['current']['source'], string> = {
  'self-signed': 'Self-signed (first start default)',
  acme: 'ACME',
  custom: 'Uploaded',
};

/**
 * The manager's HTTPS certificate: what is served now and when it renews, the ACME accounts, the
 * order settings with "Order now", and an upload of a certificate of one's own. Changing anything
 * needs system.modify; readers see the same page without the forms.
 */
export function CertificatesPage({ signedIn }: { signedIn: SignedIn }) {
  const status = useCertificates();
  const canModify = may(signedIn, 'system.modify');
  return (
    <section aria-labelledby="certificates-title" className="certificates">
      <h1 id="certificates-title">Certificates</h1>
      {status.isError && <ErrorNote error={status.error} />}
      {status.isPending && <p className="loading">Loading…</p>}
      {status.data && (
        <>
          <Current status={status.data} />
          <Accounts status={status.data} canModify={canModify} />
          <Order status={status.data} canModify={canModify} />
          {canModify && <Upload />}
        </>
      )}
    </section>
  );
}

function Current({ status }: { status: CertificatesStatus }) {
  const { current, renewal, httpChallengeListener } = status;
  return (
    <section aria-labelledby="current-title" className="cert-panel">
      <h2 id="current-title">Current certificate</h2>
      <dl className="facts">
        <dt>Source</dt>
        <dd data-testid="certificate-source">{SOURCES[current.source]}</dd>
        <dt>Names</dt>
        <dd data-testid="certificate-names">{current.names.join(', ') || '—'}</dd>
        <dt>Issuer</dt>
        <dd>{current.issuer}</dd>
        <dt>Valid until</dt>
        <dd>
          <Timestamp at={current.notAfter} />
        </dd>
        <dt>Serial number</dt>
        <dd className="mono">{current.serialNumber}</dd>
        <dt>SHA-256 fingerprint</dt>
        <dd className="mono">{current.fingerprintSha256}</dd>
        {current.source === 'acme' && (
          <>
            <dt>Next renewal</dt>
            <dd>
              <Timestamp at={renewal.dueAt} />
              {renewal.basis === 'ari'
                ? " (the CA's renewal window)"
                : ' (two thirds of the lifetime)'}
            </dd>
          </>
        )}
        <dt>HTTP-01 listener</dt>
        <dd>
          {httpChallengeListener.port !== null
            ? `port ${httpChallengeListener.port}`
            : (httpChallengeListener.problem ?? 'off')}
        </dd>
      </dl>
      {renewal.lastError && (
        <p role="status" className="error" data-testid="renewal-error">
          The last order failed ({renewal.failures} in a row): {renewal.lastError}
        </p>
      )}
    </section>
  );
}

function Accounts({ status, canModify }: { status: CertificatesStatus; canModify: boolean }) {
  const remove = useDeleteAcmeAccount();
  return (
    <section aria-labelledby="accounts-title" className="cert-panel">
      <h2 id="accounts-title">ACME accounts</h2>
      {status.accounts.length === 0 ? (
        <p className="muted">No ACME account yet.</p>
      ) : (
        <table>
          <caption className="visually-hidden">ACME accounts</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Directory</th>
              <th scope="col">Contact</th>
              <th scope="col">EAB</th>
              {canModify && (
                <th scope="col">
                  <span className="visually-hidden">Actions</span>
                </th>
              )}
            </tr>
          </thead>
          <tbody>
            {status.accounts.map((account) => (
              <tr key={account.id}>
                <td>{account.name}</td>
                <td className="mono">{account.directoryUrl}</td>
                <td>{account.email ?? '—'}</td>
                <td>{account.externalAccountBinding ? 'yes' : 'no'}</td>
                {canModify && (
                  <td>
                    <button
                      type="button"
                      className="link"
                      disabled={remove.isPending || status.settings?.accountId === account.id}
                      onClick={() => remove.mutate(account.id)}
                    >
                      Forget {account.name}
                    </button>
                  </td>
                )}
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {remove.isError && <ErrorNote error={remove.error} />}
      {canModify && <AddAccount />}
    </section>
  );
}

function AddAccount() {
  const create = useCreateAcmeAccount();
  const [name, setName] = useState('letsencrypt');
  const [preset, setPreset] = useState<string>(DIRECTORIES[0].value);
  const [directoryUrl, setDirectoryUrl] = useState('');
  const [email, setEmail] = useState('');
  const [agreed, setAgreed] = useState(false);
  const [keyId, setKeyId] = useState('');
  const [hmacKey, setHmacKey] = useState('');
  const submit = (event: FormEvent) => {
    event.preventDefault();
    create.mutate(
      {
        name: name.trim(),
        directoryUrl: preset || directoryUrl.trim(),
        ...(email.trim() ? { email: email.trim() } : {}),
        termsOfServiceAgreed: agreed,
        ...(keyId.trim() ? { externalAccountBinding: { keyId: keyId.trim(), hmacKey } } : {}),
      },
      {
        onSuccess: () => {
          setAgreed(false);
          setKeyId('');
          setHmacKey('');
        },
      },
    );
  };
  return (
    <form onSubmit={submit} aria-label="Add an ACME account" className="form">
      <h3>Add an account</h3>
      <TextField label="Name" value={name} onChange={setName} required maxLength={64} />
      <SelectField
        label="Certificate authority"
        value={preset}
        onChange={setPreset}
        options={DIRECTORIES}
      />
      {!preset && (
        <TextField
          label="Directory URL"
          value={directoryUrl}
          onChange={setDirectoryUrl}
          type="url"
          required
          hint="The https:// URL of the CA's ACME directory"
        />
      )}
      <TextField label="Contact e-mail" value={email} onChange={setEmail} type="email" />
      <TextField
        label="EAB key id"
        value={keyId}
        onChange={setKeyId}
        hint="External Account Binding, only for CAs that need it"
      />
      {keyId.trim() && (
        <TextField
          label="EAB HMAC key"
          value={hmacKey}
          onChange={setHmacKey}
          type="password"
          autoComplete="off"
          required
        />
      )}
      <CheckField
        label="I agree to the CA's terms of service"
        checked={agreed}
        onChange={setAgreed}
      />
      {create.isError && <ErrorNote error={create.error} />}
      <button type="submit" disabled={create.isPending || !agreed}>
        {create.isPending ? 'Registering…' : 'Register the account'}
      </button>
    </form>
  );
}

function Order({ status, canModify }: { status: CertificatesStatus; canModify: boolean }) {
  const save = useSaveAcmeSettings();
  const order = useOrderCertificate();
  const settings = status.settings;
  const [accountId, setAccountId] = useState(settings?.accountId ?? status.accounts[0]?.id ?? '');
  const [domains, setDomains] = useState(settings?.domains.join('\n') ?? '');
  const [challenge, setChallenge] = useState<'http-01' | 'dns-01'>(
    settings?.challenge ?? 'http-01',
  );
  const [server, setServer] = useState(settings?.dns?.server ?? '');
  const [port, setPort] = useState(String(settings?.dns?.port ?? 53));
  const [keyName, setKeyName] = useState(settings?.dns?.keyName ?? '');
  const [algorithm, setAlgorithm] = useState<'hmac-sha256' | 'hmac-sha512'>(
    settings?.dns?.algorithm ?? 'hmac-sha256',
  );
  const [secret, setSecret] = useState('');
  useEffect(() => {
    if (!accountId && status.accounts[0]) setAccountId(status.accounts[0].id);
  }, [accountId, status.accounts]);

  const submit = (event: FormEvent) => {
    event.preventDefault();
    const names = domains
      .split(/[\s,]+/)
      .map((d) => d.trim())
      .filter(Boolean);
    save.mutate({
      accountId,
      domains: names,
      challenge,
      ...(challenge === 'dns-01'
        ? {
            dns: {
              server: server.trim(),
              port: Number(port),
              keyName: keyName.trim(),
              algorithm,
              ...(secret ? { secret } : {}),
              propagationTimeoutSeconds: settings?.dns?.propagationTimeoutSeconds ?? 120,
              ttl: settings?.dns?.ttl ?? 60,
            },
          }
        : {}),
    });
  };
  return (
    <section aria-labelledby="order-title" className="cert-panel">
      <h2 id="order-title">Order over ACME</h2>
      {settings ? (
        <p>
          Orders <strong>{settings.domains.join(', ')}</strong> with {settings.challenge}.
        </p>
      ) : (
        <p className="muted">
          Nothing is ordered until an account, names and a challenge are saved.
        </p>
      )}
      {canModify && (
        <>
          <button
            type="button"
            onClick={() => order.mutate()}
            disabled={!settings || order.isPending}
          >
            {order.isPending ? 'Ordering…' : 'Order now'}
          </button>
          {order.isError && <ErrorNote error={order.error} />}
          {order.isSuccess && <p role="status">Ordered: the new certificate is served now.</p>}
          {status.accounts.length > 0 && (
            <form onSubmit={submit} aria-label="ACME settings" className="form">
              <h3>Settings</h3>
              <SelectField
                label="Account"
                value={accountId}
                onChange={setAccountId}
                options={status.accounts.map((a) => ({ value: a.id, label: a.name }))}
              />
              <TextAreaField
                label="Names"
                value={domains}
                onChange={setDomains}
                rows={3}
                required
                hint="One per line; the first is the subject. Wildcards (*.example.com) need DNS-01."
              />
              <SelectField
                label="Challenge"
                value={challenge}
                onChange={(value) => setChallenge(value as 'http-01' | 'dns-01')}
                options={[
                  { value: 'http-01', label: 'HTTP-01 (the manager answers on its HTTP port)' },
                  { value: 'dns-01', label: 'DNS-01 (RFC 2136 update signed with TSIG)' },
                ]}
              />
              {challenge === 'dns-01' && (
                <fieldset>
                  <legend>DNS server (RFC 2136)</legend>
                  <TextField label="Server" value={server} onChange={setServer} required />
                  <TextField
                    label="Port"
                    value={port}
                    onChange={setPort}
                    inputMode="numeric"
                    required
                  />
                  <TextField label="TSIG key name" value={keyName} onChange={setKeyName} required />
                  <SelectField
                    label="TSIG algorithm"
                    value={algorithm}
                    onChange={(value) => setAlgorithm(value as 'hmac-sha256' | 'hmac-sha512')}
                    options={[
                      { value: 'hmac-sha256', label: 'hmac-sha256' },
                      { value: 'hmac-sha512', label: 'hmac-sha512' },
                    ]}
                  />
                  <TextField
                    label="TSIG secret"
                    value={secret}
                    onChange={setSecret}
                    type="password"
                    autoComplete="off"
                    hint={settings?.dns ? 'Leave empty to keep the stored secret' : 'Base64'}
                  />
                </fieldset>
              )}
              {save.isError && <ErrorNote error={save.error} />}
              {save.isSuccess && <p role="status">Settings saved.</p>}
              <button type="submit" disabled={save.isPending || !accountId}>
                Save the settings
              </button>
            </form>
          )}
        </>
      )}
    </section>
  );
}

function Upload() {
  const upload = useUploadCertificate();
  const [chainPem, setChainPem] = useState('');
  const [keyPem, setKeyPem] = useState('');
  const submit = (event: FormEvent) => {
    event.preventDefault();
    upload.mutate({ chainPem, keyPem }, { onSuccess: () => setKeyPem('') });
  };
  return (
    <section aria-labelledby="upload-title" className="cert-panel">
      <h2 id="upload-title">Upload a certificate</h2>
      <form onSubmit={submit} aria-label="Upload a certificate" className="form">
        <TextAreaField
          label="Certificate chain (PEM)"
          value={chainPem}
          onChange={setChainPem}
          rows={6}
          required
          spellCheck={false}
          hint="The certificate first, then each issuer"
        />
        <TextAreaField
          label="Private key (PEM)"
          value={keyPem}
          onChange={setKeyPem}
          rows={4}
          required
          spellCheck={false}
          autoComplete="off"
          hint="Unencrypted; stored sealed"
        />
        {upload.isError && <ErrorNote error={upload.error} />}
        {upload.isSuccess && <p role="status">Uploaded: the certificate is served now.</p>}
        <button type="submit" disabled={upload.isPending}>
          Upload and serve
        </button>
      </form>
    </section>
  );
}
