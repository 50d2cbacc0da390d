import RFB from '@novnc/novnc';
import { useCallback, useEffect, useId, useRef, useState, type FormEvent } from 'react';
import { ApiError, errorMessage } from '../api/client';
import { may } from '../auth/permissions';
import type { SignedIn } from '../auth/queries';
import { useVm } from '../resources/queries';
import { href } from '../view';
import { keysymsOf } from './keysyms';
import { useConsoleTicket } from './mutations';
import './console.css';

/** States in which a VM shows a screen (the manager refuses a ticket otherwise). */
const LIVE = ['running', 'migrating', 'paused', 'rebooting', 'starting', 'stopping'];
/** How often the console follows a VM whose console ended (it moved to another node) before giving up. */
const MAX_FOLLOWS = 3;

/** WebSocket close codes of the manager's console (apps/manager/src/console/console-gateway.service.ts). */
const CLOSE_ENDED = 4000;
const CLOSE_MESSAGES: Record<number, string> = {
  4009: 'The console is not available',
  4401: 'Your login session ended, so the console closed',
  4403: 'You no longer hold the console right on this VM, so the console closed',
  1001: 'The manager is restarting',
};

type Phase =
  | { kind: 'idle' }
  | { kind: 'connecting' }
  | { kind: 'connected' }
  | { kind: 'closed'; message: string };

/**
 * A VM's console in the page: noVNC over a WebSocket to the manager, opened with a single-use
 * ticket. Ctrl-Alt-Del, scaling to the window, and pasting text (typed on the guest's keyboard and
 * offered to its clipboard). When the console ends because the VM moved, it follows the VM with a
 * new ticket; when the VM is off it says so.
 */
