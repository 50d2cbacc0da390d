import { Injectable } from '@nestjs/common';

/** The wall clock, behind a seam so that services can be tested at fixed times. */
@Injectable()
export class ClockRepository {
  now(): Date {
    return new Date();
  }
}
