// The dashboard's browser tests share this: a real `exai daemon` on a free loopback port with a
// fresh data directory, Debian's Chromium driven by playwright-core, pages that record every
// console error and failed request, and screenshots under test-output/ for a person to look at.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const EXAI_BIN = process.env.EXAI_BIN || resolve(here, '../../../target/debug/exai');
export const OUTPUT = process.env.EXAI_TEST_OUTPUT
  ? resolve(process.env.EXAI_TEST_OUTPUT, 'dashboard')
  : resolve(here, '../test-output/dashboard');

const SCRUB = new Set([
  'KIMI_API_KEY', 'MOONSHOT_API_KEY', 'KIMI_API_URL', 'GLM_API_KEY', 'ZHIPUAI_API_KEY',
  'GLM_API_URL', 'OPENAI_API_KEY', 'DEFAULT_MODEL', 'WORKFLOW_TOOL_TIMEOUT_SECS',
  'SIMPLE_TOOL_TIMEOUT_SECS', 'EXPERT_ANALYSIS_TIMEOUT_SECS', 'MAX_MCP_OUTPUT_TOKENS',
  'DISABLED_TOOLS', 'RUST_LOG',
]);

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function freePort() {
  const srv = createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address();
  srv.close();
  await once(srv, 'close');
  return port;
}

/**
 * Start `exai daemon` with a fresh data directory. `token`: require it (EXAI_AUTH_TOKEN);
 * `env`: more variables; `config`: the text of an exai.toml written into the data directory.
 * Returns {base, port, token, dataDir, env, output(), stop()}.
 */
export async function startDaemon(t, { token, env: extra = {}, config } = {}) {
  const dataDir = await mkdtemp(join(tmpdir(), 'exai-dash-'));
  t.after(() => rm(dataDir, { recursive: true, force: true }));
  if (config) await writeFile(join(dataDir, 'exai.toml'), config, { mode: 0o600 });
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !k.startsWith('EXAI_') && !SCRUB.has(k)) env[k] = v;
  }
  Object.assign(env, { EXAI_HOME: dataDir, EXAI_TOOLS_PROFILE: 'full', EXAI_EMBED_BACKEND: 'none' }, extra);
  if (process.env.ORT_DYLIB_PATH && !env.ORT_DYLIB_PATH) env.ORT_DYLIB_PATH = process.env.ORT_DYLIB_PATH;
  if (token) env.EXAI_AUTH_TOKEN = token;
  const port = await freePort();
  const proc = spawn(EXAI_BIN, ['daemon', '--listen', `127.0.0.1:${port}`], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  proc.stdout.on('data', (c) => { output += c; });
  proc.stderr.on('data', (c) => { output += c; });
  const exited = new Promise((res) => proc.once('exit', (code, signal) => res({ code, signal })));
  let running = true;
  exited.then(() => { running = false; });
  const base = `http://127.0.0.1:${port}`;
  const d = {
    base, port, token, dataDir, env, proc, output: () => output,
    async stop() {
      if (!running) return exited;
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 15000);
      const r = await exited;
      clearTimeout(timer);
      return r;
    },
  };
  t.after(() => d.stop());
  const headers = token ? { authorization: `Bearer ${token}` } : {};
  for (let i = 0; i < 300; i++) {
    if (!running) throw new Error(`exai daemon exited before it was ready:\n${output}`);
    try {
      const r = await fetch(`${base}/ready`, { headers });
      if (r.status === 200) return d;
    } catch { /* not listening yet */ }
    await sleep(50);
  }
  throw new Error(`exai daemon not ready after 15 s:\n${output}`);
}

/** The system Chromium (Debian's), headless, closed when the test ends. */
export async function openBrowser(t) {
  const executablePath = process.env.EXAI_CHROMIUM || '/usr/bin/chromium';
  if (!existsSync(executablePath)) {
    throw new Error(`Chromium not found at ${executablePath}: install it (scripts/install-chromium.sh; Debian: apt install chromium) or set EXAI_CHROMIUM`);
  }
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
  t.after(() => browser.close());
  return browser;
}