export function ConsolePage({
  signedIn,
  remote,
  vmid,
}: {
  signedIn: SignedIn;
  remote: string;
  vmid: string;
}) {
  const vm = useVm(remote, vmid);
  const ticket = useConsoleTicket(remote, vmid);
  const screen = useRef<HTMLDivElement>(null);
  const rfb = useRef<RFB | null>(null);
  const follows = useRef(0);
  const [phase, setPhase] = useState<Phase>({ kind: 'idle' });
  const [scale, setScale] = useState(true);
  const [attempt, setAttempt] = useState(0);
  const [paste, setPaste] = useState('');
  const pasteId = useId();
  const status = vm.data?.status;
  const live = status !== undefined && LIVE.includes(status);
  const allowed = vm.data ? may(signedIn, 'vm.console', vm.data.privileges) : false;
  const requestTicket = ticket.mutateAsync;

  const open = useCallback(
    async (cancelled: () => boolean) => {
      setPhase({ kind: 'connecting' });
      let issued;
      try {
        issued = await requestTicket();
      } catch (error) {
        if (!cancelled()) setPhase({ kind: 'closed', message: errorMessage(error) });
        return;
      }
      if (cancelled() || !screen.current) return;
      const socket = new WebSocket(`wss://${window.location.host}${issued.websocketPath}`, [
        issued.protocol,
        issued.ticket,
      ]);
      socket.binaryType = 'arraybuffer';
      const client = new RFB(screen.current, socket, { shared: true });
      client.scaleViewport = true;
      client.background = '#101418';
      client.addEventListener('connect', () => {
        follows.current = 0;
        setPhase({ kind: 'connected' });
        client.focus();
      });
      socket.addEventListener('close', (event) => {
        if (cancelled()) return;
        rfb.current = null;
        if (event.code === CLOSE_ENDED && follows.current < MAX_FOLLOWS) {
          // The VM stopped or moved to another node: ask again (a new ticket reaches its new node).
          follows.current += 1;
          void vm.refetch().then(() => setAttempt((n) => n + 1));
          return;
        }
        const known = CLOSE_MESSAGES[event.code];
        setPhase({
          kind: 'closed',
          message: known
            ? `${known}${event.reason ? `: ${event.reason}` : ''}.`
            : event.code === CLOSE_ENDED
              ? 'The console ended: the VM stopped or moved.'
              : 'The console closed.',
        });
      });
      rfb.current = client;
    },
    [requestTicket, vm],
  );

  useEffect(() => {
    if (!live || !allowed) return;
    let cancelled = false;
    void open(() => cancelled);
    return () => {
      cancelled = true;
      rfb.current?.disconnect();
      rfb.current = null;
    };
    // `open` changes with every VM refresh; a console opens once per attempt.
  }, [live, allowed, attempt]);

  useEffect(() => {
    if (rfb.current) rfb.current.scaleViewport = scale;
  }, [scale, phase]);

  const sendPaste = (event: FormEvent) => {
    event.preventDefault();
    const client = rfb.current;
    if (!client || paste === '') return;
    client.clipboardPasteFrom(paste);
    for (const keysym of keysymsOf(paste)) client.sendKey(keysym, null);
    setPaste('');
    client.focus();
  };

  const name = vm.data?.name ?? 'VM';
  const back = href({ page: 'vm', remote, vmid });
  if (vm.error instanceof ApiError && vm.error.status === 404) {
    return (
      <main className="console-page">
        <h1>VM not found</h1>
        <p className="notice">This VM does not exist or you may not see it.</p>
      </main>
    );
  }
  return (
    <main className="console-page">
      <header className="toolbar console-header">
        <h1>Console of {name}</h1>
        {!(vm.data && !(live && allowed)) && (
          <p className="console-phase" role="status">
            {phaseText(phase, vm.data ? live : undefined, name, status, allowed)}
          </p>
        )}
      </header>
      {vm.data && !(live && allowed) && (
        <p className="notice" role="status">
          {phaseText(phase, live, name, status, allowed)} <a href={back}>Back to the VM</a>
        </p>
      )}
      {live && allowed && (
        <>
          <div className="actions console-actions" role="toolbar" aria-label="Console controls">
            <button
              type="button"
              disabled={phase.kind !== 'connected'}
              onClick={() => rfb.current?.sendCtrlAltDel()}
            >
              Send Ctrl-Alt-Del
            </button>
            <label className="console-scale">
              <input type="checkbox" checked={scale} onChange={(e) => setScale(e.target.checked)} />{' '}
              Scale to fit
            </label>
            {phase.kind === 'closed' && live && allowed && (
              <button type="button" onClick={() => setAttempt((n) => n + 1)}>
                Reconnect
              </button>
            )}
            <a href={href({ page: 'console', remote, vmid })} target="_blank" rel="noopener">
              Open in a new tab
            </a>
            <a href={back}>Back to the VM</a>
          </div>
          <form className="console-paste" onSubmit={sendPaste}>
            <label htmlFor={pasteId}>Paste text</label>
            <textarea
              id={pasteId}
              rows={1}
              value={paste}
              onChange={(e) => setPaste(e.target.value)}
              placeholder="Text to type on the guest's keyboard"
            />
            <button type="submit" disabled={phase.kind !== 'connected' || paste === ''}>
              Type it
            </button>
          </form>
        </>
      )}
      <div
        ref={screen}
        className="console-screen"
        role="application"
        aria-label={`Screen of ${name}`}
        data-testid="console-screen"
        hidden={!live || !allowed}
      />
    </main>
  );
}

function phaseText(
  phase: Phase,
  live: boolean | undefined,
  name: string,
  status: string | undefined,
  allowed: boolean,
): string {
  if (live === undefined) return 'Loading…';
  if (!allowed) return `You may not open the console of ${name} (needs vm.console).`;
  if (!live)
    return `${name} is ${status}: a VM has a console only while it runs. Start it from its page.`;
  switch (phase.kind) {
    case 'idle':
    case 'connecting':
      return 'Connecting…';
    case 'connected':
      return 'Connected.';
    case 'closed':
      return phase.message;
  }
}
