import { Injectable, RequestMethod } from '@nestjs/common';
import type { INestApplication } from '@nestjs/common';
import { HTTP_CODE_METADATA, METHOD_METADATA } from '@nestjs/common/constants';
import { DiscoveryService, MetadataScanner, ModulesContainer } from '@nestjs/core';
import { DocumentBuilder, SwaggerModule, type OpenAPIObject } from '@nestjs/swagger';
import { cleanupOpenApiDoc } from 'nestjs-zod';
import { SESSION_COOKIE } from '../sessions/session-secrets';

type PathItemObject = OpenAPIObject['paths'][string];
type OperationObject = NonNullable<PathItemObject['get']>;

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options'] as const;

/** The OpenAPI document, generated once from the controllers and their zod DTOs at start-up. */
@Injectable()
export class OpenApiService {
  private document: OpenAPIObject | undefined;

  generate(app: INestApplication, version: string): void {
    const config = new DocumentBuilder()
      .setTitle('DebVisor Datacenter Manager')
      .setDescription(
        'REST API of the DebVisor Datacenter Manager. Every operation needs `Authorization: Bearer <API token>` ' +
          '(or the session cookie of a login) except those marked public; `x-debvisor-privilege` names the ' +
          'privilege and ACL path each one needs. Errors are `{"error": {"code", "message", "traceId"}}`.',
      )
      .setVersion(version)
      .setLicense('AGPL-3.0-or-later', 'https://www.gnu.org/licenses/agpl-3.0.html')
      .addServer('/', 'this manager')
      .addBearerAuth(
        {
          type: 'http',
          scheme: 'bearer',
          bearerFormat: 'dvdm_<16 hex id>_<43 base64url characters>',
          description:
            'An API token `dvdm_…` (not a JWT): shown once when created, stored only as a hash.',
        },
        'bearer',
      )
      .addCookieAuth(
        SESSION_COOKIE,
        {
          type: 'apiKey',
          in: 'cookie',
          description:
            'The session cookie of POST /api/v1/auth/login; writes also need the X-CSRF-Token header.',
        },
        'session',
      )
      .build();
    this.document = finish(
      cleanupOpenApiDoc(SwaggerModule.createDocument(app, config)),
      successStatuses(app),
    );
  }

  get(): OpenAPIObject {
    if (!this.document) throw new Error('the OpenAPI document was not generated at start-up');
    return this.document;
  }
}

/**
 * What every operation carries whatever its controller says: its security (none for public
 * routes, the session cookie alone for routes on the caller's own account, a token or a session
 * otherwise), a summary (from @ApiOperation, else from the controller and handler names), a 4xx
 * answer, and no empty default 2xx left beside the documented one.
 */
function finish(document: OpenAPIObject, statuses: Map<string, number>): OpenAPIObject {
  const schemas = (document.components?.schemas ?? {}) as Record<string, Schema>;
  for (const schema of Object.values(schemas)) toOpenApi30(schema, schemas, 0);
  for (const item of Object.values(document.paths) as PathItemObject[]) {
    for (const method of METHODS) {
      const operation = item[method];
      if (!operation) continue;
      const privilege = (operation as unknown as Record<string, unknown>)[
        'x-debvisor-privilege'
      ] as { public?: boolean; self?: boolean } | undefined;
      operation.security = privilege?.public
        ? []
        : privilege?.self
          ? [{ session: [] }]
          : [{ bearer: [] }, { session: [] }];
      operation.summary ??= summaryOf(operation);
      dropEmptyDefaultSuccess(operation);
      placeSuccess(operation, statuses.get(operation.operationId ?? ''));
      operation.responses['4XX'] ??= {
        description: 'The request was refused: `{"error": {"code", "message", "traceId"}}`',
      };
    }
  }
  return document;
}

type Schema = Record<string, unknown>;

