import { describe, expect, it } from 'vitest';
import { parseEndpoint } from './identifiers';
import { permissionAllows, permissionSpecSchema } from './permissions';
import { formatAgentApiKey, parseAgentApiKey } from './api-keys';

describe('cluster permissions', () => {
  it('grants through the exact permission, the service wildcard and *', () => {
    expect(permissionAllows(['vm:instance:start'], 'vm:instance:start')).toBe(true);
    expect(permissionAllows(['vm:*'], 'vm:instance:stop')).toBe(true);
    expect(permissionAllows(['*'], 'node:registry:write')).toBe(true);
  });

  it('does not grant another action, another service or a prefix match', () => {
    expect(permissionAllows(['vm:instance:read'], 'vm:instance:start')).toBe(false);
    expect(permissionAllows(['node:*'], 'vm:instance:read')).toBe(false);
    expect(permissionAllows(['vm'], 'vm:instance:read')).toBe(false);
    expect(permissionAllows([], 'vm:instance:read')).toBe(false);
  });

  it('accepts only well-formed permission specs', () => {
    for (const ok of ['*', 'vm:*', 'vm:instance:start', 'storage:rbd:snapshot'])
      expect(permissionSpecSchema.safeParse(ok).success).toBe(true);
    for (const bad of [
      '',
      'vm',
      'vm:instance',
      'vm:*:start',
      'VM:x:y',
      'vm:instance:start:now',
      '**',
      'vm: x:y',
    ]) {
      expect(permissionSpecSchema.safeParse(bad).success, bad).toBe(false);
    }
  });
});

describe('endpoints and keys', () => {
  it('parses host:port including bracketed IPv6 and refuses junk', () => {
    expect(parseEndpoint('127.0.0.1:9443')).toEqual({ host: '127.0.0.1', port: 9443 });
    expect(parseEndpoint('[::1]:9443')).toEqual({ host: '::1', port: 9443 });
    expect(parseEndpoint('node1.dc-east.example:9443')).toEqual({
      host: 'node1.dc-east.example',
      port: 9443,
    });
    for (const bad of ['node1', 'node1:0', 'node1:70000', '::1:9443', 'a b:1', '-x:1', 'host:port'])
      expect(parseEndpoint(bad), bad).toBeUndefined();
  });

  it('round-trips an agent API key and refuses other shapes', () => {
    const secret = 'A'.repeat(43);
    expect(parseAgentApiKey(formatAgentApiKey('0123456789abcdef', secret))).toEqual({
      id: '0123456789abcdef',
      secret,
    });
    expect(parseAgentApiKey('dvk_0123456789abcdef_short')).toBeUndefined();
    expect(parseAgentApiKey('dvdm_0123456789abcdef_' + secret)).toBeUndefined();
  });
});
