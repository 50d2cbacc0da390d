import { createCa, issueCertificate } from '@debvisor/pki';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, request as httpsRequest, type Server } from 'node:https';
import { freePort } from './ports';

export interface OidcTestClient {
  clientId: string;
  clientSecret: string;
  redirectUris: string[];
}

export interface OidcTestAccount {
  /** The `sub` claim (default: the login). */
  sub?: string;
  /** e.g. preferred_username, name, email, email_verified, groups; read anew for every token. */
  claims: Record<string, unknown>;
}

export interface OidcProviderOptions {
  clients: OidcTestClient[];
  /** By login name. Mutable after start: claims are read when a token is issued. */
  accounts: Record<string, OidcTestAccount>;
  /** Claims per scope, merged over the defaults (profile: preferred_username, name …; email; groups: groups). */
  scopeClaims?: Record<string, string[]>;
  /**
   * true (default): the ID token carries every claim of the granted scopes. false: it carries only
   * sub and the protocol claims, the rest comes from the userinfo endpoint (conformIdTokenClaims).
   */
  claimsInIdToken?: boolean;
}

export interface OidcProviderInstance {
  /** https://127.0.0.1:<port> */
  readonly issuer: string;
  /** The throw-away CA that signed the issuer's TLS certificate. */
  readonly caPem: string;
  /** The same object as options.accounts: change claims here to change the next tokens. */
  readonly accounts: Record<string, OidcTestAccount>;
  /**
   * Drives the provider's login and consent pages like a browser (fresh cookie jar, redirects
   * followed by hand, forms submitted) for `login`, starting at `authorizationUrl`. Answers the URL
   * the provider finally redirects to on the client's side (its redirect_uri with code and state,
   * or with an error) without requesting it.
   */
  login(authorizationUrl: string, login: string): Promise<string>;
  stop(): Promise<void>;
}

/** The part of node-oidc-provider's API used here (the package ships no type declarations). */
interface ProviderAccount {
  accountId: string;
  claims(): Promise<Record<string, unknown>>;
}
interface ProviderInstance {
  callback(): (req: IncomingMessage, res: ServerResponse) => void;
}
type ProviderConstructor = new (
  issuer: string,
  configuration: Record<string, unknown>,
) => ProviderInstance;

const DEFAULT_SCOPE_CLAIMS: Record<string, string[]> = {
  profile: ['preferred_username', 'name', 'given_name', 'family_name'],
  email: ['email', 'email_verified'],
  groups: ['groups'],
};

const running = new Set<Server>();
process.once('exit', () => {
  for (const server of running) server.closeAllConnections();
});

/**
 * A real OpenID provider (node-oidc-provider, its development login and consent pages) over HTTPS
 * on a free loopback port, with a certificate from a throw-away CA: authorization code flow, PKCE
 * (S256) required, ID tokens carrying the claims of the granted scopes.
 */
export async function startOidcProvider(
  options: OidcProviderOptions,
): Promise<OidcProviderInstance> {
  // oidc-provider is ESM-only; this import() stays a real dynamic import in the CommonJS build.
  const { Provider } = (await import('oidc-provider' as string)) as {
    Provider: ProviderConstructor;
  };
  const ca = await createCa('DebVisor test OpenID provider CA');
  const tls = await issueCertificate(ca, {
    commonName: 'localhost',
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1'],
    usage: 'server',
  });
  const port = await freePort();
  const issuer = `https://127.0.0.1:${port}`;
  const accounts = options.accounts;
  const accountIdOf = (login: string) => accounts[login]?.sub ?? login;

  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const signingKey = {
    ...privateKey.export({ format: 'jwk' }),
    kid: 'test-signing-key',
    use: 'sig',
    alg: 'RS256',
  };

  const provider = new Provider(issuer, {
    clients: options.clients.map((client) => ({
      client_id: client.clientId,
      client_secret: client.clientSecret,
      redirect_uris: client.redirectUris,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    })),
    claims: { openid: ['sub'], ...DEFAULT_SCOPE_CLAIMS, ...options.scopeClaims },
    conformIdTokenClaims: options.claimsInIdToken === false,
    pkce: { required: () => true },
    features: { devInteractions: { enabled: true } },
    jwks: { keys: [signingKey] },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    ttl: {
      AuthorizationCode: 60,
      AccessToken: 600,
      IdToken: 600,
      Interaction: 600,
      Session: 3600,
      Grant: 3600,
    },
    async findAccount(_ctx: unknown, id: string): Promise<ProviderAccount | undefined> {
      const login = Object.keys(accounts).find((name) => accountIdOf(name) === id);
      if (login === undefined) return undefined;
      return { accountId: id, claims: async () => ({ ...accounts[login]!.claims, sub: id }) };
    },
  });

  const server = createServer({ key: tls.keyPem, cert: tls.certPem }, provider.callback());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  running.add(server);

  const redirectUris = options.clients.flatMap((client) => client.redirectUris);
  let stopped: Promise<void> | undefined;

  return {
    issuer,
    caPem: ca.certPem,
    accounts,
    login: async (authorizationUrl, login) => {
      if (!(login in accounts)) throw new Error(`oidc-provider: no account with login ${login}`);
      return driveLogin(new URL(authorizationUrl), accountIdOf(login), {
        origin: new URL(issuer).origin,
        ca: ca.certPem,
        redirectUris,
      });
    },
    stop: () =>
      (stopped ??= new Promise<void>((resolve) => {
        running.delete(server);
        server.close(() => resolve());
        server.closeAllConnections();
      })),
  };
}

