import { uuidSchema } from '@debvisor/common';
import type { ConsoleFrame, ConsoleFrame__Output } from '@debvisor/proto';
import type { ServerDuplexStream } from '@grpc/grpc-js';
import type { Duplex } from 'node:stream';
import { z } from 'zod';
import type { CallContext } from '../rpc/call-context';
import { validate } from '../rpc/request-validation';
import type { RpcRouter } from '../rpc/rpc-router';
import { AgentError, ErrorCode } from '../shared/agent-error';
import type { ConsoleService } from './console.service';

/** How long the caller has to say which console it wants. */
const OPENING_TIMEOUT_MS = 10_000;

const openingSchema = z.object({
  frame: z.literal('open', { error: 'the first frame must be open' }),
  open: z.object({ uuid: uuidSchema }),
});

type ConsoleCall = ServerDuplexStream<ConsoleFrame__Output, ConsoleFrame>;

/** VmService.Console: the opening frame names the VM; then bytes flow both ways until either side ends. */
export function consoleHandler(rpc: RpcRouter, consoles: ConsoleService) {
  return rpc.bidi<ConsoleFrame__Output, ConsoleFrame>('VmService.Console', async (call, context) =>
    serve(call, consoles, context),
  );
}

async function serve(call: ConsoleCall, consoles: ConsoleService, context: CallContext) {
  const opening = validate(openingSchema, await firstFrame(call));
  const vnc = await consoles.open(opening.open.uuid, context);
  await relay(call, vnc);
}

function firstFrame(call: ConsoleCall): Promise<ConsoleFrame__Output> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new AgentError(ErrorCode.DeadlineExceeded, 'no open frame came in time'));
    }, OPENING_TIMEOUT_MS);
    const onData = (frame: ConsoleFrame__Output) => {
      cleanup();
      call.pause();
      resolve(frame);
    };
    const onEnd = () => {
      cleanup();
      reject(new AgentError(ErrorCode.InvalidArgument, 'the stream ended before its open frame'));
    };
    const cleanup = () => {
      clearTimeout(timer);
      call.off('data', onData);
      call.off('end', onEnd);
      call.off('error', onEnd);
    };
    call.on('data', onData);
    call.once('end', onEnd);
    call.once('error', onEnd);
  });
}

/** Copies bytes both ways with back-pressure; resolves when either side ends (the other is closed). */
function relay(call: ConsoleCall, vnc: Duplex): Promise<void> {
  return new Promise((resolve) => {
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      vnc.destroy();
      resolve();
    };
    vnc.on('data', (chunk: Buffer) => {
      if (!call.write({ data: chunk })) {
        vnc.pause();
        call.once('drain', () => vnc.resume());
      }
    });
    vnc.on('end', finish);
    vnc.on('close', finish);
    vnc.on('error', finish);
    call.on('data', (frame: ConsoleFrame__Output) => {
      if (frame.frame !== 'data' || !frame.data) return;
      if (!vnc.write(frame.data)) {
        call.pause();
        vnc.once('drain', () => call.resume());
      }
    });
    call.on('end', finish);
    call.on('cancelled', finish);
    call.on('error', finish);
    call.resume();
  });
}
