import { useEffect, useState } from 'preact/hooks';
import { api, type Fn, type Metrics } from '../api';
import { Chart } from '../chart';
import { ErrorNote, Spinner, ms } from '../ui';

const WINDOWS = ['15m', '1h', '6h', '24h'];

export function MetricsTab({ f }: { f: Fn }) {
  const [window, setWindow] = useState('1h');
  const [m, setM] = useState<Metrics | null>(null);
  const [error, setError] = useState<unknown>(null);

  useEffect(() => {
    let stop = false;
    const load = () =>
      api
        .metrics(f.project, f.name, window)
        .then((x) => !stop && (setM(x), setError(null)))
        .catch((e) => !stop && setError(e));
    load();
    const t = setInterval(load, 15000);
    return () => {
      stop = true;
      clearInterval(t);
    };
  }, [f.project, f.name, window]);

  const t = m?.totals;
  const times = m?.series.map((p) => p.time) ?? [];
  return (
    <div>
      <div class="toolbar" role="radiogroup" aria-label="Window">
        {WINDOWS.map((w) => (
          <button key={w} type="button" role="radio" aria-checked={w === window} class={w === window ? 'btn btn-small active' : 'btn btn-small'}
            onClick={() => setWindow(w)}>
            {w}
          </button>
        ))}
      </div>
      <ErrorNote error={error} />
      {!m ? (
        <Spinner />
      ) : (
        <>
          <dl class="facts wide">
            <div><dt>Calls</dt><dd>{t!.calls}</dd></div>
            <div><dt>Errors</dt><dd class={t!.errors ? 'bad' : ''}>{t!.errors}</dd></div>
            <div><dt>Cold starts</dt><dd>{t!.cold_starts}</dd></div>
            <div><dt>p50</dt><dd>{ms(t!.duration_ms.p50)}</dd></div>
            <div><dt>p95</dt><dd>{ms(t!.duration_ms.p95)}</dd></div>
            <div><dt>p99</dt><dd>{ms(t!.duration_ms.p99)}</dd></div>
          </dl>
          <div class="charts">
            <Chart title="Calls and errors per minute" kind="bars" times={times}
              series={[
                { name: 'calls', color: 'var(--accent)', values: m.series.map((p) => p.calls) },
                { name: 'errors', color: 'var(--bad)', values: m.series.map((p) => p.errors) },
              ]} />
            <Chart title="Duration" kind="lines" unit="ms" times={times}
              series={[
                { name: 'p50', color: 'var(--accent)', values: m.series.map((p) => p.duration_ms.p50 ?? null) },
                { name: 'p95', color: 'var(--warn)', values: m.series.map((p) => p.duration_ms.p95 ?? null) },
              ]} />
            <Chart title="Cold starts per minute" kind="bars" times={times}
              series={[{ name: 'cold starts', color: 'var(--idle)', values: m.series.map((p) => p.cold_starts) }]} />
          </div>
          <p class="muted small">Counted since the server started; per minute. Also at /metrics for Prometheus.</p>
        </>
      )}
    </div>
  );
}
