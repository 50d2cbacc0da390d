import { useCallback, useEffect, useRef, useState, type ReactNode } from 'react';
import { may } from '../auth/permissions';
import type { SignedIn } from '../auth/queries';
import { useCancelTask } from '../tasks/mutations';
import { useTask } from '../tasks/queries';
import { isActive } from '../tasks/task-view';
import { ActionButton } from '../ui/ActionButton';
import { ConfirmMutation } from '../ui/ConfirmMutation';
import { ErrorNote } from '../ui/ErrorNote';
import { formatBytes } from '../ui/format';
import { href } from '../view';
import { DiskTable } from '../resources/DiskTable';
import { NicTable } from '../resources/NicTable';
import {
  defaultTransport,
  firstEnabled,
  identityMaps,
  initialForm,
  mapErrors,
  migrateBody,
  MIGRATION_MODES,
  nodeChoices,
  optionAdvice,
  optionErrors,
  preflightPassed,
  preflightScope,
  remoteChoices,
  transferEstimate,
  type Choice,
  type MigrationForm,
  type MigrationMode,
  type PreflightAnswer,
  type Transport,
  type VmDetail,
} from './migration-form';
import { migrationResult } from './migration-progress';
import { Checkbox, Field } from './Field';
import { MigrationProgress } from './MigrationProgress';
import { useAfterMigration, usePreflight, useStartMigration } from './mutations';
import { useMigrationTargets, useMigrationVm } from './queries';
import './migration.css';

const STEPS = [
  'VM',
  'Target',
  'Storage and network',
  'Pre-flight',
  'Options',
  'Progress',
  'Result',
] as const;
type Step = 0 | 1 | 2 | 3 | 4 | 5 | 6;

/** The wizard of #/migrate/{remote}/{vmid}: VM → target → maps → pre-flight → options → progress → result. */
export function MigrationWizard({
  signedIn,
  remote,
  vmid,
}: {
  signedIn: SignedIn;
  remote: string;
  vmid: string;
}) {
  const vm = useMigrationVm(remote, vmid);
  // Opened by URL without the privilege: no wizard whose steps lead to a refusal, only what is missing.
  if (vm.data && !may(signedIn, 'vm.migrate', vm.data.privileges)) {
    return (
      <main className="wizard">
        <h1>Migrate {vm.data.name}</h1>
        <p role="status" data-testid="wizard-not-allowed">
          Migrating this VM needs the vm.migrate privilege on it.
        </p>
        <p>
          <a href={href({ page: 'vm', remote, vmid })}>Back to the VM</a>
        </p>
      </main>
    );
  }
  // Once loaded, the wizard keeps the VM it started with: after a move the VM is no longer at its old remote.
  if (vm.data) return <Wizard key={`${remote}/${vmid}`} signedIn={signedIn} vm={vm.data} />;
  return (
    <main className="wizard">
      <h1>Migrate VM</h1>
      {vm.isError ? <ErrorNote error={vm.error} /> : <p>Loading the VM…</p>}
      <p>
        <a href={href({ page: 'resources', q: '' })}>Back to the resources</a>
      </p>
    </main>
  );
}

