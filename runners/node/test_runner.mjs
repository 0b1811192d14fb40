// Tests of the Node.js runner over the runner protocol, with no Kumo host:
// each test starts `node kumo_runner.mjs` with fd 3 connected to a socket
// and plays the host. Run with `node --test runners/node/`.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const RUNNER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'kumo_runner.mjs');

class Runner {
  constructor(files) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kumo-node-test-'));
    for (const [name, source] of Object.entries(files ?? {})) {
      fs.mkdirSync(path.dirname(path.join(this.dir, name)), { recursive: true });
      fs.writeFileSync(path.join(this.dir, name), source);
    }
    // libuv makes 'pipe' stdio a socketpair: fd 3 is the channel.
    this.proc = spawn(process.execPath, [RUNNER], { stdio: ['ignore', 'pipe', 'pipe', 'pipe'] });
    this.channel = this.proc.stdio[3];
    this.out = '';
    this.err = '';
    this.proc.stdout.on('data', (d) => (this.out += d));
    this.proc.stderr.on('data', (d) => (this.err += d));
    this.buf = Buffer.alloc(0);
    this.waiters = [];
    this.channel.on('data', (d) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.pump();
    });
    this.exited = new Promise((resolve) => this.proc.on('exit', (code) => resolve(code)));
  }

  pump() {
    while (this.waiters.length && this.buf.length >= 4) {
      const len = this.buf.readUInt32BE(0);
      if (this.buf.length < 4 + len) return;
      const msg = JSON.parse(this.buf.subarray(4, 4 + len).toString('utf8'));
      this.buf = this.buf.subarray(4 + len);
      this.waiters.shift()(msg);
    }
  }

  recv() {
    return new Promise((resolve) => {
      this.waiters.push(resolve);
      this.pump();
    });
  }

  sendRaw(bytes) {
    this.channel.write(bytes);
  }

  send(obj) {
    const body = Buffer.from(JSON.stringify(obj));
    const head = Buffer.alloc(4);
    head.writeUInt32BE(body.length);
    this.sendRaw(Buffer.concat([head, body]));
  }

  async load(entrypoint = 'index.js', handler = 'handler', extra = {}) {
    assert.equal((await this.recv()).type, 'hello');
    this.send({ type: 'load', code_dir: this.dir, entrypoint, handler, ...extra });
    return this.recv();
  }

  async invoke(event, id = 'r1', context = {}) {
    this.send({
      type: 'invoke',
      id,
      event,
      context: { function_name: 'f', version: 3, memory_limit_mb: 128, deadline_ms: Date.now() + 30000, ...context },
    });
    return this.recv();
  }

  async finish() {
    this.channel.end();
    const code = await this.exited;
    fs.rmSync(this.dir, { recursive: true, force: true });
    return code;
  }
}

async function loaded(files, entrypoint = 'index.js', handler = 'handler') {
  const r = new Runner(files);
  assert.deepEqual(await r.load(entrypoint, handler), { type: 'loaded' });
  return r;
}

test('hello names the runtime and protocol', async () => {
  const r = new Runner();
  assert.deepEqual(await r.recv(), { type: 'hello', protocol: 1, runtime: 'node', runtime_version: process.versions.node });
  assert.equal(await r.finish(), 0);
});

test('a CommonJS handler gets the event and a context', async () => {
  const r = await loaded({
    'index.js': `exports.handler = (event, context) => ({ event, id: context.request_id, fn: context.functionName,
      version: context.version, mem: context.memoryLimitInMB, left: context.getRemainingTimeInMillis() > 1000,
      same: context.remaining_time_ms() <= 30000, env: context.env === process.env });`,
  });
  const reply = await r.invoke({ a: [1, 'two'] }, 'run-9');
  assert.deepEqual(reply, {
    type: 'result',
    id: 'run-9',
    ok: true,
    output: { event: { a: [1, 'two'] }, id: 'run-9', fn: 'f', version: 3, mem: 128, left: true, same: true, env: true },
  });
  assert.equal(await r.finish(), 0);
});

test('an ES module default export, async, keeps state between calls', async () => {
  const r = await loaded({ 'app.mjs': 'let n = 0;\nexport default async (e) => { await null; n += 1; return [n, e]; };\n' }, 'app.mjs');
  assert.deepEqual((await r.invoke('x')).output, [1, 'x']);
  assert.deepEqual((await r.invoke(null, 'r2')).output, [2, null]);
  await r.finish();
});

test('module.exports.handler in a .cjs file and an exported handler in ESM', async () => {
  const a = await loaded({ 'h.cjs': 'module.exports.handler = () => "cjs";\n' }, 'h.cjs');
  assert.equal((await a.invoke({})).output, 'cjs');
  await a.finish();
  const b = await loaded({ 'h.mjs': 'export const handler = () => "esm";\nexport default () => "not me";\n' }, 'h.mjs');
  assert.equal((await b.invoke({})).output, 'esm');
  await b.finish();
});

test('a handler with a third parameter gets a callback', async () => {
  const r = await loaded({ 'index.js': 'exports.handler = (e, c, cb) => setTimeout(() => cb(null, e * 2), 1);\n' });
  assert.equal((await r.invoke(21)).output, 42);
  await r.finish();
});

