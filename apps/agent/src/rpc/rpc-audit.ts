import type { AuditEventInput, AuditOutcome } from '@debvisor/audit';
import { agentApiKeyId } from '@debvisor/common';
import { status, type Metadata } from '@grpc/grpc-js';
import type { Clock } from '../shared/clock';
import type { Logger } from '../shared/logger';
import type { Caller } from './call-context';

/** Where the entries go: an AuditFileChain (audit.file), or a stand-in in tests. */
export interface AuditSink {
  /** `sync: false`: written (in the chain), and on disk with the next synced append. */
  append(input: AuditEventInput, options?: { sync?: boolean }): Promise<unknown>;
}

/** One served RPC, as the audit file records it. */
export interface ServedRpc {
  /** `VmService.StartVm` … (the action is `rpc.<name>`). */
  readonly rpc: string;
  /** Set once the call is authenticated. */
  caller: Caller | undefined;
  /** The public id of the API key presented, when authentication failed (never the key). */
  readonly presentedKeyId: string | undefined;
  readonly target: string | null;
  readonly traceId: string;
  /** The gRPC peer (host:port). */
  readonly peer: string | null;
}

/**
 * The agent's audit log of the RPCs it serves (config `audit.file`): who (principal, key id or
 * forwarding node), which RPC, on what, with which outcome, trace id and peer — never a key, a
 * cookie or a request body. An RPC that changes something is recorded before it is carried out
 * and refused (UNAVAILABLE) when that cannot be written; every RPC is recorded with its outcome.
 * A changing RPC's attempt is written without its own fdatasync: its outcome, synced before the
 * RPC answers, puts both on disk with one (the file's group commit joins other calls' lines too);
 * the file syncs an attempt on its own soon after when nothing else does (a long RPC's attempt is
 * on disk while it runs).
 */
export class RpcAudit {
  constructor(
    private readonly sink: AuditSink,
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {}

  /** Before a changing RPC: throws when the attempt cannot be recorded. */
  async attempt(served: ServedRpc): Promise<void> {
    await this.sink.append(this.event(served, 'attempt', {}), { sync: false });
  }

  /** After any RPC (never throws; a failure is logged). */
  async outcome(
    served: ServedRpc,
    code: status,
    reason: string | undefined,
    ms: number,
  ): Promise<void> {
    const outcome: AuditOutcome =
      code === status.OK
        ? 'success'
        : code === status.UNAUTHENTICATED || code === status.PERMISSION_DENIED
          ? 'denied'
          : 'failure';
    try {
      await this.sink.append(
        this.event(served, outcome, { code: status[code] ?? String(code), reason, ms }),
      );
    } catch (error) {
      this.logger.error(
        { err: error, rpc: served.rpc, traceId: served.traceId },
        'cannot write the audit file',
      );
    }
  }

  private event(
    served: ServedRpc,
    outcome: AuditOutcome,
    details: Record<string, unknown>,
  ): AuditEventInput {
    return {
      at: this.clock.now(),
      principal: served.caller?.principal ?? null,
      action: `rpc.${served.rpc}`,
      target: served.target,
      outcome,
      traceId: served.traceId,
      source: served.peer,
      details: {
        keyId: served.caller?.keyId ?? served.presentedKeyId,
        forwardedBy: served.caller?.forwardedBy,
        ...details,
      },
    };
  }
}

/** What an RPC acts on, from the few request fields that name it (never the request as a whole). */
export function rpcTarget(request: unknown): string | null {
  if (!request || typeof request !== 'object') return null;
  const r = request as Record<string, unknown>;
  const text = (value: unknown) =>
    typeof value === 'string' && value !== '' ? encodeURIComponent(value) : undefined;
  const uuid =
    text(r.uuid) ?? text(r.vmUuid) ?? text((r.vm as Record<string, unknown> | undefined)?.uuid);
  if (uuid) return `/vms/${uuid}`;
  const image = (r.image && typeof r.image === 'object' ? r.image : r) as Record<string, unknown>;
  if (text(image.pool) && text(image.image)) return `/rbd/${text(image.pool)}/${text(image.image)}`;
  const node = text(r.nodeId) ?? text((r.node as Record<string, unknown> | undefined)?.nodeId);
  if (node) return `/nodes/${node}`;
  return null;
}

/** The public id of a presented `Bearer dvk_<id>_<secret>` key, for failed authentications. */
export function presentedKeyId(metadata: Metadata): string | undefined {
  const value = metadata.get('authorization')[0];
  if (typeof value !== 'string') return undefined;
  const bearer = /^Bearer\s+(.*)$/is.exec(value);
  return bearer ? agentApiKeyId(bearer[1]) : undefined;
}
