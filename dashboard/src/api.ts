// The dashboard's only way to the server: Kumo's public API (`/api/v1`),
// signed in by the session cookie (HttpOnly: no script here holds a
// credential).
//
// Its types are the server's: `openapi.gen.ts` is generated from
// docs/openapi.json (the server's OpenAPI document, checked in) by
// openapi-typescript on every build, and every call below names its
// operation in it (method and path template), which types its path
// parameters, query, JSON body and answer. Written by hand here is only
// what the document does not describe: the paging loop, the error
// class, and the server-sent events of a log follow.

import type { components, paths } from './openapi.gen';

type Schemas = components['schemas'];
export type RunStatus = Schemas['RunStatus'];
export type Me = Schemas['Me'];
export type Session = Schemas['Session'];
export type HttpCall = Schemas['HttpCall'];
export type HttpAnswer = Schemas['HttpAnswer'];
export type Project = Schemas['Project'];
export type Fn = Schemas['Function'];
export type Settings = Schemas['FunctionSettings'];
export type Deployment = Schemas['Deployment'];
export type Deployed = Schemas['DeployResponse'];
export type Invocation = Schemas['Invocation'];
export type LogLine = Schemas['LogLine'];
export type Metrics = Schemas['FunctionMetrics'];
export type EnvVar = Schemas['EnvVar'];
export type Route = Schemas['Route'];
export type Template = Schemas['TemplateInfo'];
export type SourceLocation = Schemas['SourceLocation'];

type Method = 'get' | 'post' | 'put' | 'patch' | 'delete';
/** The methods the document has for the path template `P`. */
type Methods<P extends keyof paths> = {
  [M in Method]: paths[P][M] extends { responses: object } ? M : never;
}[Method];
/** The operation `M P` of the document. */
type Op<P extends keyof paths, M extends Methods<P>> = Extract<paths[P][M], { responses: object }>;
/** Its path parameters (`{}` when it has none). */
type PathParams<O> = O extends { parameters: { path: infer T } } ? T : Record<string, never>;
/** Its query parameters. */
type Query<O> = O extends { parameters: { query?: infer Q } } ? Q : never;
/** Its JSON request body. */
type JsonBody<O> = O extends { requestBody?: { content: { 'application/json': infer B } } } ? B : never;
/** What a response carries: its JSON, the bytes of another type, or nothing. */
type Content<R> = R extends { content: { 'application/json': infer T } }
  ? T
  : R extends { content: object }
    ? ArrayBuffer
    : void;
/** What a successful answer of `O` carries. */
type Answer<O> = O extends { responses: infer R } ? Content<R[Extract<keyof R, 200 | 201 | 202 | 204>]> : never;

/** An error answer of the API: `{"error": {"code", "message"}}`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly location?: SourceLocation,
  ) {
    super(message);
  }
}

/**
 * The session's CSRF token. The session itself lives in an HttpOnly cookie
 * that no script can read (a function's page included); requests that
 * change something send this token back, which another origin cannot.
 */
let csrf: string | null = null;
/** Whether this browser signed in (a hint, not a credential): without it,
 * a first visit does not ask for a session it cannot have. */
const SIGNED_IN = 'kumo.signed-in';

/** Signs in: the server sets the session cookie; we keep the CSRF token. */
export async function signIn(username: string, password: string, remember: boolean): Promise<Session> {
  const session = await call('post', '/api/v1/auth/session', {}, { body: { username, password, remember } });
  csrf = session.csrf;
  localStorage.setItem(SIGNED_IN, '1');
  return session;
}

/** The session the cookie names, if any (after a reload). */
export async function resume(): Promise<Session | null> {
  if (!localStorage.getItem(SIGNED_IN)) return null;
  try {
    const session = await call('get', '/api/v1/auth/session', {});
    csrf = session.csrf;
    return session;
  } catch {
    localStorage.removeItem(SIGNED_IN);
    return null;
  }
}

/** Revokes the session on the server and clears its cookie. */
export async function signOut() {
  await call('delete', '/api/v1/auth/session', {}).catch(() => {});
  csrf = null;
  localStorage.removeItem(SIGNED_IN);
}

/** Called when the server refuses the token: back to sign-in. */
let onUnauthorized: () => void = () => {};
export function whenUnauthorized(f: () => void) {
  onUnauthorized = f;
}

