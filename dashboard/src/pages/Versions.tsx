import { useCallback, useEffect, useState } from 'preact/hooks';
import { api, type Deployment, type Fn } from '../api';
import { Badge, ErrorNote, Spinner, bytes, timeAgo } from '../ui';

/** Every version; any ready one can be made live again in one click. */
export function VersionsTab({ f, onChanged }: { f: Fn; onChanged: () => void }) {
  const [versions, setVersions] = useState<Deployment[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState<number | null>(null);
  const [note, setNote] = useState<string | null>(null);

  const load = useCallback(
    () => api.deployments(f.project, f.name).then(setVersions).catch(setError),
    [f.project, f.name],
  );
  useEffect(() => {
    load();
  }, [load]);

  async function activate(v: Deployment) {
    setBusy(v.version);
    setError(null);
    setNote(null);
    try {
      await api.activate(f.project, f.name, v.version);
      setNote(
        v.status === 'ready' && !v.layer
          ? `Version ${v.version} is live.`
          : `Version ${v.version} goes live as soon as its dependencies are ready.`,
      );
      await load();
      onChanged();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(null);
    }
  }

  if (!versions) return error ? <ErrorNote error={error} /> : <Spinner />;
  const active = versions.find((v) => v.active)?.version ?? null;
  return (
    <div>
      <ErrorNote error={error} />
      {note && <p class="notice" role="status">{note}</p>}
      <table class="table">
        <thead>
          <tr>
            <th>Version</th>
            <th>Status</th>
            <th>Deployed</th>
            <th>Files</th>
            <th>Entrypoint</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {versions.map((v) => (
            <tr key={v.version} data-version={v.version}>
              <td>
                <strong>v{v.version}</strong> {v.active && <Badge tone="good">live</Badge>}
              </td>
              <td>
                <Badge tone={v.status === 'ready' ? 'idle' : v.status === 'failed' ? 'bad' : 'none'}>{v.status}</Badge>
                {v.error && <div class="bad small">{v.error}</div>}
              </td>
              <td title={new Date(v.created_at).toLocaleString()}>{timeAgo(v.created_at)}</td>
              <td>
                {v.file_count} · {bytes(v.size_bytes)}
              </td>
              <td>
                <code class="small">{v.entrypoint}</code>
              </td>
              <td>
                {!v.active && v.status === 'ready' && (
                  <button type="button" class="btn btn-small" disabled={busy != null} onClick={() => activate(v)}>
                    {busy === v.version ? 'Activating…' : active != null && v.version < active ? 'Roll back to this' : 'Make live'}
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {versions.length === 0 && <p class="muted">No versions yet: deploy from the Code tab.</p>}
    </div>
  );
}
