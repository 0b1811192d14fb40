// Deploying from the browser: files packed as a .tar.gz (as the command
// line sends them), then, when dependencies are being installed, the
// version watched until it is live or has failed.

import { ApiError, api, type Deployed, type Settings, type SourceLocation } from './api';
import { writeTarGz, type TarFile } from './tar';

export type DeployPhase =
  | { phase: 'validating' }
  | { phase: 'building'; version: number }
  | { phase: 'live'; version: number; url: string; unchanged: boolean }
  | { phase: 'failed'; message: string; code: string; location?: SourceLocation; log?: string | null };

export interface Code {
  runtime: string;
  entrypoint: string;
  handler?: string;
  settings?: Settings;
}

/** The settings that are set: a query string has no `null`, and a setting
 * left out keeps its value, as a `null` one would. */
function present(settings: Settings): { [K in keyof Settings]?: NonNullable<Settings[K]> } {
  return Object.fromEntries(Object.entries(settings).filter(([, v]) => v != null));
}

export async function deploy(
  project: string,
  fn: string,
  files: TarFile[],
  code: Code,
  onPhase: (p: DeployPhase) => void,
): Promise<DeployPhase> {
  const finish = (p: DeployPhase) => (onPhase(p), p);
  onPhase({ phase: 'validating' });
  let answer: Deployed;
  try {
    const archive = await writeTarGz(files);
    answer = await api.deploy(project, fn, archive, {
      runtime: code.runtime,
      entrypoint: code.entrypoint,
      handler: code.handler && code.handler !== 'handler' ? code.handler : undefined,
      ...present(code.settings ?? {}),
    });
  } catch (e) {
    if (e instanceof ApiError) return finish({ phase: 'failed', message: e.message, code: e.code, location: e.location });
    return finish({ phase: 'failed', message: String(e), code: 'network' });
  }
  if (answer.status !== 'building') {
    return finish({ phase: 'live', version: answer.version, url: answer.url, unchanged: answer.status === 'unchanged' });
  }
  onPhase({ phase: 'building', version: answer.version });
  for (let wait = 300; ; wait = Math.min(wait * 1.5, 2000)) {
    await new Promise((r) => setTimeout(r, wait));
    const d = await api.deployment(project, fn, answer.version);
    if (d.status === 'ready') {
      return finish({ phase: 'live', version: d.version, url: answer.url, unchanged: false });
    }
    if (d.status === 'failed') {
      return finish({ phase: 'failed', message: d.error ?? 'the build failed', code: 'build_failed', log: d.build_log });
    }
  }
}

export function textFiles(files: Record<string, string>): TarFile[] {
  const encoder = new TextEncoder();
  return Object.entries(files).map(([path, text]) => ({ path, data: encoder.encode(text), executable: false }));
}
