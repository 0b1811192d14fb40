import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { api, type Fn, type Invocation } from '../api';
import { deploy, type DeployPhase } from '../deploy';
import { Editor, type Problem } from '../editor';
import { asText, readTarGz, type TarFile } from '../tar';
import { ErrorNote, Spinner, StatusBadge, ms, pretty, prettyBody } from '../ui';

interface Code {
  runtime: string;
  entrypoint: string;
  handler: string;
}

const STARTERS: Record<string, [string, string]> = {
  python: ['main.py', 'def handler(event, context):\n    return {"hello": "world"}\n'],
  node: ['index.mjs', "export default async (event, context) => ({ hello: 'world' });\n"],
};

/** The editor with its files and the Deploy button, beside the test panel. */
/** `onChanged` is called after a deploy or a test call (the function's state moved). */
export function CodeTab({ f, onChanged }: { f: Fn; onChanged: () => void }) {
  const [files, setFiles] = useState<TarFile[] | null>(null);
  const [texts, setTexts] = useState<Record<string, string>>({});
  const [saved, setSaved] = useState<Record<string, string>>({});
  const [code, setCode] = useState<Code>({ runtime: f.runtime, entrypoint: STARTERS[f.runtime]?.[0] ?? 'main.py', handler: 'handler' });
  const [open, setOpen] = useState<string>('');
  const [phase, setPhase] = useState<DeployPhase | null>(null);
  const [problem, setProblem] = useState<{ file: string; problem: Problem } | null>(null);
  const [error, setError] = useState<unknown>(null);
  const loadedVersion = useRef<number | null | undefined>(undefined);

  async function load(version: number | null) {
    loadedVersion.current = version;
    try {
      let list: TarFile[];
      if (version == null) {
        const [path, text] = STARTERS[f.runtime] ?? STARTERS.python;
        list = [{ path, data: new TextEncoder().encode(text), executable: false }];
      } else {
        const [d, archive] = await Promise.all([api.deployment(f.project, f.name, version), api.files(f.project, f.name, version)]);
        setCode({ runtime: d.runtime, entrypoint: d.entrypoint, handler: d.handler });
        list = await readTarGz(archive);
      }
      const t: Record<string, string> = {};
      for (const file of list) {
        const text = asText(file.data);
        if (text != null) t[file.path] = text;
      }
      setFiles(list);
      setTexts(t);
      setSaved(t);
      setOpen((o) => (o && o in t ? o : (Object.keys(t).find((p) => p === code.entrypoint) ?? Object.keys(t)[0] ?? '')));
    } catch (e) {
      setError(e);
    }
  }

  useEffect(() => {
    if (loadedVersion.current === undefined) load(f.active_version ?? null);
  }, [f.active_version]);

  const dirty = useMemo(
    () => Object.keys(texts).length !== Object.keys(saved).length || Object.entries(texts).some(([p, t]) => saved[p] !== t),
    [texts, saved],
  );
  const busy = phase?.phase === 'validating' || phase?.phase === 'building';

  async function run() {
    if (!files || busy) return;
    setProblem(null);
    const encoder = new TextEncoder();
    const out: TarFile[] = [];
    for (const path of Object.keys(texts)) {
      const before = files.find((x) => x.path === path);
      out.push({ path, data: encoder.encode(texts[path]), executable: before?.executable ?? false });
    }
    // Files that are not text go back as they came.
    for (const file of files) if (!(file.path in texts) && asText(file.data) == null) out.push(file);
    const entrypoint = code.entrypoint in texts || out.some((x) => x.path === code.entrypoint) ? code.entrypoint : Object.keys(texts)[0];
    const result = await deploy(f.project, f.name, out, { ...code, entrypoint }, setPhase);
    if (result.phase === 'live') {
      setSaved({ ...texts });
      setFiles(out);
      loadedVersion.current = result.version;
      onChanged();
    } else if (result.phase === 'failed' && result.location) {
      const file = result.location.file;
      if (file in texts) setOpen(file);
      setProblem({ file, problem: { line: result.location.line, column: result.location.column ?? undefined, message: result.message } });
    }
  }

  function addFile() {
    const name = prompt('New file (a path like lib/util.py):')?.trim();
    if (!name) return;
    if (!/^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/.test(name) || name.split('/').includes('..')) {
      setError(new Error(`'${name}' is not a relative path of letters, digits, '.', '_' and '-'`));
      return;
    }
    if (!(name in texts)) setTexts({ ...texts, [name]: '' });
    setOpen(name);
  }

  function removeFile(path: string) {
    if (path === code.entrypoint) {
      setError(new Error(`${path} is the entrypoint; it stays`));
      return;
    }
    if (!confirm(`Remove ${path} from the next version?`)) return;
    const next = { ...texts };
    delete next[path];
    setTexts(next);
    setFiles((fs) => fs?.filter((x) => x.path !== path) ?? null);
    if (open === path) setOpen(code.entrypoint);
  }

  if (error && !files) return <ErrorNote error={error} />;
  if (!files) return <Spinner />;
  const binary = files.filter((x) => !(x.path in texts));
  return (
    <div class="code-layout">
      <div class="code-pane">
        <div class="files" role="tablist" aria-label="Files">
          {Object.keys(texts)
            .sort()
            .map((path) => (
              <span key={path} class={path === open ? 'file active' : 'file'}>
                <button type="button" role="tab" aria-selected={path === open} onClick={() => setOpen(path)}>
                  {path}
                  {texts[path] !== saved[path] ? ' •' : ''}
                </button>
                {path !== code.entrypoint && (
                  <button type="button" class="file-remove" aria-label={`Remove ${path}`} onClick={() => removeFile(path)}>
                    ×
                  </button>
                )}
              </span>
            ))}
          <button type="button" class="btn btn-small btn-ghost" onClick={addFile}>
            + File
          </button>
        </div>
        {open && (
          <Editor
            path={open}
            value={texts[open] ?? ''}
            onChange={(text) => setTexts((t) => ({ ...t, [open]: text }))}
            problem={problem && problem.file === open ? problem.problem : null}
            onSave={run}
          />
        )}
        {binary.length > 0 && <p class="muted small">Also deployed, not editable here: {binary.map((b) => b.path).join(', ')}</p>}
        <div class="deploy-bar">
          <button type="button" class="btn btn-primary" onClick={run} disabled={busy} title="Deploy (Ctrl+S)">
            {busy ? 'Deploying…' : 'Deploy'}
          </button>
          <DeployStatus phase={phase} dirty={dirty} />
        </div>
        {phase?.phase === 'failed' && (
          <div class="notice notice-bad problem" role="alert">
            <strong>{phase.code.replace(/_/g, ' ')}</strong>
            {phase.location && (
              <span>
                {' '}
                at {phase.location.file}, line {phase.location.line}
              </span>
            )}
            <pre>{phase.message}</pre>
            {phase.log && <pre class="log">{phase.log}</pre>}
          </div>
        )}
        <ErrorNote error={error} />
        <p class="muted small">
          Entrypoint <code>{code.entrypoint}</code>, handler <code>{code.handler}</code>, runtime {code.runtime}.
        </p>
      </div>
      <TestPanel f={f} onCalled={onChanged} />
    </div>
  );
}

