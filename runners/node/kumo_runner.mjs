// Kumo Node.js runner (runner protocol v1).
//
// Started by the Kumo host inside the sandbox as
//
//     node /kumo/kumo_runner.mjs
//
// with fd 0 = /dev/null, fd 1 / fd 2 = the invocation's log pipes, and fd 3 =
// the channel, a connected AF_UNIX stream socket. Every message on the
// channel, in both directions, is a 4-byte big-endian length followed by that
// many bytes of UTF-8 JSON. The runner never writes protocol data to stdout
// or stderr: those belong to user code (console.log goes to the run's logs).
//
// Handlers: `export default async (event, context) => …`, `export const
// handler`, `module.exports.handler` / `exports.handler` (CommonJS), sync or
// async; a handler taking a third parameter gets a Lambda-style callback.
//
// See docs/runner-protocol.md for the full protocol. Exit codes: 0 = the host
// closed the channel; 1 = internal runner failure; 2 = protocol error.

import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const PROTOCOL_VERSION = 1;
const CHANNEL_FD = 3;
const MAX_FRAME = 16 * 1024 * 1024;
const MAX_MESSAGE_CHARS = 64 * 1024;
const MAX_TRACEBACK_CHARS = 64 * 1024;
const SOURCE_EXTENSIONS = ['.js', '.mjs', '.cjs'];

// Private references: user code may replace globals, but not these.
const writeSync = fs.writeSync;
const exit = process.exit.bind(process);
const stringify = JSON.stringify;
const parse = JSON.parse;

let loaded = false;
let handler = null;
let codeDir = null;

function stderr(text) {
  try {
    writeSync(2, text);
  } catch {
    // The log pipe is gone; nothing to tell.
  }
}

function fatal(why) {
  stderr(`kumo-runner: protocol error: ${why}\n`);
  exit(2);
}

// ------------------------------------------------------------- the channel

// libuv opens the descriptor close-on-exec: programs user code starts do not
// inherit the channel.
const channel = new net.Socket({ fd: CHANNEL_FD, readable: true, writable: true });
let chunks = [];
let buffered = 0;
let ended = false;
let wake = null;

channel.on('data', (chunk) => {
  chunks.push(chunk);
  buffered += chunk.length;
  if (wake) {
    const w = wake;
    wake = null;
    w();
  }
});
const onEnd = () => {
  ended = true;
  if (wake) {
    const w = wake;
    wake = null;
    w();
  }
};
channel.on('end', onEnd);
channel.on('close', onEnd);
channel.on('error', onEnd);

/** The next `n` bytes of the channel, or null at its end. */
async function take(n) {
  while (buffered < n) {
    if (ended) return null;
    await new Promise((resolve) => {
      wake = resolve;
    });
  }
  const all = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, buffered);
  const out = all.subarray(0, n);
  const rest = all.subarray(n);
  chunks = rest.length ? [rest] : [];
  buffered = rest.length;
  return out;
}

async function readMessage() {
  const head = await take(4);
  if (head === null) {
    if (buffered > 0) fatal('end of file in the middle of a frame header');
    // The host closed the channel: stop now, whatever user code left running.
    exit(0);
  }
  const len = head.readUInt32BE(0);
  if (len > MAX_FRAME) fatal(`frame of ${len} bytes is over the ${MAX_FRAME}-byte limit`);
  const body = await take(len);
  if (body === null) fatal('end of file in the middle of a frame');
  let msg;
  try {
    msg = parse(body.toString('utf8'));
  } catch (e) {
    fatal(`payload is not valid JSON: ${e.message}`);
  }
  if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) fatal('payload is not a JSON object');
  if (typeof msg.type !== 'string') fatal('message without a string type');
  return msg;
}

function send(payload) {
  const body = Buffer.from(payload, 'utf8');
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length, 0);
  channel.write(Buffer.concat([head, body]));
}

// ------------------------------------------------------------- errors

function truncate(text, limit, keepEnd) {
  if (text.length <= limit) return text;
  return keepEnd ? `[traceback truncated]\n${text.slice(-limit)}` : `${text.slice(0, limit)} [message truncated]`;
}

