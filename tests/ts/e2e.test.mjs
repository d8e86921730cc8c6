// End-to-end tests of the real exai binary with the official MCP TypeScript SDK, over stdio,
// Streamable HTTP and the shim. Run with `EXAI_BIN=/path/to/exai node --test`.

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';

const CORE_TOOLS = ['version', 'health', 'listmodels'];
const AI_TOOLS = ['chat', 'thinkdeep', 'consensus', 'challenge', 'planner', 'analyze', 'codereview', 'debug',
  'precommit', 'refactor', 'secaudit', 'testgen', 'tracer', 'docgen', 'list_threads', 'glm_web_search',
  'kimi_chat_with_files'];
const KB_TOOLS = ['search_docs', 'get_chunk', 'get_document', 'list_sources', 'get_technologies',
  'get_categories', 'resolve_library', 'index_path', 'job_status', 'cancel_job', 'remove_source'];

const HERE = fileURLToPath(new URL('.', import.meta.url));
const EXAI_BIN = process.env.EXAI_BIN || resolve(HERE, '../../target/debug/exai');

// Variables a developer's shell may hold that would change what the server does.
const SCRUB = new Set([
  'KIMI_API_KEY', 'MOONSHOT_API_KEY', 'KIMI_API_URL', 'GLM_API_KEY', 'ZHIPUAI_API_KEY',
  'GLM_API_URL', 'OPENAI_API_KEY', 'DEFAULT_MODEL', 'WORKFLOW_TOOL_TIMEOUT_SECS',
  'SIMPLE_TOOL_TIMEOUT_SECS', 'EXPERT_ANALYSIS_TIMEOUT_SECS', 'MAX_MCP_OUTPUT_TOKENS',
  'DISABLED_TOOLS', 'RUST_LOG',
]);

/** A clean environment: process.env without EXAI_* or provider variables, plus EXAI_HOME. */
function baseEnv(home, extra = {}) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !k.startsWith('EXAI_') && !SCRUB.has(k)) env[k] = v;
  }
  // Every tool is checked, so every tool is listed; the lean default has its own test below.
  return { ...env, EXAI_HOME: home, EXAI_TOOLS_PROFILE: 'full', ...extra };
}

