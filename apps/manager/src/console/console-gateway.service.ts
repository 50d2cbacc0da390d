import type { ConsoleFrame, ConsoleFrame__Output } from '@debvisor/proto';
import { remoteIdSchema, uuidSchema } from '@debvisor/common';
import type { ClientDuplexStream, ServiceError } from '@grpc/grpc-js';
import { Inject, Injectable, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { PinoLogger } from 'nestjs-pino';
import { WebSocketServer, type WebSocket } from 'ws';
import { AgentClientRepository } from '../agents/agent-client.repository';
import { AuditService, type AuditedCall } from '../audit/audit.service';
import { AccessPolicy } from '../authz/access-policy.service';
import { vmAclPath } from '../authz/acl-paths';
import { AuthService, type PresentedCredentials } from '../authn/auth.service';
import type { Caller } from '../authz/caller';
import { SESSION_COOKIE, cookieValue } from '../sessions/session-secrets';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { ERROR_STATUS } from '../common/error-status';
import { newTraceId } from '../common/trace-id';
import { MANAGER_CONFIG, type ManagerConfig } from '../config/manager-config';
import { RemotesService } from '../remotes/remotes.service';
import { SchedulerService } from '../scheduler/scheduler.service';
import { CONSOLE_PROTOCOL } from './console.dto';
import { ConsoleTicketService } from './console-ticket.service';

/** The cluster permission of VmService.Console (apps/agent/src/rpc/permissions.ts). */
const CONSOLE_PERMISSION = 'vm:instance:console';
/** How often open consoles check that their session and right still hold. */
export const CONSOLE_RECHECK_MS = 5_000;
/** The scheduler job of that check. */
export const CONSOLE_RECHECK_JOB = 'console.recheck';
/** Largest message a viewer may send (keyboard, pointer and clipboard are small). */
const MAX_VIEWER_MESSAGE = 1024 * 1024;
/** Bytes waiting for a slow viewer above which the agent's stream pauses, and below which it resumes. */
const VIEWER_BUFFER_HIGH = 8 * 1024 * 1024;
const VIEWER_BUFFER_LOW = 1024 * 1024;
const PATH = /^\/api\/v1\/remotes\/([^/]+)\/vms\/([^/]+)\/console\/ws$/;

/** WebSocket close codes a viewer can act on (4000-4999 are the application's). */
export const CONSOLE_CLOSE = {
  /** The VM's console ended: it stopped or moved to another node; ask for a new ticket to follow it. */
  ended: 4000,
  /** The VM has no console now (not running, or its node cannot be reached). */
  unavailable: 4009,
  /** The login session ended. */
  sessionEnded: 4401,
  /** The user lost the right to the console. */
  rightLost: 4403,
  /** The manager is stopping. */
  shutdown: 1001,
} as const;

interface LiveConsole {
  readonly presented: PresentedCredentials;
  readonly aclPath: string;
  readonly audited: AuditedCall;
  readonly openedAt: number;
  readonly socket: WebSocket;
  readonly call: ClientDuplexStream<ConsoleFrame, ConsoleFrame__Output>;
  closed: boolean;
}

/**
 * The console WebSocket: browser ⇄ this manager ⇄ the VM's agent (VmService.Console over the
 * remote's mutual TLS). Before the upgrade it checks the origin, authenticates the login session,
 * redeems the ticket (a second subprotocol, never in the URL) and the vm.console right; refusals
 * are the JSON error shape with their HTTP status. Opening and closing are audited, the close
 * with its duration. Every few seconds each console checks that its session and right still
 * hold and closes when they do not.
 */
@Injectable()
export class ConsoleGatewayService implements OnModuleInit, OnApplicationShutdown {
  private readonly sockets = new WebSocketServer({
    noServer: true,
    maxPayload: MAX_VIEWER_MESSAGE,
    perMessageDeflate: false,
    handleProtocols: (protocols) => (protocols.has(CONSOLE_PROTOCOL) ? CONSOLE_PROTOCOL : false),
  });
  private readonly live = new Set<LiveConsole>();
  private server: Server | undefined;
  private readonly onUpgrade = (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (!PATH.test(pathOf(request))) return;
    void this.upgrade(request, socket, head);
  };

  constructor(
    @Inject(MANAGER_CONFIG) private readonly config: ManagerConfig,
    private readonly auth: AuthService,
    private readonly policy: AccessPolicy,
    private readonly tickets: ConsoleTicketService,
    private readonly remotes: RemotesService,
    private readonly agents: AgentClientRepository,
    private readonly audit: AuditService,
    private readonly logger: PinoLogger,
    private readonly scheduler: SchedulerService,
  ) {}

  onModuleInit(): void {
    // Every few seconds, each open console checks that its session and right still hold.
    this.scheduler.register({
      name: CONSOLE_RECHECK_JOB,
      timing: { everyMs: CONSOLE_RECHECK_MS },
      run: () => this.recheckAll(),
    });
  }

  /** Serves console WebSockets on `server`. */
  start(server: Server): void {
    this.server = server;
    server.on('upgrade', this.onUpgrade);
  }

  /** Stops serving and closes every open console. */
  stop(): void {
    this.server?.off('upgrade', this.onUpgrade);
    for (const console of this.live)
      this.close(console, CONSOLE_CLOSE.shutdown, 'the manager is stopping');
  }

  onApplicationShutdown(): void {
    this.stop();
    this.sockets.close();
  }

  /** How many consoles are open (for tests and metrics). */
  openConsoles(): number {
    return this.live.size;
  }

  private async upgrade(request: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const traceId = newTraceId();
    const path = pathOf(request);
    const match = PATH.exec(path)!;
    const remote = safeDecode(match[1]!);
    const vmid = safeDecode(match[2]!);
    try {
      if (!remoteIdSchema.safeParse(remote).success || !uuidSchema.safeParse(vmid).success)
        throw new DomainError(ErrorCode.ValidationFailed, 'not a remote id and a VM uuid');
      if (!this.sameOrigin(request))
        throw new DomainError(
          ErrorCode.Forbidden,
          'a console opens from the manager’s own pages only',
        );
      const offered = protocolsOf(request);
      const secret = offered.find((p) => p.startsWith('dvct_'));
      if (!offered.includes(CONSOLE_PROTOCOL) || !secret)
        throw new DomainError(
          ErrorCode.BadRequest,
          `offer the subprotocols ${CONSOLE_PROTOCOL} and the console ticket`,
        );
      const presented: PresentedCredentials = {
        authorization: request.headers.authorization,
        sessionSecret:
          request.headers.authorization === undefined
            ? cookieValue(request.headers.cookie, SESSION_COOKIE)
            : undefined,
        safeMethod: true,
      };
      const caller = await this.authenticate(presented);
      const aclPath = vmAclPath(remote, vmid);
      if (!this.policy.holds(caller, 'vm.console', aclPath))
        throw new DomainError(ErrorCode.NotFound, 'virtual machine not found');
      this.tickets.redeem(secret, caller, remote, vmid);
      const audited: AuditedCall = {
        action: 'vm.console.open',
        principal: caller.display,
        tokenId: caller.tokenId,
        target: aclPath,
        origin: { traceId, source: sourceOf(request), method: 'GET', path },
      };
      await this.audit.attempt(audited);
      const credentialId = this.policy.credentialFor(caller, 'vm.console', aclPath, remote);
      this.sockets.handleUpgrade(
        request,
        socket,
        head,
        (ws) => void this.connect(ws, { presented, aclPath, audited, remote, vmid, credentialId }),
      );
    } catch (error) {
      refuse(socket, error, traceId);
      if (!(error instanceof DomainError))
        this.logger.error({ err: error, traceId }, 'console upgrade failed');
    }
  }

  /** After the upgrade: the agent's console stream, relayed both ways until one side ends. */
  private async connect(
    ws: WebSocket,
    opening: {
      presented: PresentedCredentials;
      aclPath: string;
      audited: AuditedCall;
      remote: string;
      vmid: string;
      credentialId: string | null | undefined;
    },
  ): Promise<void> {
    // Until the agent's stream is there, a viewer that leaves (or breaks the protocol) only ends the wait.
    let gone = false;
    const leave = () => (gone = true);
    ws.on('close', leave);
    ws.on('error', leave);
    let call: ClientDuplexStream<ConsoleFrame, ConsoleFrame__Output>;
    try {
      const connection = await this.remotes.connectionFor(
        opening.remote,
        opening.credentialId ?? null,
        CONSOLE_PERMISSION,
      );
      call = await this.agents.openConsole(connection, opening.vmid);
    } catch (error) {
      await this.audit.outcome(opening.audited, {}, error);
      ws.close(CONSOLE_CLOSE.unavailable, closeReason(error));
      return;
    }
    ws.off('close', leave);
    ws.off('error', leave);
    const console: LiveConsole = {
      presented: opening.presented,
      aclPath: opening.aclPath,
      audited: opening.audited,
      openedAt: performance.now(),
      socket: ws,
      call,
      closed: false,
    };
    this.live.add(console);
    if (gone || ws.readyState !== ws.OPEN) {
      void this.audit.outcome(opening.audited, {});
      return this.close(console, 1000, 'the viewer closed the console');
    }
    let opened = false;
    // Back-pressure: a viewer that reads slowly pauses the agent's stream, and the reverse.
    let paused = false;
    const drained = () => {
      if (paused && ws.bufferedAmount < VIEWER_BUFFER_LOW) {
        paused = false;
        call.resume();
      }
    };
    call.on('data', (frame: ConsoleFrame__Output) => {
      if (!opened) {
        opened = true;
        void this.audit.outcome(opening.audited, {});
      }
      if (!frame.data || frame.data.length === 0 || ws.readyState !== ws.OPEN) return;
      ws.send(frame.data, drained);
      if (!paused && ws.bufferedAmount > VIEWER_BUFFER_HIGH) {
        paused = true;
        call.pause();
      }
    });
    call.on('end', () =>
      this.close(console, CONSOLE_CLOSE.ended, 'the console ended: the VM stopped or moved'),
    );
    call.on('error', (error: ServiceError) => {
      const failure = this.agents.consoleError(error);
      if (!opened) void this.audit.outcome(opening.audited, {}, failure);
      opened = true;
      this.close(console, CONSOLE_CLOSE.unavailable, closeReason(failure));
    });
    ws.on('message', (data: Buffer, binary: boolean) => {
      if (!binary) return this.close(console, 1003, 'a console carries binary RFB messages only');
      if (!call.write({ data })) {
        ws.pause();
        call.once('drain', () => ws.resume());
      }
    });
    ws.on('close', () => this.close(console, 1000, 'the viewer closed the console'));
    ws.on('error', () => this.close(console, 1011, 'the viewer connection failed'));
  }

  /** Closes both sides once and records the close with the console's duration. */
  private close(console: LiveConsole, code: number, reason: string): void {
    if (console.closed) return;
    console.closed = true;
    this.live.delete(console);
    console.call.cancel();
    if (console.socket.readyState === console.socket.OPEN) console.socket.close(code, reason);
    void this.audit.outcome(
      { ...console.audited, action: 'vm.console.close' },
      { durationMs: Math.round(performance.now() - console.openedAt), reason },
    );
  }

  /** Closes consoles whose login session ended or whose user lost the right. */
  private async recheckAll(): Promise<void> {
    for (const console of [...this.live]) {
      let caller: Caller;
      try {
        caller = await this.authenticate(console.presented);
      } catch {
        this.close(console, CONSOLE_CLOSE.sessionEnded, 'the login session ended');
        continue;
      }
      if (!this.policy.holds(caller, 'vm.console', console.aclPath))
        this.close(
          console,
          CONSOLE_CLOSE.rightLost,
          'you no longer hold the console right on this VM',
        );
    }
  }

  private async authenticate(presented: PresentedCredentials): Promise<Caller> {
    const caller = await this.auth.authenticate(presented);
    if (caller.sessionStage !== null && caller.sessionStage !== 'active')
      throw new DomainError(ErrorCode.Unauthenticated, 'this login is not complete');
    return caller;
  }

  /** The browser's Origin must be this manager (its public URL, or the Host it was reached at). */
  private sameOrigin(request: IncomingMessage): boolean {
    const origin = request.headers.origin;
    if (origin === undefined) return request.headers.authorization !== undefined; // not a browser
    const expected = new Set([`https://${request.headers.host ?? ''}`]);
    if (this.config.publicUrl) expected.add(new URL(this.config.publicUrl).origin);
    return expected.has(origin);
  }
}

function pathOf(request: IncomingMessage): string {
  const url = request.url ?? '';
  const query = url.indexOf('?');
  return query >= 0 ? url.slice(0, query) : url;
}

function safeDecode(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    return '';
  }
}

