import { useEffect, useRef, useState } from 'preact/hooks';
import { followLogs, type Fn, type LogLine } from '../api';
import { clock } from '../ui';

const KEEP = 2000;

/** The function's log lines as they are printed, filterable. */
export function LogsTab({ f }: { f: Fn }) {
  const [lines, setLines] = useState<LogLine[]>([]);
  const [connected, setConnected] = useState(false);
  const [filter, setFilter] = useState('');
  const [stream, setStream] = useState<'all' | 'stdout' | 'stderr'>('all');
  const [paused, setPaused] = useState(false);
  const pausedRef = useRef(paused);
  pausedRef.current = paused;
  const box = useRef<HTMLDivElement>(null);

  useEffect(() => {
    const stop = new AbortController();
    const pending: LogLine[] = [];
    let scheduled = false;
    followLogs(
      f.project,
      f.name,
      (line) => {
        pending.push(line);
        if (!scheduled) {
          scheduled = true;
          requestAnimationFrame(() => {
            scheduled = false;
            const batch = pending.splice(0);
            setLines((old) => [...old, ...batch].slice(-KEEP));
          });
        }
      },
      stop.signal,
      setConnected,
    );
    return () => stop.abort();
  }, [f.project, f.name]);

  useEffect(() => {
    const el = box.current;
    if (el && !pausedRef.current) el.scrollTop = el.scrollHeight;
  }, [lines]);

  const needle = filter.toLowerCase();
  const shown = lines.filter(
    (l) => (stream === 'all' || l.stream === stream) && (!needle || l.line.toLowerCase().includes(needle) || l.run_id.startsWith(needle)),
  );
  return (
    <div>
      <div class="toolbar">
        <input type="search" aria-label="Filter lines" placeholder="Filter: text or run id" value={filter}
          onInput={(e) => setFilter(e.currentTarget.value)} />
        <select aria-label="Stream" value={stream} onChange={(e) => setStream(e.currentTarget.value as typeof stream)}>
          <option value="all">stdout and stderr</option>
          <option value="stdout">stdout</option>
          <option value="stderr">stderr</option>
        </select>
        <button type="button" class="btn btn-small" onClick={() => setPaused(!paused)} aria-pressed={paused}>
          {paused ? 'Resume scrolling' : 'Pause scrolling'}
        </button>
        <button type="button" class="btn btn-small" onClick={() => setLines([])}>
          Clear
        </button>
        <span class={connected ? 'good' : 'muted'} role="status">
          {connected ? '● live' : '○ connecting…'}
        </span>
      </div>
      <div class="logbox" ref={box} role="log" aria-label="Log lines" aria-live="off">
        {shown.length === 0 ? (
          <p class="muted">No lines in the last hour yet{filter ? ' that match' : ''}. New ones appear here as calls print them.</p>
        ) : (
          shown.map((l) => (
            <div key={l.id} class={`logline ${l.stream}`}>
              <time>{clock(l.time)}</time>
              <button type="button" class="run" title="Show only this run's lines" onClick={() => setFilter(l.run_id)}>
                {l.run_id.slice(-6)}
              </button>
              <span class="text">{l.line}</span>
            </div>
          ))
        )}
      </div>
    </div>
  );
}