function Wizard({ signedIn, vm }: { signedIn: SignedIn; vm: VmDetail }) {
  const [step, setStep] = useState<Step>(0);
  const [form, setForm] = useState<MigrationForm>(() => initialForm(vm));
  const [checked, setChecked] = useState<{
    answer: PreflightAnswer;
    scope: string;
    body: string;
  } | null>(null);
  const [taskId, setTaskId] = useState<string | null>(null);
  const heading = useRef<HTMLHeadingElement>(null);
  const firstRender = useRef(true);
  const mayMigrate = may(signedIn, 'vm.migrate', vm.privileges);

  useEffect(() => {
    // Moving between steps moves the focus to the new step's heading (screen readers announce it).
    if (firstRender.current) firstRender.current = false;
    else heading.current?.focus();
  }, [step]);

  const update = useCallback(
    (change: Partial<MigrationForm>) => setForm((current) => ({ ...current, ...change })),
    [],
  );
  const task = useTask(taskId, 1000);
  const afterMigration = useAfterMigration();
  const ended = task.data && !isActive(task.data.state);
  const leftRemote = task.data?.state === 'succeeded' && form.targetRemote !== vm.remote;
  useEffect(() => {
    if (!ended) return;
    setStep(6);
    afterMigration(leftRemote ? { remote: vm.remote, vmid: vm.id } : undefined);
  }, [ended, leftRemote, afterMigration, vm.remote, vm.id]);

  // The chosen node may have gone offline since it was chosen (the targets refresh themselves).
  const targets = useMigrationTargets();
  const targetUnavailable = targets.data
    ? (remoteChoices(targets.data.remotes, vm.remote).find((c) => c.value === form.targetRemote)
        ?.disabledReason ??
      nodeChoices(targets.data.nodes, form.targetRemote, vm).find(
        (c) => c.value === form.targetNode,
      )?.disabledReason ??
      null)
    : null;
  const canLeave: Record<Step, { ok: boolean; why?: string }> = {
    0: { ok: true },
    1:
      !form.targetRemote || !form.targetNode
        ? { ok: false, why: 'Choose a target remote and node.' }
        : targetUnavailable
          ? { ok: false, why: `${form.targetRemote} / ${form.targetNode}: ${targetUnavailable}.` }
          : { ok: true },
    2:
      Object.keys(mapErrors(form)).length === 0
        ? { ok: true }
        : { ok: false, why: 'Fix the names in the maps.' },
    3: preflightPassed(checked?.answer ?? null, checked?.scope ?? null, form)
      ? { ok: true }
      : {
          ok: false,
          why:
            checked && checked.scope === preflightScope(form)
              ? 'A check failed: fix it or choose another target.'
              : 'Run the pre-flight checks first.',
        },
    4: { ok: false },
    5: { ok: false },
    6: { ok: false },
  };

  let body: ReactNode;
  switch (step) {
    case 0:
      body = <VmStep vm={vm} />;
      break;
    case 1:
      body = <TargetStep vm={vm} form={form} update={update} />;
      break;
    case 2:
      body = <MapsStep vm={vm} form={form} update={update} />;
      break;
    case 3:
      body = (
        <PreflightStep
          vm={vm}
          form={form}
          allowed={mayMigrate}
          checked={checked}
          onChecked={setChecked}
        />
      );
      break;
    case 4:
      body = (
        <OptionsStep
          vm={vm}
          form={form}
          update={update}
          allowed={mayMigrate}
          checkedBody={checked?.body ?? null}
          estimate={checked?.answer.estimate}
          onStarted={(id) => {
            setTaskId(id);
            setStep(5);
          }}
        />
      );
      break;
    case 5:
      body = <ProgressStep signedIn={signedIn} taskId={taskId!} task={task} />;
      break;
    case 6:
      body = <ResultStep vm={vm} task={task} />;
      break;
  }

  return (
    <main className="wizard">
      <h1>Migrate {vm.name}</h1>
      <nav aria-label="Migration steps">
        <ol className="steps">
          {STEPS.map((label, index) => (
            <li
              key={label}
              aria-current={index === step ? 'step' : undefined}
              className={index < step ? 'done' : undefined}
            >
              <span className="number">{index + 1}</span> {label}
            </li>
          ))}
        </ol>
      </nav>
      <section className="step" aria-labelledby="wizard-step-heading">
        <h2 id="wizard-step-heading" ref={heading} tabIndex={-1}>
          {step + 1}. {STEPS[step]}
        </h2>
        {body}
      </section>
      {step <= 4 && (
        <div className="actions wizard-nav">
          <button type="button" onClick={() => setStep((step - 1) as Step)} disabled={step === 0}>
            Back
          </button>
          {step < 4 && (
            <button
              type="button"
              className="primary"
              onClick={() => setStep((step + 1) as Step)}
              disabled={!canLeave[step].ok}
            >
              Next
            </button>
          )}
          {step < 4 && !canLeave[step].ok && canLeave[step].why ? (
            <span className="muted">{canLeave[step].why}</span>
          ) : null}
        </div>
      )}
    </main>
  );
}