function protocolsOf(request: IncomingMessage): string[] {
  const header = request.headers['sec-websocket-protocol'];
  return (header ?? '')
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p.length > 0);
}

function sourceOf(request: IncomingMessage): string | null {
  const address = request.socket.remoteAddress ?? null;
  return address?.startsWith('::ffff:') ? address.slice(7) : address;
}

/** A close reason fits 123 bytes. */
function closeReason(error: unknown): string {
  const message = error instanceof DomainError ? error.message : 'the console could not be opened';
  return Buffer.from(message)
    .subarray(0, 120)
    .toString()
    .replace(/\uFFFD$/, '');
}

/** Answers a refused upgrade with the JSON error shape and closes the connection. */
function refuse(socket: Duplex, error: unknown, traceId: string): void {
  const domain =
    error instanceof DomainError
      ? error
      : new DomainError(ErrorCode.Internal, `internal error (trace id ${traceId})`);
  const status = ERROR_STATUS[domain.code];
  const body = JSON.stringify({ error: { code: domain.code, message: domain.message, traceId } });
  if (!socket.writable) return void socket.destroy();
  socket.end(
    `HTTP/1.1 ${status} ${status < 500 ? 'Refused' : 'Error'}\r\n` +
      'Content-Type: application/json\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      'Connection: close\r\n\r\n' +
      body,
  );
}
