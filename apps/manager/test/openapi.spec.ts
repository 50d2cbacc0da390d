import { cleanupTempDirs } from '@debvisor/testing';
import { createConfig, lintFromString } from '@redocly/openapi-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  startTestDatabases,
  startTestManager,
  type Json,
  type TestDatabases,
  type TestManager,
} from './manager-harness';
import { registeredRoutes, type RegisteredRoute } from './routes';

/**
 * The OpenAPI document the manager serves (issue 14, weakness 17 and the typed web client): every
 * registered route is documented with a summary, its success answer and its security, and the
 * document lints clean with Redocly's recommended rules. Routes are walked generically, so a new
 * route is checked without touching this file.
 */
let dbs: TestDatabases;
let m: TestManager;
let document: Json;

beforeAll(async () => {
  dbs = await startTestDatabases();
  m = await startTestManager({ databaseUrl: await dbs.fresh() });
  const answer = await m.api('GET', '/api/v1/openapi.json');
  expect(answer.status).toBe(200);
  document = answer.body;
});
afterAll(async () => {
  await m?.stop();
  await dbs?.stop();
  cleanupTempDirs();
});

function operationOf(route: RegisteredRoute): Json {
  return document.paths[route.path.replace(/:([A-Za-z]+)/g, '{$1}')]?.[route.method.toLowerCase()];
}

function documentedRoutes(): RegisteredRoute[] {
  const routes = registeredRoutes(m.manager.app).filter((r) => r.path !== '/api/v1/openapi.json');
  expect(routes.length).toBeGreaterThan(50);
  return routes;
}

describe('the OpenAPI document', () => {
  it('describes API tokens as what they are, not JWTs', () => {
    const schemes = document.components.securitySchemes;
    expect(schemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer' });
    expect(schemes.bearer.bearerFormat).not.toBe('JWT');
    expect(schemes.bearer.description).toContain('dvdm_');
    expect(schemes.session).toMatchObject({ type: 'apiKey', in: 'cookie' });
  });

  it('gives every operation a summary and an operation id', () => {
    const missing = documentedRoutes()
      .filter((r) => !operationOf(r)?.summary || !operationOf(r)?.operationId)
      .map((r) => `${r.method} ${r.path}`);
    expect(missing).toEqual([]);
  });

  it("documents every route's success answer: a schema, 204 for none, or the redirect it answers", () => {
    const missing: string[] = [];
    for (const route of documentedRoutes()) {
      const responses = (operationOf(route)?.responses ?? {}) as Record<string, Json>;
      const success = Object.entries(responses).filter(([status]) => /^2\d\d$/.test(status));
      if (success.length === 0 && responses['302']) continue;
      const described =
        success.length > 0 &&
        success.every(
          ([status, answer]) =>
            status === '204' ||
            Object.values((answer.content ?? {}) as Record<string, Json>).some((c) => c.schema),
        );
      if (!described) missing.push(`${route.method} ${route.path}`);
    }
    expect(missing).toEqual([]);
  });

  it('declares the security of every operation: none for public routes, a token or a session otherwise', () => {
    const wrong: string[] = [];
    for (const route of documentedRoutes()) {
      const security = operationOf(route)?.security as Record<string, string[]>[] | undefined;
      const schemes = (security ?? []).flatMap((s) => Object.keys(s)).sort();
      const expected = route.isPublic
        ? []
        : route.selfService
          ? ['session']
          : ['bearer', 'session'];
      if (!security || JSON.stringify(schemes) !== JSON.stringify(expected))
        wrong.push(`${route.method} ${route.path}: ${JSON.stringify(security)}`);
    }
    expect(wrong).toEqual([]);
  });

  it("lints clean with Redocly's recommended rules", async () => {
    const config = await createConfig({ extends: ['recommended'] });
    const problems = await lintFromString({
      source: JSON.stringify(document),
      absoluteRef: 'openapi.json',
      config,
    });
    // The OpenID login routes answer a redirect to the provider and back, never a 2xx.
    const redirects = ['/api/v1/auth/oidc/{realm}/login', '/api/v1/auth/oidc/callback'];
    const expected = (p: (typeof problems)[number]) =>
      p.ruleId === 'operation-2xx-response' &&
      redirects.some(
        (path) =>
          p.location[0]?.pointer === `#/paths/${path.replace(/\//g, '~1')}/get/responses` &&
          document.paths[path].get.responses['302'],
      );
    expect(
      problems
        .filter((p) => !expected(p))
        .map((p) => `${p.severity} ${p.ruleId}: ${p.message} (${p.location[0]?.pointer})`),
    ).toEqual([]);
  });
});
