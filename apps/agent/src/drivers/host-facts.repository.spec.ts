import { cpus, totalmem } from 'node:os';
import { describe, expect, it } from 'vitest';
import { HostFactsRepository } from './host-facts.repository';

describe('host facts from the operating system', () => {
  it('reports this machine: CPUs, memory, host name and a usage between 0 and 1', async () => {
    const repository = new HostFactsRepository();
    const facts = await repository.facts();
    expect(facts.cpuCount).toBe(cpus().length);
    expect(facts.memoryBytes).toBe(totalmem());
    expect(facts.hostname).toMatch(/^[^.]+$/);
    expect(facts.fqdn.startsWith(facts.hostname)).toBe(true);
    expect(facts.versions.kernel).toBeTruthy();
    const usage = await repository.usage();
    expect(usage.cpuUsage).toBeGreaterThanOrEqual(0);
    expect(usage.cpuUsage).toBeLessThanOrEqual(1);
    expect(usage.memoryUsedBytes).toBeGreaterThan(0);
  });
});
