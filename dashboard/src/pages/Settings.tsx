import { useState } from 'preact/hooks';
import { api, type Fn, type Settings } from '../api';
import { navigate } from '../router';
import { ErrorNote } from '../ui';

const FIELDS: [keyof Settings & keyof Fn, string, string][] = [
  ['timeout_ms', 'Timeout', 'ms'],
  ['memory_mb', 'Memory', 'MiB'],
  ['concurrency', 'Instances at most', 'at once'],
  ['cpu_millicores', 'CPU', 'thousandths of a core'],
  ['pids', 'Processes and threads', 'per instance'],
  ['tmp_mb', '/tmp size', 'MiB'],
];

export function SettingsTab({ f, onSaved }: { f: Fn; onSaved: (f: Fn) => void }) {
  const [values, setValues] = useState<Record<string, string>>(() =>
    Object.fromEntries(FIELDS.map(([k]) => [k, String(f[k])])),
  );
  const [visibility, setVisibility] = useState(f.visibility);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [saved, setSaved] = useState(false);
  const [confirmName, setConfirmName] = useState('');

  async function save(e: Event) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    setSaved(false);
    try {
      const s: Settings = { visibility };
      for (const [k] of FIELDS) {
        const n = Number(values[k]);
        if (!Number.isInteger(n) || n <= 0) throw new Error(`${k} must be a positive whole number`);
        (s as Record<string, number>)[k] = n;
      }
      onSaved(await api.updateFn(f.project, f.name, s));
      setSaved(true);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  }

  async function remove() {
    try {
      await api.deleteFn(f.project, f.name);
      navigate({ page: 'project', project: f.project });
    } catch (err) {
      setError(err);
    }
  }

  return (
    <div class="settings">
      <form class="card" onSubmit={save} aria-label="Limits and visibility">
        <h2>Limits</h2>
        <div class="grid-fields">
          {FIELDS.map(([k, label, unit]) => (
            <label key={k}>
              {label} <span class="muted">({unit})</span>
              <input type="number" min={1} name={k} value={values[k]}
                onInput={(e) => setValues({ ...values, [k]: e.currentTarget.value })} />
            </label>
          ))}
        </div>
        <fieldset>
          <legend>Visibility</legend>
          <label class="check">
            <input type="radio" name="visibility" checked={visibility === 'public'} onChange={() => setVisibility('public')} />
            Public: anyone with the URL can call it
          </label>
          <label class="check">
            <input type="radio" name="visibility" checked={visibility === 'private'} onChange={() => setVisibility('private')} />
            Private: calls need an API token
          </label>
        </fieldset>
        <ErrorNote error={error} />
        {saved && <p class="notice" role="status">Saved. New calls get instances with these settings.</p>}
        <button class="btn btn-primary" type="submit" disabled={busy}>
          {busy ? 'Saving…' : 'Save'}
        </button>
      </form>
      <section class="card danger" aria-label="Delete">
        <h2>Delete this function</h2>
        <p class="muted">Its versions, runs and logs go too. Type its name to confirm.</p>
        <div class="row tight">
          <input aria-label="Function name to confirm" value={confirmName} onInput={(e) => setConfirmName(e.currentTarget.value)} />
          <button type="button" class="btn btn-danger" disabled={confirmName !== f.name} onClick={remove}>
            Delete {f.name}
          </button>
        </div>
      </section>
    </div>
  );
}
