// The dashboard's cost: page weight (HTML + JS + CSS, uncompressed), first render on loopback in
// Debian's Chromium (first contentful paint, and the overview fully drawn with its data), and
// what an idle open page costs the daemon (CPU time over a quiet minute, against the same minute
// with no page open), per page.
//
// Usage: node bench/dashboard.mjs EXAI_BIN [--renders 20] [--idle-secs 60] [--pages overview,activity,logs]
// (bench/dashboard.sh builds the release binary and runs this.)
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { chromium } = await import(pathToFileURL(join(root, 'tests/ts/node_modules/playwright-core/index.mjs')).href);

const args = process.argv.slice(2);
const bin = resolve(args[0] || join(root, 'target/release/exai'));
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const renders = Number(opt('renders', 20));
const idleSecs = Number(opt('idle-secs', 60));
const pages = opt('pages', 'overview').split(',');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function freePort() {
  const srv = createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address();
  srv.close();
  await once(srv, 'close');
  return port;
}

function cpuSeconds(pid) {
  // utime + stime, fields 14 and 15 of /proc/PID/stat, in clock ticks (100 per second on Linux).
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

const home = await mkdtemp(join(tmpdir(), 'exai-bench-dash-'));
const port = await freePort();
const env = { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('EXAI_'))), EXAI_HOME: home, EXAI_EMBED_BACKEND: 'none' };
const daemon = spawn(bin, ['daemon', '--listen', `127.0.0.1:${port}`], { env, stdio: 'ignore' });
const base = `http://127.0.0.1:${port}`;
try {
  for (let i = 0; ; i++) {
    try { if ((await fetch(`${base}/ready`)).ok) break; } catch { /* starting */ }
    if (i > 300) throw new Error('daemon not ready');
    await sleep(50);
  }
  // Page weight: the page and everything it references.
  const html = await (await fetch(`${base}/`)).text();
  const refs = [...html.matchAll(/(?:src|href)="(\/ui\/assets\/[^"]+)"/g)].map((m) => m[1]);
  let weight = Buffer.byteLength(html);
  const parts = [['index.html', Buffer.byteLength(html)]];
  for (const ref of refs) {
    const r = await fetch(`${base}${ref}`);
    const type = r.headers.get('content-type') || '';
    const bytes = Buffer.byteLength(await r.text());
    if (/javascript|css/.test(type)) { weight += bytes; parts.push([ref.replace(/\?.*/, ''), bytes]); }
  }
  console.log(`page weight (HTML + JS + CSS, uncompressed): ${weight} bytes (${(weight / 1024).toFixed(1)} KiB)`);
  for (const [name, bytes] of parts) console.log(`  ${name}: ${bytes}`);

  const browser = await chromium.launch({
    executablePath: process.env.EXAI_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  // First render, each in a fresh context (nothing cached).
  const fcp = [];
  const drawn = [];
  for (let i = 0; i < renders + 2; i++) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    await page.goto(`${base}/`);
    await page.getByRole('heading', { name: 'Health checks' }).waitFor();
    const t = await page.evaluate(() => ({
      fcp: (performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime,
      drawn: performance.now(),
    }));
    await context.close();
    if (i < 2) continue; // warm-up: the daemon's first health checks, the browser's first process
    fcp.push(t.fcp);
    drawn.push(t.drawn);
  }
  fcp.sort((a, b) => a - b);
  drawn.sort((a, b) => a - b);
  console.log(`first render over loopback, ${renders} fresh loads at 1280x800: first contentful paint p50 ${pct(fcp, 50).toFixed(0)} ms, p95 ${pct(fcp, 95).toFixed(0)} ms; overview drawn with its data p50 ${pct(drawn, 50).toFixed(0)} ms, p95 ${pct(drawn, 95).toFixed(0)} ms`);

  // Idle cost: the daemon's CPU over a quiet interval, with no page and then with each page open.
  const measure = async () => {
    const before = cpuSeconds(daemon.pid);
    await sleep(idleSecs * 1000);
    return (cpuSeconds(daemon.pid) - before) / idleSecs;
  };
  const baseline = await measure();
  console.log(`daemon CPU with no page open: ${(baseline * 100).toFixed(3)} % of a core (${idleSecs} s; load ${loadavg()[0].toFixed(2)})`);
  for (const name of pages) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    await page.goto(`${base}/#/${name}`);
    await page.locator('#live.on').waitFor({ timeout: 10000 }).catch(() => {});
    await sleep(3000);
    const open = await measure();
    console.log(`daemon CPU with the ${name} page open and idle: ${(open * 100).toFixed(3)} % of a core (${((open - baseline) * 100).toFixed(3)} % above none; load ${loadavg()[0].toFixed(2)})`);
    await context.close();
  }
  await browser.close();
} finally {
  daemon.kill('SIGTERM');
  await once(daemon, 'exit');
  await rm(home, { recursive: true, force: true });
}
