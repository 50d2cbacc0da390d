import { startEtcd, type EtcdInstance } from '@debvisor/testing';
import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe } from 'vitest';
import { systemClock } from '../../shared/clock';
import { storageDriverContract, type StorageDriverFixture } from '../storage-driver.contract';
import { SimStorageDriver } from './sim-storage.driver';

/** The storage-driver contract (the rbd driver runs the same cases on real Ceph) on the sim driver with a real etcd. */
describe('storage-driver contract: sim driver (real etcd)', () => {
  let server: EtcdInstance;
  let etcd: Etcd3;
  let fixture: StorageDriverFixture;
  let driver: SimStorageDriver;

  beforeAll(async () => {
    server = await startEtcd();
    etcd = new Etcd3(server.clientOptions());
    driver = new SimStorageDriver({
      etcd,
      clock: systemClock,
      clusterId: 'contract',
      nodeId: 'node-1',
      etcdEndpoints: [server.endpoint],
      peerEtcd: { tls: server.tls },
      peerTimeoutMs: 1_000,
      staleAfterMs: 5_000,
    });
    fixture = {
      driver,
      pool: 'rbd',
      content: {
        write: async (ref) => void (await driver.writeImage(ref, 'contract-writer')),
        checksum: async (ref) => (await driver.imageContent(ref)).checksum,
      },
      commandsRun: () => driver.repository.requests,
    };
  });
  afterAll(async () => {
    driver?.close();
    etcd?.close();
    await server?.stop();
  });

  storageDriverContract(() => fixture);
});
