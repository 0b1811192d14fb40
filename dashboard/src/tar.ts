// A deployment's files as the API moves them: a `.tar.gz`. Reading keeps
// every file (binary ones and modes too) so that deploying from the editor
// sends back exactly what it did not change.

export interface TarFile {
  path: string;
  data: Uint8Array;
  executable: boolean;
}

async function through(bytes: Uint8Array, stream: GenericTransformStream): Promise<Uint8Array> {
  const piped = new Blob([bytes as BlobPart]).stream().pipeThrough(stream as TransformStream<Uint8Array, Uint8Array>);
  return new Uint8Array(await new Response(piped).arrayBuffer());
}

function field(block: Uint8Array, start: number, length: number): string {
  let end = start;
  while (end < start + length && block[end] !== 0) end++;
  return new TextDecoder().decode(block.subarray(start, end));
}

function octal(block: Uint8Array, start: number, length: number): number {
  const text = field(block, start, length).trim();
  return text ? parseInt(text, 8) : 0;
}

/** The regular files of a `.tar.gz` (ustar, GNU and pax long names). */
export async function readTarGz(archive: ArrayBuffer | Uint8Array): Promise<TarFile[]> {
  const bytes = await through(new Uint8Array(archive), new DecompressionStream('gzip'));
  const files: TarFile[] = [];
  let offset = 0;
  let longName: string | null = null;
  while (offset + 512 <= bytes.length) {
    const header = bytes.subarray(offset, offset + 512);
    if (header.every((b) => b === 0)) break;
    const size = octal(header, 124, 12);
    const type = String.fromCharCode(header[156] || 48);
    const body = bytes.subarray(offset + 512, offset + 512 + size);
    offset += 512 + Math.ceil(size / 512) * 512;
    if (type === 'L') {
      longName = new TextDecoder().decode(body).replace(/\0+$/, '');
      continue;
    }
    if (type === 'x') {
      const match = /\d+ path=([^\n]*)\n/.exec(new TextDecoder().decode(body));
      if (match) longName = match[1];
      continue;
    }
    let path = field(header, 0, 100);
    const prefix = field(header, 345, 155);
    if (prefix && field(header, 257, 6) === 'ustar') path = `${prefix}/${path}`;
    if (longName) {
      path = longName;
      longName = null;
    }
    if (type === '0' || type === '\0') {
      files.push({ path: path.replace(/^\.\//, ''), data: body.slice(), executable: (octal(header, 100, 8) & 0o111) !== 0 });
    }
  }
  return files;
}

function put(block: Uint8Array, start: number, length: number, text: string) {
  const encoded = new TextEncoder().encode(text);
  block.set(encoded.subarray(0, length), start);
}

function putOctal(block: Uint8Array, start: number, length: number, value: number) {
  put(block, start, length, value.toString(8).padStart(length - 1, '0') + '\0');
}

function headerFor(name: string, size: number, mode: number, type: string): Uint8Array {
  const block = new Uint8Array(512);
  put(block, 0, 100, name);
  putOctal(block, 100, 8, mode);
  putOctal(block, 108, 8, 0);
  putOctal(block, 116, 8, 0);
  putOctal(block, 124, 12, size);
  putOctal(block, 136, 12, 0);
  block.fill(32, 148, 156);
  put(block, 156, 1, type);
  put(block, 257, 6, 'ustar\0');
  put(block, 263, 2, '00');
  let sum = 0;
  for (const b of block) sum += b;
  put(block, 148, 8, sum.toString(8).padStart(6, '0') + '\0 ');
  return block;
}

const pad = (n: number) => new Uint8Array((512 - (n % 512)) % 512);

/** A `.tar.gz` of `files`, in path order, with fixed times (same files, same bytes). */
export async function writeTarGz(files: TarFile[]): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for (const file of [...files].sort((a, b) => (a.path < b.path ? -1 : 1))) {
    const name = new TextEncoder().encode(file.path);
    if (name.length > 100) {
      const long = new Uint8Array(name.length + 1);
      long.set(name);
      parts.push(headerFor('././@LongLink', long.length, 0o644, 'L'), long, pad(long.length));
    }
    parts.push(headerFor(file.path, file.data.length, file.executable ? 0o755 : 0o644, '0'), file.data, pad(file.data.length));
  }
  parts.push(new Uint8Array(1024));
  const total = parts.reduce((n, p) => n + p.length, 0);
  const tar = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    tar.set(p, at);
    at += p.length;
  }
  return through(tar, new CompressionStream('gzip'));
}

/** Text of a file, or null when it is not UTF-8 (binary files are not edited). */
export function asText(data: Uint8Array): string | null {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(data);
  } catch {
    return null;
  }
}
