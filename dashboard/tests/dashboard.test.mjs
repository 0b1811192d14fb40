// The dashboard in a real browser (Debian's Chromium, headless, driven by
// playwright-core) against a real `kumo serve`: sign in, create from a
// template, edit, deploy, test, a syntax error at its line, rollback, live
// logs, a variable, calls, metrics. Screenshots of each screen go to
// target/dashboard-screenshots (KUMO_ARTIFACTS to change it).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const KUMO = process.env.KUMO_BIN ?? path.join(root, 'target/debug/kumo');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const ARTIFACTS = process.env.KUMO_ARTIFACTS ?? path.join(root, 'target/dashboard-screenshots');
const TOKEN = 'kumo_browser_0123456789abcdef0123456789abcdef01234567';

let server;
let dataDir;
let base;
let password;
let browser;

/** Starts `kumo serve` on a free port with a fresh data directory. */
async function startServer() {
  dataDir = mkdtempSync(path.join(tmpdir(), 'kumo-browser-'));
  // None of the caller's KUMO_* settings reach the server: only ours.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('KUMO_')));
  env.KUMO_BOOTSTRAP_TOKEN = TOKEN;
  server = spawn(KUMO, ['serve', '--listen', '127.0.0.1:0', '--data-dir', path.join(dataDir, 'data'), '--drain-timeout-ms', '1000'], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stderr = [];
  server.stderr.on('data', (d) => stderr.push(d));
  const lines = readline.createInterface({ input: server.stdout });
  const started = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`kumo serve did not start:\n${Buffer.concat(stderr)}`)), 30000);
    lines.on('line', (line) => {
      const p = line.trim().match(/^password:\s*(\S+)/);
      if (p) password = p[1];
      const m = line.match(/^kumo listening on (\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    server.on('exit', (code) => reject(new Error(`kumo serve exited (${code}):\n${Buffer.concat(stderr)}`)));
  });
  base = await started;
  assert.ok(password, 'the first start prints the admin password');
}

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  await startServer();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
      '--no-first-run', '--disable-component-update', '--disable-sync',
    ],
  });
});

after(async () => {
  await browser?.close();
  if (server && server.exitCode === null) {
    server.kill('SIGTERM');
    await new Promise((r) => server.once('exit', r));
  }
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

/** A page that records console errors and uncaught exceptions. */
async function newPage(viewport = { width: 1400, height: 900 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.problems = [];
  page.allowed = [];
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const text = `${m.text()} ${m.location()?.url ?? ''}`.trim();
    if (page.allowed.some((re) => re.test(text))) return;
    page.problems.push(text);
  });
  page.on('pageerror', (e) => page.problems.push(`uncaught: ${e.message}`));
  return page;
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
}

/** The dashboard's session cookie in the page's browser context. */
async function sessionCookie(page) {
  const cookies = await page.context().cookies(base + '/api/v1');
  const session = cookies.find((c) => c.name === 'kumo_session');
  assert.ok(session, 'signed in with a session cookie');
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, 'Strict');
  assert.equal(session.path, '/api');
  return session;
}

/** Replaces the open file's text as a paste would (no auto-indent). */
async function setCode(page, text) {
  await page.locator('.cm-content').click();
  await page.keyboard.press('Control+A');
  await page.keyboard.press('Delete');
  await page.keyboard.insertText(text);
}

async function deployAndWait(page, expected) {
  await page.getByRole('button', { name: 'Deploy', exact: true }).click();
  await page.getByRole('status').filter({ hasText: expected }).first().waitFor({ timeout: 30000 });
}

/** Sends the test panel's request and waits for its own answer (not the
 * one before it, still on screen), run and logs included. */
async function sendTest(page, query) {
  const shown = page.locator('.test-result');
  const before = (await shown.count()) ? Number(await shown.getAttribute('data-call')) : 0;
  await page.getByLabel('Query').fill(query);
  await page.getByRole('button', { name: 'Send' }).click();
  await page.locator(`.test-result[data-call="${before + 1}"]`).waitFor({ timeout: 15000 });
  await page.getByTestId('test-logs').or(page.getByText('No log lines.')).waitFor({ timeout: 15000 });
}

const V2 = `import os

def handler(event, context):
    name = event.get("query", {}).get("name", "world")
    print(f"greeting {name}")
    return {"hi": name, "version": 2}
`;

const BROKEN = `def handler(event, context):
    name = "x"
    return {"oops": name
`;

const WITH_ENV = `import os

def handler(event, context):
    print("saying", os.environ["GREETING"])
    return {"greeting": os.environ["GREETING"]}
`;