function VmStep({ vm }: { vm: VmDetail }) {
  return (
    <>
      <dl className="facts">
        <div>
          <dt>Name</dt>
          <dd>
            <a href={href({ page: 'vm', remote: vm.remote, vmid: vm.id })}>{vm.name}</a>
          </dd>
        </div>
        <div>
          <dt>Status</dt>
          <dd>
            <span className={`badge badge-${vm.status}`}>{vm.status}</span>
          </dd>
        </div>
        <div>
          <dt>Remote</dt>
          <dd>{vm.remote}</dd>
        </div>
        <div>
          <dt>Node</dt>
          <dd>{vm.node}</dd>
        </div>
        <div>
          <dt>vCPUs</dt>
          <dd>{vm.vcpus}</dd>
        </div>
        <div>
          <dt>Memory</dt>
          <dd>{formatBytes(vm.memoryBytes)}</dd>
        </div>
        <div>
          <dt>CPU model</dt>
          <dd>{vm.cpuModel}</dd>
        </div>
      </dl>
      {vm.lockedBy ? (
        <p className="notice">
          The VM is busy: {vm.lockedBy}. A migration is refused while another operation runs.
        </p>
      ) : null}
      {vm.stale ? (
        <p className="notice">Its remote does not answer now: this is the last known state.</p>
      ) : null}
      <h3>Disks</h3>
      <DiskTable disks={vm.disks} caption={`Disks of ${vm.name}`} hideCaption />
      <h3>Network interfaces</h3>
      <NicTable nics={vm.nics} caption={`Network interfaces of ${vm.name}`} hideCaption />
    </>
  );
}

/** A select whose unavailable choices stay visible, disabled, with the reason. */
function ChoiceSelect({
  label,
  value,
  choices,
  onChange,
  empty,
}: {
  label: string;
  value: string;
  choices: Choice[];
  onChange: (value: string) => void;
  empty: string;
}) {
  return (
    <Field label={label}>
      {(control) => (
        <select {...control} value={value} onChange={(event) => onChange(event.target.value)}>
          {value === '' && <option value="">{choices.length === 0 ? empty : 'Choose…'}</option>}
          {choices.map((choice) => (
            <option
              key={choice.value}
              value={choice.value}
              disabled={choice.disabledReason !== null}
            >
              {choice.disabledReason ? `${choice.label} — ${choice.disabledReason}` : choice.label}
            </option>
          ))}
        </select>
      )}
    </Field>
  );
}

