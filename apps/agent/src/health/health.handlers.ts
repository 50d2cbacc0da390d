import type { HealthHandlers } from '@debvisor/proto';
import { status } from '@grpc/grpc-js';
import type { ServingStatusBoard } from './serving-status';

/**
 * gRPC's health checking protocol (grpc.health.v1.Health) over the board's statuses. It runs
 * outside the RPC router on purpose: load balancers and probes (grpc_health_probe, Kubernetes gRPC
 * probes) hold no API key, so the mutual TLS handshake is the only check — the answers reveal only
 * serving/not serving.
 */
export function healthServiceHandlers(board: ServingStatusBoard): HealthHandlers {
  return {
    Check: (call, callback) => {
      const current = board.get(call.request.service);
      if (current === undefined)
        callback({
          code: status.NOT_FOUND,
          details: `unknown service ${JSON.stringify(call.request.service)}`,
        });
      else callback(null, { status: current });
    },
    List: (_call, callback) => {
      callback(null, {
        statuses: Object.fromEntries(
          [...board.all()].map(([service, current]) => [service, { status: current }]),
        ),
      });
    },
    Watch: (call) => {
      const service = call.request.service;
      // An unknown service is SERVICE_UNKNOWN, and the call stays open (as the protocol says).
      call.write({ status: board.get(service) ?? 'SERVICE_UNKNOWN' });
      const stopWatching = board.watch(service, (current) => call.write({ status: current }));
      const stopWaiting = board.onShutdown(() => end());
      // The agent is stopping: the stream ends (after NOT_SERVING), so that it does not hold the shutdown up.
      const end = () => {
        stopWatching();
        stopWaiting();
        if (!call.writableEnded) call.end();
      };
      call.once('cancelled', end);
      call.once('close', end);
    },
  };
}
