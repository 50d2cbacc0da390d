import { Injectable } from '@nestjs/common';
import { createHash, randomBytes } from 'node:crypto';

/** What a console ticket is bound to. */
export interface ConsoleTicketBinding {
  readonly principal: string;
  /** The login session (its id); null for an API token. */
  readonly sessionId: string | null;
  /** The API token (its public id); null for a login session. */
  readonly tokenId: string | null;
  readonly remote: string;
  readonly vmid: string;
  /** Epoch milliseconds. */
  readonly expiresAt: number;
}

/**
 * Console tickets while they are valid, kept only in this process's memory and only as SHA-256
 * hashes (a ticket lives a minute at most, so a restart merely ends tickets not yet used). Also
 * the clock and the randomness of tickets, so that service tests can fix them.
 */
@Injectable()
export class ConsoleTicketRepository {
  private readonly tickets = new Map<string, ConsoleTicketBinding>();

  now(): number {
    return Date.now();
  }

  /** A new ticket secret: 256 random bits, prefixed so that secret scanners recognise it. */
  newSecret(): string {
    return `dvct_${randomBytes(32).toString('base64url')}`;
  }

  save(secret: string, binding: ConsoleTicketBinding): void {
    this.prune();
    this.tickets.set(hashOf(secret), binding);
  }

  /** Removes the ticket and answers what it was bound to: a ticket can be presented once only. */
  take(secret: string): ConsoleTicketBinding | undefined {
    const hash = hashOf(secret);
    const binding = this.tickets.get(hash);
    this.tickets.delete(hash);
    return binding;
  }

  private prune(): void {
    const now = this.now();
    for (const [hash, binding] of this.tickets)
      if (binding.expiresAt <= now) this.tickets.delete(hash);
  }
}

function hashOf(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}