interface Browser {
  origin: string;
  ca: string;
  redirectUris: string[];
}

async function driveLogin(start: URL, accountId: string, browser: Browser): Promise<string> {
  const jar = new CookieJar();
  let url = start;
  let method: 'GET' | 'POST' = 'GET';
  let form: URLSearchParams | undefined;
  for (let step = 0; step < 20; step++) {
    const response = await send(url, method, form, jar, browser.ca);
    if (response.status >= 300 && response.status < 400 && response.location) {
      const next = new URL(response.location, url);
      const bare = `${next.origin}${next.pathname}`;
      if (next.origin !== browser.origin || browser.redirectUris.includes(bare)) return next.href;
      [url, method, form] = [next, 'GET', undefined];
      continue;
    }
    const page = response.status === 200 ? parseForm(response.body) : undefined;
    if (!page)
      throw new Error(
        `oidc-provider: unexpected answer ${response.status} at ${url.pathname}:\n${response.body.slice(0, 2000)}`,
      );
    if (page.fields.get('prompt') === 'login') {
      page.fields.set('login', accountId);
      page.fields.set('password', 'any');
    }
    [url, method, form] = [new URL(page.action, url), 'POST', page.fields];
  }
  throw new Error('oidc-provider: too many steps before the redirect to the client');
}

interface Answer {
  status: number;
  location: string | undefined;
  body: string;
}

function send(
  url: URL,
  method: 'GET' | 'POST',
  form: URLSearchParams | undefined,
  jar: CookieJar,
  ca: string,
): Promise<Answer> {
  const body = form ? Buffer.from(form.toString()) : undefined;
  const headers: Record<string, string> = { accept: 'text/html' };
  const cookie = jar.header(url);
  if (cookie) headers.cookie = cookie;
  if (body) {
    headers['content-type'] = 'application/x-www-form-urlencoded';
    headers['content-length'] = String(body.length);
  }
  return new Promise((resolve, reject) => {
    const request = httpsRequest(
      url,
      { method, headers, ca, agent: false, signal: AbortSignal.timeout(10_000) },
      (response) => {
        jar.store(url, response.headers['set-cookie'] ?? []);
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.once('error', reject);
        response.once('end', () =>
          resolve({
            status: response.statusCode ?? 0,
            location: response.headers.location,
            body: Buffer.concat(chunks).toString('utf8'),
          }),
        );
      },
    );
    request.once('error', reject);
    request.end(body);
  });
}

/** The first form posting somewhere, with its inputs' names and values (the dev login and consent pages). */
function parseForm(html: string): { action: string; fields: URLSearchParams } | undefined {
  for (const [, attributes, inner] of html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)) {
    const attrs = parseAttributes(attributes!);
    if ((attrs.get('method') ?? 'get').toLowerCase() !== 'post' || !attrs.get('action')) continue;
    const fields = new URLSearchParams();
    for (const [, input] of inner!.matchAll(/<input\b([^>]*)>/gi)) {
      const inputAttrs = parseAttributes(input!);
      const name = inputAttrs.get('name');
      if (name) fields.append(name, inputAttrs.get('value') ?? '');
    }
    return { action: attrs.get('action')!, fields };
  }
  return undefined;
}

function parseAttributes(source: string): Map<string, string> {
  const attributes = new Map<string, string>();
  for (const [, name, doubleQuoted, singleQuoted] of source.matchAll(
    /([\w-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/g,
  )) {
    attributes.set(name!.toLowerCase(), decodeEntities(doubleQuoted ?? singleQuoted ?? ''));
  }
  return attributes;
}

function decodeEntities(text: string): string {
  return text
    .replace(/&#x([0-9a-f]+);/gi, (_, hex: string) => String.fromCodePoint(parseInt(hex, 16)))
    .replace(/&#(\d+);/g, (_, dec: string) => String.fromCodePoint(Number(dec)))
    .replace(/&quot;/g, '"')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

/** Just enough of a browser's cookie store for one origin: names, paths, expiry by Max-Age/Expires. */
class CookieJar {
  private readonly cookies = new Map<string, { name: string; value: string; path: string }>();

  store(url: URL, setCookies: string[]): void {
    for (const line of setCookies) {
      const [pair, ...attributes] = line.split(';');
      const separator = pair!.indexOf('=');
      if (separator <= 0) continue;
      const name = pair!.slice(0, separator).trim();
      const value = pair!.slice(separator + 1).trim();
      let path = url.pathname.replace(/\/[^/]*$/, '') || '/';
      let expired = false;
      for (const attribute of attributes) {
        const [key = '', attributeValue = ''] = attribute.split('=').map((part) => part.trim());
        const lower = key.toLowerCase();
        if (lower === 'path' && attributeValue.startsWith('/')) path = attributeValue;
        if (lower === 'max-age' && Number(attributeValue) <= 0) expired = true;
        if (lower === 'expires' && Date.parse(attributeValue) <= Date.now()) expired = true;
      }
      const key = `${name};${path}`;
      if (expired) this.cookies.delete(key);
      else this.cookies.set(key, { name, value, path });
    }
  }

  header(url: URL): string {
    const matching = [...this.cookies.values()].filter(
      ({ path }) =>
        url.pathname === path || url.pathname.startsWith(path.endsWith('/') ? path : `${path}/`),
    );
    return matching.map(({ name, value }) => `${name}=${value}`).join('; ');
  }
}