/**
 * What zod's JSON Schema output holds that OpenAPI 3.0 (the version @nestjs/swagger writes) does
 * not: `propertyNames` (a record's key pattern; the server still checks it), and `nullable` beside
 * a lone `allOf` reference without the `type` that 3.0 wants with it.
 */
function toOpenApi30(schema: unknown, schemas: Record<string, Schema>, depth: number): void {
  if (schema === null || typeof schema !== 'object' || depth > 64) return;
  if (Array.isArray(schema)) {
    for (const item of schema) toOpenApi30(item, schemas, depth + 1);
    return;
  }
  const node = schema as Schema;
  delete node.propertyNames;
  if (node.nullable === true && node.type === undefined && Array.isArray(node.allOf)) {
    const [only] = node.allOf as Schema[];
    const target =
      node.allOf.length === 1 && typeof only.$ref === 'string'
        ? schemas[only.$ref.split('/').pop()!]
        : undefined;
    if (target?.type !== undefined) node.type = target.type;
  }
  for (const value of Object.values(node)) toOpenApi30(value, schemas, depth + 1);
}

/**
 * The status each handler answers with on success, by operation id (`Controller_handler`, as
 * @nestjs/swagger names operations): its @HttpCode, else Nest's default (201 for POST, else 200).
 */
function successStatuses(app: INestApplication): Map<string, number> {
  const statuses = new Map<string, number>();
  const scanner = new MetadataScanner();
  for (const { metatype, instance } of new DiscoveryService(
    app.get(ModulesContainer),
  ).getControllers()) {
    if (!metatype || !instance) continue;
    const prototype = Object.getPrototypeOf(instance) as Record<string, unknown>;
    for (const name of scanner.getAllMethodNames(prototype)) {
      const handler = prototype[name] as object;
      const method = Reflect.getMetadata(METHOD_METADATA, handler) as RequestMethod | undefined;
      if (method === undefined) continue;
      const code = Reflect.getMetadata(HTTP_CODE_METADATA, handler) as number | undefined;
      statuses.set(`${metatype.name}_${name}`, code ?? (method === RequestMethod.POST ? 201 : 200));
    }
  }
  return statuses;
}

/**
 * The success answer under the status the route really answers with: a response documented
 * without a status (`default`, as @ZodResponse without one writes it) moves there, and a route that
 * answers 204 says so. A route answering content it does not document is left for the route-walk
 * test to name.
 */
function placeSuccess(operation: OperationObject, status: number | undefined): void {
  if (status === undefined) return;
  const responses = operation.responses as Record<string, unknown>;
  if (Object.keys(responses).some((code) => /^2\d\d$/.test(code))) return;
  if (responses.default) {
    responses[String(status)] = responses.default;
    delete responses.default;
  } else if (status === 204) {
    responses['204'] = { description: 'Done; no content' };
  }
}

/** "RemotesController_listCredentials" → "List credentials (remotes)". */
function summaryOf(operation: OperationObject): string {
  const [controller = '', handler = ''] = (operation.operationId ?? '').split('_');
  const words = handler.replace(/([a-z0-9])([A-Z])/g, '$1 $2').toLowerCase();
  const area = controller
    .replace(/Controller$/, '')
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .toLowerCase();
  const sentence = words.charAt(0).toUpperCase() + words.slice(1);
  return area ? `${sentence} (${area})` : sentence || 'Operation';
}

/**
 * @nestjs/swagger adds an empty `200`/`201` to an operation that declares its answer under another
 * status (a 202 or a 204): the generated client would then type the answer as `never`.
 */
function dropEmptyDefaultSuccess(operation: OperationObject): void {
  const success = Object.keys(operation.responses).filter((status) => /^2\d\d$/.test(status));
  if (success.length < 2) return;
  for (const status of success) {
    const answer = operation.responses[status] as { content?: unknown; description?: string };
    if (!answer.content && !answer.description && status !== '204')
      delete operation.responses[status];
  }
}