/** A fresh data directory, removed when the test ends. */
async function tempHome(t) {
  const dir = await mkdtemp(join(tmpdir(), 'exai-ts-e2e-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function freePort() {
  const srv = createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address();
  srv.close();
  await once(srv, 'close');
  return port;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function newClient() {
  const client = new Client({ name: 'exai-ts-e2e', version: '1.0.0' });
  // The SDK handles a notification one microtask later than a response that arrives in the same
  // read: a call's last progress notification, sent just before its result, can then find its
  // handler already gone and is reported here instead. Keep those, so tests can still check that
  // exai sent every notification, in order, before the result.
  client.lateProgress = [];
  client.onerror = (err) => {
    const m = /progress notification for an unknown token: (.*)$/s.exec(err.message);
    if (m) client.lateProgress.push(JSON.parse(m[1]).params.progress);
  };
  return client;
}

// Progress values a call's onprogress saw, plus any the SDK reported late (see newClient).
function allProgress(client, seen) {
  return [...seen, ...client.lateProgress.splice(0)];
}

/** The stdio transport for `exai ARGS...`, with stderr captured for failure messages. */
function stdioTransport(args, env) {
  const transport = new StdioClientTransport({ command: EXAI_BIN, args, env, stderr: 'pipe' });
  let stderr = '';
  transport.stderr.on('data', (chunk) => { stderr += chunk; });
  return { transport, stderr: () => stderr };
}

/** The structured JSON of a successful tool result. */
function structured(result) {
  assert.ok(!result.isError, `tool failed: ${JSON.stringify(result)}`);
  if (result.structuredContent !== undefined) return result.structuredContent;
  return JSON.parse(result.content[0].text);
}

/** Start `exai daemon` on a free loopback port and wait until /ready answers 200. */
async function startDaemon(home, extraEnv = {}) {
  const port = await freePort();
  const proc = spawn(EXAI_BIN, ['daemon', '--listen', `127.0.0.1:${port}`], {
    env: baseEnv(home, extraEnv),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  proc.stdout.on('data', (c) => { output += c; });
  proc.stderr.on('data', (c) => { output += c; });
  const exited = new Promise((res) => {
    proc.once('exit', (code, signal) => res({ code, signal }));
    proc.once('error', (error) => { output += `\nspawn failed: ${error.message}`; res({ code: null, signal: null, error }); });
  });
  let running = true;
  exited.then(() => { running = false; });

  const base = `http://127.0.0.1:${port}`;
  const d = {
    port, proc, base, url: `${base}/mcp`, output: () => output,
    /** SIGTERM, then the exit code (SIGKILL after `ms`). */
    async stop(ms = 20000) {
      if (running) proc.kill('SIGTERM');
      const timer = setTimeout(() => { if (running) proc.kill('SIGKILL'); }, ms);
      const result = await exited;
      clearTimeout(timer);
      return result;
    },
    kill() { if (running) proc.kill('SIGKILL'); return exited; },
  };

  const deadline = Date.now() + 15000;
  for (;;) {
    if (!running) throw new Error(`daemon exited before it was ready:\n${output}`);
    try {
      const res = await fetch(`${base}/ready`, { signal: AbortSignal.timeout(1000) });
      if (res.status === 200) return d;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) {
      await d.kill();
      throw new Error(`${base}/ready did not answer within 15 s:\n${output}`);
    }
    await sleep(50);
  }
}

describe('stdio: exai serve', () => {
  test('lists version and health, calls both', async (t) => {
    const home = await tempHome(t);
    const { transport, stderr } = stdioTransport(['serve'], baseEnv(home));
    const client = newClient();
    try {
      await client.connect(transport);
      assert.equal(client.getServerVersion()?.name, 'exai');
      const { tools } = await client.listTools();
      assert.deepEqual(tools.map((x) => x.name).sort(), [...CORE_TOOLS, ...KB_TOOLS, ...AI_TOOLS].sort());
      const version = structured(await client.callTool({ name: 'version', arguments: {} }));
      assert.equal(version.name, 'exai');
      assert.equal(version.transport, 'stdio');
      const health = structured(await client.callTool({ name: 'health', arguments: {} }));
      assert.equal(health.status, 'ok');
    } catch (e) {
      e.message += `\nexai stderr:\n${stderr()}`;
      throw e;
    } finally {
      await client.close();
    }
  });

  test('the lean default lists five tools; enable_tools shows more after list_changed', async (t) => {
    const home = await tempHome(t);
    const { transport, stderr } = stdioTransport(['serve'], baseEnv(home, { EXAI_TOOLS_PROFILE: 'lean' }));
    const client = newClient();
    let changed = 0;
    client.setNotificationHandler(ToolListChangedNotificationSchema, () => { changed += 1; });
    try {
      await client.connect(transport);
      assert.equal(client.getServerCapabilities()?.tools?.listChanged, true);
      const names = async () => (await client.listTools()).tools.map((x) => x.name).sort();
      assert.deepEqual(await names(), ['chat', 'consensus', 'enable_tools', 'get_document', 'search_docs']);
      const catalogue = await client.callTool({ name: 'enable_tools', arguments: {} });
      assert.ok(catalogue.content[0].text.includes('- codereview (ai):'), catalogue.content[0].text);
      const enabled = await client.callTool({ name: 'enable_tools', arguments: { enable: ['codereview', 'kb'] } });
      assert.ok(enabled.content[0].text.startsWith('Listed from now on:'), enabled.content[0].text);
      for (let i = 0; i < 100 && changed === 0; i += 1) await sleep(20);
      assert.equal(changed, 1);
      const now = await names();
      for (const name of ['codereview', ...KB_TOOLS]) assert.ok(now.includes(name), `${name} in ${now}`);
      assert.ok(!now.includes('debug'));
      // A tool not listed is callable all the same.
      assert.equal(structured(await client.callTool({ name: 'version', arguments: {} })).name, 'exai');
    } catch (e) {
      e.message += `\nexai stderr:\n${stderr()}`;
      throw e;
    } finally {
      await client.close();
    }
  });

  test('progress, unknown tool, bad arguments, then still serving', async (t) => {
    const home = await tempHome(t);
    const { transport, stderr } = stdioTransport(['serve'], baseEnv(home, { EXAI_TOOLS_DIAGNOSTICS: '1' }));
    const client = newClient();
    try {
      await client.connect(transport);
      const seen = [];
      const out = await client.callTool(
        { name: 'ping', arguments: { delay_ms: 100, progress_steps: 3 } },
        undefined,
        { onprogress: (p) => seen.push(p.progress) },
      );
      assert.equal(structured(out).pong, 'pong');
      assert.deepEqual(allProgress(client, seen), [1, 2, 3]);

      await assert.rejects(
        client.callTool({ name: 'no_such_tool', arguments: {} }),
        (err) => /not found/i.test(err.message),
      );

      const wrong = await client.callTool({ name: 'ping', arguments: { delay_ms: 'x' } });
      assert.equal(wrong.isError, true);
      assert.ok(wrong.content[0].text.includes('`delay_ms`'), wrong.content[0].text);

      const version = structured(await client.callTool({ name: 'version', arguments: {} }));
      assert.equal(version.name, 'exai');
    } catch (e) {
      e.message += `\nexai stderr:\n${stderr()}`;
      throw e;
    } finally {
      await client.close();
    }
  });
});

describe('Streamable HTTP: exai daemon', () => {
  test('lists tools, calls version and ping with progress, stops on SIGTERM', async (t) => {
    const home = await tempHome(t);
    const daemon = await startDaemon(home, { EXAI_TOOLS_DIAGNOSTICS: '1' });
    t.after(() => daemon.kill());
    const client = newClient();
    try {
      await client.connect(new StreamableHTTPClientTransport(new URL(daemon.url)));
      assert.equal(client.getServerVersion()?.name, 'exai');
      const { tools } = await client.listTools();
      assert.deepEqual(tools.map((x) => x.name).sort(), [...CORE_TOOLS, ...KB_TOOLS, ...AI_TOOLS, 'ping'].sort());
      const version = structured(await client.callTool({ name: 'version', arguments: {} }));
      assert.equal(version.name, 'exai');
      assert.equal(version.transport, 'http');
      const seen = [];
      const out = await client.callTool(
        { name: 'ping', arguments: { delay_ms: 100, progress_steps: 3 } },
        undefined,
        { onprogress: (p) => seen.push(p.progress) },
      );
      assert.equal(structured(out).pong, 'pong');
      assert.deepEqual(allProgress(client, seen), [1, 2, 3]);
    } catch (e) {
      e.message += `\nexai daemon output:\n${daemon.output()}`;
      throw e;
    } finally {
      await client.close();
    }
    const { code, signal } = await daemon.stop();
    assert.equal(signal, null, `daemon was killed by ${signal}:\n${daemon.output()}`);
    assert.equal(code, 0, `daemon exit code ${code}:\n${daemon.output()}`);
  });
});

describe('shim: exai shim in front of a daemon', () => {
  test('health through the shim comes from the daemon', async (t) => {
    const daemonHome = await tempHome(t);
    const shimHome = await tempHome(t);
    const daemon = await startDaemon(daemonHome, { EXAI_TOOLS_DIAGNOSTICS: '1' });
    t.after(() => daemon.kill());
    const { transport, stderr } = stdioTransport(
      ['shim', '--url', daemon.url, '--no-autostart'],
      baseEnv(shimHome),
    );
    const client = newClient();
    try {
      await client.connect(transport);
      const health = structured(await client.callTool({ name: 'health', arguments: {} }));
      assert.equal(health.status, 'ok');
      assert.equal(health.transport, 'http');
      assert.equal(health.pid, daemon.proc.pid);
    } catch (e) {
      e.message += `\nexai shim stderr:\n${stderr()}\nexai daemon output:\n${daemon.output()}`;
      throw e;
    } finally {
      await client.close();
    }
    const { code } = await daemon.stop();
    assert.equal(code, 0, `daemon exit code ${code}:\n${daemon.output()}`);
  });
});
