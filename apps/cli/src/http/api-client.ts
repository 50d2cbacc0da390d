import createClient from 'openapi-fetch';
import type { components, paths } from '../../../web/src/api/schema';
import { CliError } from '../cli-error';
import type { ManagerTransport } from './manager-transport';

/**
 * The manager's API schemas by name: the types `npm run gen:api` writes from the OpenAPI document
 * for the web UI, so that a new route is typed for both.
 */
export type Schemas = components['schemas'];

/** The typed client of the manager's REST API over the CLI's transport. */
export function createApiClient(transport: ManagerTransport) {
  return createClient<paths>({
    baseUrl: transport.server,
    fetch: (request) => transport.fetch(request),
    Request: transport.Request,
  });
}
export type ApiClient = ReturnType<typeof createApiClient>;

/**
 * The data of a typed client call, or a CliError carrying the manager's message, code and trace
 * id: `await unwrap(api.GET('/api/v1/remotes'))`.
 */
export async function unwrap<T>(
  call: Promise<{ data?: T; error?: unknown; response: Response }>,
): Promise<T> {
  const { data, error, response } = await call;
  if (!response.ok) throw CliError.fromAnswer(response.status, error);
  return data as T;
}
