// Logs: the log and the activity records as one stream, filtered by level, tool and time as
// `exai logs` filters them, newest last, following live on the `logs` topic (the same filters
// applied here to what arrives).
'use strict';

(() => {
  const { h, fmt, badge } = exai;
  const LEVELS = ['ERROR', 'WARN', 'INFO', 'DEBUG', 'TRACE'];
  const SINCE = [['15m', 'last 15 minutes'], ['1h', 'last hour'], ['6h', 'last 6 hours'], ['1d', 'last day'], ['7d', 'last week'], ['', 'everything']];
  const SINCE_MS = { '15m': 15 * 60e3, '1h': 3600e3, '6h': 6 * 3600e3, '1d': 86400e3, '7d': 7 * 86400e3 };
  const LIMIT = 500;
  const KEEP = 2000;

  function matches(e, f) {
    if (f.level && LEVELS.indexOf(e.level) > LEVELS.indexOf(f.level)) return false;
    if (f.tool && e.tool !== f.tool) return false;
    if (f.since && e.time && Date.parse(e.time) < Date.now() - SINCE_MS[f.since]) return false;
    return true;
  }

  function entry(e) {
    const kind = { ERROR: 'fail', WARN: 'warn' }[e.level];
    return h('li', { class: ['log-entry', kind] },
      h('span', { class: 'mono muted' }, e.time ? fmt.datetime(e.time) : ''), ' ',
      badge(e.level.toLowerCase()), ' ',
      h('span', { class: 'muted' }, e.origin), ' ',
      e.tool ? h('span', { class: 'mono' }, e.tool) : null,
      h('pre', {}, e.text));
  }

  exai.register('logs', {
    title: 'Logs',
    topics: ['logs'],
    render(root, params) {
      const filter = { level: params.get('level') || '', tool: params.get('tool') || '', since: params.get('since') ?? '1h' };
      let entries = [];
      let closed = false;

      const level = h('select', { name: 'level' },
        h('option', { value: '' }, 'any level'),
        LEVELS.map((l) => h('option', { value: l.toLowerCase() }, l === 'ERROR' ? 'errors' : `${l.toLowerCase()} and worse`)));
      level.value = filter.level.toLowerCase();
      const tool = h('input', { name: 'tool', type: 'text', placeholder: 'e.g. chat', value: filter.tool, list: 'logs-tools', autocomplete: 'off', spellcheck: 'false' });
      const tools = h('datalist', { id: 'logs-tools' });
      const since = h('select', { name: 'since' }, SINCE.map(([v, l]) => h('option', { value: v }, l)));
      since.value = filter.since;
      const follow = h('input', { type: 'checkbox', name: 'follow', checked: true });
      const apply = h('button', { type: 'submit' }, 'Show');
      const count = h('p', { class: 'muted', role: 'status', 'aria-live': 'polite' });
      const list = h('ol', { class: 'log-list', id: 'logs-list', 'aria-label': 'Log entries, newest last' });

      const form = h('form', { class: 'inline', role: 'search', on: { submit: (ev) => { ev.preventDefault(); load(); } } },
        h('label', {}, 'level', level),
        h('label', {}, 'tool', tool),
        h('label', {}, 'since', since),
        h('label', { class: 'check' }, h('span', {}, 'follow'), follow),
        apply, tools);
      for (const el of [level, since]) el.addEventListener('change', () => load());

      root.append(
        h('h1', {}, 'Logs'),
        h('section', { class: 'card section' }, form, count),
        h('section', { class: 'card section', 'aria-label': 'Entries' }, list));

      function read() {
        filter.level = level.value.toUpperCase();
        filter.tool = tool.value.trim();
        filter.since = since.value;
      }

      function draw(matched) {
        const nearBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
        list.replaceChildren(...entries.map(entry));
        if (!entries.length) list.append(h('li', { class: 'empty' }, 'No entries match.'));
        count.textContent = matched > entries.length
          ? `${fmt.num(entries.length)} newest of ${fmt.num(matched)} matching entries`
          : `${fmt.num(entries.length)} matching entries`;
        const names = [...new Set(entries.map((e) => e.tool).filter(Boolean))].sort();
        tools.replaceChildren(...names.map((n) => h('option', { value: n })));
        if (follow.checked && nearBottom) window.scrollTo(0, document.body.scrollHeight);
      }

      async function load() {
        read();
        try {
          const got = await exai.busy(apply, exai.api('/logs', { query: { level: filter.level.toLowerCase(), tool: filter.tool, since: filter.since, limit: LIMIT } }));
          if (closed) return;
          entries = got.entries;
          draw(got.matched);
        } catch (e) {
          if (!closed) exai.toast(`Logs: ${e.message}`, 'error');
        }
      }

      exai.on('log', (e) => {
        if (!follow.checked || !matches(e, filter)) return;
        entries.push(e);
        if (entries.length > KEEP) entries = entries.slice(-KEEP);
        const first = list.firstChild;
        if (first && first.classList.contains('empty')) first.remove();
        const nearBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
        list.append(entry(e));
        while (list.childNodes.length > KEEP) list.firstChild.remove();
        count.textContent = `${fmt.num(entries.length)} matching entries, following`;
        if (nearBottom) window.scrollTo(0, document.body.scrollHeight);
      });

      load();
      return () => { closed = true; };
    },
  });
})();
