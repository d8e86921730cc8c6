// Validation: the pass-rate history of `exai validate` as a chart, the latest run's results by
// tool and variation, and a button that runs the suite against the built-in mock provider, its
// progress live on the `validation` topic.
'use strict';

(() => {
  const { h, fmt, badge, table } = exai;

  const pct = (rate) => (rate === null || rate === undefined ? '–' : fmt.pct(100 * rate));
  const trend = (pp) => {
    if (pp === null || pp === undefined) return '';
    if (pp > 0.05) return `↑ +${pp.toFixed(1)}`;
    if (pp < -0.05) return `↓ ${pp.toFixed(1)}`;
    return '= 0.0';
  };
  // Failures first: they are what a reader looks for.
  const ORDER = { FAIL: 0, ERROR: 1, SKIP: 2, PASS: 3 };
  const byStatus = (rows) => [...rows].sort((a, b) => (ORDER[a.status] ?? 9) - (ORDER[b.status] ?? 9));

  // One row per tool: its variations as badges coloured by status, and what went wrong.
  function byTool(results) {
    const tools = new Map();
    for (const r of results) {
      if (!tools.has(r.tool)) tools.set(r.tool, []);
      tools.get(r.tool).push(r);
    }
    return [...tools].map(([tool, rs]) => ({ tool, results: rs, worst: Math.min(...rs.map((r) => ORDER[r.status] ?? 9)) }))
      .sort((a, b) => a.worst - b.worst);
  }
  const STATUS_CLASS = { PASS: 'ok', FAIL: 'fail', ERROR: 'fail', SKIP: 'warn' };
  const toolColumns = [
    { label: 'tool', render: (g) => h('span', { class: 'mono' }, g.tool) },
    { label: 'passed', num: true, render: (g) => `${g.results.filter((r) => r.status === 'PASS').length} / ${g.results.length}` },
    { label: 'variations', render: (g) => h('span', { class: 'row' }, g.results.map((r) => h('span', { class: ['badge', STATUS_CLASS[r.status]], title: `${r.variation}: ${r.status}` }, `${r.variation} ${r.status.toLowerCase()}`))) },
    { label: 'detail', render: (g) => {
      const bad = g.results.filter((r) => r.error);
      return bad.length ? h('ul', { class: 'plain' }, bad.map((r) => h('li', {}, h('span', { class: 'mono' }, r.variation), `: ${r.error}`))) : '';
    } },
  ];
  const resultColumns = [
    { label: 'tool', render: (r) => h('span', { class: 'mono' }, r.tool) },
    { label: 'variation', render: (r) => h('span', { class: 'mono' }, r.variation) },
    { label: 'status', render: (r) => badge(r.status) },
    { label: 'detail', render: (r) => r.error || '' },
  ];
  const runColumns = [
    { key: 'id', label: 'run', num: true },
    { label: 'started', render: (r) => fmt.datetime(r.started_at) },
    { key: 'provider', label: 'provider' },
    { label: 'cases', num: true, render: (r) => fmt.num(r.total) },
    { label: 'pass', num: true, render: (r) => fmt.num(r.passed) },
    { label: 'fail', num: true, render: (r) => fmt.num(r.failed) },
    { label: 'skip', num: true, render: (r) => fmt.num(r.skipped) },
    { label: 'error', num: true, render: (r) => fmt.num(r.errored) },
    { label: 'pass rate', num: true, render: (r) => pct(r.pass_rate) },
    { label: 'trend pp', num: true, render: (r) => trend(r.trend_pp) },
    { label: 'time', num: true, render: (r) => (r.finished_at ? fmt.ms(r.duration_ms) : 'unfinished') },
  ];

  exai.register('validation', {
    title: 'Validation',
    topics: ['validation'],
    render(root) {
      let closed = false;
      let running = null;

      const runButton = h('button', { type: 'button', id: 'validation-run' }, 'Run the mock suite');
      const status = h('div', { id: 'validation-status', role: 'status', 'aria-live': 'polite' });
      const historyChart = h('div', { id: 'validation-history-chart' });
      const latestHead = h('div');
      const latestBox = h('div', { id: 'validation-latest' });
      const liveBox = h('div', { id: 'validation-live' });
      const runsBox = h('div', { id: 'validation-runs' });

      root.append(
        h('div', { class: 'spread section' }, h('h1', {}, 'Validation'), runButton),
        h('div', { class: 'grid wide' },
          h('section', { class: 'card', 'aria-labelledby': 'val-hist-h' }, h('h2', { id: 'val-hist-h' }, 'Pass rate per run'), historyChart),
          h('section', { class: 'card', 'aria-labelledby': 'val-suite-h' },
            h('h2', { id: 'val-suite-h' }, 'The mock suite'),
            h('p', { class: 'muted' }, 'Every tool and variation through the real MCP path against the built-in mock provider (no keys, no cost), recorded like exai validate --provider mock.'),
            status, latestHead)),
        h('section', { class: 'card section', 'aria-label': 'Run in progress' }, liveBox),
        h('section', { class: 'card section', 'aria-labelledby': 'val-latest-h' }, h('h2', { id: 'val-latest-h' }, 'Latest run by tool and variation'), latestBox),
        h('section', { class: 'card section', 'aria-labelledby': 'val-runs-h' }, h('h2', { id: 'val-runs-h' }, 'Runs'), runsBox));

      liveBox.parentElement.hidden = true;

      function drawRunning() {
        runButton.disabled = Boolean(running);
        runButton.setAttribute('aria-busy', running ? 'true' : 'false');
        liveBox.parentElement.hidden = !running;
        if (!running) { liveBox.replaceChildren(); return; }
        const done = running.results.length;
        status.replaceChildren(h('div', { class: 'spread' }, h('span', {}, `Running: ${done} of ${running.total} cases`), h('span', { class: 'muted' }, `started ${fmt.time(running.started_at)}`)),
          exai.progress(done, running.total));
        liveBox.replaceChildren(table(resultColumns, byStatus(running.results), { empty: 'Starting the system under test…' }));
      }

      function draw(v) {
        running = v.running || null;
        if (!running) {
          status.replaceChildren(v.last_error
            ? h('p', { class: 'error-text' }, `The last run from here failed: ${v.last_error}`)
            : h('p', { class: 'muted' }, 'No run in progress.'));
        }
        drawRunning();
        const runs = v.runs || [];
        // Oldest to newest, one line per provider (mock and live runs are not comparable).
        const providers = [...new Set(runs.map((r) => r.provider))];
        exai.chart.line(historyChart, {
          series: providers.map((p) => ({
            name: p,
            points: runs.filter((r) => r.provider === p && r.pass_rate !== null).map((r) => [Date.parse(r.started_at), 100 * r.pass_rate]).reverse(),
          })),
          format: (x) => `${Math.round(x)} %`,
          yLabel: 'pass rate',
          xFormat: (t) => new Date(t).toLocaleString([], { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' }),
        });
        if (v.latest) {
          const r = v.latest.run;
          latestHead.replaceChildren(
            h('div', { class: 'kpis' },
              h('div', { class: 'kpi' }, h('div', { class: 'v' }, pct(r.pass_rate)), h('div', { class: 'l' }, 'pass rate')),
              h('div', { class: 'kpi' }, h('div', { class: 'v' }, fmt.num(r.passed)), h('div', { class: 'l' }, 'passed')),
              h('div', { class: 'kpi' }, h('div', { class: 'v' }, fmt.num(r.failed + r.errored)), h('div', { class: 'l' }, 'failed or errors')),
              h('div', { class: 'kpi' }, h('div', { class: 'v' }, fmt.num(r.skipped)), h('div', { class: 'l' }, 'skipped'))),
            h('p', { class: 'muted' }, `Latest: run ${r.id} (${r.provider}) at ${fmt.datetime(r.started_at)}, ${fmt.ms(r.duration_ms)}.`));
          latestBox.replaceChildren(table(toolColumns, byTool(v.latest.results)));
        } else {
          latestHead.textContent = '';
          latestBox.replaceChildren(h('p', { class: 'empty' }, 'No run recorded yet: run the mock suite, or exai validate.'));
        }
        runsBox.replaceChildren(table(runColumns, runs, { empty: 'No runs yet.' }));
      }

      async function load() {
        try {
          const v = await exai.api('/validation');
          if (!closed) draw(v);
        } catch (e) {
          if (!closed) exai.toast(`Validation: ${e.message}`, 'error');
        }
      }

      runButton.addEventListener('click', async () => {
        try {
          const started = await exai.busy(runButton, exai.api('/validation/run', { method: 'POST', body: {} }));
          running = running || { started_at: started.started_at, total: started.total, results: [] };
          drawRunning();
        } catch (e) {
          exai.toast(e.message, 'error');
        }
      });

      exai.on('validation', (ev) => {
        if (ev.kind === 'started') {
          running = { started_at: ev.started_at, total: ev.total, results: [] };
          drawRunning();
        } else if (ev.kind === 'result' && running) {
          running.results.push(ev.result);
          drawRunning();
        } else if (ev.kind === 'finished') {
          running = null;
          exai.toast(`Validation run ${ev.run_id} finished: ${pct(ev.pass_rate)} passed`, ev.totals.failed + ev.totals.errored ? 'error' : 'ok');
          load();
        } else if (ev.kind === 'failed') {
          running = null;
          exai.toast(`The validation run failed: ${ev.error}`, 'error');
          load();
        }
      });
      // Events missed while the page lagged: the server has the progress.
      exai.on('lagged', load);

      load();
      return () => { closed = true; };
    },
  });
})();
