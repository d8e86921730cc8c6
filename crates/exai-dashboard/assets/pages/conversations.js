// The conversations page: the signed-in principal's live threads, and one thread read turn by
// turn with its model, tokens and cost (#/conversations?id=THREAD). DOM through exai.h only.
(function () {
  'use strict';
  const { h } = exai;

  function tokens(tin, tout) {
    return `${exai.fmt.num(tin)} in / ${exai.fmt.num(tout)} out`;
  }

  function link(id, label) {
    return h('a', { href: '#/conversations?id=' + encodeURIComponent(id) }, label);
  }

  async function renderList(root) {
    const body = h('div', { 'aria-live': 'polite' }, h('p', { class: 'muted' }, 'Loading…'));
    root.append(h('h1', {}, 'Conversations'), h('section', { class: 'card' }, body));
    let data;
    try {
      data = await exai.api('/conversations');
    } catch (e) {
      body.replaceChildren(h('p', { class: 'error-text', role: 'alert' }, e.message));
      return;
    }
    if (data.threads.length === 0) {
      body.replaceChildren(h('p', {}, 'No live conversations yet: a chat, thinkdeep or consensus call starts one.'));
      return;
    }
    const columns = [
      { label: 'Conversation', render: (t) => link(t.continuation_id, t.title || t.first_prompt || t.continuation_id) },
      { label: 'Tool', key: 'tool' },
      { label: 'Models', render: (t) => t.models.join(', ') || '–' },
      { label: 'Turns', num: true, render: (t) => exai.fmt.num(t.turns) },
      { label: 'Tokens', num: true, render: (t) => tokens(t.tokens_in, t.tokens_out) },
      { label: 'Cost', num: true, render: (t) => exai.fmt.usd(t.cost_usd) },
      { label: 'Updated', render: (t) => h('span', { title: t.updated_at }, exai.fmt.ago(t.updated_at)) },
    ];
    body.replaceChildren(
      h('p', { class: 'muted' }, `${data.threads.length} live threads, most recently used first`),
      exai.table(columns, data.threads));
  }

  async function renderThread(root, id) {
    const back = h('a', { href: '#/conversations' }, '← All conversations');
    const head = h('p', { class: 'muted' });
    const body = h('div', { 'aria-live': 'polite' }, h('p', { class: 'muted' }, 'Loading…'));
    const title = h('h2', {}, 'Conversation');
    root.append(h('h1', {}, 'Conversations'), h('section', { class: 'card' }, back, title, head, body));
    let data;
    try {
      data = await exai.api('/conversations/' + encodeURIComponent(id));
    } catch (e) {
      body.replaceChildren(h('p', { class: 'error-text', role: 'alert' }, e.message));
      return;
    }
    const t = data.totals;
    const firstPrompt = data.turns.find((x) => x.role === 'user');
    if (firstPrompt) title.textContent = firstPrompt.text.slice(0, 120);
    head.textContent = [
      `${data.turns.length} turns`,
      t.models.length ? 'models ' + t.models.join(', ') : null,
      'tokens ' + tokens(t.tokens_in, t.tokens_out),
      'cost ' + exai.fmt.usd(t.cost_usd),
      t.turns_without_usage ? `${t.turns_without_usage} answers without recorded usage` : null,
      'id ' + data.continuation_id,
    ].filter(Boolean).join(' · ');
    body.replaceChildren(h('ol', { class: 'kb-turns' }, data.turns.map((turn) => {
      const meta = [
        turn.tool,
        turn.model,
        exai.fmt.time(turn.time),
        turn.tokens_in != null ? tokens(turn.tokens_in, turn.tokens_out) : null,
        turn.cost_usd != null ? exai.fmt.usd(turn.cost_usd) : null,
      ].filter(Boolean).join(' · ');
      return h('li', { class: 'kb-turn', 'data-role': turn.role },
        h('div', { class: 'spread' },
          h('strong', {}, turn.role === 'user' ? 'You' : 'Assistant'), ' ',
          h('span', { class: 'muted' }, meta)),
        turn.files.length ? h('small', { class: 'muted' }, 'files: ' + turn.files.join(', ')) : null,
        h('pre', {}, turn.text));
    })));
  }

  exai.register('conversations', {
    title: 'Conversations',
    topics: [],
    render(root, params) {
      const id = params.get('id');
      return id ? renderThread(root, id) : renderList(root);
    },
  });
})();
