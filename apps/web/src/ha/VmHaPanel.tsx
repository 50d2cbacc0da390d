import { useId, useState, type FormEvent } from 'react';
import { ApiError } from '../api/client';
import { may } from '../auth/permissions';
import type { SignedIn } from '../auth/queries';
import type { VmDetail } from '../resources/queries';
import { ActionButton } from '../ui/ActionButton';
import { ConfirmMutation } from '../ui/ConfirmMutation';
import { ErrorNote } from '../ui/ErrorNote';
import { Timestamp } from '../ui/Timestamp';
import { href } from '../view';
import './ha.css';
import { StateBadge } from './HaBadges';
import {
  formOf,
  NODE_STATE_LABEL,
  policyFromForm,
  VM_STATE_LABEL,
  vmDetailsInWords,
  type PolicyForm,
} from './ha-view';
import { useRemoveHaPolicy, useSetHaPolicy } from './mutations';
import { useVmHa, type VmHa } from './queries';

/** The policy's fields; disabled for a user without vm.ha (the manager refuses it anyway). */
function PolicyFields({
  form,
  onChange,
  disabled,
}: {
  form: PolicyForm;
  onChange: (form: PolicyForm) => void;
  disabled: boolean;
}) {
  const id = useId();
  const set = <K extends keyof PolicyForm>(key: K, value: PolicyForm[K]) =>
    onChange({ ...form, [key]: value });
  return (
    <div className="ha-policy-fields">
      <div className="field field-check">
        <input
          id={`${id}-enabled`}
          type="checkbox"
          checked={form.enabled}
          onChange={(e) => set('enabled', e.target.checked)}
          disabled={disabled}
        />
        <label htmlFor={`${id}-enabled`}>Recover this VM when its node fails</label>
      </div>
      <div className="field">
        <label htmlFor={`${id}-priority`}>Priority (0–1000, higher first)</label>
        <input
          id={`${id}-priority`}
          type="number"
          min={0}
          max={1000}
          value={form.priority}
          onChange={(e) => set('priority', e.target.value)}
          disabled={disabled}
        />
      </div>
      <div className="field">
        <label htmlFor={`${id}-preferred`}>Preferred nodes (in order)</label>
        <input
          id={`${id}-preferred`}
          value={form.preferredNodes}
          placeholder="node-2, node-3"
          onChange={(e) => set('preferredNodes', e.target.value)}
          disabled={disabled}
        />
      </div>
      <div className="field">
        <label htmlFor={`${id}-group`}>Node group</label>
        <input
          id={`${id}-group`}
          value={form.nodeGroup}
          placeholder="any node"
          onChange={(e) => set('nodeGroup', e.target.value)}
          disabled={disabled}
        />
      </div>
      <div className="field">
        <label htmlFor={`${id}-relocations`}>Relocations per hour</label>
        <input
          id={`${id}-relocations`}
          type="number"
          min={0}
          max={100}
          value={form.maxRelocations}
          onChange={(e) => set('maxRelocations', e.target.value)}
          disabled={disabled}
        />
      </div>
      <div className="field">
        <label htmlFor={`${id}-restarts`}>Restarts in place per hour</label>
        <input
          id={`${id}-restarts`}
          type="number"
          min={0}
          max={100}
          value={form.maxRestarts}
          onChange={(e) => set('maxRestarts', e.target.value)}
          disabled={disabled}
        />
      </div>
      <div className="field">
        <label htmlFor={`${id}-nonode`}>When no node fits</label>
        <select
          id={`${id}-nonode`}
          value={form.onNoNode}
          onChange={(e) => set('onNoNode', e.target.value === 'stop' ? 'stop' : 'wait')}
          disabled={disabled}
        >
          <option value="wait">wait for one</option>
          <option value="stop">give up (state error)</option>
        </select>
      </div>
    </div>
  );
}

