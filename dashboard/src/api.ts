// The dashboard's only way to the server: Kumo's public API (`/api/v1`),
// signed in by the session cookie (HttpOnly: no script here holds a
// credential). The types mirror the server's (kumo-types).

export type RunStatus =
  | 'queued' | 'running' | 'succeeded' | 'failed' | 'timed_out' | 'out_of_memory' | 'crashed';

export interface Me { id: string; username: string; is_admin: boolean }
export interface Session { username: string; is_admin: boolean; csrf: string }
export interface HttpCall {
  method: string;
  path: string;
  query: string;
  headers: [string, string][];
  body: string;
}
export interface HttpAnswer {
  status: number;
  headers: [string, string][];
  body: string;
  isBase64Encoded: boolean;
  invocation_id: string | null;
}
export interface Project { name: string; description: string; created_at: number }
export interface Activity {
  last_call_at: number | null;
  last_status: RunStatus | null;
  calls_last_hour: number;
  errors_last_hour: number;
}
export interface Fn {
  name: string;
  project: string;
  runtime: string;
  timeout_ms: number;
  memory_mb: number;
  concurrency: number;
  cpu_millicores: number;
  pids: number;
  tmp_mb: number;
  visibility: 'public' | 'private';
  active_version: number | null;
  url: string;
  created_at: number;
  updated_at: number;
  instances?: { busy: number; idle: number };
  activity?: Activity;
}
export interface Settings {
  timeout_ms?: number;
  memory_mb?: number;
  concurrency?: number;
  cpu_millicores?: number;
  pids?: number;
  tmp_mb?: number;
  visibility?: 'public' | 'private';
}
export interface Deployment {
  version: number;
  runtime: string;
  entrypoint: string;
  handler: string;
  content_hash: string;
  file_count: number;
  size_bytes: number;
  active: boolean;
  created_at: number;
  status: 'building' | 'ready' | 'failed';
  error: string | null;
  layer: string | null;
  build_log?: string | null;
}
export interface Deployed {
  function: string;
  version: number;
  content_hash: string;
  status: 'active' | 'building' | 'unchanged';
  url: string;
}
export interface RunError { type: string; message: string; traceback: string }
export interface Invocation {
  id: string;
  project: string;
  function: string;
  version: number | null;
  trigger: 'http' | 'api' | 'async' | 'cron' | 'replay';
  status: RunStatus;
  input: unknown;
  output: unknown;
  /** The stored copy was cut: `input`/`output` is `{truncated, size_bytes, preview}`. */
  input_truncated: boolean;
  output_truncated: boolean;
  error: RunError | null;
  logs: string;
  logs_truncated: boolean;
  duration_ms: number;
  cold_start: boolean;
  cpu_ms: number | null;
  peak_memory_bytes: number | null;
  created_at: number;
  finished_at: number | null;
}
export interface LogLine { id: number; line: string; run_id: string; stream: 'stdout' | 'stderr'; time: number }
export interface Percentiles { p50: number | null; p95: number | null; p99: number | null }
export interface MetricsPoint {
  time: number;
  calls: number;
  errors: number;
  by_status: Record<string, number>;
  cold_starts: number;
  duration_ms: Percentiles;
  cpu_ms: number;
  peak_memory_bytes: number;
}
export interface Metrics { window_secs: number; bucket_secs: number; totals: MetricsPoint; series: MetricsPoint[] }
export interface EnvVar { key: string; value: string; secret: boolean; created_at: number; updated_at: number }
export interface Route { id: string; method: string; path: string; function: string; url: string; created_at: number }
export interface Template {
  name: string;
  about: string;
  function: string;
  runtime: string;
  entrypoint: string;
  settings: Settings;
  routes: { method: string; path: string }[];
  secrets: string[];
  files: Record<string, string>;
}
export interface SourceLocation { file: string; line: number; column?: number }
interface Page<T> { items: T[]; next: string | null }

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
  const session = await request<Session>('POST', '/api/v1/auth/session', { username, password, remember });
  csrf = session.csrf;
  localStorage.setItem(SIGNED_IN, '1');
  return session;
}

/** The session the cookie names, if any (after a reload). */
export async function resume(): Promise<Session | null> {
  if (!localStorage.getItem(SIGNED_IN)) return null;
  try {
    const session = await request<Session>('GET', '/api/v1/auth/session');
    csrf = session.csrf;
    return session;
  } catch {
    localStorage.removeItem(SIGNED_IN);
    return null;
  }
}

