// Small shared pieces: formatting, status badges, copying, notices.

import type { ComponentChildren } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import type { Fn, RunStatus } from './api';

export function timeAgo(ms: number | null | undefined, now = Date.now()): string {
  if (!ms) return 'never';
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 5) return 'just now';
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

export function clock(ms: number): string {
  return new Date(ms).toLocaleTimeString([], { hour12: false });
}

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

export function ms(n: number | null | undefined): string {
  if (n == null) return '–';
  if (n < 1) return `${(n * 1000).toFixed(0)} µs`;
  if (n < 100) return `${n.toFixed(1)} ms`;
  if (n < 10000) return `${n.toFixed(0)} ms`;
  return `${(n / 1000).toFixed(1)} s`;
}

/**
 * busy / idle / scaled to zero / error / not deployed, from instances and
 * the last call: the API's words for instances (`busy`, `idle`), as the
 * command line's `kumo status` says them.
 */
export function fnState(f: Fn): { label: string; tone: 'good' | 'idle' | 'bad' | 'none' } {
  if (f.active_version == null) return { label: 'not deployed', tone: 'none' };
  const last = f.activity?.last_status;
  if (last && last !== 'succeeded' && last !== 'running' && last !== 'queued') return { label: 'error', tone: 'bad' };
  if ((f.instances?.busy ?? 0) > 0) return { label: 'busy', tone: 'good' };
  if ((f.instances?.idle ?? 0) > 0) return { label: 'idle', tone: 'good' };
  return { label: 'scaled to zero', tone: 'idle' };
}

export function Badge({ tone, children }: { tone: string; children: ComponentChildren }) {
  return <span class={`badge badge-${tone}`}>{children}</span>;
}

export function StatusBadge({ status }: { status: RunStatus | string }) {
  const tone = status === 'succeeded' ? 'good' : status === 'running' || status === 'queued' ? 'idle' : 'bad';
  return <Badge tone={tone}>{status.replace(/_/g, ' ')}</Badge>;
}

export function CopyButton({ text, label = 'Copy' }: { text: string; label?: string }) {
  const [done, setDone] = useState(false);
  return (
    <button
      type="button"
      class="btn btn-small"
      aria-label={`${label}: ${text}`}
      onClick={async () => {
        try {
          await navigator.clipboard.writeText(text);
        } catch {
          // Clipboard refused (an insecure origin): select-and-copy stays possible.
        }
        setDone(true);
        setTimeout(() => setDone(false), 1200);
      }}
    >
      {done ? 'Copied' : label}
    </button>
  );
}

export function ErrorNote({ error }: { error: unknown }) {
  if (!error) return null;
  const message = error instanceof Error ? error.message : String(error);
  return (
    <p class="notice notice-bad" role="alert">
      {message}
    </p>
  );
}

export function Spinner({ label = 'Loading' }: { label?: string }) {
  return (
    <span class="spinner" role="status" aria-label={label}>
      <span />
    </span>
  );
}

/** Re-renders every `period` ms (for "3s ago"). */
export function useTick(period = 5000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), period);
    return () => clearInterval(t);
  }, [period]);
  return now;
}

export function pretty(value: unknown): string {
  if (value === undefined || value === null) return '';
  if (typeof value === 'string') return value;
  return JSON.stringify(value, null, 2);
}

/** A response body for showing: JSON indented when it is JSON. */
export function prettyBody(text: string, type: string | null): string {
  if (type?.includes('json')) {
    try {
      return JSON.stringify(JSON.parse(text), null, 2);
    } catch {
      return text;
    }
  }
  return text;
}
