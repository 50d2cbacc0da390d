import { promises as dns } from 'node:dns';
import { readdir, readFile, stat } from 'node:fs/promises';
import { cpus, freemem, hostname, loadavg, networkInterfaces, release, totalmem } from 'node:os';
import type { HostFacts, HostUsage, Hugepages } from './hypervisor.driver';

const LOOKUP_TIMEOUT_MS = 2_000;

/**
 * Facts about the real machine, from the `os` module, /proc and /sys: what the qemu and libvirt
 * drivers report (the sim driver reports its configured facts instead).
 */
export class HostFactsRepository {
  constructor(private readonly root = '/') {}

  async facts(): Promise<HostFacts> {
    const name = hostname();
    const cpuList = cpus();
    return {
      hostname: name.split('.')[0],
      fqdn: await this.fqdn(name),
      addresses: Object.values(networkInterfaces())
        .flat()
        .filter(
          (a) =>
            a !== undefined &&
            !a.internal &&
            !(a.family === 'IPv6' && a.address.startsWith('fe80')),
        )
        .map((a) => a!.address),
      cpuModel: cpuList[0]?.model.trim() ?? 'unknown',
      cpuFlags: await this.cpuFlags(),
      cpuCount: cpuList.length,
      memoryBytes: totalmem(),
      hugepages: await this.hugepages(),
      bridges: await this.bridges(),
      versions: { kernel: release() },
    };
  }

  async usage(): Promise<HostUsage> {
    const count = Math.max(1, cpus().length);
    return {
      cpuUsage: Math.min(1, Math.round((loadavg()[0] / count) * 1000) / 1000),
      memoryUsedBytes: totalmem() - freemem(),
    };
  }

  /** Like `hostname -f`: the canonical name of the host's address, else the plain host name. */
  private async fqdn(name: string): Promise<string> {
    if (name.includes('.')) return name;
    try {
      const { address } = await withTimeout(dns.lookup(name));
      const { hostname: canonical } = await withTimeout(dns.lookupService(address, 0));
      return canonical.startsWith(`${name}.`) ? canonical : name;
    } catch {
      return name;
    }
  }

  private async cpuFlags(): Promise<string[]> {
    const cpuinfo = await this.read('proc/cpuinfo');
    const line = cpuinfo?.split('\n').find((l) => /^flags\s*:/.test(l));
    return line
      ? line
          .slice(line.indexOf(':') + 1)
          .trim()
          .split(/\s+/)
      : [];
  }

  private async hugepages(): Promise<Hugepages> {
    const meminfo = (await this.read('proc/meminfo')) ?? '';
    const value = (key: string) =>
      Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(meminfo)?.[1] ?? 0);
    return {
      pageSizeBytes: value('Hugepagesize') * 1024,
      total: value('HugePages_Total'),
      free: value('HugePages_Free'),
    };
  }

  private async bridges(): Promise<string[]> {
    const dir = `${this.root}sys/class/net`;
    const names = await readdir(dir).catch(() => [] as string[]);
    const checks = await Promise.all(
      names.map(async (n) =>
        (await stat(`${dir}/${n}/bridge`).catch(() => undefined))?.isDirectory() ? n : undefined,
      ),
    );
    return checks.filter((n): n is string => n !== undefined).sort();
  }

  private async read(path: string): Promise<string | undefined> {
    return readFile(`${this.root}${path}`, 'utf8').catch(() => undefined);
  }
}

function withTimeout<T>(promise: Promise<T>): Promise<T> {
  return Promise.race([
    promise,
    new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error('lookup timed out')), LOOKUP_TIMEOUT_MS).unref(),
    ),
  ]);
}
