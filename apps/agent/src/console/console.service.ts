import type { ConsoleFrame, ConsoleFrame__Output } from '@debvisor/proto';
import {
  status,
  type ClientDuplexStream,
  type ServiceError,
  type StatusObject,
} from '@grpc/grpc-js';
import { Duplex } from 'node:stream';
import type { HypervisorDriver } from '../drivers/hypervisor.driver';
import type { RegistryService } from '../registry/registry.service';
import type { CallContext } from '../rpc/call-context';
import type { PeerClientRepository, PeerTarget } from '../rpc/peer-client.repository';
import { AgentError, ErrorCode } from '../shared/agent-error';
import type { VmIndexRepository } from '../vms/vm-index.repository';

export interface ConsoleServiceDeps {
  nodeId: string;
  driver: Pick<HypervisorDriver, 'get' | 'openConsole'>;
  index: Pick<VmIndexRepository, 'get'>;
  registry: Pick<RegistryService, 'find'>;
  peers: Pick<PeerClientRepository, 'consoleStream' | 'streamError'>;
}

/**
 * VM consoles. A VM of this node: its driver's VNC stream (a unix socket, or the sim's test
 * pattern). A VM of another node: the console stream forwarded to that node's agent over the
 * cluster's mutual TLS, never forwarded twice. Either way the caller gets one byte stream.
 */
export class ConsoleService {
  constructor(private readonly deps: ConsoleServiceDeps) {}

  async open(uuid: string, context: CallContext): Promise<Duplex> {
    if (await this.deps.driver.get(uuid)) return this.deps.driver.openConsole(uuid);
    if (context.forwarded) throw notFound(uuid);
    const location = await this.deps.index.get(uuid);
    if (!location || location.nodeId === this.deps.nodeId) throw notFound(uuid);
    const node = await this.deps.registry.find(location.nodeId);
    if (!node?.alive)
      throw new AgentError(
        ErrorCode.Unavailable,
        `VM ${uuid} is on node ${location.nodeId}, which is not alive`,
      );
    const target = { nodeId: node.info.nodeId, endpoint: node.info.agentEndpoint };
    return this.forward(target, uuid, context);
  }

  /** The owner's console stream as a byte stream, once the owner sent its first bytes (or its refusal). */
  private forward(target: PeerTarget, uuid: string, context: CallContext): Promise<Duplex> {
    const call = this.deps.peers.consoleStream(target, context);
    call.write({ open: { uuid } });
    return new Promise((resolve, reject) => {
      const bytes = peerDuplex(call);
      let settled = false;
      call.once('data', () => {
        settled = true;
        resolve(bytes);
      });
      // The call's status comes last (after its end): a refusal is the owner's answer to the caller.
      call.once('status', (answer: StatusObject) => {
        if (settled) return;
        settled = true;
        if (answer.code === status.OK) return resolve(bytes);
        reject(
          this.deps.peers.streamError(
            target,
            Object.assign(new Error(answer.details), answer) as ServiceError,
          ),
        );
      });
    });
  }
}

/** A forwarded console call as a byte stream: data frames in, data frames out. */
function peerDuplex(call: ClientDuplexStream<ConsoleFrame, ConsoleFrame__Output>): Duplex {
  const bytes = new Duplex({
    read: () => call.resume(),
    write: (chunk: Buffer, _encoding, done) => {
      if (call.write({ data: chunk })) done();
      else call.once('drain', () => done());
    },
    final: (done) => {
      call.end();
      done();
    },
    destroy: (error, done) => {
      call.cancel();
      done(error);
    },
  });
  call.on('data', (frame: ConsoleFrame__Output) => {
    if (frame.data && frame.data.length > 0 && !bytes.push(frame.data)) call.pause();
  });
  call.on('end', () => bytes.push(null));
  // A refusal or a failure is the call's status (see forward); the bytes simply end.
  call.on('error', () => bytes.destroy());
  return bytes;
}

function notFound(uuid: string): AgentError {
  return new AgentError(ErrorCode.NotFound, `no VM with uuid ${uuid} in this cluster`);
}