function authHeaders(extra?: HeadersInit): Headers {
  const headers = new Headers(extra);
  if (csrf) headers.set('x-kumo-csrf', csrf);
  return headers;
}

async function failure(response: Response): Promise<ApiError> {
  let code = 'http_' + response.status;
  let message = `${response.status} ${response.statusText}`;
  let location: SourceLocation | undefined;
  try {
    const body: Partial<Schemas['ErrorBody']> | null = await response.json();
    if (body?.error) {
      code = body.error.code ?? code;
      message = body.error.message ?? message;
      location = body.error.location ?? undefined;
    }
  } catch {
    // Not JSON: the status says it.
  }
  if (response.status === 401 && !response.url.includes('/api/v1/auth/')) {
    localStorage.removeItem(SIGNED_IN);
    onUnauthorized();
  }
  return new ApiError(response.status, code, message, location);
}

/** What a call sends besides its path parameters. */
interface Parts<O> {
  query?: Query<O>;
  body?: JsonBody<O>;
  /** A body of another media type than JSON (a `.tar.gz`). */
  bytes?: { type: string; data: Uint8Array };
}

/**
 * One API request: the operation `method path` of the document, the
 * template's `{parameters}` filled from `params`. The parameters, the
 * query and the body are checked against the document, and the answer
 * has its type (`void` for a `204`, an `ArrayBuffer` for bytes).
 */
async function call<P extends keyof paths, M extends Methods<P>>(
  method: M,
  path: P,
  params: PathParams<Op<P, M>>,
  parts: Parts<Op<P, M>> = {},
): Promise<Answer<Op<P, M>>> {
  const url = address(method, path, params, parts.query);
  const headers = authHeaders();
  let payload: BodyInit | undefined;
  if (parts.bytes) {
    headers.set('content-type', parts.bytes.type);
    payload = parts.bytes.data as unknown as BodyInit;
  } else if (parts.body !== undefined) {
    headers.set('content-type', 'application/json');
    payload = JSON.stringify(parts.body);
  }
  const response = await fetch(url, { method: method.toUpperCase(), headers, body: payload, credentials: 'same-origin' });
  if (!response.ok) throw await failure(response);
  if (response.status === 204) return undefined as Answer<Op<P, M>>;
  const type = response.headers.get('content-type') ?? '';
  return (type.includes('json') ? response.json() : response.arrayBuffer()) as Promise<Answer<Op<P, M>>>;
}

/** The URL of `method path` with these parameters (a query's unset ones left out). */
function address<P extends keyof paths, M extends Methods<P>>(
  _method: M,
  path: P,
  params: PathParams<Op<P, M>>,
  query?: Query<Op<P, M>>,
): string {
  const values = params as Record<string, string | number>;
  const url = path.replace(/\{(\w+)\}/g, (_, name: string) => encodeURIComponent(String(values[name])));
  const search = new URLSearchParams();
  for (const [k, v] of Object.entries(query ?? {})) {
    if (v != null && v !== '') search.set(k, String(v));
  }
  return search.toString() ? `${url}?${search}` : url;
}

/** Every item of a paged list: pages fetched by `page`, following `next`. */
async function all<T>(page: (cursor?: string) => Promise<{ items: T[]; next?: string | null }>): Promise<T[]> {
  const out: T[] = [];
  let cursor: string | undefined;
  do {
    const answer = await page(cursor);
    out.push(...answer.items);
    cursor = answer.next ?? undefined;
  } while (cursor);
  return out;
}

const PROJECT = '/api/v1/projects/{project}';
const FUNCTION = '/api/v1/projects/{project}/functions/{function}';
const DEPLOYMENTS = '/api/v1/projects/{project}/functions/{function}/deployments';
const VERSION = '/api/v1/projects/{project}/functions/{function}/deployments/{version}';

/** The query string of a `.tar.gz` deploy: the code's settings. */
export type DeployQuery = NonNullable<Query<Op<typeof DEPLOYMENTS, 'post'>>>;

