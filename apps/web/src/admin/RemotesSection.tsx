import { useState, type FormEvent } from 'react';
import type { Schemas } from '../api/client';
import { may } from '../auth/permissions';
import type { SignedIn } from '../auth/queries';
import { ActionButton } from '../ui/ActionButton';
import { ConfirmMutation } from '../ui/ConfirmMutation';
import { ErrorNote } from '../ui/ErrorNote';
import { formatTime } from '../ui/format';
import { href } from '../view';
import {
  useAddCredential,
  useCreateRemote,
  useDeleteRemote,
  useProbeEndpoints,
  useRemoveCredential,
  useRotateRemoteCa,
  useUpdateRemote,
} from './mutations';
import { CheckField, Loaded, Problems, Refresh, TextAreaField, TextField } from './parts';
import { useRemotes, useRemoteStatuses, type Remote, type RemoteStatus } from './queries';
import {
  chooseTrust,
  createRemoteBody,
  credentialProblem,
  endpointsProblem,
  parseEndpoints,
  pemFingerprint,
  remoteFormProblems,
  shortFingerprint,
  newTrustKeysProblem,
  updateRemoteBody,
  validNow,
  type PresentedCertificate,
  type ProbeOutcome,
  type RemoteForm,
} from './remote-forms';

type CreatedRemote = Schemas['CreatedRemoteDto_Output'];

/** What the cluster answered to the connection test of a new remote or credential. */
function ConnectionReport({
  remote,
  connection,
  what,
}: {
  remote: string;
  connection: Schemas['ConnectionReport_Output'];
  what: string;
}) {
  if (!connection.ok) {
    return (
      <p role="status" className="notice warn" data-testid="connection-report">
        {what} {remote} although the connection test failed:{' '}
        {connection.error?.message ?? 'no answer'}.
      </p>
    );
  }
  return (
    <p role="status" className="notice ok" data-testid="connection-report">
      {what} {remote}. The cluster answered: cluster <strong>{connection.clusterId ?? '?'}</strong>,{' '}
      {connection.nodeCount ?? '?'} nodes, agent {connection.agentVersion ?? '?'}
      {connection.nodeId ? ` (through ${connection.nodeId})` : ''}.
    </p>
  );
}