/**
 * A new page (its own context: own cookies) that records console errors, page errors and failed
 * requests. `allow`: regexes of problems this test expects (e.g. a refused request it makes on
 * purpose). `assertClean()` fails on anything else.
 */
export async function newPage(browser, { width = 1280, height = 800, colorScheme = 'light', allow = [] } = {}) {
  const context = await browser.newContext({ viewport: { width, height }, colorScheme });
  const page = await context.newPage();
  const problems = [];
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => {
    const why = r.failure() ? r.failure().errorText : 'failed';
    // A live stream cut by the page leaving, or a navigation superseding a fetch, is not a fault.
    if (why === 'net::ERR_ABORTED' && (r.url().includes('/ui/events') || r.resourceType() === 'eventsource')) return;
    problems.push(`request failed: ${r.method()} ${r.url()} ${why}`);
  });
  page.on('response', (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.request().method()} ${r.url()}`);
  });
  return {
    page,
    context,
    problems: () => problems.filter((p) => !allow.some((re) => re.test(p))),
    assertClean() {
      const left = problems.filter((p) => !allow.some((re) => re.test(p)));
      assert.deepEqual(left, [], `console errors or failed requests:\n${left.join('\n')}`);
    },
  };
}

/** Open the dashboard and sign in with `token` (when the daemon asks for one). */
export async function signIn(page, base, token) {
  await page.goto(`${base}/`);
  if (token) {
    await page.getByLabel('Token').fill(token);
    await page.getByRole('button', { name: 'Sign in' }).click();
  }
  await page.getByRole('navigation', { name: 'Pages' }).getByRole('link', { name: 'Overview' }).waitFor();
}

/** Go to a page of the dashboard by its nav link and wait for its heading. */
export async function goTo(page, title) {
  await page.getByRole('navigation', { name: 'Pages' }).getByRole('link', { name: title }).click();
  await page.getByRole('heading', { level: 1, name: title }).waitFor();
}

/** A full-page PNG under test-output/dashboard/NAME.png; returns its path. */
export async function shot(page, name) {
  await mkdir(OUTPUT, { recursive: true });
  const path = join(OUTPUT, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

/** A JSON-RPC MCP call over Streamable HTTP (initialize, notify, call) without an SDK. */
export async function mcpCall(d, name, args) {
  const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
  if (d.token) headers.authorization = `Bearer ${d.token}`;
  const post = async (body, session) => {
    const r = await fetch(`${d.base}/mcp`, { method: 'POST', headers: session ? { ...headers, 'mcp-session-id': session } : headers, body: JSON.stringify(body) });
    const text = await r.text();
    const data = text.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).filter(Boolean).map((l) => JSON.parse(l));
    return { r, messages: data.length ? data : (text.trim().startsWith('{') ? [JSON.parse(text)] : []) };
  };
  const init = await post({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'exai-dashboard-test', version: '1' } } });
  const session = init.r.headers.get('mcp-session-id');
  await post({ jsonrpc: '2.0', method: 'notifications/initialized' }, session);
  const call = await post({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name, arguments: args } }, session);
  const result = call.messages.find((m) => m.id === 2);
  assert.ok(result, `no answer to tools/call ${name}: ${JSON.stringify(call.messages)}`);
  return result;
}

export const MOCK_KEY = 'mock-key';

/** The built-in mock provider (`exai mock-llm`, a real OpenAI-compatible HTTP server); its URL. */
export async function startMockLlm(t) {
  const proc = spawn(EXAI_BIN, ['mock-llm', '--api-key', MOCK_KEY], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => proc.kill('SIGTERM'));
  let buffered = '';
  for await (const chunk of proc.stdout) {
    buffered += chunk;
    const nl = buffered.indexOf('\n');
    if (nl >= 0) return JSON.parse(buffered.slice(0, nl)).url;
  }
  throw new Error('exai mock-llm exited before printing its URL');
}

/** Environment for a daemon whose Kimi and GLM providers are the mock at `url`. */
export function mockProviderEnv(url, root) {
  return { KIMI_API_KEY: MOCK_KEY, KIMI_API_URL: url, GLM_API_KEY: MOCK_KEY, GLM_API_URL: url, ...(root ? { EXAI_TOOLS_ALLOWED_ROOTS: root } : {}) };
}