export const api = {
  me: () => call('get', '/api/v1/me', {}),
  projects: () => all((cursor) => call('get', '/api/v1/projects', {}, { query: { cursor } })),
  project: (p: string) => call('get', PROJECT, { project: p }),
  createProject: (name: string) => call('post', '/api/v1/projects', {}, { body: { name } }),
  functions: (p: string) =>
    all((cursor) => call('get', '/api/v1/projects/{project}/functions', { project: p }, { query: { cursor } })),
  fn: (p: string, f: string) => call('get', FUNCTION, { project: p, function: f }),
  updateFn: (p: string, f: string, s: Settings) => call('patch', FUNCTION, { project: p, function: f }, { body: s }),
  deleteFn: (p: string, f: string) => call('delete', FUNCTION, { project: p, function: f }),
  deployments: (p: string, f: string) =>
    all((cursor) => call('get', DEPLOYMENTS, { project: p, function: f }, { query: { cursor } })),
  deployment: (p: string, f: string, v: number) => call('get', VERSION, { project: p, function: f, version: v }),
  files: (p: string, f: string, v: number) =>
    call('get', `${VERSION}/files`, { project: p, function: f, version: v }),
  deploy: (p: string, f: string, archive: Uint8Array, query: DeployQuery) =>
    call('post', DEPLOYMENTS, { project: p, function: f }, { query, bytes: { type: 'application/gzip', data: archive } }),
  activate: (p: string, f: string, v: number) =>
    call('post', `${VERSION}/activate`, { project: p, function: f, version: v }),
  invocations: (p: string, f: string, limit = 50) =>
    call('get', `${FUNCTION}/invocations`, { project: p, function: f }, { query: { limit } }).then((r) => r.items),
  http: (p: string, f: string, request: HttpCall) =>
    call('post', `${FUNCTION}/http`, { project: p, function: f }, { body: request }),
  invocation: (id: string) => call('get', '/api/v1/invocations/{id}', { id }),
  replay: (id: string) => call('post', '/api/v1/invocations/{id}/replay', { id }),
  metrics: (p: string, f: string, window: string) =>
    call('get', `${FUNCTION}/metrics`, { project: p, function: f }, { query: { window } }),
  // Variables and routes come in one page (the document gives these lists no cursor).
  env: (p: string) => call('get', `${PROJECT}/env`, { project: p }).then((r) => r.items),
  putEnv: (p: string, key: string, value: string, secret: boolean) =>
    call('put', `${PROJECT}/env/{key}`, { project: p, key }, { body: { value, secret } }),
  deleteEnv: (p: string, key: string) => call('delete', `${PROJECT}/env/{key}`, { project: p, key }),
  routes: (p: string) => call('get', `${PROJECT}/routes`, { project: p }).then((r) => r.items),
  addRoute: (p: string, method: string, path: string, fn: string) =>
    call('post', `${PROJECT}/routes`, { project: p }, { body: { method, path, function: fn } }),
  deleteRoute: (p: string, id: string) => call('delete', `${PROJECT}/routes/{id}`, { project: p, id }),
  templates: () => call('get', '/api/v1/templates', {}),
};

/** Every function of every project the user sees. */
export async function allFunctions(): Promise<{ projects: Project[]; functions: Fn[] }> {
  const projects = await api.projects();
  const lists = await Promise.all(projects.map((p) => api.functions(p.name)));
  return { projects, functions: lists.flat() };
}

/**
 * Follows a function's log lines (server-sent events over fetch, which
 * sends the session cookie as every request does), reconnecting with Last-Event-ID so
 * that no line is lost or repeated, until `signal` aborts.
 */
export async function followLogs(
  p: string,
  f: string,
  onLine: (line: LogLine) => void,
  signal: AbortSignal,
  onState: (connected: boolean) => void = () => {},
) {
  let last: string | null = null;
  while (!signal.aborted) {
    try {
      const headers = authHeaders({ accept: 'text/event-stream' });
      if (last) headers.set('last-event-id', last);
      const url = address('get', `${FUNCTION}/logs`, { project: p, function: f }, { follow: true, since: '1h' });
      const response = await fetch(url, { headers, signal });
      if (!response.ok || !response.body) throw await failure(response);
      onState(true);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const event = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let id: string | null = null;
          let data = '';
          for (const field of event.split('\n')) {
            if (field.startsWith('id:')) id = field.slice(3).trim();
            else if (field.startsWith('data:')) data += field.slice(5).trimStart();
          }
          if (id) last = id;
          if (data) {
            try {
              onLine(JSON.parse(data) as LogLine);
            } catch {
              // A keep-alive or a comment.
            }
          }
        }
      }
    } catch (err) {
      if (signal.aborted) return;
      if (err instanceof ApiError && (err.status === 401 || err.status === 404)) {
        onState(false);
        return;
      }
    }
    onState(false);
    await new Promise((r) => setTimeout(r, 1000));
  }
}