/** The stack without the runner's own frames and Node's loader. */
function userStack(stack) {
  if (typeof stack !== 'string') return '';
  const self = import.meta.url;
  return stack
    .split('\n')
    .filter((line) => !line.includes(self) && !line.includes('node:internal/'))
    .join('\n');
}

function errorObject(e) {
  if (e instanceof Error) {
    return {
      type: typeof e.name === 'string' && e.name ? e.name : 'Error',
      message: truncate(String(e.message ?? ''), MAX_MESSAGE_CHARS, false),
      traceback: truncate(userStack(e.stack), MAX_TRACEBACK_CHARS, true),
    };
  }
  let message;
  try {
    message = typeof e === 'string' ? e : stringify(e) ?? String(e);
  } catch {
    message = String(e);
  }
  return { type: 'Error', message: truncate(`thrown value: ${message}`, MAX_MESSAGE_CHARS, false), traceback: '' };
}

function simpleError(type, message) {
  return { type, message, traceback: '' };
}

class LoadError extends Error {
  constructor(type, message) {
    super(message);
    this.kind = type;
  }
}

// ------------------------------------------------------------- load

async function importHandler(dir, entrypoint, handlerName) {
  const rel = path.posix.normalize(entrypoint);
  if (!SOURCE_EXTENSIONS.includes(path.extname(rel)) || path.isAbsolute(rel) || rel === '..' || rel.startsWith('../')) {
    throw new LoadError('InvalidEntrypoint', `entrypoint must be a .js, .mjs or .cjs file inside the deployment, got '${entrypoint}'`);
  }
  codeDir = path.resolve(dir);
  const file = path.join(codeDir, rel);
  if (!fs.existsSync(file) || !fs.statSync(file).isFile()) {
    throw new LoadError('EntrypointNotFound', `entrypoint ${entrypoint} not found in the deployment`);
  }
  process.chdir(codeDir);
  const mod = await import(pathToFileURL(file).href);
  // `handler` as a named export, a member of a CommonJS module.exports (its
  // default export), or the default export itself.
  const pick = (obj) => {
    let value = obj;
    for (const part of handlerName.split('.')) {
      if (value === null || value === undefined || !(part in Object(value))) return undefined;
      value = value[part];
    }
    return value;
  };
  let fn = pick(mod);
  if (fn === undefined && mod.default !== undefined && mod.default !== null) fn = pick(mod.default);
  if (fn === undefined && typeof mod.default === 'function') fn = mod.default;
  if (fn === undefined) {
    throw new LoadError('HandlerNotFound', `${entrypoint} exports no '${handlerName}' (and no default function)`);
  }
  if (typeof fn !== 'function') {
    throw new LoadError('HandlerNotCallable', `'${handlerName}' in ${entrypoint} is not a function (it is ${fn === null ? 'null' : typeof fn})`);
  }
  const kind = Object.prototype.toString.call(fn);
  if (kind === '[object GeneratorFunction]' || kind === '[object AsyncGeneratorFunction]') {
    throw new LoadError('HandlerNotSupported', `'${handlerName}' in ${entrypoint} is a generator function; a handler must return its result, not yield it`);
  }
  return fn;
}

async function onLoad(msg) {
  if (loaded) fatal('second load message');
  loaded = true;
  const { code_dir: dir, entrypoint, handler: handlerName, env } = msg;
  if (typeof dir !== 'string' || typeof entrypoint !== 'string' || typeof handlerName !== 'string') {
    fatal('load needs string fields code_dir, entrypoint and handler');
  }
  if (env !== undefined && env !== null) {
    if (typeof env !== 'object' || Array.isArray(env) || !Object.values(env).every((v) => typeof v === 'string')) {
      fatal('load field env must be an object of strings');
    }
    for (const [key, value] of Object.entries(env)) {
      if (!key || key.includes('=') || key.includes('\0') || value.includes('\0')) fatal('load field env holds an invalid variable');
      process.env[key] = value;
    }
  }
  try {
    handler = await importHandler(dir, entrypoint, handlerName);
  } catch (e) {
    const error = e instanceof LoadError ? simpleError(e.kind, e.message) : errorObject(e);
    send(stringify({ type: 'load_error', error }));
    return;
  }
  send('{"type":"loaded"}');
}

