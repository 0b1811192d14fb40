import { useEffect, useState } from 'preact/hooks';
import { ApiError, api, type Project, type Template } from '../api';
import { deploy, textFiles, type DeployPhase } from '../deploy';
import { href, navigate } from '../router';
import { ErrorNote, Spinner } from '../ui';

const NAME = /^[a-z][a-z0-9-]{0,62}$/;

export function NewFunction({ project }: { project?: string }) {
  return (
    <section>
      <h1>New function</h1>
      <p class="lead">Start from a template; everything can be changed after.</p>
      <Gallery project={project} />
    </section>
  );
}

/** The templates; choosing one asks for names and deploys it. */
export function Gallery({ project }: { project?: string }) {
  const [templates, setTemplates] = useState<Template[] | null>(null);
  const [projects, setProjects] = useState<Project[]>([]);
  const [chosen, setChosen] = useState<Template | null>(null);
  const [error, setError] = useState<unknown>(null);

  useEffect(() => {
    Promise.all([api.templates(), api.projects()])
      .then(([t, p]) => {
        setTemplates(t);
        setProjects(p);
      })
      .catch(setError);
  }, []);

  if (error) return <ErrorNote error={error} />;
  if (!templates) return <Spinner />;
  if (chosen) {
    return <CreateForm template={chosen} projects={projects} project={project} onBack={() => setChosen(null)} />;
  }
  return (
    <ul class="gallery" aria-label="Templates">
      {templates.map((t) => (
        <li key={t.name}>
          <button type="button" class="card template" data-template={t.name} onClick={() => setChosen(t)}>
            <span class="template-runtime">{t.runtime}</span>
            <strong>{title(t.name)}</strong>
            <span class="muted">{t.about}</span>
          </button>
        </li>
      ))}
    </ul>
  );
}

function title(name: string): string {
  const names: Record<string, string> = {
    python: 'Python hello',
    'python-api': 'Python REST API',
    node: 'Node.js hello',
    fastapi: 'FastAPI app',
    webhook: 'Webhook receiver',
    scheduled: 'Scheduled job',
  };
  return names[name] ?? name;
}

function CreateForm(props: { template: Template; projects: Project[]; project?: string; onBack: () => void }) {
  const t = props.template;
  const [project, setProject] = useState(props.project ?? props.projects[0]?.name ?? 'demo');
  const [fn, setFn] = useState(t.function);
  const [secrets, setSecrets] = useState<Record<string, string>>({});
  const [phase, setPhase] = useState<DeployPhase | null>(null);
  const [error, setError] = useState<unknown>(null);
  const busy = phase?.phase === 'validating' || phase?.phase === 'building';

  async function create(e: Event) {
    e.preventDefault();
    setError(null);
    if (!NAME.test(project) || !NAME.test(fn)) {
      setError(new Error('names are lower-case letters, digits and dashes, starting with a letter'));
      return;
    }
    try {
      if (!props.projects.some((p) => p.name === project)) {
        await api.createProject(project).catch((err) => {
          if (!(err instanceof ApiError && err.status === 409)) throw err;
        });
      }
      for (const name of t.secrets) await api.putEnv(project, name, secrets[name] ?? '', true);
      const files: Record<string, string> = {};
      for (const [path, text] of Object.entries(t.files)) files[path] = text.replaceAll('{project}', project);
      const result = await deploy(project, fn, textFiles(files), { runtime: t.runtime, entrypoint: t.entrypoint, settings: t.settings }, setPhase);
      if (result.phase !== 'live') return;
      const existing = await api.routes(project);
      for (const r of t.routes) {
        if (!existing.some((x) => x.method === r.method && x.path === r.path)) {
          await api.addRoute(project, r.method, r.path, fn);
        }
      }
      navigate({ page: 'function', project, fn, tab: 'code' });
    } catch (err) {
      setError(err);
    }
  }

  return (
    <form class="card create" onSubmit={create} aria-label={`Create from ${t.name}`}>
      <h2>{title(t.name)}</h2>
      <p class="muted">{t.about}</p>
      <div class="row">
        <label>
          Project
          <input list="projects" name="project" value={project} required onInput={(e) => setProject(e.currentTarget.value)} />
          <datalist id="projects">
            {props.projects.map((p) => (
              <option key={p.name} value={p.name} />
            ))}
          </datalist>
        </label>
        <label>
          Function
          <input name="function" value={fn} required onInput={(e) => setFn(e.currentTarget.value)} />
        </label>
      </div>
      {t.secrets.map((name) => (
        <label key={name}>
          Secret {name} <span class="muted">(stored encrypted; never shown again)</span>
          <input type="password" name={`secret-${name}`} required value={secrets[name] ?? ''}
            onInput={(e) => setSecrets({ ...secrets, [name]: e.currentTarget.value })} />
        </label>
      ))}
      {t.routes.length > 0 && (
        <p class="muted">
          Routes: {t.routes.map((r) => `${r.method} ${r.path}`).join(', ')}
        </p>
      )}
      <p class="muted">
        Files: {Object.keys(t.files).join(', ')} · it will answer at <code>/fn/{project}/{fn}</code>
      </p>
      {phase?.phase === 'building' && <p class="notice">Installing dependencies (version {phase.version})…</p>}
      {phase?.phase === 'failed' && <p class="notice notice-bad" role="alert">{phase.message}</p>}
      <ErrorNote error={error} />
      <div class="actions">
        <button type="button" class="btn" onClick={props.onBack}>
          Back
        </button>
        <button type="submit" class="btn btn-primary" disabled={busy}>
          {busy ? (phase?.phase === 'building' ? 'Building…' : 'Deploying…') : 'Create and deploy'}
        </button>
      </div>
      <p class="hint">
        Or from a terminal: <code>kumo init --template {t.name}</code> · <a href={href({ page: 'apps' })}>Apps</a>
      </p>
    </form>
  );
}
