import { useCallback, useEffect, useState } from 'preact/hooks';
import { api, type Fn } from '../api';
import { href } from '../router';
import { Badge, CopyButton, ErrorNote, Spinner, fnState } from '../ui';
import { CodeTab } from './Code';
import { CallsTab } from './Calls';
import { LogsTab } from './Logs';
import { MetricsTab } from './Metrics';
import { VersionsTab } from './Versions';
import { SettingsTab } from './Settings';

const TABS: [string, string][] = [
  ['code', 'Code & test'],
  ['calls', 'Calls'],
  ['logs', 'Logs'],
  ['metrics', 'Metrics'],
  ['versions', 'Versions'],
  ['settings', 'Settings'],
];

export function FunctionPage({ project, fn, tab }: { project: string; fn: string; tab: string }) {
  const [f, setF] = useState<Fn | null>(null);
  const [error, setError] = useState<unknown>(null);
  const reload = useCallback(
    () =>
      api
        .fn(project, fn)
        .then((x) => (setF(x), setError(null)))
        .catch(setError),
    [project, fn],
  );
  useEffect(() => {
    reload();
    const t = setInterval(reload, 10000);
    return () => clearInterval(t);
  }, [reload]);

  if (!f) return error ? <ErrorNote error={error} /> : <Spinner />;
  const state = fnState(f);
  const current = TABS.some(([id]) => id === tab) ? tab : 'code';
  return (
    <section class="fn-page">
      <nav class="crumbs" aria-label="Breadcrumb">
        <a href={href({ page: 'apps' })}>Apps</a> / <a href={href({ page: 'project', project })}>{project}</a> /
      </nav>
      <div class="heading">
        <h1>
          {fn} <Badge tone={state.tone}>{state.label}</Badge>
        </h1>
        <div class="url-row">
          <code>{f.url}</code>
          <CopyButton text={f.url} />
          <a class="btn btn-small" href={f.url} target="_blank" rel="noopener">
            Open
          </a>
          <span class="muted">
            {f.runtime} · {f.active_version != null ? `version ${f.active_version}` : 'no version yet'} · {f.visibility}
          </span>
        </div>
      </div>
      <div class="tabs" role="tablist" aria-label="Function">
        {TABS.map(([id, label]) => (
          <a
            key={id}
            role="tab"
            aria-selected={current === id}
            class={current === id ? 'tab active' : 'tab'}
            href={href({ page: 'function', project, fn, tab: id })}
          >
            {label}
          </a>
        ))}
      </div>
      <div role="tabpanel" class="tabpanel">
        {current === 'code' && <CodeTab f={f} onChanged={reload} />}
        {current === 'calls' && <CallsTab f={f} />}
        {current === 'logs' && <LogsTab f={f} />}
        {current === 'metrics' && <MetricsTab f={f} />}
        {current === 'versions' && <VersionsTab f={f} onChanged={reload} />}
        {current === 'settings' && <SettingsTab f={f} onSaved={setF} />}
      </div>
    </section>
  );
}
