// exai dashboard: the shell (sign-in, navigation, live events) and the helpers every page uses,
// as the `exai` global. Pages are scripts under pages/ that call exai.register. No framework,
// no build step; DOM is built with exai.h, never from HTML strings.
'use strict';

(() => {
  const pages = new Map();
  const handlers = new Map();
  let session = null;
  let current = null;
  let cleanup = null;
  let source = null;
  let renders = 0;

  // ---- DOM -------------------------------------------------------------------------------
  function h(tag, attrs, ...children) {
    const el = tag === 'svg' || (attrs && attrs.svg) ? document.createElementNS('http://www.w3.org/2000/svg', tag) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false || k === 'svg') continue;
      if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
      else if (k === 'class') el.setAttribute('class', Array.isArray(v) ? v.filter(Boolean).join(' ') : v);
      else if (k === 'text') el.textContent = v;
      else if (k === 'value' && 'value' in el) el.value = v;
      else if (v === true) el.setAttribute(k, '');
      else el.setAttribute(k, String(v));
    }
    append(el, children);
    return el;
  }
  function append(el, children) {
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
  }
  function svg(tag, attrs, ...children) { return h(tag, { ...attrs, svg: true }, ...children); }
  function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); return el; }

  // ---- formatting ------------------------------------------------------------------------
  const nf = new Intl.NumberFormat();
  const fmt = {
    num: (v) => (v === null || v === undefined || Number.isNaN(v) ? '–' : nf.format(v)),
    ms: (v) => {
      if (v === null || v === undefined || Number.isNaN(v)) return '–';
      if (v < 1) return `${v.toFixed(2)} ms`;
      if (v < 1000) return `${v < 10 ? v.toFixed(1) : Math.round(v)} ms`;
      return `${(v / 1000).toFixed(v < 10000 ? 2 : 1)} s`;
    },
    secs: (s) => {
      if (s === null || s === undefined) return '–';
      s = Math.floor(s);
      const d = Math.floor(s / 86400), hh = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
      if (d) return `${d} d ${hh} h`;
      if (hh) return `${hh} h ${m} min`;
      if (m) return `${m} min ${s % 60} s`;
      return `${s} s`;
    },
    bytes: (b) => {
      if (b === null || b === undefined) return '–';
      const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
      let i = 0;
      while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
      return `${i ? b.toFixed(1) : b} ${u[i]}`;
    },
    usd: (v) => (v === null || v === undefined ? '–' : `$${v < 0.01 && v > 0 ? v.toFixed(5) : v.toFixed(2)}`),
    pct: (v, digits = 1) => (v === null || v === undefined || Number.isNaN(v) ? '–' : `${v.toFixed(digits)} %`),
    time: (t) => (t ? new Date(t).toLocaleTimeString() : '–'),
    datetime: (t) => (t ? new Date(t).toLocaleString() : '–'),
    ago: (t) => {
      if (!t) return '–';
      const s = Math.max(0, (Date.now() - new Date(t).getTime()) / 1000);
      if (s < 60) return `${Math.floor(s)} s ago`;
      if (s < 3600) return `${Math.floor(s / 60)} min ago`;
      if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
      return `${Math.floor(s / 86400)} d ago`;
    },
  };

  // ---- server ----------------------------------------------------------------------------
  async function request(url, { method = 'GET', body } = {}) {
    const headers = { accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (method !== 'GET' && method !== 'HEAD' && session && session.csrf) headers['x-exai-csrf'] = session.csrf;
    const r = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'same-origin' });
    const text = await r.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { data = { error: text }; }
    if (!r.ok) {
      const e = new Error((data && data.error) || `${r.status} ${r.statusText}`);
      e.status = r.status;
      e.data = data;
      if (r.status === 401 && session) { session = null; showSignIn(); }
      throw e;
    }
    return data;
  }
  function api(path, { method = 'GET', body, query } = {}) {
    const url = new URL(`/ui/api${path}`, location.origin);
    for (const [k, v] of Object.entries(query || {})) {
      if (v !== undefined && v !== null && v !== '') url.searchParams.set(k, v);
    }
    return request(url, { method, body });
  }

  // ---- live events -----------------------------------------------------------------------
  function on(name, fn) {
    if (!handlers.has(name)) handlers.set(name, new Set());
    handlers.get(name).add(fn);
    return () => handlers.get(name) && handlers.get(name).delete(fn);
  }
  const EVENT_NAMES = ['stats', 'call', 'jobs', 'log', 'lagged', 'validation'];
  function connect(topics) {
    if (source) { source.close(); source = null; }
    const live = document.getElementById('live');
    if (!topics || !topics.length) { live.textContent = ''; live.className = 'live'; return; }
    source = new EventSource(`/ui/events?topics=${encodeURIComponent(topics.join(','))}`);
    source.onopen = () => { live.textContent = 'live'; live.className = 'live on'; };
    source.onerror = () => { live.textContent = 'reconnecting'; live.className = 'live off'; };
    for (const name of EVENT_NAMES) {
      source.addEventListener(name, (ev) => {
        let data;
        try { data = JSON.parse(ev.data); } catch { return; }
        for (const fn of handlers.get(name) || []) {
          try { fn(data); } catch (e) { console.warn(`handler for ${name} failed`, e); }
        }
      });
    }
  }

  // ---- widgets ---------------------------------------------------------------------------
  function toast(message, kind = 'info') {
    const t = h('div', { class: ['toast', kind], role: kind === 'error' ? 'alert' : 'status' }, message);
    document.getElementById('toasts').append(t);
    setTimeout(() => t.remove(), kind === 'error' ? 9000 : 4500);
  }
  async function busy(button, promise) {
    const label = button.textContent;
    button.disabled = true;
    button.setAttribute('aria-busy', 'true');
    try { return await promise; } finally {
      button.disabled = false;
      button.removeAttribute('aria-busy');
      button.textContent = label;
    }
  }
  function badge(status) {
    const s = String(status || '').toLowerCase();
    const kind = { ok: 'ok', pass: 'ok', passed: 'ok', done: 'ok', running: '', warn: 'warn', warning: 'warn', fail: 'fail', failed: 'fail', error: 'fail', timeout: 'fail', cancelled: 'warn', lost: 'fail' }[s];
    return h('span', { class: ['badge', kind] }, s || '–');
  }
  function table(columns, rows, { empty = 'Nothing yet.', caption } = {}) {
    if (!rows || !rows.length) return h('p', { class: 'empty' }, empty);
    return h('div', { class: 'table-wrap' }, h('table', {},
      caption ? h('caption', { class: 'muted' }, caption) : null,
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', { class: c.num ? 'num' : null, scope: 'col' }, c.label)))),
      h('tbody', {}, rows.map((r) => h('tr', {}, columns.map((c) => {
        const v = c.render ? c.render(r) : r[c.key];
        return h('td', { class: c.num ? 'num' : null }, v === null || v === undefined ? '–' : v);
      }))))));
  }
  function progress(done, total) {
    const pct = total > 0 ? Math.min(100, (100 * done) / total) : 0;
    const fill = h('span');
    fill.style.width = `${pct}%`;
    return h('div', { class: 'bar', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': total || 0, 'aria-valuenow': done || 0, title: `${done}/${total}` }, fill);
  }

  // ---- charts (SVG, theme-aware through CSS classes) -------------------------------------
  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = 10 ** Math.floor(Math.log10(v));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }
  function line(el, { series = [], unit = '', format, yLabel = '', height = 180, xFormat } = {}) {
    clear(el);
    el.classList.add('chart');
    const pts = series.flatMap((s) => s.points || []);
    if (!pts.length) { el.append(h('p', { class: 'empty' }, 'No data in this window yet.')); return; }
    const W = 640, H = height, L = 52, R = 10, T = 10, B = 22;
    const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]).filter((v) => v !== null && !Number.isNaN(v));
    let x0 = Math.min(...xs), x1 = Math.max(...xs);
    if (x0 === x1) { x0 -= 60000; x1 += 60000; }
    const y1 = niceMax(Math.max(0, ...ys));
    const X = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
    const Y = (y) => T + (1 - y / y1) * (H - T - B);
    const f = format || ((v) => `${fmt.num(Math.round(v * 100) / 100)}${unit ? ` ${unit}` : ''}`);
    const xf = xFormat || ((t) => new Date(t).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }));
    const label = `${yLabel || 'chart'}: ${series.map((s) => s.name).join(', ')}`;
    const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': label, preserveAspectRatio: 'none' }, svg('title', {}, label));
    for (let i = 0; i <= 4; i++) {
      const v = (y1 * i) / 4;
      root.append(svg('line', { class: 'grid-line', x1: L, x2: W - R, y1: Y(v), y2: Y(v) }));
      root.append(svg('text', { class: 'axis', x: L - 6, y: Y(v) + 4, 'text-anchor': 'end' }, f(v)));
    }
    // As many time labels as fit without overlapping (about 7 units per character at 11 px).
    const labelWidth = 7 * Math.max(String(xf(x0)).length, String(xf(x1)).length) + 16;
    const ticks = Math.max(1, Math.min(4, Math.floor((W - L - R) / labelWidth) - 1));
    for (let i = 0; i <= ticks; i++) {
      const t = x0 + ((x1 - x0) * i) / ticks;
      root.append(svg('text', { class: 'axis', x: X(t), y: H - 6, 'text-anchor': i === 0 ? 'start' : i === ticks ? 'end' : 'middle' }, xf(t)));
    }
    series.forEach((s, i) => {
      const cls = `s${(i % 6) + 1}`;
      const valid = (s.points || []).filter((p) => p[1] !== null && !Number.isNaN(p[1]));
      if (!valid.length) return;
      const d = valid.map((p, j) => `${j ? 'L' : 'M'}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join(' ');
      root.append(svg('path', { class: `line ${cls}`, d }));
      if (valid.length < 40) for (const p of valid) root.append(svg('circle', { class: cls, cx: X(p[0]), cy: Y(p[1]), r: 2.5 }, svg('title', {}, `${s.name} ${xf(p[0])}: ${f(p[1])}`)));
    });
    el.append(root, h('div', { class: 'legend' }, series.map((s, i) => h('span', {}, h('span', { class: `sw s${(i % 6) + 1}` }), s.name))));
  }
  function bars(el, { bars: items = [], format } = {}) {
    clear(el);
    if (!items.length) { el.append(h('p', { class: 'empty' }, 'No data yet.')); return; }
    const max = Math.max(...items.map((b) => b.value), 0) || 1;
    const f = format || fmt.num;
    el.append(h('div', { class: 'bars', role: 'list' }, items.map((b) => {
      const fill = h('span');
      fill.style.width = `${(100 * b.value) / max}%`;
      return h('div', { class: 'item', role: 'listitem' }, h('span', { class: 'mono' }, b.label), h('div', { class: 'bar' }, fill), h('span', { class: 'mono' }, f(b.value)));
    })));
  }

  // ---- pages and routing -----------------------------------------------------------------
  function register(name, page) {
    pages.set(name, page);
  }
  function route() {
    const raw = location.hash.replace(/^#\/?/, '');
    const [name, query] = raw.split('?');
    return { name: pages.has(name) ? name : 'overview', params: new URLSearchParams(query || '') };
  }
  function nav(active) {
    const el = clear(document.getElementById('nav'));
    for (const [name, page] of pages) {
      el.append(h('a', { href: `#/${name}`, 'aria-current': name === active ? 'page' : null }, page.title || name));
    }
  }
  async function show() {
    if (!session) return;
    const { name, params } = route();
    const page = pages.get(name);
    if (!page) return;
    if (cleanup) { try { cleanup(); } catch (e) { console.warn(e); } cleanup = null; }
    handlers.clear();
    current = name;
    nav(name);
    // Each render gets a container of its own: a page still loading when the user moves on
    // finishes into a container no longer in the document, never over the next page.
    const view = h('div', { class: 'view' });
    clear(document.getElementById('main')).append(view);
    const generation = ++renders;
    document.title = `${page.title || name} · exai`;
    connect(page.topics || []);
    try {
      const done = await page.render(view, params);
      if (typeof done === 'function') {
        if (generation === renders) cleanup = done;
        else done();
      }
    } catch (e) {
      if (generation === renders) view.append(h('p', { class: 'error-text', role: 'alert' }, `Could not load this page: ${e.message}`));
    }
  }
  function showSignIn(message) {
    if (source) { source.close(); source = null; }
    clear(document.getElementById('nav'));
    document.getElementById('signout').hidden = true;
    document.getElementById('who').textContent = '';
    const main = clear(document.getElementById('main'));
    const input = h('input', { type: 'password', name: 'token', id: 'token', autocomplete: 'current-password', required: true, 'aria-describedby': 'signin-help' });
    const error = h('p', { class: 'error-text', role: 'alert' }, message || '');
    const submit = h('button', { type: 'submit' }, 'Sign in');
    const form = h('form', { on: { submit: async (ev) => {
      ev.preventDefault();
      error.textContent = '';
      try {
        session = await busy(submit, request('/ui/signin', { method: 'POST', body: { token: input.value } }));
        input.value = '';
        started();
      } catch (e) { error.textContent = e.message; input.select(); }
    } } },
    h('label', { for: 'token' }, 'Token'), input,
    h('p', { id: 'signin-help', class: 'muted' }, 'The daemon asks for a token: EXAI_AUTH_TOKEN, or one of server.tokens.'),
    submit, error);
    main.append(h('div', { class: 'signin card' }, h('h1', {}, 'Sign in to exai'), form));
    input.focus();
  }
  function started() {
    document.getElementById('signout').hidden = !session.signed_in;
    document.getElementById('who').textContent = session.principal ? `as ${session.principal}` : '';
    show();
  }
  function theme() {
    const saved = localStorage.getItem('exai-theme');
    if (saved) document.documentElement.dataset.theme = saved;
    document.getElementById('theme').addEventListener('click', () => {
      const dark = document.documentElement.dataset.theme
        ? document.documentElement.dataset.theme === 'dark'
        : matchMedia('(prefers-color-scheme: dark)').matches;
      const next = dark ? 'light' : 'dark';
      document.documentElement.dataset.theme = next;
      localStorage.setItem('exai-theme', next);
      if (current && pages.get(current).rethemed) pages.get(current).rethemed();
    });
  }
  async function boot() {
    theme();
    document.getElementById('signout').addEventListener('click', async () => {
      try { await request('/ui/signout', { method: 'POST' }); } catch (e) { console.warn(e); }
      session = null;
      showSignIn('Signed out.');
    });
    window.addEventListener('hashchange', show);
    try {
      const s = await request('/ui/api/session');
      if (s.principal) { session = s; started(); } else showSignIn();
    } catch (e) {
      clear(document.getElementById('main')).append(h('p', { class: 'error-text', role: 'alert' }, `The daemon did not answer: ${e.message}`));
    }
  }

  window.exai = { register, api, on, h, svg, clear, fmt, toast, busy, badge, table, progress, chart: { line, bars }, session: () => session };
  document.addEventListener('DOMContentLoaded', boot);
})();
