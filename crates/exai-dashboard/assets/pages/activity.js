// Activity: calls, errors and p50/p95/p99 latency per tool over the last hour or day, tokens and
// cost per provider and model, and the most recent calls; the `calls` topic keeps it live.
'use strict';

(() => {
  const { h, fmt, badge, table } = exai;
  const RECENT = 50;
  // A burst of calls refreshes the figures once, not once per call.
  const REFRESH_AFTER_MS = 1000;
  const REFRESH_EVERY_MS = 4000;
  const WINDOWS = [['hour', 'Last hour', 'minute'], ['day', 'Last day', '15 minutes']];

  function kpi(label, value) {
    return h('div', { class: 'kpi' }, h('div', { class: 'v' }, value), h('div', { class: 'l' }, label));
  }

  // Points of a per-bucket series; a bucket without calls has no percentile (null), which the
  // chart leaves out while still spanning the whole window.
  const points = (buckets, values) => buckets.map((t, i) => [t, values[i] ?? null]);

  const recentColumns = [
    { label: 'time', render: (r) => fmt.time(r.time) },
    { label: 'tool', render: (r) => h('span', { class: 'mono' }, r.tool) },
    { label: 'outcome', render: (r) => badge(r.outcome) },
    { label: 'duration', num: true, render: (r) => fmt.ms(r.duration_ms) },
    { key: 'model', label: 'model' },
    { key: 'principal', label: 'principal' },
  ];
  const toolColumns = [
    { label: 'tool', render: (r) => h('span', { class: 'mono' }, r.name) },
    { label: 'calls', num: true, render: (r) => fmt.num(r.calls) },
    { label: 'error rate', num: true, render: (r) => fmt.pct(100 * r.error_rate) },
    { label: 'p50', num: true, render: (r) => fmt.ms(r.p50_ms) },
    { label: 'p95', num: true, render: (r) => fmt.ms(r.p95_ms) },
    { label: 'p99', num: true, render: (r) => fmt.ms(r.p99_ms) },
  ];
  const money = (what) => [
    { label: what, render: (r) => h('span', { class: 'mono' }, r.name) },
    { label: 'calls', num: true, render: (r) => fmt.num(r.calls) },
    { label: 'tokens in', num: true, render: (r) => fmt.num(r.tokens_in) },
    { label: 'tokens out', num: true, render: (r) => fmt.num(r.tokens_out) },
    { label: 'cost', num: true, render: (r) => fmt.usd(r.cost_usd) },
  ];

  exai.register('activity', {
    title: 'Activity',
    topics: ['calls'],
    render(root, params) {
      let span = params.get('window') === 'day' ? 'day' : 'hour';
      let latencyTool = '';
      let data = null;
      let recent = [];
      let timer = null;
      let lastFetch = 0;
      let closed = false;

      const windowButtons = WINDOWS.map(([name, label]) => h('button', {
        type: 'button',
        'data-window': name,
        on: { click: () => { span = name; syncWindow(); load(); } },
      }, label));
      function syncWindow() {
        for (const b of windowButtons) {
          const on = b.dataset.window === span;
          b.setAttribute('aria-pressed', String(on));
          b.className = on ? '' : 'ghost';
        }
      }
      syncWindow();

      const kpis = h('div', { class: 'kpis', id: 'activity-kpis' });
      const note = h('p', { class: 'muted' });
      const callsChart = h('div', { id: 'activity-calls-chart' });
      const errorsChart = h('div', { id: 'activity-errors-chart' });
      const latencyChart = h('div', { id: 'activity-latency-chart' });
      const latencySelect = h('select', { id: 'activity-latency-tool', on: { change: (e) => { latencyTool = e.target.value; drawLatency(); } } });
      const toolsBox = h('div');
      const providersBox = h('div');
      const modelsBox = h('div');
      const costChart = h('div');
      const recentBox = h('div', { id: 'activity-recent' });
      const perLabel = h('span', { class: 'muted' });

      root.append(
        h('div', { class: 'spread section' },
          h('h1', {}, 'Activity'),
          h('div', { class: 'row', role: 'group', 'aria-label': 'Time window' }, windowButtons)),
        h('section', { class: 'card section', 'aria-label': 'Totals' }, kpis, note),
        h('div', { class: 'grid wide' },
          h('section', { class: 'card', 'aria-labelledby': 'act-calls-h' }, h('div', { class: 'spread' }, h('h2', { id: 'act-calls-h' }, 'Calls'), perLabel), callsChart),
          h('section', { class: 'card', 'aria-labelledby': 'act-errors-h' }, h('h2', { id: 'act-errors-h' }, 'Errors'), errorsChart)),
        h('div', { class: 'grid wide' },
          h('section', { class: 'card', 'aria-labelledby': 'act-lat-h' },
            h('div', { class: 'spread' }, h('h2', { id: 'act-lat-h' }, 'Latency p50 / p95 / p99'),
              h('label', { for: 'activity-latency-tool' }, 'tool', latencySelect)),
            latencyChart),
          h('section', { class: 'card', 'aria-labelledby': 'act-tools-h' }, h('h2', { id: 'act-tools-h' }, 'Per tool'), toolsBox)),
        h('div', { class: 'grid wide' },
          h('section', { class: 'card', 'aria-labelledby': 'act-prov-h' }, h('h2', { id: 'act-prov-h' }, 'Tokens and cost per provider'), providersBox),
          h('section', { class: 'card', 'aria-labelledby': 'act-model-h' }, h('h2', { id: 'act-model-h' }, 'Tokens and cost per model'), costChart, modelsBox)),
        h('section', { class: 'card section', 'aria-labelledby': 'act-recent-h' },
          h('div', { class: 'spread' }, h('h2', { id: 'act-recent-h' }, 'Recent calls'), h('span', { class: 'muted' }, 'newest first, live')),
          recentBox));

      function drawLatency() {
        if (!data) return;
        const s = (latencyTool && data.tools.find((t) => t.tool === latencyTool)) || data.all;
        const any = s.calls.some((n) => n > 0);
        exai.chart.line(latencyChart, {
          series: ['p50', 'p95', 'p99'].map((p) => ({ name: p, points: any ? points(data.buckets, s[`${p}_ms`]) : [] })),
          format: fmt.ms,
          yLabel: `latency of ${latencyTool || 'all tools'}`,
        });
      }

      function drawRecent() {
        recentBox.replaceChildren(table(recentColumns, recent, { empty: 'No calls yet: they appear here as they finish.' }));
      }

      function draw() {
        const per = WINDOWS.find((w) => w[0] === data.window)[2];
        perLabel.textContent = `per ${per}`;
        const t = data.total;
        kpis.replaceChildren(
          kpi('calls', fmt.num(t.calls)),
          kpi('error rate', t.calls ? fmt.pct(100 * t.error_rate) : '–'),
          kpi('p50', t.calls ? fmt.ms(t.p50_ms) : '–'),
          kpi('p95', t.calls ? fmt.ms(t.p95_ms) : '–'),
          kpi('p99', t.calls ? fmt.ms(t.p99_ms) : '–'),
          kpi('tokens in / out', `${fmt.num(t.tokens_in)} / ${fmt.num(t.tokens_out)}`),
          kpi('cost', fmt.usd(t.cost_usd)));
        note.textContent = data.complete_from
          ? `Too many calls to keep in memory: the figures are complete from ${fmt.datetime(data.complete_from)} on.`
          : `The ${data.window === 'hour' ? 'last hour' : 'last day'} of the activity log, up to ${fmt.time(Date.now())}.`;
        // The five busiest tools by name; the rest are in "all tools".
        const top = data.tools.slice(0, 5);
        exai.chart.line(callsChart, {
          series: [{ name: 'all tools', points: points(data.buckets, data.all.calls) },
            ...top.map((s) => ({ name: s.tool, points: points(data.buckets, s.calls) }))],
          yLabel: `calls per ${per}`,
        });
        exai.chart.line(errorsChart, {
          series: [{ name: 'all tools', points: points(data.buckets, data.all.errors) },
            ...top.filter((s) => s.errors.some((e) => e > 0)).map((s) => ({ name: s.tool, points: points(data.buckets, s.errors) }))],
          yLabel: `errors per ${per}`,
        });
        if (!data.tools.some((s) => s.tool === latencyTool)) latencyTool = '';
        latencySelect.replaceChildren(h('option', { value: '' }, 'all tools'), ...data.tools.map((s) => h('option', { value: s.tool }, s.tool)));
        latencySelect.value = latencyTool;
        drawLatency();
        toolsBox.replaceChildren(table(toolColumns, data.by_tool, { empty: 'No calls in this window.' }));
        providersBox.replaceChildren(table(money('provider'), data.by_provider, { empty: 'No model was called in this window.' }));
        modelsBox.replaceChildren(table(money('model'), data.by_model, { empty: '' }));
        if (data.by_model.length) exai.chart.bars(costChart, { bars: data.by_model.map((r) => ({ label: r.name, value: r.cost_usd })), format: fmt.usd });
        else costChart.replaceChildren();
        recent = data.recent.slice(0, RECENT);
        drawRecent();
      }

      async function load() {
        clearTimeout(timer);
        timer = null;
        lastFetch = Date.now();
        try {
          const got = await exai.api('/activity', { query: { window: span, recent: RECENT } });
          if (closed) return;
          data = got;
          draw();
        } catch (e) {
          if (!closed) exai.toast(`Activity: ${e.message}`, 'error');
        }
      }

      // A call shows in the list at once; the figures follow within a few seconds.
      exai.on('call', (record) => {
        recent = [record, ...recent].slice(0, RECENT);
        drawRecent();
        if (timer === null) {
          timer = setTimeout(load, Math.max(REFRESH_AFTER_MS, REFRESH_EVERY_MS - (Date.now() - lastFetch)));
        }
      });
      // Events missed while the page lagged behind: the figures have them.
      exai.on('lagged', () => { if (timer === null) timer = setTimeout(load, REFRESH_AFTER_MS); });

      load();
      return () => { closed = true; clearTimeout(timer); };
    },
  });
})();