/** Revokes the session on the server and clears its cookie. */
export async function signOut() {
  await request<void>('DELETE', '/api/v1/auth/session').catch(() => {});
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
    const body = await response.json();
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

/** One API request; JSON in and out. */
export async function request<T>(
  method: string,
  path: string,
  body?: unknown,
  init: RequestInit = {},
): Promise<T> {
  const headers = authHeaders(init.headers);
  let payload: BodyInit | undefined;
  if (body instanceof Uint8Array) {
    payload = body as unknown as BodyInit;
  } else if (body !== undefined) {
    headers.set('content-type', 'application/json');
    payload = JSON.stringify(body);
  }
  const response = await fetch(path, { ...init, method, headers, body: payload, credentials: 'same-origin' });
  if (!response.ok) throw await failure(response);
  if (response.status === 204) return undefined as T;
  const type = response.headers.get('content-type') ?? '';
  return (type.includes('json') ? response.json() : response.arrayBuffer()) as Promise<T>;
}

async function all<T>(path: string): Promise<T[]> {
  const out: T[] = [];
  let cursor: string | null = null;
  do {
    const sep = path.includes('?') ? '&' : '?';
    const url: string = cursor ? `${path}${sep}cursor=${encodeURIComponent(cursor)}` : path;
    const page: Page<T> = await request<Page<T>>('GET', url);
    out.push(...page.items);
    cursor = page.next;
  } while (cursor);
  return out;
}

const e = encodeURIComponent;
const fnPath = (p: string, f: string) => `/api/v1/projects/${e(p)}/functions/${e(f)}`;

export const api = {
  me: () => request<Me>('GET', '/api/v1/me'),
  projects: () => all<Project>('/api/v1/projects'),
  project: (p: string) => request<Project>('GET', `/api/v1/projects/${e(p)}`),
  createProject: (name: string) => request<Project>('POST', '/api/v1/projects', { name }),
  functions: (p: string) => all<Fn>(`/api/v1/projects/${e(p)}/functions`),
  fn: (p: string, f: string) => request<Fn>('GET', fnPath(p, f)),
  updateFn: (p: string, f: string, s: Settings) => request<Fn>('PATCH', fnPath(p, f), s),
  deleteFn: (p: string, f: string) => request<void>('DELETE', fnPath(p, f)),
  deployments: (p: string, f: string) => all<Deployment>(`${fnPath(p, f)}/deployments`),
  deployment: (p: string, f: string, v: number) =>
    request<Deployment>('GET', `${fnPath(p, f)}/deployments/${v}`),
  files: (p: string, f: string, v: number) =>
    request<ArrayBuffer>('GET', `${fnPath(p, f)}/deployments/${v}/files`),
  deploy: (p: string, f: string, archive: Uint8Array, query: Record<string, string | number | undefined>) => {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== '') q.set(k, String(v));
    return request<Deployed>('POST', `${fnPath(p, f)}/deployments?${q}`, archive, {
      headers: { 'content-type': 'application/gzip' },
    });
  },
  activate: (p: string, f: string, v: number) =>
    request<unknown>('POST', `${fnPath(p, f)}/deployments/${v}/activate`),
  invocations: (p: string, f: string, limit = 50) =>
    request<Page<Invocation>>('GET', `${fnPath(p, f)}/invocations?limit=${limit}`).then((r) => r.items),
  http: (p: string, f: string, call: HttpCall) => request<HttpAnswer>('POST', `${fnPath(p, f)}/http`, call),
  invocation: (id: string) => request<Invocation>('GET', `/api/v1/invocations/${e(id)}`),
  replay: (id: string) => request<Invocation>('POST', `/api/v1/invocations/${e(id)}/replay`),
  metrics: (p: string, f: string, window: string) =>
    request<Metrics>('GET', `${fnPath(p, f)}/metrics?window=${e(window)}`),
  env: (p: string) => all<EnvVar>(`/api/v1/projects/${e(p)}/env`),
  putEnv: (p: string, key: string, value: string, secret: boolean) =>
    request<EnvVar>('PUT', `/api/v1/projects/${e(p)}/env/${e(key)}`, { value, secret }),
  deleteEnv: (p: string, key: string) => request<void>('DELETE', `/api/v1/projects/${e(p)}/env/${e(key)}`),
  routes: (p: string) => all<Route>(`/api/v1/projects/${e(p)}/routes`),
  addRoute: (p: string, method: string, path: string, fn: string) =>
    request<Route>('POST', `/api/v1/projects/${e(p)}/routes`, { method, path, function: fn }),
  deleteRoute: (p: string, id: string) => request<void>('DELETE', `/api/v1/projects/${e(p)}/routes/${e(id)}`),
  templates: () => request<Template[]>('GET', '/api/v1/templates'),
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
      const response = await fetch(`${fnPath(p, f)}/logs?follow=true&since=1h`, { headers, signal });
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
