// Maintenance: `exai db verify` and `exai db backup` as buttons with their results, and the
// backups list with each backup's time, size and whether it checks out.
'use strict';

(() => {
  const { h, fmt, badge, table } = exai;

  const verdict = (c) => (c.problems.length ? 'fail' : c.warnings.length ? 'warn' : 'ok');

  function checkRows(v) {
    const rows = v.databases.map((c) => ({
      name: c.name,
      path: c.path,
      bytes: c.bytes,
      status: verdict(c),
      detail: [
        c.kb ? `schema ${c.kb.schema_version}, ${c.kb.integrity} check; ${fmt.num(c.kb.documents)} documents, ${fmt.num(c.kb.chunks)} chunks, ${fmt.num(c.kb.vectors)} vectors, ${fmt.num(c.kb.chunks_without_vectors)} chunks without vectors` : null,
        ...c.problems.map((p) => `problem: ${p}`),
        ...c.warnings.map((w) => `warning: ${w}`),
      ].filter(Boolean),
    }));
    if (v.postgres) {
      rows.push({ name: 'postgres', path: v.postgres.target, bytes: null, status: verdict(v.postgres), detail: [...v.postgres.problems.map((p) => `problem: ${p}`), ...v.postgres.warnings.map((w) => `warning: ${w}`)] });
    }
    return rows;
  }

  const checkColumns = [
    { label: 'database', render: (r) => h('span', { class: 'mono' }, r.name) },
    { label: 'status', render: (r) => badge(r.status) },
    { label: 'size', num: true, render: (r) => fmt.bytes(r.bytes) },
    { label: 'file', render: (r) => h('span', { class: 'mono' }, r.path) },
    { label: 'detail', render: (r) => (r.detail.length ? h('ul', { class: 'plain' }, r.detail.map((d) => h('li', {}, d))) : 'no problem') },
  ];
  const fileColumns = [
    { label: 'database', render: (f) => h('span', { class: 'mono' }, f.name) },
    { label: 'size', num: true, render: (f) => fmt.bytes(f.bytes) },
    { key: 'schema_version', label: 'schema', num: true },
    { label: 'rows', render: (f) => Object.entries(f.tables).filter(([, n]) => n > 0).map(([t, n]) => `${t} ${fmt.num(n)}`).join(', ') || 'empty' },
    { label: 'BLAKE3', render: (f) => h('span', { class: 'mono', title: f.blake3 }, `${f.blake3.slice(0, 16)}…`) },
  ];
  const backupColumns = [
    { label: 'created', render: (b) => (b.created_at ? fmt.datetime(b.created_at) : '–') },
    { label: 'size', num: true, render: (b) => fmt.bytes(b.bytes) },
    { label: 'holds', render: (b) => [b.databases.join(' + '), b.config_files ? ` + ${b.config_files} configuration file${b.config_files > 1 ? 's' : ''}` : ''].join('') },
    { label: 'verified', render: (b) => (b.verified === undefined ? badge('not checked') : b.verified ? badge('ok') : h('span', {}, badge('fail'), ' ', b.problem || '')) },
    { label: 'path', render: (b) => h('span', { class: 'mono' }, b.path) },
  ];

  exai.register('maintenance', {
    title: 'Maintenance',
    topics: [],
    render(root) {
      let closed = false;
      const quick = h('input', { type: 'checkbox', id: 'maint-quick' });
      const verifyButton = h('button', { type: 'button', id: 'maint-verify' }, 'Verify the databases');
      const backupButton = h('button', { type: 'button', id: 'maint-backup' }, 'Back up now');
      const verifyBox = h('div', { id: 'maint-verify-result', 'aria-live': 'polite' }, h('p', { class: 'muted' }, 'Checks every database as exai db verify does: SQLite\'s integrity check, foreign keys, and the knowledge base\'s own consistency.'));
      const backupBox = h('div', { id: 'maint-backup-result', 'aria-live': 'polite' }, h('p', { class: 'muted' }, 'A consistent online copy of every database and the configuration files, as exai db backup does; the oldest backups beyond the configured number are removed.'));
      const backupsHead = h('p', { class: 'muted' });
      const backupsBox = h('div', { id: 'maint-backups' });

      root.append(
        h('h1', {}, 'Maintenance'),
        h('div', { class: 'grid wide' },
          h('section', { class: 'card', 'aria-labelledby': 'maint-verify-h' },
            h('div', { class: 'spread' }, h('h2', { id: 'maint-verify-h' }, 'Verify'),
              h('div', { class: 'row' }, h('label', { class: 'check', for: 'maint-quick' }, quick, h('span', {}, 'quick check')), verifyButton)),
            verifyBox),
          h('section', { class: 'card', 'aria-labelledby': 'maint-backup-h' },
            h('div', { class: 'spread' }, h('h2', { id: 'maint-backup-h' }, 'Back up'), backupButton),
            backupBox)),
        h('section', { class: 'card section', 'aria-labelledby': 'maint-backups-h' },
          h('h2', { id: 'maint-backups-h' }, 'Backups'), backupsHead, backupsBox));

      async function loadBackups() {
        try {
          const b = await exai.api('/maintenance/backups');
          if (closed) return;
          backupsHead.textContent = `${b.backups.length} in ${b.root}; the newest ${b.keep} are kept (ops.backup_keep).${b.running ? ` A ${b.running} is running: checks of new backups wait for it.` : ''}`;
          backupsBox.replaceChildren(table(backupColumns, b.backups, { empty: 'No backup yet.' }));
        } catch (e) {
          if (!closed) exai.toast(`Backups: ${e.message}`, 'error');
        }
      }

      verifyButton.addEventListener('click', async () => {
        try {
          const v = await exai.busy(verifyButton, exai.api('/maintenance/verify', { method: 'POST', body: { quick: quick.checked } }));
          if (closed) return;
          verifyBox.replaceChildren(
            h('p', {}, badge(v.ok ? 'ok' : 'fail'), ' ', v.databases.length || v.postgres
              ? (v.ok ? `Every database checks out (${quick.checked ? 'quick' : 'complete'} check).` : 'A database has problems: restore a backup (exai db restore) or see docs/OPERATIONS.md.')
              : 'No database yet.'),
            table(checkColumns, checkRows(v), { empty: 'No database in the data directory yet.' }));
        } catch (e) {
          verifyBox.replaceChildren(h('p', { class: 'error-text', role: 'alert' }, e.message));
        }
      });

      backupButton.addEventListener('click', async () => {
        try {
          const r = await exai.busy(backupButton, exai.api('/maintenance/backup', { method: 'POST', body: {} }));
          if (closed) return;
          backupBox.replaceChildren(h('div', {},
            h('p', {}, badge('ok'), ' ', `Backed up in ${r.seconds.toFixed(2)} s to `, h('span', { class: 'mono' }, r.path)),
            r.note ? h('p', { class: 'muted' }, r.note) : null,
            table(fileColumns, r.manifest.files),
            (r.manifest.config || []).length ? h('p', { class: 'muted' }, `Configuration: ${r.manifest.config.map((c) => c.original).join(', ')}`) : null,
            r.pruned.length ? h('p', { class: 'muted' }, `Removed: ${r.pruned.join(', ')}`) : null));
          loadBackups();
        } catch (e) {
          backupBox.replaceChildren(h('p', { class: 'error-text', role: 'alert' }, e.message));
        }
      });

      loadBackups();
      return () => { closed = true; };
    },
  });
})();
