import { useId, useState } from 'react';
import { ConfirmMutation } from '../ui/ConfirmMutation';
import { ErrorNote } from '../ui/ErrorNote';
import { formatDuration } from '../ui/format';
import { Timestamp } from '../ui/Timestamp';
import { useFailover } from './mutations';
import { useFailoverPreview, type VmReplication } from './queries';
import { otherRemote, riskInWords } from './replication-view';

/**
 * An unplanned failover: first the data at risk (RPO and the last mirrored snapshot, read from the
 * manager when the dialog opens), then how the old primary is kept from writing — fenced (its
 * clients blocklisted) when its cluster answers, or declared down by the operator with a reason —
 * and an explicit acceptance of the loss. Only then can it be confirmed.
 */
export function FailoverDialog({
  row,
  onTask,
  onClose,
}: {
  row: VmReplication;
  onTask: (taskId: string) => void;
  onClose: () => void;
}) {
  // Named at the survivor: the remote that is asked to take over.
  const survivor = otherRemote(row);
  const preview = useFailoverPreview(survivor, row.vm);
  const failover = useFailover(survivor, row.vm);
  const [method, setMethod] = useState<'fence' | 'declare'>('fence');
  const [reason, setReason] = useState('');
  const [acceptLoss, setAcceptLoss] = useState(false);
  const [confirmDown, setConfirmDown] = useState(false);
  const id = useId();
  const data = preview.data;
  // When the source does not answer it cannot be fenced: declaring it down is the only way.
  const declare = data ? !data.sourceReachable || method === 'declare' : false;
  const ready =
    data !== undefined && acceptLoss && (!declare || (confirmDown && reason.trim() !== ''));

  return (
    <ConfirmMutation
      mutation={failover}
      variables={{
        confirmDataLoss: true,
        declareSourceDown: declare,
        ...(declare ? { reason: reason.trim() } : {}),
      }}
      onDone={({ taskId }) => onTask(taskId)}
      onClose={onClose}
      title={`Fail ${row.name} over to ${survivor}?`}
      confirmLabel="Fail over"
      confirmDisabled={!ready}
      danger
    >
      <p>
        An unplanned failover starts {row.name} at {survivor} from its last mirrored snapshot. Use
        it when {row.primaryRemote} is lost; when both sites answer, a planned switchover loses
        nothing.
      </p>
      {preview.isPending && <p role="status">Reading the data at risk…</p>}
      <ErrorNote error={preview.error} />
      {data && (
        <>
          <section
            className="data-at-risk"
            aria-labelledby={`${id}-risk`}
            data-testid="data-at-risk"
          >
            <h3 id={`${id}-risk`}>Data at risk</h3>
            <dl className="fields">
              <div>
                <dt>RPO</dt>
                <dd data-testid="failover-rpo">
                  {data.rpoSeconds === null
                    ? 'unknown'
                    : `${formatDuration(data.rpoSeconds)} of writes`}
                </dd>
              </div>
              <div>
                <dt>Last mirrored snapshot</dt>
                <dd>
                  <Timestamp at={data.lastMirroredSnapshotAt} />
                </dd>
              </div>
            </dl>
            <p data-testid="data-at-risk-words">{riskInWords(row.name, data)}</p>
          </section>
          <fieldset className="failover-method">
            <legend>Keep {data.from} from writing</legend>
            <label className="inline">
              <input
                type="radio"
                name={`${id}-method`}
                checked={!declare}
                disabled={!data.sourceReachable}
                onChange={() => setMethod('fence')}
              />
              Fence {data.from}: blocklist its clients of the images (it answers)
            </label>
            {!data.sourceReachable && (
              <p className="muted">{data.from} does not answer: it cannot be fenced.</p>
            )}
            <label className="inline">
              <input
                type="radio"
                name={`${id}-method`}
                checked={declare}
                onChange={() => setMethod('declare')}
              />
              Declare the source site {data.from} down
            </label>
            {declare && (
              <div className="declare">
                <label htmlFor={`${id}-reason`}>Reason (kept in the audit log)</label>
                <textarea
                  id={`${id}-reason`}
                  value={reason}
                  onChange={(e) => setReason(e.target.value)}
                  rows={2}
                  maxLength={500}
                />
                <label className="inline">
                  <input
                    type="checkbox"
                    checked={confirmDown}
                    onChange={(e) => setConfirmDown(e.target.checked)}
                  />
                  I confirm {data.from} is down: if it is in fact running, both sites will write
                  (split brain)
                </label>
              </div>
            )}
          </fieldset>
          <label className="inline accept-loss dialog-check">
            <input
              type="checkbox"
              checked={acceptLoss}
              onChange={(e) => setAcceptLoss(e.target.checked)}
            />
            I accept losing what was written at {data.from} since the last mirrored snapshot
          </label>
        </>
      )}
    </ConfirmMutation>
  );
}
