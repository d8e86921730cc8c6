// Gateway overhead through the official MCP TypeScript SDK: the twin of bench/client_overhead.py
// (see there) — an MCP `chat` call through exai to the mock provider against the same request
// sent to the mock directly, and `version`, over Streamable HTTP (`exai daemon`) and stdio
// (`exai serve`), at concurrency 1, several exai binaries interleaved in rounds, with the TCP
// connections the client opened per call over HTTP (sockets of the daemon's port in TIME-WAIT).
//
//   (cd tests/ts && npm ci) && node bench/client_overhead.mjs \
//       --exai before=/path/to/old/exai --exai after=target/release/exai [--calls 2000] \
//       [--transport http,stdio]
//
// Uses the SDK installed for the end-to-end tests (tests/ts/node_modules).

import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, mkdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { createInterface } from 'node:readline';

const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '..');
const SDK = join(ROOT, 'tests/ts/node_modules/@modelcontextprotocol/sdk/dist/esm');
const load = (p) => import(pathToFileURL(join(SDK, p)).href);
const { Client } = await load('client/index.js');
const { StdioClientTransport } = await load('client/stdio.js');
const { StreamableHTTPClientTransport } = await load('client/streamableHttp.js');

const KEY = 'k';
const MODEL = 'glm-4.6';

const { values } = parseArgs({
  options: {
    exai: { type: 'string', multiple: true },
    calls: { type: 'string', default: '2000' },
    rounds: { type: 'string', default: '4' },
    probe: { type: 'string', default: '200' },
    transport: { type: 'string', default: 'http,stdio' },
  },
});
if (!values.exai?.length) throw new Error('--exai LABEL=PATH is required (repeatable)');
const binaries = values.exai.map((e) => { const i = e.indexOf('='); return [e.slice(0, i), e.slice(i + 1)]; });
const transports = values.transport.split(',').map((t) => t.trim());
const [calls, rounds, probe] = [values.calls, values.rounds, values.probe].map(Number);

/** The settings the Rust benchmark (examples/gateway_overhead.rs) gives its servers. */
function envFor(home, mockUrl) {
  return {
    PATH: process.env.PATH ?? '', EXAI_HOME: home, GLM_API_KEY: KEY, GLM_API_URL: mockUrl,
    EXAI_PROVIDERS_MAX_CONCURRENT: '1000', EXAI_PROVIDERS_MAX_CONCURRENT_PER_PROVIDER: '1000',
    EXAI_PROVIDERS_MAX_CONCURRENT_PER_SESSION: '1000', EXAI_THREADS_MAX_TURNS: '1000',
    EXAI_EMBED_BACKEND: 'none', EXAI_TOOLS_PROFILE: 'full',
  };
}

const prompt = (i) => `question number ${i} about ownership and borrowing`;
const loadavg = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

function summary(ms) {
  const s = [...ms].sort((a, b) => a - b);
  const p = (q) => s[Math.min(Math.round((s.length - 1) * q), s.length - 1)];
  return { p50: +p(0.5).toFixed(3), p99: +p(0.99).toFixed(3) };
}