function DeployStatus({ phase, dirty }: { phase: DeployPhase | null; dirty: boolean }) {
  const steps = ['validating', 'building', 'live'];
  if (!phase) return <span class="muted">{dirty ? 'Changes not deployed yet' : 'Deployed code shown'}</span>;
  if (phase.phase === 'failed') return <span class="bad" role="status">Not deployed: the previous version keeps serving</span>;
  const at = steps.indexOf(phase.phase);
  return (
    <ol class="steps" role="status" aria-live="polite">
      {steps.map((s, i) => (
        <li key={s} class={i < at ? 'done' : i === at ? 'now' : ''}>
          {s === 'live' && phase.phase === 'live'
            ? phase.unchanged
              ? `unchanged (version ${phase.version})`
              : `live: version ${phase.version}`
            : s}
        </li>
      ))}
      {dirty && phase.phase === 'live' && <li class="muted">edited since</li>}
    </ol>
  );
}

const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'];
const STATUS_TEXT: Record<number, string> = {
  200: 'OK', 201: 'Created', 202: 'Accepted', 204: 'No Content', 301: 'Moved Permanently', 302: 'Found',
  304: 'Not Modified', 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found',
  405: 'Method Not Allowed', 409: 'Conflict', 413: 'Payload Too Large', 422: 'Unprocessable Content',
  429: 'Too Many Requests', 500: 'Internal Server Error', 502: 'Bad Gateway', 503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

interface TestResult {
  status: number;
  statusText: string;
  headers: [string, string][];
  body: string;
  took: number;
  run?: Invocation | null;
}

/** Calls the function as a client would (through the API) and shows all of the answer. */
function TestPanel({ f, onCalled }: { f: Fn; onCalled: () => void }) {
  const [method, setMethod] = useState('GET');
  const [path, setPath] = useState('');
  const [query, setQuery] = useState('');
  const [headers, setHeaders] = useState('');
  const [body, setBody] = useState('');
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<TestResult | null>(null);
  // Answers shown so far: tells one answer from the next, for the eye
  // (the block is redrawn) and for the browser tests (`data-call`).
  const [calls, setCalls] = useState(0);
  const [error, setError] = useState<unknown>(null);

  async function send(e?: Event) {
    e?.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const h: [string, string][] = [];
      for (const line of headers.split('\n')) {
        const at = line.indexOf(':');
        if (at > 0) h.push([line.slice(0, at).trim(), line.slice(at + 1).trim()]);
      }
      // Through the API, as the signed-in user: private functions answer
      // too, and the function's answer is shown as text, never rendered here.
      const started = performance.now();
      const response = await api.http(f.project, f.name, {
        method,
        path,
        query: query.replace(/^\?/, ''),
        headers: h,
        body: method === 'GET' || method === 'HEAD' ? '' : body,
      });
      const took = performance.now() - started;
      const text = response.isBase64Encoded ? `(binary, ${Math.floor((response.body.length * 3) / 4)} bytes, base64)\n${response.body}` : response.body;
      const type = response.headers.find(([k]) => k.toLowerCase() === 'content-type')?.[1] ?? null;
      const r: TestResult = {
        status: response.status,
        statusText: STATUS_TEXT[response.status] ?? '',
        headers: response.headers,
        body: prettyBody(text, type),
        took,
      };
      setResult(r);
      const id = response.invocation_id;
      if (id) {
        // The server finds a run the moment it has answered.
        setResult({ ...r, run: await api.invocation(id) });
      }
      setCalls((n) => n + 1);
      onCalled();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  }

  return (
    <aside class="test-pane" aria-label="Test">
      <form
        class="test-form"
        onSubmit={send}
        onKeyDown={(e) => {
          if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) send(e);
        }}
      >
        <h2>Test</h2>
        <div class="row tight">
          <select aria-label="Method" value={method} onChange={(e) => setMethod(e.currentTarget.value)}>
            {METHODS.map((m) => (
              <option key={m}>{m}</option>
            ))}
          </select>
          <input aria-label="Path" placeholder="/path after the function's URL" value={path}
            onInput={(e) => setPath(e.currentTarget.value)} />
        </div>
        <label>
          Query
          <input name="query" placeholder="name=kumo&page=2" value={query} onInput={(e) => setQuery(e.currentTarget.value)} />
        </label>
        <label>
          Headers <span class="muted">(one per line, Name: value)</span>
          <textarea name="headers" rows={2} value={headers} onInput={(e) => setHeaders(e.currentTarget.value)} />
        </label>
        {method !== 'GET' && method !== 'HEAD' && (
          <label>
            Body
            <textarea name="body" rows={4} value={body} onInput={(e) => setBody(e.currentTarget.value)} />
          </label>
        )}
        <button class="btn btn-primary" type="submit" disabled={busy || f.active_version == null} title="Send (Ctrl+Enter)">
          {busy ? 'Sending…' : 'Send'}
        </button>
      </form>
      <ErrorNote error={error} />
      {result && (
        <div class="test-result" aria-live="polite" data-call={calls} key={calls}>
          <p class="result-line">
            <strong class={result.status < 400 ? 'good' : 'bad'} data-testid="test-status">
              {result.status} {result.statusText}
            </strong>
            <span class="muted">
              {' '}
              · {ms(result.took)} round trip
              {result.run && (
                <>
                  {' '}
                  · {ms(result.run.duration_ms)} in the function{result.run.cold_start ? ' · cold start' : ' · warm'}
                </>
              )}
            </span>
          </p>
          <details>
            <summary>Headers ({result.headers.length})</summary>
            <pre class="small">{result.headers.map(([k, v]) => `${k}: ${v}`).join('\n')}</pre>
          </details>
          <h3>Body</h3>
          <pre class="body" data-testid="test-body">{result.body || '(empty)'}</pre>
          {result.run && (
            <>
              <h3>
                Run <StatusBadge status={result.run.status} />
              </h3>
              {result.run.logs ? <pre class="log" data-testid="test-logs">{result.run.logs}</pre> : <p class="muted">No log lines.</p>}
              {result.run.error && (
                <pre class="log bad">
                  {result.run.error.type}: {result.run.error.message}
                  {'\n'}
                  {result.run.error.traceback}
                </pre>
              )}
              {result.run.output !== undefined && result.run.output !== null && typeof result.run.output !== 'string' && (
                <details>
                  <summary>Output as returned</summary>
                  <pre class="small">{pretty(result.run.output)}</pre>
                </details>
              )}
            </>
          )}
        </div>
      )}
    </aside>
  );
}