function TargetStep({
  vm,
  form,
  update,
}: {
  vm: VmDetail;
  form: MigrationForm;
  update: (change: Partial<MigrationForm>) => void;
}) {
  const targets = useMigrationTargets();
  const remotes = targets.data ? remoteChoices(targets.data.remotes, vm.remote) : [];
  const nodes = targets.data ? nodeChoices(targets.data.nodes, form.targetRemote, vm) : [];
  const defaulted = useRef(false);

  useEffect(() => {
    // First visit: the VM's own remote (another node) when it has one free, else the first remote that can take it.
    if (!targets.data || defaulted.current || form.targetNode) return;
    defaulted.current = true;
    const candidates = remoteChoices(targets.data.remotes, vm.remote).filter(
      (choice) => choice.disabledReason === null,
    );
    const data = targets.data;
    const withNode = candidates.find(
      (choice) => firstEnabled(nodeChoices(data.nodes, choice.value, vm)) !== '',
    );
    if (withNode)
      update({
        targetRemote: withNode.value,
        targetNode: firstEnabled(nodeChoices(data.nodes, withNode.value, vm)),
      });
  }, [targets.data, form.targetNode, vm, update]);

  const chosenNode = nodes.find((node) => node.value === form.targetNode);
  const chosenRemote = remotes.find((choice) => choice.value === form.targetRemote);
  return (
    <>
      <p>
        Within <strong>{vm.remote}</strong> the VM moves to another node of its cluster; to another
        remote it moves to another datacenter (its disks must already be there, mirrored).
      </p>
      <ErrorNote error={targets.error} />
      {targets.isPending ? <p>Loading the remotes…</p> : null}
      <div className="field-row">
        <ChoiceSelect
          label="Target remote"
          value={form.targetRemote}
          choices={remotes}
          empty="No remotes"
          onChange={(targetRemote) =>
            update({
              targetRemote,
              targetNode: targets.data
                ? firstEnabled(nodeChoices(targets.data.nodes, targetRemote, vm))
                : '',
            })
          }
        />
        <ChoiceSelect
          label="Target node"
          value={form.targetNode}
          choices={nodes}
          empty="No nodes"
          onChange={(targetNode) => update({ targetNode })}
        />
      </div>
      {chosenRemote?.disabledReason ? (
        <p className="error">
          {form.targetRemote}: {chosenRemote.disabledReason}.
        </p>
      ) : null}
      {chosenNode?.disabledReason ? (
        <p className="error">
          {chosenNode.label}: {chosenNode.disabledReason}.
        </p>
      ) : null}
      {targets.data && form.targetRemote && nodes.length > 0 && firstEnabled(nodes) === '' ? (
        <p className="notice">No node of {form.targetRemote} can take the VM now.</p>
      ) : null}
      <p className="muted">
        {form.targetRemote === vm.remote
          ? 'An intra-cluster move: the disks stay where they are.'
          : `A cross-remote move from ${vm.remote} to ${form.targetRemote}.`}
      </p>
    </>
  );
}

