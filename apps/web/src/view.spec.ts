import { describe, expect, it } from 'vitest';
import { href, routeFromHash, type Route } from './view';

describe('routes from the location hash', () => {
  it.each<[string, Route]>([
    ['', { page: 'dashboard' }],
    ['#/', { page: 'dashboard' }],
    ['#/nowhere', { page: 'dashboard' }],
    ['#/account', { page: 'account' }],
    ['#/account/', { page: 'account' }],
    ['#/resources', { page: 'resources', q: '' }],
    [
      '#/resources?q=remote%3Adc-east+status%3Arunning',
      { page: 'resources', q: 'remote:dc-east status:running' },
    ],
    ['#/resources/dc-east/0b6c', { page: 'vm', remote: 'dc-east', vmid: '0b6c' }],
    ['#/migrate/dc-east/0b6c', { page: 'migrate', remote: 'dc-east', vmid: '0b6c' }],
    ['#/migrate/dc-east', { page: 'dashboard' }],
    ['#/console/dc-east/0b6c', { page: 'console', remote: 'dc-east', vmid: '0b6c' }],
    ['#/console/dc-east', { page: 'dashboard' }],
    ['#/tasks', { page: 'tasks' }],
    ['#/tasks/5d1e', { page: 'task', id: '5d1e' }],
    ['#/audit', { page: 'audit' }],
    ['#/replication', { page: 'replication' }],
    ['#/ha', { page: 'ha' }],
    ['#/admin', { page: 'admin', section: 'remotes' }],
    ['#/admin/acl', { page: 'admin', section: 'acl' }],
    ['#/admin/nope', { page: 'admin', section: 'remotes' }],
    ['#/resources/%E0%A4%A', { page: 'dashboard' }],
  ])('%j is %j', (hash, route) => {
    expect(routeFromHash(hash)).toEqual(route);
  });

  it.each<Route>([
    { page: 'dashboard' },
    { page: 'resources', q: 'name:"web 1" remote:dc-east' },
    { page: 'vm', remote: 'dc/east', vmid: 'a b' },
    { page: 'migrate', remote: 'dc-west', vmid: 'x' },
    { page: 'console', remote: 'dc/west', vmid: 'x y' },
    { page: 'task', id: 't1' },
    { page: 'admin', section: 'tokens' },
    { page: 'replication' },
    { page: 'ha' },
    { page: 'account' },
  ])('maps the link of %j back to it', (route) => {
    expect(routeFromHash(href(route))).toEqual(route);
  });
});