test('a new user goes from sign-in to a live, edited, tested and rolled-back function', { timeout: 240000 }, async () => {
  const page = await newPage();
  try {
    await journey(page);
  } catch (e) {
    await shot(page, 'failure').catch(() => {});
    throw e;
  }
  assert.deepEqual(page.problems, [], 'no console errors');
  await page.context().close();
});

async function journey(page) {

  // Sign in.
  await page.goto(base + '/');
  await page.getByRole('heading', { name: 'Sign in to Kumo' }).waitFor();
  await shot(page, '01-sign-in');
  await page.getByLabel('Password').fill('not the password');
  page.allowed = [/status of 401/];
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').waitFor();
  assert.match(await page.getByRole('alert').innerText(), /password|credentials|invalid/i);
  page.allowed = [];
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();

  // First run: the gallery, then a function from the Python template.
  await page.getByRole('heading', { name: 'Deploy your first function' }).waitFor();
  await shot(page, '02-first-run-gallery');
  await page.locator('[data-template="python"]').click();
  await page.getByLabel('Project').fill('demo');
  await page.getByLabel('Function').fill('hello');
  await shot(page, '03-create-from-template');
  await page.getByRole('button', { name: 'Create and deploy' }).click();
  await page.getByRole('heading', { name: /^hello/ }).waitFor({ timeout: 30000 });
  await page.locator('.cm-content').waitFor();
  assert.match(await page.locator('.cm-content').innerText(), /def handler/);

  // The test panel calls the live URL and shows status, body and logs.
  await sendTest(page, 'name=browser');
  assert.equal(await page.getByTestId('test-status').innerText(), '200 OK');
  assert.deepEqual(JSON.parse(await page.getByTestId('test-body').innerText()), { hello: 'browser' });
  assert.match(await page.getByTestId('test-logs').innerText(), /greeting browser/);
  assert.match(await page.locator('.result-line').innerText(), /cold start|warm/);
  await page.locator('.fn-page h1 .badge').filter({ hasText: /^(idle|busy)$/ }).waitFor({ timeout: 5000 });

  // Edit and deploy: version 2 answers.
  await setCode(page, V2);
  await deployAndWait(page, 'live: version 2');
  await sendTest(page, 'name=edited');
  assert.deepEqual(JSON.parse(await page.getByTestId('test-body').innerText()), { hi: 'edited', version: 2 });
  await shot(page, '04-editor-and-test-panel');

  // A syntax error: refused, shown at its line, version 2 keeps serving.
  await setCode(page, BROKEN);
  page.allowed = [/status of 400/];
  await page.getByRole('button', { name: 'Deploy', exact: true }).click();
  const problem = page.locator('.problem');
  await problem.waitFor({ timeout: 30000 });
  page.allowed = [];
  assert.match(await problem.innerText(), /syntax error/i);
  assert.match(await problem.innerText(), /main\.py, line 3/);
  await page.locator('.cm-lint-marker-error').waitFor();
  assert.equal(await page.locator('.cm-activeLineGutter').first().innerText(), '3', 'the cursor is put on the line');
  await shot(page, '05-syntax-error-at-its-line');
  const still = await fetch(`${base}/fn/demo/hello?name=still`).then((r) => r.json());
  assert.deepEqual(still, { hi: 'still', version: 2 });

  // Rollback to version 1 from the versions tab.
  await page.getByRole('tab', { name: 'Versions' }).click();
  await page.locator('tr[data-version="1"]').getByRole('button', { name: 'Roll back to this' }).click();
  await page.getByRole('status').filter({ hasText: 'Version 1 is live.' }).waitFor();
  await page.locator('tr[data-version="1"]').getByText('live').waitFor();
  await shot(page, '06-versions-after-rollback');
  const back = await fetch(`${base}/fn/demo/hello?name=back`).then((r) => r.json());
  assert.deepEqual(back, { hello: 'back' });

  // Live logs: a call made now shows up.
  await page.getByRole('tab', { name: 'Logs' }).click();
  await page.getByText('● live').waitFor({ timeout: 15000 });
  await fetch(`${base}/fn/demo/hello?name=followed`);
  await page.locator('.logline').filter({ hasText: 'greeting followed' }).waitFor({ timeout: 15000 });
  await page.getByLabel('Filter lines').fill('followed');
  assert.equal(await page.locator('.logline').count(), 1);
  await shot(page, '07-live-logs');

  // Calls: one opened shows its input, output and logs; replay runs it again.
  await page.getByRole('tab', { name: 'Calls' }).click();
  const rows = page.locator('table.clickable tbody tr');
  await rows.first().waitFor();
  const before = await rows.count();
  await rows.first().click();
  const detail = page.getByRole('article', { name: 'Call detail' });
  await detail.waitFor();
  assert.match(await detail.innerText(), /greeting followed/);
  await detail.getByRole('button', { name: 'Replay' }).click();
  await detail.getByText('replay').or(detail.getByText(/greeting followed/)).first().waitFor();
  await page.waitForFunction((n) => document.querySelectorAll('table.clickable tbody tr').length > n, before, { timeout: 15000 });
  await shot(page, '08-calls');

  // Metrics.
  await page.getByRole('tab', { name: 'Metrics' }).click();
  await page.locator('figure.chart').first().waitFor();
  assert.equal(await page.locator('figure.chart').count(), 3);
  const calls = Number(await page.locator('.facts.wide dd').first().innerText());
  assert.ok(calls >= 5, `the calls are counted (${calls})`);
  await shot(page, '09-metrics');

  // A variable on the project page, used by a new version.
  await page.getByRole('link', { name: 'demo' }).first().click();
  await page.getByRole('heading', { name: 'Environment variables and secrets' }).waitFor();
  const add = page.getByRole('form', { name: 'Add a variable' });
  await add.getByLabel('Name').fill('GREETING');
  await add.getByLabel('Value').fill('Bonjour');
  await add.getByRole('button', { name: 'Add' }).click();
  await page.locator('tr[data-key="GREETING"]').waitFor();
  await add.getByLabel('Name').fill('API_KEY');
  await add.getByLabel('Value').fill('sk-very-secret-1234');
  await add.getByLabel('secret').check();
  await add.getByRole('button', { name: 'Add' }).click();
  const secretRow = page.locator('tr[data-key="API_KEY"]');
  await secretRow.waitFor();
  assert.doesNotMatch(await page.locator('body').innerText(), /sk-very-secret/, 'a secret is never shown');
  const routes = page.getByRole('form', { name: 'Add a route' });
  await routes.getByLabel('Path').fill('/hello/:who');
  await routes.getByRole('button', { name: 'Add route' }).click();
  await page.getByText('/hello/:who').waitFor();
  page.allowed = [/status of 409/];
  await routes.getByLabel('Path').fill('/hello/:who');
  await routes.getByRole('button', { name: 'Add route' }).click();
  await page.getByRole('alert').waitFor();
  page.allowed = [];
  assert.match(await page.getByRole('alert').innerText(), /conflict|already|clash/i);
  await shot(page, '10-project-env-and-routes');

  await page.getByRole('link', { name: 'hello' }).first().click();
  await page.locator('.cm-content').waitFor();
  await setCode(page, WITH_ENV);
  await deployAndWait(page, 'live: version 3');
  await sendTest(page, '');
  assert.deepEqual(JSON.parse(await page.getByTestId('test-body').innerText()), { greeting: 'Bonjour' });
  assert.match(await page.getByTestId('test-logs').innerText(), /saying Bonjour/);

  // The apps list: a card with its state, URL and counts.
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Apps' }).click();
  const card = page.locator('[data-function="demo/hello"]');
  await card.waitFor();
  assert.match(await card.innerText(), /\b(busy|idle|scaled to zero)\b/);
  assert.match(await card.innerText(), /\/fn\/demo\/hello/);
  await shot(page, '11-apps');

  // Settings: a private function needs a token.
  await card.getByRole('link', { name: 'hello' }).click();
  await page.getByRole('tab', { name: 'Settings' }).click();
  await page.getByLabel(/Private/).check();
  await page.getByRole('button', { name: 'Save' }).click();
  await page.getByText('Saved.').waitFor();
  await shot(page, '12-settings');
  const anonymous = await fetch(`${base}/fn/demo/hello`);
  assert.equal(anonymous.status, 401);
}

