import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCephCluster, type CephCluster } from './ceph';

describe('startCephCluster', () => {
  let ceph: CephCluster;
  beforeAll(async () => {
    ceph = await startCephCluster();
    console.log(
      `ceph cluster ${ceph.name}: started in ${ceph.startMs} ms, ${(ceph.memoryBytes() / 1024 ** 2).toFixed(0)} MiB resident`,
    );
  }, 120_000);
  afterAll(() => ceph?.stop());

  it('serves a healthy cluster with cephx and the rbd pool', async () => {
    const health = await ceph.json<{ status: string }>('ceph', ['health']);
    expect(health.status).toBe('HEALTH_OK');
    const pools = await ceph.json<{ pool_name: string }[]>('ceph', ['osd', 'pool', 'ls', 'detail']);
    expect(pools.map((pool) => pool.pool_name)).toEqual(['rbd']);
    // cephx is on: without a key the monitor refuses.
    const anonymous = await ceph.exec(
      'ceph',
      ['health', '--keyring', '/dev/null', '--connect-timeout', '3'],
      {
        allowFailure: true,
        timeoutMs: 20_000,
      },
    );
    expect(anonymous.code).not.toBe(0);
  });

  it('lets the agent client create, write and read an image, and may blocklist', async () => {
    await ceph.exec('rbd', ['create', '--size', '8M', '--', 'rbd/spec-image'], { as: 'client' });
    const images = await ceph.json<string[]>('rbd', ['ls', 'rbd']);
    expect(images).toEqual(['spec-image']);
    const data = randomBytes(1024 * 1024);
    await ceph.writeImage('rbd', 'spec-image', 4096, data);
    const expected = Buffer.alloc(8 * 1024 * 1024);
    data.copy(expected, 4096);
    expect(await ceph.imageSha256('rbd', 'spec-image')).toBe(
      createHash('sha256').update(expected).digest('hex'),
    );
    // profile rbd allows blocklisting one client instance (address/nonce), not more.
    await ceph.exec('ceph', ['osd', 'blocklist', 'add', '127.0.0.1:0/123456'], { as: 'client' });
    const refused = await ceph.exec('ceph', ['osd', 'pool', 'create', 'not-allowed'], {
      as: 'client',
      allowFailure: true,
    });
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/Permission denied|EACCES/);
  });

  it('imports an image whole and checksums it', async () => {
    const data = randomBytes(2 * 1024 * 1024);
    await ceph.importImage('rbd', 'imported', data);
    expect(await ceph.imageSha256('rbd', 'imported')).toBe(
      createHash('sha256').update(data).digest('hex'),
    );
  });

  it('stops and starts its daemons on the same data', async () => {
    const before = await ceph.imageSha256('rbd', 'imported');
    await ceph.stopDaemons();
    expect(ceph.running).toBe(false);
    const down = await ceph.exec('ceph', ['health', '--connect-timeout', '2'], {
      allowFailure: true,
      timeoutMs: 20_000,
    });
    expect(down.code).not.toBe(0);
    await ceph.startDaemons();
    expect(await ceph.imageSha256('rbd', 'imported')).toBe(before);
  }, 120_000);

  it('removes its directory on stop', async () => {
    const other = await startCephCluster({ pools: [] });
    expect(other.fsid).not.toBe(ceph.fsid);
    expect(existsSync(other.confPath)).toBe(true);
    await other.stop();
    expect(existsSync(other.dir)).toBe(false);
  }, 120_000);
});