// ------------------------------------------------------------- invoke

class Context {
  constructor(id, ctx) {
    const c = ctx && typeof ctx === 'object' ? ctx : {};
    this.request_id = id;
    this.awsRequestId = id;
    this.function_name = c.function_name ?? null;
    this.functionName = this.function_name;
    this.version = c.version ?? null;
    this.functionVersion = this.version;
    this.memory_limit_mb = c.memory_limit_mb ?? null;
    this.memoryLimitInMB = this.memory_limit_mb;
    this.deadline_ms = typeof c.deadline_ms === 'number' ? c.deadline_ms : null;
  }

  /** Milliseconds left before the call is killed. */
  remaining_time_ms() {
    return this.deadline_ms === null ? 2147483647 : Math.max(0, this.deadline_ms - Date.now());
  }

  getRemainingTimeInMillis() {
    return this.remaining_time_ms();
  }

  get env() {
    return process.env;
  }
}

/** Calls the handler; a third parameter gets a Lambda-style callback. */
function call(fn, event, context) {
  if (fn.length >= 3) {
    return new Promise((resolve, reject) => {
      const done = (err, value) => (err ? reject(err) : resolve(value));
      try {
        const r = fn(event, context, done);
        if (r && typeof r.then === 'function') r.then(resolve, reject);
      } catch (e) {
        reject(e);
      }
    });
  }
  return fn(event, context);
}

async function onInvoke(msg) {
  const id = msg.id;
  if (typeof id !== 'string') fatal('invoke needs a string id');
  if (handler === null) fatal('invoke before a successful load');
  const idJson = stringify(id);
  const event = msg.event === undefined ? null : msg.event;
  let value;
  try {
    value = await call(handler, event, new Context(id, msg.context));
  } catch (e) {
    send(`{"type":"result","id":${idJson},"ok":false,"error":${stringify(errorObject(e))}}`);
    return;
  }
  let out;
  try {
    out = value === undefined ? 'null' : stringify(value);
    if (out === undefined) throw new TypeError(`a ${typeof value} is not JSON`);
  } catch (e) {
    const error = simpleError('SerializationError', `handler returned a value that cannot be serialized as JSON: ${e.message}`);
    send(`{"type":"result","id":${idJson},"ok":false,"error":${stringify(error)}}`);
    return;
  }
  const head = `{"type":"result","id":${idJson},"ok":true,"output":`;
  const size = Buffer.byteLength(head) + Buffer.byteLength(out) + 1;
  if (size > MAX_FRAME) {
    const error = simpleError(
      'OutputTooLarge',
      `handler output is ${Buffer.byteLength(out)} bytes once encoded as JSON; the limit is ${MAX_FRAME - Buffer.byteLength(head) - 1} bytes`,
    );
    send(`{"type":"result","id":${idJson},"ok":false,"error":${stringify(error)}}`);
    return;
  }
  send(`${head}${out}}`);
}

// ------------------------------------------------------------- main

// Background failures of user code (a rejected promise nobody awaited, an
// exception in a timer) go to the logs; they never take the runner down.
process.on('unhandledRejection', (reason) => {
  stderr(`Unhandled promise rejection: ${reason instanceof Error ? reason.stack : String(reason)}\n`);
});
process.on('uncaughtException', (e) => {
  stderr(`Uncaught exception: ${e instanceof Error ? e.stack : String(e)}\n`);
});

async function main() {
  send(stringify({ type: 'hello', protocol: PROTOCOL_VERSION, runtime: 'node', runtime_version: process.versions.node }));
  for (;;) {
    const msg = await readMessage();
    if (msg.type === 'invoke') await onInvoke(msg);
    else if (msg.type === 'load') await onLoad(msg);
    else fatal(`unknown message type ${stringify(msg.type)}`);
  }
}

main().catch((e) => {
  stderr(`kumo-runner: internal error\n${e instanceof Error ? e.stack : String(e)}\n`);
  exit(1);
});