/** Sockets of `port` in TIME-WAIT: each is a connection closed within the last minute. */
function timeWait(port) {
  const out = execFileSync('ss', ['-Htan', 'state', 'time-wait', `( sport = :${port} or dport = :${port} )`],
    { encoding: 'utf8' });
  return out.split('\n').filter((l) => l.trim()).length;
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

class Target {
  constructor(label, exai, transport, home, mockUrl) {
    Object.assign(this, { label, exai, transport, home, mockUrl });
    this.samples = { chat: [], version: [] };
    this.connectionsPerCall = null;
  }

  async open() {
    const env = envFor(this.home, this.mockUrl);
    this.client = new Client({ name: 'exai-bench', version: '1.0.0' });
    if (this.transport === 'http') {
      this.port = await freePort();
      this.proc = spawn(this.exai, ['daemon', '--listen', `127.0.0.1:${this.port}`], { env, stdio: 'ignore' });
      const deadline = Date.now() + 30000;
      for (;;) {
        try {
          if ((await fetch(`http://127.0.0.1:${this.port}/ready`)).ok) break;
        } catch { /* not listening yet */ }
        if (Date.now() > deadline) throw new Error(`${this.exai} daemon not ready`);
        await new Promise((r) => setTimeout(r, 50));
      }
      await this.client.connect(new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${this.port}/mcp`)));
      const before = timeWait(this.port);
      for (let i = 0; i < probe; i++) await this.call('version', i);
      this.connectionsPerCall = +((timeWait(this.port) - before) / probe).toFixed(3);
    } else {
      await this.client.connect(new StdioClientTransport({ command: this.exai, args: ['serve'], env, stderr: 'ignore' }));
    }
  }

  async call(name, i) {
    const args = name === 'chat' ? { prompt: prompt(i), model: MODEL } : {};
    const result = await this.client.callTool({ name, arguments: args });
    if (result.isError) throw new Error(`${name} failed: ${JSON.stringify(result)}`);
  }

  async close() {
    await this.client.close();
    if (this.proc) { this.proc.kill('SIGTERM'); await once(this.proc, 'exit'); }
  }
}

// The chat request exai sends for a call without a progress token (not streamed), sent to the
// mock directly; the system prompt is a stand-in of similar length.
async function direct(url, i) {
  const body = {
    model: MODEL, stream: false,
    messages: [{ role: 'system', content: 'You are a careful assistant. '.repeat(20) },
      { role: 'user', content: prompt(i) }],
  };
  const r = await fetch(url, {
    method: 'POST', body: JSON.stringify(body),
    headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
  });
  if (!r.ok) throw new Error(`mock answered ${r.status}`);
  await r.arrayBuffer();
}

const base = mkdtempSync(join(tmpdir(), 'exai-client-overhead-ts-'));
const mock = spawn(binaries[0][1], ['mock-llm', '--api-key', KEY], {
  env: envFor(join(base, 'mock'), ''), stdio: ['ignore', 'pipe', 'ignore'],
});
const targets = [];
try {
  const [line] = await once(createInterface({ input: mock.stdout }), 'line');
  const mockUrl = JSON.parse(line).url;
  for (const [label, path] of binaries) {
    for (const t of transports) {
      const home = join(base, `${label}-${t}`);
      mkdirSync(home, { recursive: true });
      targets.push(new Target(label, path, t, home, mockUrl));
    }
  }
  for (const t of targets) await t.open();
  const url = `${mockUrl}/chat/completions`;
  for (let i = 0; i < 200; i++) { // warm every path
    await direct(url, i);
    for (const t of targets) { await t.call('chat', i); await t.call('version', i); }
  }
  const loadStart = loadavg();
  const directMs = [];
  const n = Math.floor(calls / rounds);
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      await direct(url, i);
      directMs.push(performance.now() - t0);
    }
    for (const t of targets) {
      for (const name of ['chat', 'version']) {
        for (let i = 0; i < n; i++) {
          const t0 = performance.now();
          await t.call(name, r * n + i);
          t.samples[name].push(performance.now() - t0);
        }
      }
    }
  }
  const loadEnd = loadavg();
  const d = summary(directMs);
  for (const t of targets) {
    const chat = summary(t.samples.chat);
    const version = summary(t.samples.version);
    console.log(JSON.stringify({
      client: 'typescript sdk', exai: t.label, transport: t.transport, calls: n * rounds,
      direct_ms: d, chat_ms: chat, version_ms: version,
      overhead_ms: { p50: +(chat.p50 - d.p50).toFixed(3), p99: +(chat.p99 - d.p99).toFixed(3) },
      connections_per_call: t.connectionsPerCall,
      load_average: { start: loadStart, end: loadEnd },
    }));
  }
  for (const t of targets.reverse()) await t.close();
} finally {
  for (const t of targets) if (t.proc && t.proc.exitCode === null) t.proc.kill('SIGKILL'); // after a failure
  mock.kill('SIGTERM');
  rmSync(base, { recursive: true, force: true });
}
