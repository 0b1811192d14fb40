// Kumo Node.js syntax checker.
//
// Run as `node --experimental-vm-modules --no-warnings kumo_check.mjs DIR`
// (this is how Kumo runs it, inside a sandbox with the deployment mounted
// read-only). It parses every .js, .mjs and .cjs file under DIR, outside
// node_modules, without running any of it: ES modules (.mjs, and .js where
// the nearest package.json says "type": "module") with vm.SourceTextModule,
// CommonJS with vm.Script over the module wrapper. It writes one JSON object
// to stdout, the same answer as the Python checker:
//
//     {"ok": true}
//     {"ok": false, "file": "index.js", "line": 3, "column": 5,
//      "message": "Unexpected token ')'", "text": "function f() {)"}
//
// The error reported is the first one in sorted path order; line and column
// are 1-based, or null when the parser gives no position. Exit status is 0
// in both cases and 1 only when DIR cannot be read.

import fs from 'node:fs';
import path from 'node:path';
import vm from 'node:vm';
import { Module } from 'node:module';
import { spawnSync } from 'node:child_process';

const EXTENSIONS = new Set(['.js', '.mjs', '.cjs']);

function sources(root) {
  const out = [];
  const walk = (dir) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      if (entry.name === 'node_modules') continue;
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.isFile() && EXTENSIONS.has(path.extname(entry.name))) out.push(path.relative(root, full));
    }
  };
  walk(root);
  return out.sort();
}

/** Whether a .js file is an ES module: the nearest package.json decides. */
function isModule(root, rel) {
  const ext = path.extname(rel);
  if (ext === '.mjs') return true;
  if (ext === '.cjs') return false;
  let dir = path.dirname(path.join(root, rel));
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (fs.existsSync(pkg)) {
      try {
        return JSON.parse(fs.readFileSync(pkg, 'utf8')).type === 'module';
      } catch {
        return false;
      }
    }
    if (dir === root || dir === path.dirname(dir)) return false;
    dir = path.dirname(dir);
  }
}

/** Line and column of a SyntaxError from vm, whose stack starts "file:LINE". */
function position(e, file, source, wrapped) {
  const first = String(e.stack ?? '').split('\n', 1)[0];
  const m = first.startsWith(file) ? /:(\d+)$/.exec(first) : null;
  if (!m) return { line: null, column: null, text: null };
  const line = Number(m[1]);
  const caret = String(e.stack).split('\n')[2] ?? '';
  let column = caret.includes('^') ? caret.indexOf('^') + 1 : null;
  if (wrapped && line === 1 && column !== null) column = Math.max(1, column - Module.wrapper[0].length);
  const text = source.split('\n')[line - 1] ?? null;
  return { line, column, text: text === null ? null : text.replace(/\r$/, '') };
}

/** The position `node --check` reports (ES modules: vm gives none). */
function checkPosition(file, source) {
  const out = spawnSync(process.execPath, ['--check', file], { encoding: 'utf8', timeout: 10000 });
  const lines = String(out.stderr ?? '').split('\n');
  const m = (lines[0] ?? '').startsWith(file) ? /:(\d+)$/.exec(lines[0]) : null;
  if (!m) return { line: null, column: null, text: null };
  const line = Number(m[1]);
  const caret = lines[2] ?? '';
  const text = source.split('\n')[line - 1];
  return {
    line,
    column: caret.includes('^') ? caret.indexOf('^') + 1 : null,
    text: text === undefined ? null : text.replace(/\r$/, ''),
  };
}

function check(root) {
  for (const rel of sources(root)) {
    const file = path.join(root, rel);
    const source = fs.readFileSync(file, 'utf8');
    const esm = isModule(root, rel);
    try {
      if (esm) {
        // eslint-disable-next-line no-new
        new vm.SourceTextModule(source, { identifier: file });
      } else {
        // eslint-disable-next-line no-new
        new vm.Script(Module.wrap(source), { filename: file });
      }
    } catch (e) {
      if (!(e instanceof SyntaxError) && e?.name !== 'SyntaxError') throw e;
      let where = position(e, file, source, !esm);
      if (where.line === null && esm) where = checkPosition(file, source);
      return { ok: false, file: rel, message: String(e.message), ...where };
    }
  }
  return { ok: true };
}

const root = process.argv[2];
let answer;
try {
  answer = check(path.resolve(root));
} catch (e) {
  process.stderr.write(`kumo-check: ${e?.message ?? e}\n`);
  process.exit(1);
}
process.stdout.write(JSON.stringify(answer) + '\n');