function MapsStep({
  vm,
  form,
  update,
}: {
  vm: VmDetail;
  form: MigrationForm;
  update: (change: Partial<MigrationForm>) => void;
}) {
  const errors = mapErrors(form);
  const setStorage = (pool: string, target: string) =>
    update({ storage: form.storage.map((row) => (row.pool === pool ? { ...row, target } : row)) });
  const setNetwork = (bridge: string, target: string) =>
    update({
      network: form.network.map((row) => (row.bridge === bridge ? { ...row, target } : row)),
    });
  return (
    <>
      <p>
        Each source pool and bridge keeps its name unless you name another one at{' '}
        {form.targetRemote}
        {form.targetRemote === vm.remote ? ' (within one remote, usually nothing changes)' : ''}.
      </p>
      <h3>Storage</h3>
      {form.storage.length === 0 ? (
        <p className="muted">The VM has no disks.</p>
      ) : (
        <table className="maps">
          <caption className="visually-hidden">Storage map</caption>
          <thead>
            <tr>
              <th scope="col">Source pool</th>
              <th scope="col">Images</th>
              <th scope="col">Target pool</th>
            </tr>
          </thead>
          <tbody>
            {form.storage.map((row) => (
              <tr key={row.pool}>
                <th scope="row">{row.pool}</th>
                <td>{row.images.join(', ')}</td>
                <td>
                  <input
                    aria-label={`Target pool for ${row.pool}`}
                    value={row.target}
                    onChange={(event) => setStorage(row.pool, event.target.value)}
                    aria-invalid={errors[`storage:${row.pool}`] ? true : undefined}
                  />
                  {errors[`storage:${row.pool}`] ? (
                    <span className="error field-error">{errors[`storage:${row.pool}`]}</span>
                  ) : null}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <h3>Network</h3>
      {form.network.length === 0 ? (
        <p className="muted">The VM has no network interfaces.</p>
      ) : (
        <table className="maps">
          <caption className="visually-hidden">Network map</caption>
          <thead>
            <tr>
              <th scope="col">Source bridge</th>
              <th scope="col">Interfaces</th>
              <th scope="col">Target bridge</th>
            </tr>
          </thead>
          <tbody>
            {form.network.map((row) => (
              <tr key={row.bridge}>
                <th scope="row">{row.bridge}</th>
                <td>{row.nics.join(', ')}</td>
                <td>
                  <input
                    aria-label={`Target bridge for ${row.bridge}`}
                    value={row.target}
                    onChange={(event) => setNetwork(row.bridge, event.target.value)}
                    aria-invalid={errors[`network:${row.bridge}`] ? true : undefined}
                  />
                  {errors[`network:${row.bridge}`] ? (
                    <span className="error field-error">{errors[`network:${row.bridge}`]}</span>
                  ) : null}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <p>
        <button type="button" onClick={() => update(identityMaps(vm))}>
          Keep every name
        </button>
      </p>
    </>
  );
}

const SIDE_LABEL: Record<PreflightAnswer['checks'][number]['side'], string> = {
  manager: 'Manager',
  source: 'Source',
  target: 'Target',
};

function PreflightStep({
  vm,
  form,
  allowed,
  checked,
  onChecked,
}: {
  vm: VmDetail;
  form: MigrationForm;
  allowed: boolean;
  checked: { answer: PreflightAnswer; scope: string; body: string } | null;
  onChecked: (checked: { answer: PreflightAnswer; scope: string; body: string }) => void;
}) {
  const preflight = usePreflight();
  const current = checked && checked.scope === preflightScope(form) ? checked.answer : null;
  const run = () => {
    const body = migrateBody(form);
    const scope = preflightScope(form);
    preflight.mutate(
      { remote: vm.remote, vmid: vm.id, body },
      { onSuccess: (answer) => onChecked({ answer, scope, body: JSON.stringify(body) }) },
    );
  };
  const counts = current
    ? {
        fail: current.checks.filter((c) => c.result === 'fail').length,
        warn: current.checks.filter((c) => c.result === 'warn').length,
      }
    : null;
  return (
    <>
      <p>
        The source ({vm.remote} / {vm.node}), the target (<strong>{form.targetRemote}</strong> /{' '}
        <strong>{form.targetNode}</strong>) and the manager check whether the migration can go
        ahead. Nothing is reserved yet.
      </p>
      <p>
        <ActionButton
          allowed={allowed}
          needs="vm.migrate"
          onClick={run}
          disabled={preflight.isPending}
        >
          {preflight.isPending
            ? 'Checking…'
            : current
              ? 'Run pre-flight checks again'
              : 'Run pre-flight checks'}
        </ActionButton>
      </p>
      <ErrorNote error={preflight.error} />
      {checked && !current ? (
        <p className="notice">
          The target or the maps changed since the last checks: run them again.
        </p>
      ) : null}
      <div aria-live="polite">
        {current && counts ? (
          <>
            <p className={counts.fail ? 'error' : undefined} data-testid="preflight-summary">
              {counts.fail
                ? `${counts.fail} check${counts.fail === 1 ? '' : 's'} failed: fix ${counts.fail === 1 ? 'it' : 'them'} or choose another target.`
                : counts.warn
                  ? `No check failed; ${counts.warn} warning${counts.warn === 1 ? '' : 's'}.`
                  : 'Every check passed.'}{' '}
              <span className="muted">
                {current.source.remote} / {current.source.node} → {current.target.remote} /{' '}
                {current.target.node} over {current.transport}
              </span>
            </p>
            <table className="checks">
              <caption className="visually-hidden">Pre-flight checks</caption>
              <thead>
                <tr>
                  <th scope="col">Result</th>
                  <th scope="col">Side</th>
                  <th scope="col">Check</th>
                  <th scope="col">Reason</th>
                </tr>
              </thead>
              <tbody>
                {current.checks.map((check, index) => (
                  <tr
                    key={`${check.side}-${check.name}-${index}`}
                    data-testid="preflight-check"
                    data-result={check.result}
                    className={`check-${check.result}`}
                  >
                    <td>
                      <span className={`badge badge-${check.result}`}>{check.result}</span>
                    </td>
                    <td>{SIDE_LABEL[check.side]}</td>
                    <td>{check.name}</td>
                    <td>{check.reason}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </>
        ) : null}
      </div>
    </>
  );
}

function OptionsStep({
  vm,
  form,
  update,
  allowed,
  checkedBody,
  estimate,
  onStarted,
}: {
  vm: VmDetail;
  form: MigrationForm;
  update: (change: Partial<MigrationForm>) => void;
  allowed: boolean;
  checkedBody: string | null;
  estimate: PreflightAnswer['estimate'] | undefined;
  onStarted: (taskId: string) => void;
}) {
  const start = useStartMigration();
  const errors = optionErrors(form);
  const valid = Object.keys(errors).length === 0;
  const transportDefault = defaultTransport(vm.remote, form.targetRemote);
  const changedSinceChecks =
    valid && checkedBody !== null && checkedBody !== JSON.stringify(migrateBody(form));
  return (
    <>
      <div className="options">
        <Checkbox
          label="Online (live) migration"
          checked={form.online}
          onChange={(online) => update({ online })}
        />
        <Field
          label="Mode"
          help="precopy: copy memory while the VM runs, then switch; postcopy: switch after the first pass and pull the rest; auto: switch to post-copy when pre-copy does not converge."
        >
          {(control) => (
            <select
              {...control}
              value={form.mode}
              onChange={(event) => update({ mode: event.target.value as MigrationMode })}
            >
              {MIGRATION_MODES.map((mode) => (
                <option key={mode} value={mode}>
                  {mode}
                </option>
              ))}
            </select>
          )}
        </Field>
        <Checkbox
          label="Auto-converge"
          help="slow the guest's vCPUs down when pre-copy does not converge"
          checked={form.autoConverge}
          onChange={(autoConverge) => update({ autoConverge })}
        />
        <Checkbox
          label="Allow post-copy"
          help="in auto mode, and at the completion timeout instead of giving up"
          checked={form.allowPostcopy}
          onChange={(allowPostcopy) => update({ allowPostcopy })}
        />
        <Field
          label="Bandwidth limit (MiB/s)"
          help="Empty: unlimited."
          error={errors.bandwidthMiBps}
        >
          {(control) => (
            <input
              {...control}
              type="number"
              min={0}
              step="any"
              inputMode="decimal"
              placeholder="unlimited"
              value={form.bandwidthMiBps}
              onChange={(event) => update({ bandwidthMiBps: event.target.value })}
            />
          )}
        </Field>
        <Field
          label="Downtime limit (ms)"
          help="The longest pause at the switchover QEMU may plan for."
          error={errors.downtimeLimitMs}
        >
          {(control) => (
            <input
              {...control}
              type="number"
              min={1}
              max={600000}
              step={1}
              value={form.downtimeLimitMs}
              onChange={(event) => update({ downtimeLimitMs: event.target.value })}
            />
          )}
        </Field>
        <Field
          label="Completion timeout (s per GiB)"
          help={`Pre-copy gives up after this many seconds per GiB of memory (${formatBytes(vm.memoryBytes)} here); 0: never.`}
          error={errors.completionTimeoutSecondsPerGib}
        >
          {(control) => (
            <input
              {...control}
              type="number"
              min={0}
              max={86400}
              step={1}
              value={form.completionTimeoutSecondsPerGib}
              onChange={(event) => update({ completionTimeoutSecondsPerGib: event.target.value })}
            />
          )}
        </Field>
        <Field
          label="Transport"
          help={`direct: QEMU's own TLS connection to the target node; tunnel: through the agents' mTLS port, the only port two datacenters need to open. The default is direct within a remote and tunnel across remotes — here ${transportDefault}.`}
        >
          {(control) => (
            <select
              {...control}
              value={form.transport}
              onChange={(event) => update({ transport: event.target.value as Transport | '' })}
            >
              <option value="">Default ({transportDefault})</option>
              <option value="direct">direct</option>
              <option value="tunnel">tunnel</option>
            </select>
          )}
        </Field>
      </div>
      {optionAdvice(form).map((advice) => (
        <p key={advice} className="notice">
          {advice}
        </p>
      ))}
      {changedSinceChecks ? (
        <p className="notice">
          These options differ from those the pre-flight checked; the migration checks both ends
          again when it starts.
        </p>
      ) : null}
      <p className="summary">
        Moves <strong>{vm.name}</strong> from {vm.remote} / {vm.node} to{' '}
        <strong>{form.targetRemote}</strong> / <strong>{form.targetNode}</strong>.
      </p>
      <p data-testid="transfer-estimate" aria-live="polite">
        <strong>Estimated transfer time:</strong>{' '}
        {transferEstimate(estimate, form, { source: vm.remote, target: form.targetRemote })}
      </p>
      <ErrorNote error={start.error} />
      <div className="actions">
        <ActionButton
          allowed={allowed}
          needs="vm.migrate"
          className="primary"
          disabled={!valid || start.isPending}
          onClick={() =>
            start.mutate(
              { remote: vm.remote, vmid: vm.id, body: migrateBody(form) },
              { onSuccess: (accepted) => onStarted(accepted.taskId) },
            )
          }
        >
          {start.isPending ? 'Starting…' : 'Start migration'}
        </ActionButton>
      </div>
    </>
  );
}

function ProgressStep({
  signedIn,
  taskId,
  task,
}: {
  signedIn: SignedIn;
  taskId: string;
  task: ReturnType<typeof useTask>;
}) {
  const cancel = useCancelTask();
  const [confirming, setConfirming] = useState(false);
  return (
    <>
      <ErrorNote error={task.error} />
      {task.data ? <MigrationProgress task={task.data} /> : <p>Waiting for the task…</p>}
      <div className="actions">
        <ActionButton
          allowed={may(signedIn, 'task.cancel')}
          needs="task.cancel"
          className="danger"
          onClick={() => setConfirming(true)}
          disabled={cancel.isPending}
        >
          Cancel migration
        </ActionButton>
        <a href={href({ page: 'task', id: taskId })}>Open the task</a>
      </div>
      {cancel.isSuccess && task.data && isActive(task.data.state) ? (
        <p className="muted">Cancelling: the source stops the transfer…</p>
      ) : null}
      {confirming && (
        <ConfirmMutation
          mutation={cancel}
          variables={taskId}
          onClose={() => setConfirming(false)}
          title="Cancel the migration?"
          confirmLabel="Cancel migration"
          danger
        >
          The transfer stops and the VM keeps running where it is now. Once the switchover has
          begun, a migration can no longer be cancelled.
        </ConfirmMutation>
      )}
    </>
  );
}

function ResultStep({ vm, task }: { vm: VmDetail; task: ReturnType<typeof useTask> }) {
  const result = task.data ? migrationResult(task.data) : null;
  if (!task.data || !result) return <ErrorNote error={task.error} />;
  return (
    <>
      <div
        className={`result result-${result.state}`}
        data-testid="migration-result"
        data-state={result.state}
        role="status"
      >
        {result.state === 'succeeded' ? (
          <p>
            <strong>{vm.name}</strong> now runs on node <strong>{result.node}</strong> of{' '}
            <strong>{result.remote}</strong>.{' '}
            <a href={href({ page: 'vm', remote: result.remote, vmid: vm.id })}>Open {vm.name}</a>
          </p>
        ) : (
          <>
            <p>
              <strong>
                The migration {result.state === 'cancelled' ? 'was cancelled' : 'failed'}.
              </strong>{' '}
              {result.error}
            </p>
            <p>
              The VM stays at <strong>{result.remote}</strong>
              {result.node ? (
                <>
                  {' '}
                  / <strong>{result.node}</strong>
                </>
              ) : null}
              .{' '}
              <a href={href({ page: 'vm', remote: result.remote, vmid: vm.id })}>Open {vm.name}</a>
            </p>
          </>
        )}
      </div>
      <MigrationProgress task={task.data} />
      <p>
        <a href={href({ page: 'task', id: task.data.id })}>Open the task and its log</a>
      </p>
    </>
  );
}
