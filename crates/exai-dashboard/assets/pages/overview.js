// Overview: the checks of `exai health`, the daemon, its providers, memory and disk, live.
'use strict';

(() => {
  const { h, fmt, badge, table, clear } = exai;

  function kpi(label, value, id) {
    return h('div', { class: 'kpi' }, h('div', { class: 'v', id }, value), h('div', { class: 'l' }, label));
  }

  function daemonCard(o) {
    const hr = o.health;
    return h('section', { class: 'card', 'aria-labelledby': 'daemon-h' },
      h('div', { class: 'spread' }, h('h2', { id: 'daemon-h' }, 'Daemon'), badge(hr.status)),
      h('div', { class: 'kpis' },
        kpi('uptime', fmt.secs(hr.uptime_secs), 'ov-uptime'),
        kpi('calls', fmt.num(o.stats.calls), 'ov-calls'),
        kpi('failed', fmt.num(o.stats.failed), 'ov-failed'),
        kpi('in flight', fmt.num(o.stats.inflight), 'ov-inflight'),
        kpi('sessions', hr.http ? `${o.stats.sessions} / ${hr.http.max_sessions}` : '–', 'ov-sessions'),
        kpi('connections', hr.http ? `${o.stats.connections} / ${hr.http.max_connections}` : '–', 'ov-connections')),
      h('p', { class: 'muted' }, `exai ${hr.version} · pid ${hr.pid} · ${hr.listen || hr.transport} · started ${fmt.datetime(hr.started_at)}`),
      h('p', { class: 'muted mono' }, hr.data_dir, hr.config_file ? ` · ${hr.config_file}` : ''));
  }

  function memoryCard(o) {
    const r = o.resources || {};
    const t = o.thresholds;
    const hostUsed = r.host_memory_total_bytes ? (100 * (r.host_memory_total_bytes - r.host_memory_available_bytes)) / r.host_memory_total_bytes : null;
    const diskUsed = r.disk_total_bytes ? (100 * (r.disk_total_bytes - r.disk_free_bytes)) / r.disk_total_bytes : null;
    const line = (label, used, warn, detail) => h('div', { class: 'section' },
      h('div', { class: 'spread' }, h('span', {}, label), h('span', { class: 'mono' }, used === null ? '–' : fmt.pct(used, 0))),
      exai.progress(used || 0, 100),
      h('div', { class: 'muted' }, detail, ` · warns at ${warn} %`));
    return h('section', { class: 'card', 'aria-labelledby': 'mem-h' },
      h('h2', { id: 'mem-h' }, 'Memory and disk'),
      h('div', { class: 'kpis section' }, kpi('daemon resident', fmt.bytes(o.stats.rss_bytes), 'ov-rss'), kpi('open files', r.open_fds !== undefined && r.open_fds !== null ? `${r.open_fds} / ${r.max_fds}` : '–')),
      line('host memory used', hostUsed, t.memory_warn_percent, `${fmt.bytes(r.host_memory_available_bytes)} available of ${fmt.bytes(r.host_memory_total_bytes)}; review at ${t.memory_review_percent} %`),
      line('data directory disk used', diskUsed, t.disk_warn_percent, `${fmt.bytes(r.disk_free_bytes)} free of ${fmt.bytes(r.disk_total_bytes)}`),
      r.time ? h('p', { class: 'muted' }, `sampled ${fmt.ago(r.time)}`) : h('p', { class: 'muted' }, 'No resource sample yet (the daemon samples every ops.sample_interval_secs).'));
  }

  function knowledgeCard(o) {
    const k = o.health.knowledge;
    return h('section', { class: 'card', 'aria-labelledby': 'kb-h' },
      h('h2', { id: 'kb-h' }, 'Knowledge base'),
      h('dl', {},
        h('dt', { class: 'muted' }, 'database'), h('dd', { class: 'mono' }, k.database),
        h('dt', { class: 'muted' }, 'embedding back end'), h('dd', {}, k.embed_backend),
        h('dt', { class: 'muted' }, 'model'), h('dd', { class: 'mono' }, k.embed_model)));
  }

  function timeoutsCard(o) {
    const t = o.health.timeouts;
    const el = h('div');
    exai.chart.bars(el, {
      bars: [
        { label: 'simple tool', value: t.simple_tool_secs },
        { label: 'workflow tool', value: t.workflow_tool_secs },
        { label: 'expert analysis', value: t.expert_analysis_secs },
        { label: 'daemon', value: t.daemon_secs },
        { label: 'shim', value: t.shim_secs },
        { label: 'client', value: t.client_secs },
      ],
      format: (v) => `${v} s`,
    });
    return h('section', { class: 'card', 'aria-labelledby': 'to-h' }, h('h2', { id: 'to-h' }, 'Timeout hierarchy'),
      h('p', { class: 'muted' }, 'Each layer waits longer than the one inside it.'), el);
  }

  function providersCard(o, rates) {
    const p = o.health.providers;
    const configured = [['kimi', p.kimi], ['glm', p.glm], ['openai', p.openai]];
    const rows = o.providers.map((s) => ({ ...s, rate: rates.get(s.provider) }));
    return h('section', { class: 'card', 'aria-labelledby': 'prov-h' },
      h('div', { class: 'spread' }, h('h2', { id: 'prov-h' }, 'Providers'), h('span', { class: 'muted' }, `default model: ${p.default_model}`)),
      h('p', { class: 'muted' }, 'keys: ', configured.map(([n, set]) => h('span', { class: ['badge', set ? 'ok' : null] }, `${n} ${set ? 'set' : 'not set'}`)).reduce((a, b) => [a, ' ', b])),
      o.ai_started
        ? h('div', { id: 'ov-providers' }, table([
          { key: 'provider', label: 'provider' },
          { label: 'requests', num: true, render: (r) => fmt.num(r.requests) },
          { label: 'per min', num: true, render: (r) => (r.rate === undefined ? '–' : r.rate.toFixed(1)) },
          { label: 'failed', num: true, render: (r) => fmt.num(r.failed) },
          { label: 'retries', num: true, render: (r) => fmt.num(r.retries) },
          { label: 'tokens in/out', num: true, render: (r) => `${fmt.num(r.tokens_in)} / ${fmt.num(r.tokens_out)}` },
          { label: 'cost', num: true, render: (r) => fmt.usd(r.cost_usd) },
          { label: 'last error', render: (r) => (r.last_error ? h('span', {}, badge('fail'), ' ', `${fmt.ago(r.last_error.time)}: ${r.last_error.message}`) : 'none') },
        ], rows, { empty: 'No provider configured: set a key (see docs/CONFIGURATION.md).' }))
        : h('p', { class: 'empty' }, 'The AI tools have not been used since the daemon started; providers are counted from their first call.'));
  }

  function checksCard(o) {
    const c = o.checks;
    return h('section', { class: 'card section', 'aria-labelledby': 'checks-h' },
      h('div', { class: 'spread' }, h('h2', { id: 'checks-h' }, 'Health checks'), h('span', {}, badge(c.status), ' ', h('span', { class: 'muted' }, `as of ${fmt.time(c.time)} · the same as exai health`))),
      table([
        { key: 'name', label: 'check', render: (r) => h('span', { class: 'mono' }, r.name) },
        { label: 'status', render: (r) => badge(r.status) },
        { key: 'detail', label: 'detail' },
      ], c.checks));
  }

  exai.register('overview', {
    title: 'Overview',
    topics: ['stats'],
    async render(root) {
      const o = await exai.api('/overview');
      const rates = new Map();
      let previous = null;
      const draw = () => {
        clear(root);
        root.append(
          h('h1', {}, 'Overview'),
          h('div', { class: 'grid' }, daemonCard(o), memoryCard(o), knowledgeCard(o)),
          checksCard(o),
          h('div', { class: 'grid wide' }, providersCard(o, rates), timeoutsCard(o)));
      };
      draw();
      exai.on('stats', (s) => {
        const now = Date.now();
        if (previous && s.providers) {
          const minutes = (now - previous.at) / 60000;
          for (const p of s.providers) {
            const before = previous.providers.find((q) => q.provider === p.provider);
            if (before && minutes > 0) rates.set(p.provider, (p.requests - before.requests) / minutes);
          }
        }
        previous = { at: now, providers: s.providers || [] };
        o.stats = s;
        o.health.uptime_secs = s.uptime_secs;
        if (s.providers && s.providers.length) {
          o.providers = s.providers;
          o.ai_started = true;
        }
        draw();
      });
    },
  });
})();
