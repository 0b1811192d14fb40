import { useCallback, useEffect, useState } from 'preact/hooks';
import { api, type Fn, type Invocation } from '../api';
import { ErrorNote, Spinner, StatusBadge, clock, ms, pretty, timeAgo, useTick } from '../ui';

/** Recent calls; one opened shows its input, output, logs and error, and can run again. */
export function CallsTab({ f }: { f: Fn }) {
  const [runs, setRuns] = useState<Invocation[] | null>(null);
  const [selected, setSelected] = useState<Invocation | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [replaying, setReplaying] = useState(false);
  const now = useTick(5000);

  const load = useCallback(
    () =>
      api
        .invocations(f.project, f.name, 50)
        .then((r) => (setRuns(r), setError(null)))
        .catch(setError),
    [f.project, f.name],
  );
  useEffect(() => {
    load();
    const t = setInterval(load, 5000);
    return () => clearInterval(t);
  }, [load]);

  async function open(run: Invocation) {
    try {
      setSelected(await api.invocation(run.id));
    } catch (e) {
      setError(e);
    }
  }

  async function replay(run: Invocation) {
    setReplaying(true);
    try {
      const again = await api.replay(run.id);
      setSelected(await api.invocation(again.id));
      load();
    } catch (e) {
      setError(e);
    } finally {
      setReplaying(false);
    }
  }

  if (!runs) return error ? <ErrorNote error={error} /> : <Spinner />;
  return (
    <div class="split">
      <div>
        <div class="heading">
          <h2>Recent calls</h2>
          <button type="button" class="btn btn-small" onClick={load}>
            Refresh
          </button>
        </div>
        <ErrorNote error={error} />
        {runs.length === 0 ? (
          <p class="muted">No calls yet. Send one from the test panel, or open the URL.</p>
        ) : (
          <table class="table clickable">
            <thead>
              <tr>
                <th>Status</th>
                <th>Duration</th>
                <th>When</th>
                <th>Start</th>
                <th>Trigger</th>
                <th>Version</th>
              </tr>
            </thead>
            <tbody>
              {runs.map((r) => (
                <tr
                  key={r.id}
                  tabIndex={0}
                  class={selected?.id === r.id ? 'selected' : ''}
                  onClick={() => open(r)}
                  onKeyDown={(e) => (e.key === 'Enter' || e.key === ' ') && (e.preventDefault(), open(r))}
                  aria-label={`Call ${r.id}, ${r.status}`}
                >
                  <td>
                    <StatusBadge status={r.status} />
                  </td>
                  <td>{ms(r.duration_ms)}</td>
                  <td title={new Date(r.created_at).toLocaleString()}>{timeAgo(r.created_at, now)}</td>
                  <td>{r.cold_start ? 'cold' : 'warm'}</td>
                  <td>{r.trigger}</td>
                  <td>{r.version ?? '–'}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </div>
      {selected && (
        <article class="card detail" aria-label="Call detail">
          <div class="heading">
            <h2>
              Call <code class="small">{selected.id}</code>
            </h2>
            <button type="button" class="btn btn-small" disabled={replaying} onClick={() => replay(selected)}>
              {replaying ? 'Replaying…' : 'Replay'}
            </button>
          </div>
          <p>
            <StatusBadge status={selected.status} /> {ms(selected.duration_ms)} · {selected.cold_start ? 'cold start' : 'warm'} ·{' '}
            {clock(selected.created_at)}
            {selected.cpu_ms != null && ` · CPU ${ms(selected.cpu_ms)}`}
            {selected.peak_memory_bytes != null && ` · peak ${(selected.peak_memory_bytes / 1048576).toFixed(1)} MiB`}
          </p>
          <h3>Input</h3>
          <pre class="small">{pretty(selected.input) || '(none)'}</pre>
          <h3>Output</h3>
          <pre class="small">{pretty(selected.output) || '(none)'}</pre>
          <h3>Logs</h3>
          <pre class="log">{selected.logs || '(none)'}</pre>
          {selected.error && (
            <>
              <h3>Error</h3>
              <pre class="log bad">
                {selected.error.type}: {selected.error.message}
                {selected.error.traceback ? '\n\n' + selected.error.traceback : ''}
              </pre>
            </>
          )}
        </article>
      )}
    </div>
  );
}
