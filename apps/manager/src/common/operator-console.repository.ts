import { Inject, Injectable, Optional } from '@nestjs/common';

/** Where the manager talks to the operator directly, outside the JSON log (standard output). */
export const OPERATOR_OUTPUT = Symbol('OPERATOR_OUTPUT');

export interface OperatorOutput {
  write(text: string): unknown;
}

@Injectable()
export class OperatorConsoleRepository {
  constructor(
    @Optional() @Inject(OPERATOR_OUTPUT) private readonly output: OperatorOutput = process.stdout,
  ) {}

  print(text: string): void {
    this.output.write(text.endsWith('\n') ? text : text + '\n');
  }
}
