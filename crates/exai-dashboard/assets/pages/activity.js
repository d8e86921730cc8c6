// Activity: calls, errors and latency per tool over the last hour or day, tokens and cost per
// provider and model, and the most recent calls, kept live by the `calls` topic.
(() => {
  const { h } = exai;
  const RECENT = 50;
  // A burst of calls refreshes the figures once, not once per call.
  const REFRESH_AFTER_MS = 1500;
  const REFRESH_EVERY_MS = 5000;

  function recentRow(r) {
    return [
      exai.fmt.time(r.time),
      r.tool,
      h('span', { class: `badge ${r.outcome === 'ok' ? 'ok' : 'bad'}` }, r.outcome),
      exai.fmt.ms(r.duration_ms),
      r.model || '—',
      r.principal || '—',
    ];
  }

  const RECENT_COLUMNS = ['Time', 'Tool', 'Outcome', 'Duration', 'Model', 'Principal'];

  function points(buckets, values) {
    const out = [];
    buckets.forEach((t, i) => {
      if (values[i] !== null && values[i] !== undefined) out.push([t, values[i]]);
    });
    return out;
  }

  exai.register('activity', {
    title: 'Activity',
    topics: ['calls'],
    render(root, params) {
      let windowName = params.window === 'day' ? 'day' : 'hour';
      let latencyTool = '';
      let data = null;
      let recent = [];
      let timer = null;
      let lastFetch = 0;
      let closed = false;

      const windowButtons = ['hour', 'day'].map((w) => h('button', {
        type: 'button',
        'aria-pressed': String(w === windowName),
        on: { click: () => { windowName = w; syncWindow(); load(); } },
      }, w === 'hour' ? 'Last hour' : 'Last day'));
      function syncWindow() {
        windowButtons.forEach((b, i) => b.setAttribute('aria-pressed', String(['hour', 'day'][i] === windowName)));
      }

      const summary = h('div', { class: 'cards', 'aria-live': 'polite' });
      const callsChart = h('div', { class: 'chart' });
      const errorsChart = h('div', { class: 'chart' });
      const latencyChart = h('div', { class: 'chart' });
      const latencySelect = h('select', {
        id: 'activity-latency-tool',
        on: { change: (e) => { latencyTool = e.target.value; drawLatency(); } },
      });
      const toolsTable = h('div', { class: 'table-wrap' });
      const providersTable = h('div', { class: 'table-wrap' });
      const modelsTable = h('div', { class: 'table-wrap' });
      const costChart = h('div', { class: 'chart' });
      const recentTable = h('div', { class: 'table-wrap', id: 'activity-recent' });
      const note = h('p', { class: 'muted' });

      root.append(
        h('div', { class: 'toolbar', role: 'group', 'aria-label': 'Time window' }, windowButtons),
        summary,
        note,
        h('section', { class: 'grid2' },
          h('div', { class: 'panel' }, h('h2', {}, 'Calls'), callsChart),
          h('div', { class: 'panel' }, h('h2', {}, 'Errors'), errorsChart)),
        h('section', { class: 'panel' },
          h('div', { class: 'panel-head' },
            h('h2', {}, 'Latency p50 / p95 / p99'),
            h('label', { for: 'activity-latency-tool' }, 'Tool '), latencySelect),
          latencyChart),
        h('section', { class: 'panel' }, h('h2', {}, 'Per tool'), toolsTable),
        h('section', { class: 'grid2' },
          h('div', { class: 'panel' }, h('h2', {}, 'Tokens and cost per provider'), providersTable),
          h('div', { class: 'panel' }, h('h2', {}, 'Cost per model'), costChart, modelsTable)),
        h('section', { class: 'panel' }, h('h2', {}, 'Recent calls'), recentTable),
      );

      function card(label, value) {
        return h('div', { class: 'card' }, h('div', { class: 'card-label' }, label), h('div', { class: 'card-value' }, value));
      }

      function drawLatency() {
        if (!data) return;
        const s = latencyTool ? (data.tools.find((t) => t.tool === latencyTool) || data.all) : data.all;
        exai.chart.line(latencyChart, {
          series: [
            { name: 'p50', points: points(data.buckets, s.p50_ms) },
            { name: 'p95', points: points(data.buckets, s.p95_ms) },
            { name: 'p99', points: points(data.buckets, s.p99_ms) },
          ],
          unit: 'ms',
          yLabel: `latency${latencyTool ? ` of ${latencyTool}` : ''}`,
        });
      }

      function draw() {
        const per = data.window === 'hour' ? 'minute' : '15 minutes';
        const t = data.total;
        summary.replaceChildren(
          card('Calls', exai.fmt.num(t.calls)),
          card('Error rate', exai.fmt.pct(t.error_rate)),
          card('p95', t.calls ? exai.fmt.ms(t.p95_ms) : '—'),
          card('Tokens', exai.fmt.num(t.tokens_in + t.tokens_out)),
          card('Cost', exai.fmt.usd(t.cost_usd)),
        );
        note.textContent = data.complete_from
          ? `Figures before ${exai.fmt.time(data.complete_from)} are incomplete (too many calls to keep in memory).`
          : '';
        const top = data.tools.slice(0, 6);
        exai.chart.line(callsChart, {
          series: [{ name: 'all tools', points: points(data.buckets, data.all.calls) },
            ...top.map((s) => ({ name: s.tool, points: points(data.buckets, s.calls) }))],
          unit: '',
          yLabel: `calls per ${per}`,
        });
        exai.chart.line(errorsChart, {
          series: [{ name: 'all tools', points: points(data.buckets, data.all.errors) },
            ...top.filter((s) => s.errors.some((e) => e > 0)).map((s) => ({ name: s.tool, points: points(data.buckets, s.errors) }))],
          unit: '',
          yLabel: `errors per ${per}`,
        });
        const options = [h('option', { value: '' }, 'all tools'),
          ...data.tools.map((s) => h('option', { value: s.tool }, s.tool))];
        latencySelect.replaceChildren(...options);
        if (!data.tools.some((s) => s.tool === latencyTool)) latencyTool = '';
        latencySelect.value = latencyTool;
        drawLatency();
        toolsTable.replaceChildren(exai.table(
          ['Tool', 'Calls', 'Error rate', 'p50', 'p95', 'p99'],
          data.by_tool.map((r) => [r.name, exai.fmt.num(r.calls), exai.fmt.pct(r.error_rate),
            exai.fmt.ms(r.p50_ms), exai.fmt.ms(r.p95_ms), exai.fmt.ms(r.p99_ms)]),
        ));
        const money = (rows) => rows.map((r) => [r.name, exai.fmt.num(r.calls), exai.fmt.num(r.tokens_in),
          exai.fmt.num(r.tokens_out), exai.fmt.usd(r.cost_usd)]);
        providersTable.replaceChildren(exai.table(['Provider', 'Calls', 'Tokens in', 'Tokens out', 'Cost'], money(data.by_provider)));
        modelsTable.replaceChildren(exai.table(['Model', 'Calls', 'Tokens in', 'Tokens out', 'Cost'], money(data.by_model)));
        exai.chart.bars(costChart, { bars: data.by_model.map((r) => ({ label: r.name, value: r.cost_usd })), unit: 'USD' });
        recent = data.recent.slice(0, RECENT);
        drawRecent();
      }

      function drawRecent() {
        recentTable.replaceChildren(recent.length
          ? exai.table(RECENT_COLUMNS, recent.map(recentRow))
          : h('p', { class: 'muted' }, 'No calls yet.'));
      }

      async function load() {
        clearTimeout(timer);
        timer = null;
        lastFetch = Date.now();
        try {
          const got = await exai.api('/activity', { query: { window: windowName, recent: RECENT } });
          if (closed) return;
          data = got;
          draw();
        } catch (e) {
          if (!closed) exai.toast(`Activity: ${e.message}`, 'error');
        }
      }

      // The list shows a call at once; the figures follow within a few seconds.
      const off = exai.on('calls', (record) => {
        recent = [record, ...recent].slice(0, RECENT);
        drawRecent();
        if (timer === null) {
          const wait = Math.max(REFRESH_AFTER_MS, REFRESH_EVERY_MS - (Date.now() - lastFetch));
          timer = setTimeout(load, wait);
        }
      });

      load();
      return () => {
        closed = true;
        clearTimeout(timer);
        off();
      };
    },
  });
})();
