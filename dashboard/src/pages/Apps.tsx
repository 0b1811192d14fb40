import { useEffect, useState } from 'preact/hooks';
import { allFunctions, type Fn, type Project } from '../api';
import { href } from '../router';
import { Badge, CopyButton, ErrorNote, Spinner, fnState, timeAgo, useTick } from '../ui';
import { Gallery } from './NewFunction';

/** Every project and function as a card; the gallery when there are none. */
export function Apps() {
  const [data, setData] = useState<{ projects: Project[]; functions: Fn[] } | null>(null);
  const [error, setError] = useState<unknown>(null);
  const now = useTick(5000);

  useEffect(() => {
    let stop = false;
    const load = () =>
      allFunctions()
        .then((d) => !stop && (setData(d), setError(null)))
        .catch((e) => !stop && setError(e));
    load();
    const t = setInterval(load, 10000);
    return () => {
      stop = true;
      clearInterval(t);
    };
  }, []);

  if (error && !data) return <ErrorNote error={error} />;
  if (!data) return <Spinner />;
  if (data.functions.length === 0) {
    return (
      <section>
        <h1>Deploy your first function</h1>
        <p class="lead">Pick a starting point: it goes live at its own URL in a second, and you can edit it right here.</p>
        <Gallery />
      </section>
    );
  }
  const byProject = new Map<string, Fn[]>();
  for (const p of data.projects) byProject.set(p.name, []);
  for (const f of data.functions) byProject.get(f.project)?.push(f);
  return (
    <section>
      <div class="heading">
        <h1>Apps</h1>
        <a class="btn btn-primary" href={href({ page: 'new' })}>
          New function
        </a>
      </div>
      <ErrorNote error={error} />
      {[...byProject.entries()].map(([project, fns]) => (
        <section class="project-group" key={project} aria-label={`Project ${project}`}>
          <h2>
            <a href={href({ page: 'project', project })}>{project}</a>
            <span class="muted"> · {fns.length} function{fns.length === 1 ? '' : 's'}</span>
          </h2>
          {fns.length === 0 ? (
            <p class="muted">
              No functions yet. <a href={href({ page: 'new', project })}>Add one</a>.
            </p>
          ) : (
            <ul class="cards">
              {fns.map((f) => (
                <FunctionCard key={f.name} f={f} now={now} />
              ))}
            </ul>
          )}
        </section>
      ))}
    </section>
  );
}

function FunctionCard({ f, now }: { f: Fn; now: number }) {
  const state = fnState(f);
  const a = f.activity;
  return (
    <li class="card fn-card" data-function={`${f.project}/${f.name}`}>
      <div class="fn-card-head">
        <a class="fn-name" href={href({ page: 'function', project: f.project, fn: f.name, tab: 'code' })}>
          {f.name}
        </a>
        <Badge tone={state.tone}>{state.label}</Badge>
      </div>
      <div class="url-row">
        <code title={f.url}>{f.url.replace(/^https?:\/\//, '')}</code>
        <CopyButton text={f.url} />
        <a class="btn btn-small" href={f.url} target="_blank" rel="noopener">
          Open
        </a>
      </div>
      <dl class="facts">
        <div>
          <dt>Last call</dt>
          <dd>{timeAgo(a?.last_call_at, now)}</dd>
        </div>
        <div>
          <dt>Calls (1h)</dt>
          <dd>{a?.calls_last_hour ?? 0}</dd>
        </div>
        <div>
          <dt>Errors (1h)</dt>
          <dd class={a && a.errors_last_hour > 0 ? 'bad' : ''}>{a?.errors_last_hour ?? 0}</dd>
        </div>
        <div>
          <dt>{f.runtime}</dt>
          <dd>{f.active_version != null ? `version ${f.active_version}` : 'not deployed'}</dd>
        </div>
      </dl>
    </li>
  );
}
