import { Injectable } from '@nestjs/common';

/** Waiting between polls, behind a seam so that service tests run without real time passing. */
@Injectable()
export class ReplicationTimerRepository {
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }
}
