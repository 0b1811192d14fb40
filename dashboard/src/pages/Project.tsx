import { useCallback, useEffect, useState } from 'preact/hooks';
import { api, type EnvVar, type Fn, type Route } from '../api';
import { href } from '../router';
import { Badge, CopyButton, ErrorNote, Spinner, fnState, timeAgo } from '../ui';

export function ProjectPage({ project }: { project: string }) {
  const [fns, setFns] = useState<Fn[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    api.functions(project).then(setFns).catch(setError);
  }, [project]);

  return (
    <section>
      <nav class="crumbs" aria-label="Breadcrumb">
        <a href={href({ page: 'apps' })}>Apps</a> /
      </nav>
      <div class="heading">
        <h1>{project}</h1>
        <a class="btn btn-primary" href={href({ page: 'new', project })}>
          New function
        </a>
      </div>
      <ErrorNote error={error} />
      <section class="card" aria-label="Functions">
        <h2>Functions</h2>
        {!fns ? (
          <Spinner />
        ) : fns.length === 0 ? (
          <p class="muted">None yet.</p>
        ) : (
          <table class="table">
            <tbody>
              {fns.map((f) => {
                const s = fnState(f);
                return (
                  <tr key={f.name}>
                    <td>
                      <a href={href({ page: 'function', project, fn: f.name, tab: 'code' })}>{f.name}</a>
                    </td>
                    <td>
                      <Badge tone={s.tone}>{s.label}</Badge>
                    </td>
                    <td>{f.runtime}</td>
                    <td class="muted">last call {timeAgo(f.activity?.last_call_at)}</td>
                    <td>
                      <code class="small">{f.url}</code>
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        )}
      </section>
      <EnvEditor project={project} />
      <RoutesEditor project={project} functions={fns ?? []} />
    </section>
  );
}

const KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Variables and secrets. A secret is never shown again: changing it means entering it again. */
function EnvEditor({ project }: { project: string }) {
  const [vars, setVars] = useState<EnvVar[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [key, setKey] = useState('');
  const [value, setValue] = useState('');
  const [secret, setSecret] = useState(false);
  const [editing, setEditing] = useState<string | null>(null);
  const [editValue, setEditValue] = useState('');

  const load = useCallback(() => api.env(project).then(setVars).catch(setError), [project]);
  useEffect(() => {
    load();
  }, [load]);

  async function add(e: Event) {
    e.preventDefault();
    setError(null);
    if (!KEY.test(key)) {
      setError(new Error('a name is letters, digits and _, not starting with a digit'));
      return;
    }
    try {
      await api.putEnv(project, key, value, secret);
      setKey('');
      setValue('');
      setSecret(false);
      load();
    } catch (err) {
      setError(err);
    }
  }

  async function save(v: EnvVar) {
    try {
      await api.putEnv(project, v.key, editValue, v.secret);
      setEditing(null);
      setEditValue('');
      load();
    } catch (err) {
      setError(err);
    }
  }

  async function remove(v: EnvVar) {
    if (!confirm(`Remove ${v.key}? Functions lose it on their next instance.`)) return;
    try {
      await api.deleteEnv(project, v.key);
      load();
    } catch (err) {
      setError(err);
    }
  }

  return (
    <section class="card" aria-label="Environment variables">
      <h2>Environment variables and secrets</h2>
      <p class="muted small">
        Every function of the project gets them as environment variables; a change starts fresh instances. Secrets are
        stored encrypted and never shown again, not even here: to change one, enter it again.
      </p>
      <ErrorNote error={error} />
      {!vars ? (
        <Spinner />
      ) : (
        vars.length > 0 && (
          <table class="table env">
            <tbody>
              {vars.map((v) => (
                <tr key={v.key} data-key={v.key}>
                  <td>
                    <code>{v.key}</code> {v.secret && <Badge tone="none">secret</Badge>}
                  </td>
                  <td class="value">
                    {editing === v.key ? (
                      <input
                        type={v.secret ? 'password' : 'text'}
                        aria-label={`New value of ${v.key}`}
                        value={editValue}
                        autofocus
                        onInput={(e) => setEditValue(e.currentTarget.value)}
                        onKeyDown={(e) => {
                          if (e.key === 'Enter') save(v);
                          if (e.key === 'Escape') setEditing(null);
                        }}
                      />
                    ) : v.secret ? (
                      <span class="masked" aria-label="hidden">••••••••</span>
                    ) : (
                      <code>{v.value}</code>
                    )}
                  </td>
                  <td class="actions">
                    {editing === v.key ? (
                      <>
                        <button type="button" class="btn btn-small btn-primary" onClick={() => save(v)}>Save</button>
                        <button type="button" class="btn btn-small" onClick={() => setEditing(null)}>Cancel</button>
                      </>
                    ) : (
                      <>
                        <button type="button" class="btn btn-small"
                          onClick={() => (setEditing(v.key), setEditValue(v.secret ? '' : v.value))}>
                          {v.secret ? 'Replace' : 'Edit'}
                        </button>
                        <button type="button" class="btn btn-small btn-ghost" aria-label={`Remove ${v.key}`} onClick={() => remove(v)}>
                          Remove
                        </button>
                      </>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )
      )}
      <form class="row add-env" onSubmit={add} aria-label="Add a variable">
        <input aria-label="Name" placeholder="NAME" value={key} onInput={(e) => setKey(e.currentTarget.value)} required />
        <input aria-label="Value" placeholder="value" type={secret ? 'password' : 'text'} value={value}
          onInput={(e) => setValue(e.currentTarget.value)} />
        <label class="check">
          <input type="checkbox" checked={secret} onChange={(e) => setSecret(e.currentTarget.checked)} /> secret
        </label>
        <button class="btn" type="submit">
          Add
        </button>
      </form>
    </section>
  );
}

const METHODS = ['ANY', 'GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'];

function RoutesEditor({ project, functions }: { project: string; functions: Fn[] }) {
  const [routes, setRoutes] = useState<Route[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [method, setMethod] = useState('GET');
  const [path, setPath] = useState('/');
  const [fn, setFn] = useState('');

  const load = useCallback(() => api.routes(project).then(setRoutes).catch(setError), [project]);
  useEffect(() => {
    load();
  }, [load]);
  useEffect(() => {
    if (!fn && functions[0]) setFn(functions[0].name);
  }, [functions]);

  async function add(e: Event) {
    e.preventDefault();
    setError(null);
    try {
      await api.addRoute(project, method, path, fn);
      setPath('/');
      load();
    } catch (err) {
      setError(err);
    }
  }

  async function remove(r: Route) {
    try {
      await api.deleteRoute(project, r.id);
      load();
    } catch (err) {
      setError(err);
    }
  }

  return (
    <section class="card" aria-label="Routes">
      <h2>Routes</h2>
      <p class="muted small">
        Served at <code>/p/{project}/…</code>; <code>:name</code> matches one segment, <code>*rest</code> the rest. The
        handler finds them in <code>event["params"]</code>.
      </p>
      {!routes ? (
        <Spinner />
      ) : (
        routes.length > 0 && (
          <table class="table">
            <tbody>
              {routes.map((r) => (
                <tr key={r.id}>
                  <td>
                    <code class="method">{r.method}</code>
                  </td>
                  <td>
                    <code>{r.path}</code>
                  </td>
                  <td>→ {r.function}</td>
                  <td>
                    <CopyButton text={r.url} label="Copy URL" />
                  </td>
                  <td>
                    <button type="button" class="btn btn-small btn-ghost" aria-label={`Remove ${r.method} ${r.path}`} onClick={() => remove(r)}>
                      Remove
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )
      )}
      <form class="row route-form" onSubmit={add} aria-label="Add a route">
        <select aria-label="Method" value={method} onChange={(e) => setMethod(e.currentTarget.value)}>
          {METHODS.map((m) => (
            <option key={m}>{m}</option>
          ))}
        </select>
        <input aria-label="Path" value={path} onInput={(e) => setPath(e.currentTarget.value)} placeholder="/users/:id" required />
        <select aria-label="Function" value={fn} onChange={(e) => setFn(e.currentTarget.value)} required>
          {functions.map((f) => (
            <option key={f.name}>{f.name}</option>
          ))}
        </select>
        <button class="btn" type="submit" disabled={!fn}>
          Add route
        </button>
      </form>
      <ErrorNote error={error} />
    </section>
  );
}