function HaState({ ha, runsOn }: { ha: VmHa; runsOn: string }) {
  if (!ha.ha) return <p className="muted">Not protected: HA does not restart this VM elsewhere.</p>;
  const vm = ha.ha;
  return (
    <dl className="fields">
      <div>
        <dt>HA state</dt>
        <dd>
          <StateBadge label={VM_STATE_LABEL[vm.state]} testId="vm-ha-state" />{' '}
          <span className="ha-reason">{vmDetailsInWords(vm)}</span>
        </dd>
      </div>
      <div>
        <dt>Node</dt>
        <dd>
          {/* Until the coordinator has recorded where the VM runs, where the manager last saw it. */}
          {vm.node || runsOn || '—'}
          {ha.node && (
            <>
              {' '}
              <StateBadge label={NODE_STATE_LABEL[ha.node.state]} />
              {ha.node.reason && <span className="ha-reason"> {ha.node.reason}</span>}
            </>
          )}
        </dd>
      </div>
      <div>
        <dt>Last hour</dt>
        <dd>
          {vm.relocations} relocation{vm.relocations === 1 ? '' : 's'}, {vm.restarts} restart
          {vm.restarts === 1 ? '' : 's'}
        </dd>
      </div>
      <div>
        <dt>Changed</dt>
        <dd>
          <Timestamp at={vm.updatedAt} /> (epoch {vm.epoch})
        </dd>
      </div>
    </dl>
  );
}

/**
 * The VM page's High availability section: whether HA protects the VM, its HA state with the
 * cluster's reason, its node's HA state, and the policy — editable with vm.ha, shown disabled
 * (with the privilege it needs) to everyone else.
 */
export function VmHaPanel({ signedIn, vm }: { signedIn: SignedIn; vm: VmDetail }) {
  const ha = useVmHa(vm.remote, vm.id);
  const save = useSetHaPolicy(vm.remote, vm.id);
  const remove = useRemoveHaPolicy(vm.remote, vm.id);
  const [form, setForm] = useState<PolicyForm | null>(null);
  const [invalid, setInvalid] = useState<string | null>(null);
  const [removing, setRemoving] = useState(false);
  const headingId = useId();
  const allowed = may(signedIn, 'vm.ha', vm.privileges);
  const current = form ?? formOf(ha.data?.ha?.policy ?? null);
  const refused = ha.error instanceof ApiError && ha.error.status === 403;

  const submit = (event: FormEvent) => {
    event.preventDefault();
    const checked = policyFromForm(current);
    if ('error' in checked) {
      setInvalid(checked.error);
      return;
    }
    setInvalid(null);
    save.mutate(checked.policy, { onSuccess: () => setForm(null) });
  };

  return (
    <section aria-labelledby={headingId} className="vm-panel vm-ha" data-testid="vm-ha">
      <h2 id={headingId}>High availability</h2>
      {refused ? (
        <p className="muted">You may not see the HA state of this VM.</p>
      ) : (
        <ErrorNote error={ha.error} />
      )}
      {!ha.data && !ha.error && <p className="muted">Loading…</p>}
      {ha.data && !ha.data.available && (
        <p className="muted" data-testid="vm-ha-unavailable">
          The cluster&apos;s HA state cannot be read now: {ha.data.error?.message}
        </p>
      )}
      {ha.data?.available && (
        <>
          <HaState ha={ha.data} runsOn={vm.node} />
          <form className="ha-policy" onSubmit={submit} aria-label="HA policy">
            <PolicyFields form={current} onChange={setForm} disabled={!allowed} />
            <div className="actions">
              <ActionButton
                type="submit"
                allowed={allowed}
                needs="vm.ha"
                disabled={save.isPending || vm.stale}
                title={vm.stale ? 'The remote is unreachable' : undefined}
              >
                {ha.data.protected ? 'Save HA policy' : 'Protect with HA'}
              </ActionButton>
              {ha.data.protected && (
                <ActionButton
                  allowed={allowed}
                  needs="vm.ha"
                  className="danger-outline"
                  disabled={remove.isPending || vm.stale}
                  onClick={() => setRemoving(true)}
                >
                  Remove from HA…
                </ActionButton>
              )}
            </div>
            {invalid && (
              <p role="alert" className="error">
                {invalid}
              </p>
            )}
            <ErrorNote error={save.error} />
            {save.isSuccess && !form && (
              <p role="status" className="muted">
                Saved: the cluster keeps this policy.
              </p>
            )}
          </form>
          <p className="muted">
            The cluster&apos;s coordinator ({ha.data.coordinator ?? 'none elected'}) recovers
            protected VMs even when the manager is away; see{' '}
            <a href={href({ page: 'ha' })}>High availability</a> for every node.
          </p>
        </>
      )}
      {removing && (
        <ConfirmMutation
          mutation={remove}
          variables={undefined}
          onClose={() => setRemoving(false)}
          onDone={() => setForm(null)}
          title={`Remove ${vm.name} from HA`}
          confirmLabel="Remove from HA"
          danger
        >
          <p>
            {vm.name} will no longer be restarted elsewhere when its node fails. It keeps running
            where it is.
          </p>
        </ConfirmMutation>
      )}
    </section>
  );
}
