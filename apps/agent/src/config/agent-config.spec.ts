import { describe, expect, it } from 'vitest';
import { ConfigError, loadAgentConfig, parseAgentConfig } from './agent-config.loader';

const minimal = {
  clusterId: 'dc-east',
  nodeId: 'east-1',
  advertise: '10.0.0.11:9443',
  etcd: { endpoints: ['http://127.0.0.1:2379'] },
  tls: { cert: 'pki/east-1.crt', key: 'pki/east-1.key', ca: 'pki/ca.crt' },
  stateDir: 'state',
  hypervisor: { driver: 'sim' },
  storage: { driver: 'sim' },
};

function errorOf(raw: unknown): string {
  try {
    parseAgentConfig(raw, '/etc/debvisor');
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error('the configuration was accepted');
}

describe('agent configuration', () => {
  it('fills in the defaults and resolves file paths against the configuration directory', () => {
    const config = parseAgentConfig(minimal, '/etc/debvisor');
    expect(config).toMatchObject({
      listen: '0.0.0.0:9443',
      leaseTtlSeconds: 15,
      heartbeatIntervalSeconds: 5,
      apiKeyCacheSeconds: 5,
      logLevel: 'info',
      stateDir: '/etc/debvisor/state',
      tls: { cert: '/etc/debvisor/pki/east-1.crt', ca: '/etc/debvisor/pki/ca.crt', clientCas: [] },
      sim: { timeScale: 1, seedVms: 0, bridges: ['vmbr0', 'vmbr1'] },
      metrics: { enabled: true, listen: '127.0.0.1:9444', requireClientCert: false },
    });
    expect(config.sim.cpu.count).toBe(64);
  });

  it('is frozen all the way down', () => {
    const config = parseAgentConfig(minimal, '/etc/debvisor');
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.tls.clientCas)).toBe(true);
    expect(() => ((config.sim as { timeScale: number }).timeScale = 5)).toThrow(TypeError);
  });

  it('names the setting of a bad value', () => {
    expect(errorOf({ ...minimal, leaseTtlSeconds: 1 })).toMatch(/leaseTtlSeconds: /);
    expect(errorOf({ ...minimal, nodeId: 'East_1' })).toMatch(/nodeId: a node id is/);
    expect(errorOf({ ...minimal, advertise: 'east-1' })).toMatch(
      /advertise: an endpoint is host:port/,
    );
    expect(errorOf({ ...minimal, etcd: { endpoints: ['127.0.0.1:2379'] } })).toMatch(
      /etcd\.endpoints\.0: /,
    );
    expect(errorOf({ ...minimal, sim: { timeScale: 0 } })).toMatch(/sim\.timeScale: /);
  });

  it('names missing and unknown settings', () => {
    const { advertise: _advertise, ...withoutAdvertise } = minimal;
    expect(errorOf(withoutAdvertise)).toMatch(/advertise: is required/);
    expect(errorOf({ ...minimal, listenAddress: '0.0.0.0:1' })).toMatch(
      /listenAddress: unknown setting/,
    );
    expect(errorOf({ ...minimal, tls: { ...minimal.tls, clientCA: 'x' } })).toMatch(
      /tls\.clientCA: unknown setting/,
    );
  });

  it('names a bad or unknown metrics setting', () => {
    expect(errorOf({ ...minimal, metrics: { listen: '9444' } })).toMatch(
      /metrics\.listen: an endpoint is host:port/,
    );
    expect(errorOf({ ...minimal, metrics: { requireClientCert: 'yes' } })).toMatch(
      /metrics\.requireClientCert: /,
    );
    expect(errorOf({ ...minimal, metrics: { port: 9444 } })).toMatch(
      /metrics\.port: unknown setting/,
    );
  });

  it('has no audit file unless asked, and resolves its path against the configuration directory', () => {
    expect(parseAgentConfig(minimal, '/etc/debvisor').audit).toEqual({ file: undefined });
    expect(
      parseAgentConfig({ ...minimal, audit: { file: 'log/rpc-audit.log' } }, '/etc/debvisor').audit,
    ).toEqual({ file: '/etc/debvisor/log/rpc-audit.log' });
    expect(errorOf({ ...minimal, audit: { file: '' } })).toMatch(
      /audit\.file: a file path is required/,
    );
    expect(errorOf({ ...minimal, audit: { path: 'x' } })).toMatch(/audit\.path: unknown setting/);
  });

  it('refuses a heartbeat interval that is not shorter than the lease', () => {
    expect(errorOf({ ...minimal, leaseTtlSeconds: 5, heartbeatIntervalSeconds: 5 })).toMatch(
      /heartbeatIntervalSeconds: must be shorter than leaseTtlSeconds/,
    );
  });

  it('accepts the qemu, libvirt and sim hypervisors and refuses others', () => {
    for (const driver of ['qemu', 'libvirt', 'sim'])
      expect(
        parseAgentConfig({ ...minimal, hypervisor: { driver } }, '/etc/debvisor').hypervisor.driver,
      ).toBe(driver);
    expect(errorOf({ ...minimal, hypervisor: { driver: 'xen' } })).toMatch(/hypervisor\.driver: /);
    expect(errorOf({ ...minimal, storage: { driver: 'nfs' } })).toMatch(/storage\.driver: /);
  });

  it('accepts rbd storage with Ceph defaults and resolves its conf and keyring paths', () => {
    const defaults = parseAgentConfig({ ...minimal, storage: { driver: 'rbd' } }, '/etc/debvisor');
    expect(defaults.storage.driver).toBe('rbd');
    expect(defaults.rbd).toEqual({
      cluster: 'ceph',
      clientId: 'admin',
      rbdBinary: 'rbd',
      cephBinary: 'ceph',
      radosBinary: 'rados',
      commandTimeoutSeconds: 30,
      peerTimeoutSeconds: 10,
      conf: undefined,
      keyring: undefined,
    });
    const set = parseAgentConfig(
      {
        ...minimal,
        storage: { driver: 'rbd' },
        rbd: {
          cluster: 'east',
          conf: 'ceph/east.conf',
          keyring: '/etc/ceph/east.client.debvisor.keyring',
          clientId: 'debvisor',
          peerTimeoutSeconds: 5,
        },
      },
      '/etc/debvisor',
    );
    expect(set.rbd).toMatchObject({
      cluster: 'east',
      conf: '/etc/debvisor/ceph/east.conf',
      keyring: '/etc/ceph/east.client.debvisor.keyring',
      clientId: 'debvisor',
      peerTimeoutSeconds: 5,
    });
  });

  it('refuses a Ceph cluster name or client id that could be read as an option, and a zero timeout', () => {
    expect(errorOf({ ...minimal, storage: { driver: 'rbd' }, rbd: { cluster: '-c' } })).toMatch(
      /rbd\.cluster: a Ceph cluster name/,
    );
    expect(errorOf({ ...minimal, storage: { driver: 'rbd' }, rbd: { clientId: '--id' } })).toMatch(
      /rbd\.clientId: a cephx client id/,
    );
    expect(
      errorOf({ ...minimal, storage: { driver: 'rbd' }, rbd: { commandTimeoutSeconds: 0 } }),
    ).toMatch(/rbd\.commandTimeoutSeconds/);
    expect(errorOf({ ...minimal, rbd: { pool: 'rbd' } })).toMatch(/rbd\.pool: unknown setting/);
  });

  it('refuses a cookie lifetime over 60 s and an unknown QEMU accelerator', () => {
    expect(errorOf({ ...minimal, migration: { cookieTtlSeconds: 61 } })).toMatch(
      /migration\.cookieTtlSeconds/,
    );
    expect(errorOf({ ...minimal, qemu: { accel: 'hvf' } })).toMatch(/qemu\.accel/);
  });

  it('reports a missing or unparsable file with its path', () => {
    expect(() => loadAgentConfig('/nonexistent/agent.json')).toThrow(
      /cannot read the configuration file \/nonexistent\/agent.json: ENOENT/,
    );
  });
});
