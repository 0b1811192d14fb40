// A small SVG chart of per-minute points: bars or lines, with a y-axis
// scale, the window's times, and each point's value on hover.

export interface Series {
  name: string;
  values: (number | null)[];
  color: string;
}

export function Chart(props: {
  title: string;
  times: number[];
  series: Series[];
  kind: 'bars' | 'lines';
  unit?: string;
}) {
  const width = 600;
  const height = 160;
  const left = 44;
  const bottom = 20;
  const plotW = width - left - 8;
  const plotH = height - bottom - 8;
  const n = Math.max(1, props.times.length);
  const max = Math.max(1e-9, ...props.series.flatMap((s) => s.values.map((v) => v ?? 0)));
  const top = niceCeil(max);
  const x = (i: number) => left + (plotW * (i + 0.5)) / n;
  const y = (v: number) => 8 + plotH - (plotH * v) / top;
  const slot = plotW / n;
  const fmt = (v: number) => (props.unit === 'ms' ? `${v >= 10 ? v.toFixed(0) : v.toFixed(1)} ms` : String(Math.round(v * 100) / 100));
  const time = (t: number) => new Date(t).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', hour12: false });
  return (
    <figure class="chart">
      <figcaption>
        {props.title}
        {props.series.length > 1 &&
          props.series.map((s) => (
            <span class="legend" key={s.name}>
              <i style={{ background: s.color }} />
              {s.name}
            </span>
          ))}
      </figcaption>
      <svg viewBox={`0 0 ${width} ${height}`} role="img" aria-label={props.title} preserveAspectRatio="none">
        {[0, 0.5, 1].map((f) => (
          <g key={f}>
            <line x1={left} x2={width - 8} y1={y(top * f)} y2={y(top * f)} class="grid" />
            <text x={left - 4} y={y(top * f) + 4} class="axis" text-anchor="end">
              {fmt(top * f)}
            </text>
          </g>
        ))}
        {props.times.length > 0 && (
          <>
            <text x={left} y={height - 4} class="axis">{time(props.times[0])}</text>
            <text x={width - 8} y={height - 4} class="axis" text-anchor="end">
              {time(props.times[props.times.length - 1])}
            </text>
          </>
        )}
        {props.kind === 'bars'
          ? props.series.map((s, si) =>
              s.values.map((v, i) =>
                v ? (
                  <rect
                    key={`${si}-${i}`}
                    x={x(i) - slot / 2 + (slot * si) / props.series.length + 0.5}
                    width={Math.max(1, slot / props.series.length - 1)}
                    y={y(v)}
                    height={Math.max(0, y(0) - y(v))}
                    fill={s.color}
                  >
                    <title>{`${time(props.times[i])} ${s.name}: ${fmt(v)}`}</title>
                  </rect>
                ) : null,
              ),
            )
          : props.series.map((s) => (
              <g key={s.name}>
                <polyline
                  fill="none"
                  stroke={s.color}
                  stroke-width="2"
                  points={s.values.map((v, i) => (v == null ? null : `${x(i)},${y(v)}`)).filter(Boolean).join(' ')}
                />
                {s.values.map((v, i) =>
                  v == null ? null : (
                    <circle key={i} cx={x(i)} cy={y(v)} r="2.5" fill={s.color}>
                      <title>{`${time(props.times[i])} ${s.name}: ${fmt(v)}`}</title>
                    </circle>
                  ),
                )}
              </g>
            ))}
      </svg>
    </figure>
  );
}

function niceCeil(v: number): number {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}
