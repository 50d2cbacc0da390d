import { describe, expect, it } from 'vitest';
import { CliError } from './cli-error';
import { EXIT, exitCodeForStatus } from './exit-codes';

describe('exit codes for answers of the manager', () => {
  it('maps every failing status a script needs to tell apart', () => {
    expect(
      [400, 401, 403, 404, 409, 413, 422, 429, 500, 502, 503].map((s) => [s, exitCodeForStatus(s)]),
    ).toEqual([
      [400, EXIT.usage],
      [401, EXIT.unauthenticated],
      [403, EXIT.forbidden],
      [404, EXIT.notFound],
      [409, EXIT.conflict],
      [413, EXIT.failed],
      [422, EXIT.usage],
      [429, EXIT.conflict],
      [500, EXIT.failed],
      [502, EXIT.failed],
      [503, EXIT.failed],
    ]);
  });

  it("keeps the manager's message, code and trace id, and survives a body that is not the error shape", () => {
    const error = CliError.fromAnswer(404, {
      error: { code: 'not_found', message: 'remote x not found', traceId: 'abc123' },
    });
    expect(error).toMatchObject({
      message: 'remote x not found',
      code: 'not_found',
      traceId: 'abc123',
      status: 404,
      exitCode: EXIT.notFound,
    });
    for (const body of [undefined, null, 'Bad Gateway', { error: 'x' }, { error: { message: 7 } }])
      expect(CliError.fromAnswer(502, body)).toMatchObject({
        message: 'the manager answered HTTP 502',
        code: undefined,
        traceId: undefined,
        exitCode: EXIT.failed,
      });
  });
});