test('the dashboard fits a phone screen and its assets are cached', { timeout: 60000 }, async () => {
  const page = await newPage({ width: 390, height: 844 });
  await page.goto(base + '/');
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Apps' }).waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `no sideways scrolling (${overflow}px too wide)`);
  await shot(page, '13-apps-on-a-phone');
  // The session is a cookie no script can read; signing out revokes it on
  // the server.
  const session = await sessionCookie(page);
  assert.equal(await page.evaluate(() => document.cookie), '', 'no cookie is visible to scripts');
  const stored = await page.evaluate(() => JSON.stringify({ ...localStorage, ...sessionStorage }));
  assert.ok(!stored.includes(session.value), `no credential in storage: ${stored}`);
  const me = () => fetch(base + '/api/v1/me', { headers: { cookie: `kumo_session=${session.value}` } });
  assert.equal((await me()).status, 200);
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('heading', { name: 'Sign in to Kumo' }).waitFor();
  assert.equal((await me()).status, 401, 'the session is revoked');
  assert.deepEqual(page.problems, [], 'no console errors');
  await page.context().close();

  const index = await fetch(base + '/');
  assert.equal(index.headers.get('cache-control'), 'no-cache');
  assert.match(index.headers.get('content-security-policy') ?? '', /script-src 'self'/);
  const html = await index.text();
  const asset = html.match(/\/assets\/[^"]+\.js/)?.[0];
  assert.ok(asset, 'index.html names its script');
  const js = await fetch(base + asset);
  assert.equal(js.status, 200);
  assert.match(js.headers.get('cache-control') ?? '', /immutable/);
  const etag = js.headers.get('etag');
  assert.ok(etag);
  const again = await fetch(base + asset, { headers: { 'if-none-match': etag } });
  assert.equal(again.status, 304);
});

// A function's page, opened in the browser of a signed-in user, tries
// everything that once let it take over the platform: read the
// dashboard's credentials from storage or cookies, call the API with the
// session, and install a service worker over the dashboard. Every try
// fails: the page runs sandboxed in an opaque origin of its own.
const THIEF = `
RESULT = """<!doctype html><title>thief</title><pre id=result></pre><script>
(async () => {
  const out = {};
  const attempt = async (name, f) => {
    try { out[name] = { ok: true, value: await f() }; } catch (e) { out[name] = { ok: false, error: String(e) }; }
  };
  await attempt('origin', () => location.origin + ' / ' + self.origin);
  await attempt('cookie', () => document.cookie);
  await attempt('localStorage', () => JSON.stringify(localStorage));
  await attempt('sessionStorage', () => JSON.stringify(sessionStorage));
  await attempt('me', async () => {
    const r = await fetch('/api/v1/me', { credentials: 'include' });
    return r.status + ' ' + (await r.text());
  });
  await attempt('create', async () => {
    const r = await fetch('/api/v1/projects', {
      method: 'POST', credentials: 'include', headers: { 'content-type': 'text/plain' },
      body: JSON.stringify({ name: 'stolen' }),
    });
    return r.status;
  });
  await attempt('serviceWorker', () => navigator.serviceWorker.register('/fn/evil/sw.js', { scope: '/' }));
  document.getElementById('result').textContent = JSON.stringify(out);
})();
</script>"""

def handler(event):
    if event["path"] == "/sw.js":
        return {"statusCode": 200, "headers": {"content-type": "text/javascript", "service-worker-allowed": "/"},
                "body": "self.addEventListener('fetch', e => e.respondWith(new Response('owned')));"}
    return {"statusCode": 200, "headers": {"content-type": "text/html"}, "body": RESULT}
`;

test("a function's page cannot reach the dashboard's session or origin", { timeout: 60000 }, async () => {
  const deployed = await fetch(`${base}/api/v1/projects/evil/functions/thief/deployments`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ files: { 'main.py': THIEF } }),
  });
  assert.equal(deployed.status, 201, await deployed.text());

  const page = await newPage();
  await page.goto(base + '/');
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Apps' }).waitFor();
  await sessionCookie(page);

  await page.goto(`${base}/fn/evil/thief`);
  const text = await page.locator('#result').filter({ hasText: '{' }).innerText({ timeout: 20000 });
  const out = JSON.parse(text);
  await shot(page, '14-a-thief-function');
  assert.match(out.origin.value, / \/ null$/, `the page runs in an opaque origin: ${text}`);
  assert.equal(out.cookie.ok, false, `document.cookie is out of reach: ${text}`);
  assert.equal(out.localStorage.ok, false, `localStorage is out of reach: ${text}`);
  assert.equal(out.sessionStorage.ok, false, `sessionStorage is out of reach: ${text}`);
  assert.equal(out.me.ok, false, `the API does not answer the page: ${text}`);
  assert.equal(out.create.ok && out.create.value < 300, false, `the page changes nothing: ${text}`);
  assert.equal(out.serviceWorker.ok, false, `no service worker is installed: ${text}`);

  // The dashboard still works, unowned, and nothing was created.
  await page.goto(base + '/');
  await page.getByRole('heading', { name: 'Apps' }).waitFor();
  const workers = await page.evaluate(async () => (await navigator.serviceWorker.getRegistrations()).length);
  assert.equal(workers, 0, 'no service worker controls the dashboard');
  const stolen = await fetch(`${base}/api/v1/projects/stolen`, { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(stolen.status, 404);
  await page.context().close();
});
