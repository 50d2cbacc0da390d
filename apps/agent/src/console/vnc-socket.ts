import { connect, type Socket } from 'node:net';
import { AgentError, ErrorCode } from '../shared/agent-error';

/** How long connecting to a VM's VNC socket may take. */
const CONNECT_TIMEOUT_MS = 5_000;

/**
 * Connects to a VM's VNC server on its unix socket (QEMU `-vnc unix:…`). The path is the driver's
 * own, never the caller's. A VM whose socket is missing or refuses has no console to offer.
 */
export function connectVncSocket(path: string, vmName: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ path });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new AgentError(ErrorCode.Unavailable, `the console of VM ${vmName} did not answer`));
    }, CONNECT_TIMEOUT_MS);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(
        new AgentError(
          error.code === 'ENOENT' || error.code === 'ECONNREFUSED'
            ? ErrorCode.FailedPrecondition
            : ErrorCode.Unavailable,
          `VM ${vmName} offers no console right now (is it running?)`,
          { cause: error },
        ),
      );
    });
  });
}
