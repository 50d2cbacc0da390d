import { Injectable } from '@nestjs/common';
import { randomBytes, randomUUID } from 'node:crypto';

/** Randomness, behind a seam so that services can be tested with fixed values. */
@Injectable()
export class RandomRepository {
  bytes(length: number): Buffer {
    return randomBytes(length);
  }

  uuid(): string {
    return randomUUID();
  }
}