test('undefined becomes null; unencodable values fail with SerializationError', async () => {
  const r = await loaded({
    'index.js': 'exports.handler = (e) => e === 1 ? undefined : e === 2 ? 10n : e === 3 ? (() => 1) : { x: NaN };\n',
  });
  assert.equal((await r.invoke(1)).output, null);
  for (const n of [2, 3]) {
    const reply = await r.invoke(n, `r${n}`);
    assert.equal(reply.ok, false);
    assert.equal(reply.error.type, 'SerializationError');
    assert.match(reply.error.message, /^handler returned a value that cannot be serialized as JSON: /);
  }
  assert.deepEqual((await r.invoke(4, 'r4')).output, { x: null });
  await r.finish();
});

test('a thrown error fails the call with a user-only stack; the next call works', async () => {
  const r = await loaded({
    'index.js': 'function deep(){ throw new TypeError("nope"); }\nexports.handler = (e) => { if (e) deep(); return "ok"; };\n',
  });
  const reply = await r.invoke(true);
  assert.equal(reply.ok, false);
  assert.equal(reply.error.type, 'TypeError');
  assert.equal(reply.error.message, 'nope');
  assert.match(reply.error.traceback, /at deep \(.*index\.js:1:/);
  assert.doesNotMatch(reply.error.traceback, /kumo_runner|node:internal/);
  assert.equal((await r.invoke(false, 'r2')).output, 'ok');
  const thrown = await loaded({ 'index.js': 'exports.handler = () => { throw { code: 7 }; };\n' });
  const odd = await thrown.invoke(null);
  assert.equal(odd.error.type, 'Error');
  assert.match(odd.error.message, /thrown value: \{"code":7\}/);
  await r.finish();
  await thrown.finish();
});

test('load errors name what is wrong', async () => {
  const cases = [
    [{ 'index.js': 'exports.other = 1;\n' }, 'index.js', 'handler', 'HandlerNotFound'],
    [{ 'index.js': 'exports.handler = 5;\n' }, 'index.js', 'handler', 'HandlerNotCallable'],
    [{ 'index.js': 'exports.handler = function* () {};\n' }, 'index.js', 'handler', 'HandlerNotSupported'],
    [{}, 'missing.js', 'handler', 'EntrypointNotFound'],
    [{ 'index.py': '' }, 'index.py', 'handler', 'InvalidEntrypoint'],
    [{ 'index.js': '' }, '../index.js', 'handler', 'InvalidEntrypoint'],
    [{ 'index.js': 'throw new Error("at import");\n' }, 'index.js', 'handler', 'Error'],
  ];
  for (const [files, entrypoint, handler, type] of cases) {
    const r = new Runner(files);
    const reply = await r.load(entrypoint, handler);
    assert.equal(reply.type, 'load_error', JSON.stringify(reply));
    assert.equal(reply.error.type, type, JSON.stringify(reply));
    await r.finish();
  }
});

test('load env is set before the module runs', async () => {
  const r = new Runner({ 'index.js': 'const at = process.env.GREETING;\nexports.handler = () => at;\n' });
  assert.deepEqual(await r.load('index.js', 'handler', { env: { GREETING: 'hi' } }), { type: 'loaded' });
  assert.equal((await r.invoke(null)).output, 'hi');
  await r.finish();
});

test('console output goes to the log pipes, never the channel', async () => {
  const r = await loaded({ 'index.js': 'exports.handler = () => { console.log("out"); console.error("err"); return 1; };\n' });
  assert.equal((await r.invoke(null)).output, 1);
  await r.finish();
  assert.equal(r.out, 'out\n');
  assert.equal(r.err, 'err\n');
});

test('load and invoke may be written before hello is read', async () => {
  const r = new Runner({ 'index.js': 'exports.handler = (e) => e + 1;\n' });
  r.send({ type: 'load', code_dir: r.dir, entrypoint: 'index.js', handler: 'handler' });
  r.send({ type: 'invoke', id: 'a', event: 1, context: {} });
  assert.equal((await r.recv()).type, 'hello');
  assert.deepEqual(await r.recv(), { type: 'loaded' });
  assert.deepEqual(await r.recv(), { type: 'result', id: 'a', ok: true, output: 2 });
  await r.finish();
});

test('protocol errors exit with code 2 and say why', async () => {
  const cases = [
    (r) => r.send({ type: 'dance' }),
    (r) => r.send({ type: 'invoke', id: 'x', event: 1 }),
    (r) => r.sendRaw(Buffer.from([0x7f, 0xff, 0xff, 0xff])),
    (r) => {
      const body = Buffer.from('[1,2]');
      const head = Buffer.alloc(4);
      head.writeUInt32BE(body.length);
      r.sendRaw(Buffer.concat([head, body]));
    },
    (r) => r.send({ type: 'load', code_dir: r.dir, entrypoint: 'index.js', handler: 'handler', env: { A: 1 } }),
  ];
  for (const act of cases) {
    const r = new Runner({ 'index.js': 'exports.handler = () => 1;\n' });
    assert.equal((await r.recv()).type, 'hello');
    act(r);
    assert.equal(await r.exited, 2);
    assert.match(r.err, /^kumo-runner: protocol error: /);
    fs.rmSync(r.dir, { recursive: true, force: true });
  }
});

test('end of file mid-frame is a protocol error; at a frame boundary, exit 0', async () => {
  const r = new Runner();
  assert.equal((await r.recv()).type, 'hello');
  r.sendRaw(Buffer.from([0, 0, 0, 10, 0x7b]));
  r.channel.end();
  assert.equal(await r.exited, 2);
  const s = await loaded({ 'index.js': 'exports.handler = () => { setInterval(() => {}, 1000); return 1; };\n' });
  assert.equal((await s.invoke(null)).output, 1);
  assert.equal(await s.finish(), 0, 'background timers do not keep the runner alive');
});
