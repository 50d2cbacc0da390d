import { RequestMethod, type INestApplication } from '@nestjs/common';
import { METHOD_METADATA, PATH_METADATA } from '@nestjs/common/constants';
import { DiscoveryService, MetadataScanner, ModulesContainer, Reflector } from '@nestjs/core';
import { AUDITED_METADATA, type AuditedRoute } from '../src/audit/audited.decorator';
import {
  PRIVILEGE_METADATA,
  PUBLIC_METADATA,
  SELF_SERVICE_METADATA,
  type RouteRequirement,
} from '../src/authz/privilege.decorator';

export interface RegisteredRoute {
  readonly method: string;
  /** Express style: /api/v1/remotes/:remote */
  readonly path: string;
  readonly controller: string;
  readonly handler: string;
  readonly requirement: RouteRequirement | undefined;
  readonly isPublic: boolean;
  /** A route on the caller's own account (@SelfService): any logged-in user, sessions only. */
  readonly selfService: boolean;
  /** What the audit interceptor records for it (mutating routes). */
  readonly audited: AuditedRoute | undefined;
}

/** Every route the application registered, found through Nest's discovery service. */
export function registeredRoutes(app: INestApplication): RegisteredRoute[] {
  const discovery = new DiscoveryService(app.get(ModulesContainer));
  const scanner = new MetadataScanner();
  const reflector = new Reflector();
  const routes: RegisteredRoute[] = [];
  for (const wrapper of discovery.getControllers()) {
    const { metatype, instance } = wrapper;
    if (!metatype || !instance) continue;
    const base = normalise(
      Reflect.getMetadata(PATH_METADATA, metatype) as string | string[] | undefined,
    );
    const prototype = Object.getPrototypeOf(instance) as object;
    for (const name of scanner.getAllMethodNames(prototype)) {
      const handler = (prototype as Record<string, unknown>)[name] as (
        ...args: unknown[]
      ) => unknown;
      const path = Reflect.getMetadata(PATH_METADATA, handler) as string | string[] | undefined;
      const method = Reflect.getMetadata(METHOD_METADATA, handler) as RequestMethod | undefined;
      if (path === undefined || method === undefined) continue;
      const targets = [handler, metatype];
      routes.push({
        method: RequestMethod[method],
        path: `/${[base, normalise(path)].filter(Boolean).join('/')}`,
        controller: metatype.name,
        handler: name,
        requirement: reflector.getAllAndOverride<RouteRequirement | undefined>(
          PRIVILEGE_METADATA,
          targets,
        ),
        isPublic:
          reflector.getAllAndOverride<boolean | undefined>(PUBLIC_METADATA, targets) === true,
        selfService:
          reflector.getAllAndOverride<boolean | undefined>(SELF_SERVICE_METADATA, targets) === true,
        audited: reflector.getAllAndOverride<AuditedRoute | undefined>(AUDITED_METADATA, targets),
      });
    }
  }
  return routes;
}

function normalise(path: string | string[] | undefined): string {
  const value = Array.isArray(path) ? path[0] : path;
  return (value ?? '').replace(/^\/+|\/+$/g, '');
}

/** The route path with sample values for its parameters. */
export function samplePath(path: string): string {
  const samples: Record<string, string> = {
    remote: 'sample-remote',
    vmid: '3f1d2c4b-5a6e-4f70-8a9b-0c1d2e3f4a5b',
    id: '0b7e6c2a-1d3f-4e5a-9b8c-7d6e5f4a3b2c',
    name: 'sample',
  };
  return path.replace(/:([A-Za-z]+)/g, (_, name: string) => samples[name] ?? 'x');
}
