import { describe, expect, it } from 'vitest';
import { loadConfig } from '../config/manager-config';
import { RateLimited, RateLimiterService } from './rate-limiter.service';

function limiter(env: Record<string, string>): RateLimiterService {
  return new RateLimiterService(loadConfig(env));
}

async function outcomes(calls: (() => Promise<void>)[]): Promise<string[]> {
  const answers: string[] = [];
  for (const call of calls) {
    try {
      await call();
      answers.push('ok');
    } catch (error) {
      if (!(error instanceof RateLimited)) throw error;
      answers.push(error.limit);
    }
  }
  return answers;
}

describe('RateLimiterService (issue 14 item 2)', () => {
  it('checks the principal first and never charges the global limit for a refused call', async () => {
    const limits = limiter({
      DEBVISOR_RATE_LIMIT_PER_PRINCIPAL: '3',
      DEBVISOR_RATE_LIMIT_GLOBAL: '6',
    });
    const flood = await outcomes(
      Array.from({ length: 10 }, () => () => limits.request('a', false)),
    );
    expect(flood).toEqual(['ok', 'ok', 'ok', ...Array(7).fill('principal')]);
    const others = await outcomes(
      ['b', 'b', 'b'].map((principal) => () => limits.request(principal, false)),
    );
    expect(others).toEqual(['ok', 'ok', 'ok']);
  });

  it('lets one principal take at most half of the global limit, and never refuses an administrator for it', async () => {
    const limits = limiter({
      DEBVISOR_RATE_LIMIT_PER_PRINCIPAL: '1000',
      DEBVISOR_RATE_LIMIT_GLOBAL: '6',
    });
    const flood = await outcomes(Array.from({ length: 5 }, () => () => limits.request('a', false)));
    expect(flood).toEqual(['ok', 'ok', 'ok', 'global', 'global']);
    const rest = await outcomes(
      ['b', 'c', 'd', 'e'].map((principal) => () => limits.request(principal, false)),
    );
    expect(rest).toEqual(['ok', 'ok', 'ok', 'global']);
    const admin = await outcomes(
      Array.from({ length: 5 }, () => () => limits.request('root', true)),
    );
    expect(admin).toEqual(Array(5).fill('ok'));
  });
});
