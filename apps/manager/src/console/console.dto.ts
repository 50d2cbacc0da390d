import { remoteIdSchema, uuidSchema } from '@debvisor/common';
import { createZodDto } from 'nestjs-zod';
import { z } from 'zod';

/** The WebSocket subprotocol of a console; the ticket travels as a second subprotocol, never in the URL. */
export const CONSOLE_PROTOCOL = 'debvisor-console.v1';

export class ConsoleTargetParamsDto extends createZodDto(
  z.strictObject({ remote: remoteIdSchema, vmid: uuidSchema }),
) {}

export class ConsoleTicketDto extends createZodDto(
  z
    .strictObject({
      ticket: z.string().meta({
        description:
          'Single use, valid until expiresAt (at most 60 s), for this VM, this user and this login session only. Offer it as a WebSocket subprotocol next to the protocol below.',
      }),
      expiresAt: z.iso.datetime().meta({ description: 'When the ticket stops working' }),
      websocketPath: z.string().meta({
        description: 'Where to open the WebSocket (same origin), carrying RFB (VNC) bytes',
      }),
      protocol: z.literal(CONSOLE_PROTOCOL).meta({ description: 'The WebSocket subprotocol' }),
    })
    .meta({ id: 'ConsoleTicket' }),
) {}