function CertificateRows({
  certificates,
  anchor,
}: {
  certificates: PresentedCertificate[];
  anchor: string | null;
}) {
  const now = new Date();
  return (
    <table className="compact">
      <caption className="visually-hidden">Certificates presented, leaf first</caption>
      <thead>
        <tr>
          <th scope="col">Certificate</th>
          <th scope="col">Issuer</th>
          <th scope="col">Valid</th>
          <th scope="col">SHA-256 fingerprint</th>
        </tr>
      </thead>
      <tbody>
        {certificates.map((c) => (
          <tr
            key={c.fingerprintSha256}
            className={c.fingerprintSha256 === anchor ? 'anchor' : undefined}
          >
            <th scope="row">
              {c.subject} <span className="muted">{c.isCa ? '(CA)' : '(server)'}</span>
            </th>
            <td>{c.issuer}</td>
            <td>
              {formatTime(c.notBefore)} – {formatTime(c.notAfter)}
              {!validNow(c, now) && <strong className="error"> not valid now</strong>}
            </td>
            <td>
              <code className="fingerprint">{c.fingerprintSha256}</code>
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** The connection test's answers, endpoint by endpoint, and the CA the remote would trust. */
function ProbeResult({
  outcomes,
  pastedFingerprint,
}: {
  outcomes: ProbeOutcome[];
  pastedFingerprint: string | null;
}) {
  const trust = chooseTrust(outcomes, pastedFingerprint);
  const anchor = trust.ok ? trust.fingerprint : null;
  return (
    <div className="probe" data-testid="probe-result">
      {outcomes.map((o) => (
        <div key={o.endpoint} className="probe-endpoint">
          <h4>{o.endpoint}</h4>
          {'error' in o ? (
            <p className="error">{o.error}</p>
          ) : (
            <CertificateRows certificates={o.certificates} anchor={anchor} />
          )}
        </div>
      ))}
    </div>
  );
}

const emptyForm = (): RemoteForm => ({
  id: '',
  description: '',
  endpoints: '',
  caCertPem: '',
  credentials: [{ name: 'admin', key: '' }],
  addAnyway: false,
});

interface Tested {
  endpoints: string[];
  caCertPem: string;
  pastedFingerprint: string | null;
  outcomes: ProbeOutcome[];
}

/**
 * Adding a remote: the operator gives id, endpoints, optionally the CA certificate, and credentials;
 * 'Test connection' shows the certificates each endpoint presents; the operator confirms the CA
 * fingerprint; only then 'Add remote' sends it (and the manager tests the credentials).
 */
function AddRemote({
  allowed,
  onAdded,
  onCancel,
}: {
  allowed: boolean;
  onAdded: (created: CreatedRemote) => void;
  onCancel: () => void;
}) {
  const [form, setForm] = useState<RemoteForm>(emptyForm);
  const [tested, setTested] = useState<Tested | null>(null);
  const [confirmed, setConfirmed] = useState(false);
  const [problems, setProblems] = useState<string[]>([]);
  const probe = useProbeEndpoints();
  const create = useCreateRemote();
  const set = (patch: Partial<RemoteForm>) => setForm((f) => ({ ...f, ...patch }));
  const setCredential = (index: number, patch: Partial<RemoteForm['credentials'][number]>) =>
    setForm((f) => ({
      ...f,
      credentials: f.credentials.map((c, i) => (i === index ? { ...c, ...patch } : c)),
    }));

  const endpoints = parseEndpoints(form.endpoints);
  // A test counts only for the endpoints and CA it was made with.
  const current =
    tested !== null &&
    tested.endpoints.join('\n') === endpoints.join('\n') &&
    tested.caCertPem === form.caCertPem.trim();
  const trust = current ? chooseTrust(tested.outcomes, tested.pastedFingerprint) : null;

  const test = async () => {
    const problem = endpointsProblem(endpoints);
    const pasted = form.caCertPem.trim() ? await pemFingerprint(form.caCertPem) : null;
    const found = [
      problem,
      form.caCertPem.trim() && !pasted
        ? 'the CA certificate must be PEM (-----BEGIN CERTIFICATE-----)'
        : null,
    ].filter((p): p is string => !!p);
    setProblems(found);
    if (found.length > 0) return;
    setConfirmed(false);
    probe.mutate(endpoints, {
      onSuccess: (outcomes) =>
        setTested({
          endpoints,
          caCertPem: form.caCertPem.trim(),
          pastedFingerprint: pasted,
          outcomes,
        }),
    });
  };

  const add = (event: FormEvent) => {
    event.preventDefault();
    if (!trust?.ok || !confirmed) return;
    const found = remoteFormProblems(form);
    setProblems(found);
    if (found.length > 0) return;
    create.mutate(createRemoteBody(form, trust), { onSuccess: onAdded });
  };

  return (
    <form className="admin-form panel-wide" aria-label="Add a remote" onSubmit={add}>
      <h3>Add a remote</h3>
      <fieldset disabled={create.isPending}>
        <div className="grid-2">
          <TextField
            label="Remote id"
            value={form.id}
            onChange={(id) => set({ id })}
            required
            autoComplete="off"
            hint="e.g. dc-east: lower-case letters, digits, hyphens"
          />
          <TextField
            label="Description"
            value={form.description}
            onChange={(description) => set({ description })}
            autoComplete="off"
          />
        </div>
        <TextAreaField
          label="Endpoints"
          value={form.endpoints}
          onChange={(value) => set({ endpoints: value })}
          rows={3}
          required
          hint="Agent endpoints, host:port, one per line; tried in this order"
        />
        <TextAreaField
          label="CA certificate (PEM, optional)"
          value={form.caCertPem}
          onChange={(caCertPem) => set({ caCertPem })}
          rows={3}
          className="mono"
          hint="Without it, the remote trusts the CA the endpoints present, once you confirm its fingerprint"
        />
        <fieldset className="credentials">
          <legend>Credentials (agent API keys)</legend>
          {form.credentials.map((c, i) => (
            <div key={i} className="credential-row">
              <TextField
                label={`Credential ${i + 1} name`}
                value={c.name}
                onChange={(name) => setCredential(i, { name })}
                autoComplete="off"
                required
              />
              <TextField
                label={`Credential ${i + 1} key`}
                value={c.key}
                onChange={(key) => setCredential(i, { key })}
                type="password"
                autoComplete="off"
                required
                placeholder="dvk_…"
              />
              {form.credentials.length > 1 && (
                <button
                  type="button"
                  className="link"
                  onClick={() => set({ credentials: form.credentials.filter((_, j) => j !== i) })}
                >
                  Drop credential {i + 1}
                </button>
              )}
            </div>
          ))}
          <button
            type="button"
            className="link"
            onClick={() => set({ credentials: [...form.credentials, { name: '', key: '' }] })}
          >
            Another credential
          </button>
          <span className="muted">
            The manager acts with the first one; remote groups may use the others.
          </span>
        </fieldset>

        <div className="actions">
          <ActionButton
            allowed={allowed}
            needs="remote.modify"
            onClick={() => void test()}
            disabled={probe.isPending}
          >
            {probe.isPending ? 'Testing…' : 'Test connection'}
          </ActionButton>
        </div>
        <ErrorNote error={probe.error} />
        {tested && !current && (
          <p role="status" className="notice">
            The endpoints or the CA certificate changed since the test: test the connection again.
          </p>
        )}
        {current && tested && (
          <ProbeResult outcomes={tested.outcomes} pastedFingerprint={tested.pastedFingerprint} />
        )}
        {trust && !trust.ok && (
          <p role="alert" className="error">
            {trust.problem}
          </p>
        )}
        {trust?.ok && (
          <div className="trust-anchor" aria-live="polite">
            <p>
              The remote will trust this CA certificate
              {trust.certificate ? (
                <>
                  : <strong>{trust.certificate.subject}</strong>, valid{' '}
                  {formatTime(trust.certificate.notBefore)} –{' '}
                  {formatTime(trust.certificate.notAfter)}
                </>
              ) : (
                ' (the one you pasted)'
              )}
              . SHA-256 fingerprint:
            </p>
            <code className="fingerprint big" data-testid="probe-fingerprint">
              {trust.fingerprint}
            </code>
            {trust.withoutIt.length > 0 && (
              <p className="notice warn">
                {trust.withoutIt.join(', ')} did not present this CA in its chain; the manager will
                check their certificates against it.
              </p>
            )}
            {trust.unreachable.length > 0 && (
              <p className="notice warn">Did not answer: {trust.unreachable.join(', ')}.</p>
            )}
            <p className="muted">
              Compare it with the fingerprint of the cluster&apos;s CA certificate, taken on a node
              you trust, e.g. <code>openssl x509 -noout -fingerprint -sha256 -in ca.crt</code>.
            </p>
            <CheckField
              label="I have checked this fingerprint"
              checked={confirmed}
              onChange={setConfirmed}
            />
          </div>
        )}
        <CheckField
          label="Add even when the credential test fails"
          checked={form.addAnyway}
          onChange={(addAnyway) => set({ addAnyway })}
          hint="The manager still stores the remote, and reports the failed test"
        />
        <Problems problems={problems} />
        <ErrorNote error={create.error} />
        <div className="actions">
          <ActionButton
            allowed={allowed}
            needs="remote.modify"
            type="submit"
            className="primary"
            disabled={!trust?.ok || !confirmed || create.isPending}
          >
            {create.isPending ? 'Adding…' : 'Add remote'}
          </ActionButton>
          <button type="button" onClick={onCancel}>
            Cancel
          </button>
        </div>
      </fieldset>
    </form>
  );
}

/** Changing a remote: description, endpoints, a new CA certificate; adding and removing credentials. */
function EditRemote({
  remote,
  allowed,
  onClose,
}: {
  remote: Remote;
  allowed: boolean;
  onClose: () => void;
}) {
  const [description, setDescription] = useState(remote.description);
  const [endpoints, setEndpoints] = useState(remote.endpoints.join('\n'));
  const [caCertPem, setCaCertPem] = useState('');
  const [keys, setKeys] = useState<Record<string, string>>({});
  const [problems, setProblems] = useState<string[]>([]);
  const [saved, setSaved] = useState<string | null>(null);
  const [credential, setCredential] = useState({ name: '', key: '', addAnyway: false });
  const [added, setAdded] = useState<CreatedRemote | null>(null);
  const [removing, setRemoving] = useState<string | null>(null);
  const update = useUpdateRemote();
  const addCredential = useAddCredential();
  const removeCredential = useRemoveCredential();

  const save = (event: FormEvent) => {
    event.preventDefault();
    setSaved(null);
    const edit = { description, endpoints, caCertPem, keys };
    const problem =
      endpointsProblem(parseEndpoints(endpoints)) ?? newTrustKeysProblem(edit, remote.credentials);
    setProblems(problem ? [problem] : []);
    if (problem) return;
    const body = updateRemoteBody(edit, remote);
    if (!body) {
      setSaved('Nothing changed.');
      return;
    }
    update.mutate(
      { remote: remote.id, body },
      {
        onSuccess: () => {
          setSaved('Saved.');
          setCaCertPem('');
          setKeys({});
        },
      },
    );
  };

  const add = (event: FormEvent) => {
    event.preventDefault();
    const problem = credentialProblem(credential);
    setProblems(problem ? [problem] : []);
    if (problem) return;
    addCredential.mutate(
      {
        remote: remote.id,
        body: {
          name: credential.name.trim(),
          key: credential.key.trim(),
          addAnyway: credential.addAnyway,
        },
      },
      {
        onSuccess: (answer) => {
          setAdded(answer);
          setCredential({ name: '', key: '', addAnyway: false });
        },
      },
    );
  };

  return (
    <div className="panel-wide" role="region" aria-label={`Edit remote ${remote.id}`}>
      <h3>Edit remote {remote.id}</h3>
      <form className="admin-form" aria-label={`Settings of ${remote.id}`} onSubmit={save}>
        <fieldset disabled={update.isPending}>
          <TextField
            label="Description"
            value={description}
            onChange={setDescription}
            autoComplete="off"
          />
          <TextAreaField
            label="Endpoints"
            value={endpoints}
            onChange={setEndpoints}
            rows={3}
            hint="host:port, one per line; tried in this order"
          />
          <p className="muted">
            Trusted CA: <code className="fingerprint">{remote.trust.caFingerprint}</code>
            {remote.trust.resolved ? '' : ' (pinned; no agent presented it yet)'}
          </p>
          <TextAreaField
            label="New CA certificate (PEM, optional)"
            value={caCertPem}
            onChange={setCaCertPem}
            rows={3}
            className="mono"
            hint="Empty: the trust stays as it is"
          />
          {caCertPem.trim() &&
            remote.credentials.map(({ name }) => (
              <TextField
                key={name}
                label={`Key of credential ${name}`}
                value={keys[name] ?? ''}
                onChange={(key) => setKeys((k) => ({ ...k, [name]: key }))}
                type="password"
                autoComplete="off"
                hint="A new CA never receives the stored keys: enter each again; they are tested first"
              />
            ))}
          <Problems problems={problems} />
          <ErrorNote error={update.error} />
          {saved && !update.isPending && (
            <p role="status" className="muted">
              {saved}
            </p>
          )}
          <div className="actions">
            <ActionButton allowed={allowed} needs="remote.modify" type="submit" className="primary">
              {update.isPending ? 'Saving…' : 'Save remote'}
            </ActionButton>
            <button type="button" onClick={onClose}>
              Close
            </button>
          </div>
        </fieldset>
      </form>

      <h4>Credentials</h4>
      <table className="compact">
        <caption className="visually-hidden">Credentials of {remote.id}</caption>
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Key id</th>
            <th scope="col">Added</th>
            <th scope="col">
              <span className="visually-hidden">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {remote.credentials.map((c, i) => (
            <tr key={c.name}>
              <th scope="row">
                {c.name}
                {i === 0 && <span className="muted"> (default)</span>}
              </th>
              <td>
                <code>{c.keyId}</code>
              </td>
              <td>{formatTime(c.createdAt)}</td>
              <td>
                <ActionButton
                  allowed={allowed}
                  needs="remote.modify"
                  onClick={() => setRemoving(c.name)}
                  aria-label={`Remove credential ${c.name}`}
                >
                  Remove
                </ActionButton>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {added && (
        <ConnectionReport
          remote={remote.id}
          connection={added.connection}
          what="Credential added to"
        />
      )}
      <form className="admin-form" aria-label={`Add a credential to ${remote.id}`} onSubmit={add}>
        <fieldset disabled={addCredential.isPending}>
          <div className="grid-2">
            <TextField
              label="New credential name"
              value={credential.name}
              onChange={(name) => setCredential((c) => ({ ...c, name }))}
              autoComplete="off"
            />
            <TextField
              label="New credential key"
              value={credential.key}
              onChange={(key) => setCredential((c) => ({ ...c, key }))}
              type="password"
              autoComplete="off"
              placeholder="dvk_…"
            />
          </div>
          <CheckField
            label="Add even when the remote does not accept it now"
            checked={credential.addAnyway}
            onChange={(addAnyway) => setCredential((c) => ({ ...c, addAnyway }))}
          />
          <ErrorNote error={addCredential.error} />
          <div className="actions">
            <ActionButton allowed={allowed} needs="remote.modify" type="submit">
              {addCredential.isPending ? 'Adding…' : 'Add credential'}
            </ActionButton>
          </div>
        </fieldset>
      </form>
      {removing && (
        <ConfirmMutation
          mutation={removeCredential}
          variables={{ remote: remote.id, name: removing }}
          onClose={() => setRemoving(null)}
          title={`Remove credential ${removing}?`}
          confirmLabel="Remove credential"
          danger
        >
          <p>
            The manager forgets this key of {remote.id}; remote-group entries that use it go with
            it. The key itself still works on the cluster until its administrator revokes it there.
          </p>
        </ConfirmMutation>
      )}
    </div>
  );
}

function StatusBadge({ status }: { status: RemoteStatus | undefined }) {
  if (!status) return <span className="muted">—</span>;
  return (
    <>
      <span className={`badge badge-${status.status}`}>{status.status}</span>
      {status.status === 'online' && (
        <span className="muted">
          {' '}
          {status.nodes.alive}/{status.nodes.total} nodes
        </span>
      )}
      {status.error && <div className="muted">{status.error.message}</div>}
    </>
  );
}

/** The remotes: list with status, trust and credentials; add (tested, fingerprint confirmed), edit, remove. */
export function RemotesSection({ signedIn }: { signedIn: SignedIn }) {
  const remotes = useRemotes();
  const statuses = useRemoteStatuses();
  const remove = useDeleteRemote();
  const rotateCa = useRotateRemoteCa();
  const [rotating, setRotating] = useState<string | null>(null);
  const [rotation, setRotation] = useState<{ remote: string; taskId: string } | null>(null);
  const [adding, setAdding] = useState(false);
  const [editing, setEditing] = useState<string | null>(null);
  const [removing, setRemoving] = useState<string | null>(null);
  const [created, setCreated] = useState<CreatedRemote | null>(null);
  const canAdd = may(signedIn, 'remote.modify');
  const statusOf = (id: string) => statuses.data?.find((s) => s.remote === id);
  // The privileges reported for each remote decide its actions; without a status, those on /.
  const canChange = (id: string) => may(signedIn, 'remote.modify', statusOf(id)?.privileges);
  const canRotateCa = (id: string) => may(signedIn, 'remote.trust', statusOf(id)?.privileges);
  const editedRemote = remotes.data?.find((r) => r.id === editing);

  return (
    <section aria-labelledby="admin-remotes">
      <div className="toolbar">
        <h2 id="admin-remotes">Remotes</h2>
        <Refresh queries={[remotes, statuses]} />
        <ActionButton
          allowed={canAdd}
          needs="remote.modify"
          onClick={() => {
            setCreated(null);
            setEditing(null);
            setAdding(true);
          }}
          disabled={adding}
        >
          New remote…
        </ActionButton>
      </div>
      {rotation && (
        <p role="status">
          The CA rotation of {rotation.remote} runs as a task:{' '}
          <a href={href({ page: 'task', id: rotation.taskId })}>follow it</a>. The manager trusts
          both CAs until every node renewed, then the new one alone.
        </p>
      )}
      {created && (
        <ConnectionReport remote={created.id} connection={created.connection} what="Added remote" />
      )}
      {adding && (
        <AddRemote
          allowed={canAdd}
          onAdded={(answer) => {
            setCreated(answer);
            setAdding(false);
          }}
          onCancel={() => setAdding(false)}
        />
      )}
      {editedRemote && (
        <EditRemote
          key={editedRemote.id}
          remote={editedRemote}
          allowed={canChange(editedRemote.id)}
          onClose={() => setEditing(null)}
        />
      )}
      <ErrorNote error={statuses.error} />
      <Loaded query={remotes}>
        {(items) =>
          items.length === 0 ? (
            <p className="muted">No remotes yet.</p>
          ) : (
            <table>
              <caption className="visually-hidden">Remotes</caption>
              <thead>
                <tr>
                  <th scope="col">Remote</th>
                  <th scope="col">Status</th>
                  <th scope="col">Endpoints</th>
                  <th scope="col">Trusted CA (SHA-256)</th>
                  <th scope="col">Credentials</th>
                  <th scope="col">
                    <span className="visually-hidden">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {items.map((r) => (
                  <tr key={r.id} data-testid="admin-remote-row" data-remote={r.id}>
                    <th scope="row">
                      {r.id}
                      {r.description && <div className="muted">{r.description}</div>}
                    </th>
                    <td>
                      <StatusBadge status={statusOf(r.id)} />
                    </td>
                    <td>
                      <ul className="plain">
                        {r.endpoints.map((e) => (
                          <li key={e}>
                            <code>{e}</code>
                          </li>
                        ))}
                      </ul>
                    </td>
                    <td>
                      <code className="fingerprint" title={r.trust.caFingerprint}>
                        {shortFingerprint(r.trust.caFingerprint)}
                      </code>
                    </td>
                    <td>
                      <ul className="plain">
                        {r.credentials.map((c) => (
                          <li key={c.name}>
                            {c.name} <code className="muted">{c.keyId}</code>
                          </li>
                        ))}
                      </ul>
                    </td>
                    <td>
                      <span className="actions">
                        <ActionButton
                          allowed={canChange(r.id)}
                          needs="remote.modify"
                          onClick={() => {
                            setAdding(false);
                            setEditing(r.id);
                          }}
                          aria-label={`Edit remote ${r.id}`}
                        >
                          Edit
                        </ActionButton>
                        <ActionButton
                          allowed={canChange(r.id)}
                          needs="remote.modify"
                          onClick={() => setRemoving(r.id)}
                          aria-label={`Remove remote ${r.id}`}
                        >
                          Remove
                        </ActionButton>
                        <ActionButton
                          allowed={canRotateCa(r.id)}
                          needs="remote.trust"
                          onClick={() => setRotating(r.id)}
                          aria-label={`Rotate CA of remote ${r.id}`}
                        >
                          Rotate CA
                        </ActionButton>
                      </span>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )
        }
      </Loaded>
      {rotating && (
        <ConfirmMutation
          mutation={rotateCa}
          variables={rotating}
          onDone={({ taskId }) => setRotation({ remote: rotating, taskId })}
          onClose={() => setRotating(null)}
          title={`Rotate the CA of ${rotating}?`}
          confirmLabel="Rotate CA"
        >
          <p>
            An agent of {rotating} that holds the cluster CA key makes a new CA. The cluster and the
            manager trust the old and the new CA until every live node has renewed its certificate
            (within seconds), then only the new one. Calls keep working throughout. Peer
            clusters&apos; <code>peer trust</code> entries are updated by hand.
          </p>
        </ConfirmMutation>
      )}
      {removing && (
        <ConfirmMutation
          mutation={remove}
          variables={removing}
          onDone={() => {
            if (editing === removing) setEditing(null);
          }}
          onClose={() => setRemoving(null)}
          title={`Remove remote ${removing}?`}
          confirmLabel="Remove remote"
          danger
        >
          <p>
            The manager forgets the remote, its credentials and its remote-group entries. The
            cluster itself is not touched.
          </p>
        </ConfirmMutation>
      )}
    </section>
  );
}
