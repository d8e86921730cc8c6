// The knowledge-base page: sources with versions and embedding progress, search with every
// filter, a reader for whole documents, and index jobs (add, refresh, remove, cancel) followed
// live on the `jobs` topic. DOM through exai.h only: no markup is ever built from data.
(function () {
  'use strict';
  const { h } = exai;

  const MODES = ['hybrid', 'keyword', 'semantic'];

  function pct(done, total) {
    return total > 0 ? Math.round((done / total) * 100) : 0;
  }

  // A labelled form field: the label wraps its control (the shell's CSS stacks them).
  function field(label, input, hint) {
    return h('label', { class: 'field' }, label, input, hint ? h('small', {}, hint) : null);
  }

  // A checkbox with its label beside it.
  function check(label, input) {
    return h('label', { class: 'check' }, h('span', {}, input, ' ', label));
  }

  function options(values, selected, anyLabel) {
    const list = [];
    if (anyLabel) list.push(h('option', { value: '' }, anyLabel));
    for (const v of values) {
      const value = typeof v === 'string' ? v : v.value;
      const label = typeof v === 'string' ? v : v.label;
      const o = h('option', { value }, label);
      if (value === selected) o.selected = true;
      list.push(o);
    }
    return list;
  }

  function progressOf(job) {
    if (job.phase === 'embedding') return [job.embedded, job.embed_total, 'texts embedded'];
    return [job.files_done, job.files_total, job.phase === 'fetching' ? 'pages fetched' : 'files read'];
  }

  exai.register('kb', {
    title: 'Knowledge base',
    topics: ['jobs'],
    render(root, params) {
      let alive = true;
      let sources = [];
      const jobs = new Map();

      // ---- elements ---------------------------------------------------------------------
      const status = h('p', { class: 'muted', 'aria-live': 'polite' });
      const sourcesBody = h('div', { class: 'kb-sources' });
      const jobsBody = h('div', { class: 'kb-jobs', 'aria-live': 'polite' });
      const hitsBody = h('div', { class: 'kb-hits', 'aria-live': 'polite' });

      const q = h('input', { type: 'search', name: 'query', required: '', placeholder: 'A question, keywords, an identifier or an error message', autocomplete: 'off' });
      const mode = h('select', { name: 'mode' }, options(MODES, params.get('mode') || 'hybrid'));
      const fSource = h('select', { name: 'source' });
      const fVersion = h('input', { type: 'text', name: 'version', placeholder: 'exact or ^18' });
      const fTech = h('select', { name: 'technology' });
      const fCat = h('select', { name: 'category' });
      const fPrefix = h('input', { type: 'text', name: 'path_prefix', placeholder: 'docs/guide/' });
      const fType = h('select', { name: 'doc_type' }, options([{ value: 'text', label: 'text' }, { value: 'code', label: 'code' }], '', 'any'));
      const fMin = h('input', { type: 'number', name: 'min_score', step: 'any', placeholder: 'none' });
      const fLimit = h('input', { type: 'number', name: 'limit', min: '1', max: '100', value: '10' });
      const fContext = h('input', { type: 'number', name: 'context', min: '0', max: '3', value: '0' });
      const fGroup = h('input', { type: 'checkbox', name: 'group_by_document' });
      if (params.get('q')) q.value = params.get('q');

      const searchButton = h('button', { type: 'submit', class: 'primary' }, 'Search');
      let filters = null;
      const searchForm = h('form', { class: 'inline kb-search', role: 'search', on: { submit: onSearch } },
        field('Query', q),
        field('Mode', mode),
        searchButton,
        filters = h('details', { class: 'kb-filters' },
          h('summary', {}, 'Filters'),
          h('div', { class: 'row' },
            field('Source', fSource),
            field('Version', fVersion),
            field('Technology', fTech),
            field('Category', fCat),
            field('Path prefix', fPrefix),
            field('Document type', fType),
            field('Minimum score', fMin),
            field('Limit', fLimit),
            field('Context chunks', fContext),
            check('One hit per document', fGroup))));

      const aPath = h('input', { type: 'text', name: 'path', required: '', placeholder: '/path/to/docs, https://site/docs/, npm:react@^18, REPO.git#v1', autocomplete: 'off' });
      const aSource = h('input', { type: 'text', name: 'source', placeholder: 'default: host, NAME@VERSION or REPO@REF' });
      const aTech = h('input', { type: 'text', name: 'technology', placeholder: 'default: the source name' });
      const aInclude = h('input', { type: 'text', name: 'include', placeholder: '*.md, docs/**' });
      const aExclude = h('input', { type: 'text', name: 'exclude', placeholder: 'drafts/**' });
      const aPrune = h('input', { type: 'checkbox', name: 'prune' });
      const addButton = h('button', { type: 'submit', class: 'primary' }, 'Add source');
      const addForm = h('form', { class: 'inline kb-add', on: { submit: onAdd } },
        field('Path, URL, package or repository', aPath),
        field('Source name', aSource),
        field('Technology', aTech),
        field('Include globs', aInclude, 'comma-separated'),
        field('Exclude globs', aExclude, 'comma-separated'),
        check('Remove documents whose files are gone', aPrune),
        addButton);

      // The reader and the confirmation are native dialogs: focus moves in, Esc closes.
      const readerTitle = h('h2', { id: 'kb-reader-title' });
      const readerMeta = h('p', { class: 'muted' });
      const readerBody = h('div', { class: 'kb-reader-body' });
      const reader = h('dialog', { class: 'kb-reader', 'aria-labelledby': 'kb-reader-title' },
        h('div', { class: 'dialog-head' },
          readerTitle,
          h('button', { type: 'button', class: 'ghost', on: { click: () => reader.close() } }, 'Close')),
        h('div', { class: 'dialog-body' }, readerMeta, readerBody));

      const confirmText = h('p');
      const confirmYes = h('button', { type: 'button', class: 'danger' }, 'Remove');
      const confirmNo = h('button', { type: 'button' }, 'Keep');
      const confirmDialog = h('dialog', { class: 'kb-confirm', 'aria-label': 'Confirm removal' },
        h('div', { class: 'dialog-body' }, confirmText, h('div', { class: 'row' }, confirmYes, confirmNo)));

      root.append(
        h('h1', {}, 'Knowledge base'),
        h('section', { class: 'card section' }, h('h2', {}, 'Search'), searchForm, hitsBody),
        h('section', { class: 'card section' }, h('h2', {}, 'Sources'), status, sourcesBody),
        h('section', { class: 'card section' }, h('h2', {}, 'Add a source'), addForm, h('h3', {}, 'Index jobs'), jobsBody),
        reader, confirmDialog);

      // ---- sources ----------------------------------------------------------------------
      async function loadSources() {
        let data;
        try {
          data = await exai.api('/kb/sources');
        } catch (e) {
          status.textContent = 'Cannot list the sources: ' + e.message;
          status.className = 'error-text';
          return;
        }
        if (!alive) return;
        sources = data.sources;
        const st = data.status;
        const parts = [
          exai.fmt.num(st.documents) + ' documents',
          exai.fmt.num(st.chunks) + ' chunks',
          'search modes: ' + st.search_modes.join(', '),
        ];
        if (st.embedding_model) parts.push('model ' + st.embedding_model);
        if (data.semantic_search_problem) parts.push('semantic search is off: ' + data.semantic_search_problem);
        status.textContent = parts.join(' · ');
        fillFilters(data);
        // A mode the index cannot serve still runs, as keyword search with a note saying why.
        for (const o of mode.options) {
          const on = st.search_modes.includes(o.value);
          o.textContent = on ? o.value : `${o.value} (runs as keyword)`;
        }
        renderSources(st.embedding_model != null);
      }

      function fillFilters(data) {
        const keep = (sel) => sel.value || params.get(sel.name) || '';
        const src = keep(fSource);
        fSource.replaceChildren(...options(
          [...new Set(sources.map((s) => s.library))].sort().concat(
            sources.filter((s) => s.version).map((s) => s.name)).filter((v, i, a) => a.indexOf(v) === i),
          src, 'any'));
        const tech = keep(fTech);
        fTech.replaceChildren(...options(data.technologies.map((t) => ({ value: t.name, label: `${t.name} (${t.documents})` })), tech, 'any'));
        const cat = keep(fCat);
        fCat.replaceChildren(...options(data.categories.map((c) => ({ value: c.name, label: `${c.name} (${c.documents})` })), cat, 'any'));
      }

      function renderSources(embedding) {
        if (sources.length === 0) {
          sourcesBody.replaceChildren(h('p', {}, 'No sources yet: add one below.'));
          return;
        }
        const running = (s) => s.job || [...jobs.values()].find((j) => j.source === s.name && j.state === 'running');
        const columns = [
          { label: 'Source', render: (s) => h('strong', {}, s.name) },
          { label: 'Versions', render: (s) => (s.versions.length > 1 ? s.versions.join(', ') : (s.version || '–')) },
          { label: 'Documents', num: true, render: (s) => exai.fmt.num(s.documents) },
          { label: 'Chunks', num: true, render: (s) => exai.fmt.num(s.chunks) },
          { label: 'Vectors', render: (s) => (embedding
            ? h('div', { class: 'kb-progress' }, exai.progress(s.vectors_done, s.vectors_total),
              h('span', { class: 'mono' }, `${exai.fmt.num(s.vectors_done)}/${exai.fmt.num(s.vectors_total)} (${pct(s.vectors_done, s.vectors_total)} %)`))
            : h('span', { class: 'muted' }, 'no embedding model')) },
          { label: 'Origin', render: (s) => s.origin_text || (s.roots || []).join(', ') || '–' },
          { label: 'Updated', render: (s) => h('span', { title: s.updated_at }, exai.fmt.ago(s.updated_at)) },
          { label: 'Actions', render: (s) => {
            const busyNow = Boolean(running(s));
            const searchIn = h('button', { type: 'button', class: 'secondary', on: { click: () => { fSource.value = s.name; filters.open = true; q.focus(); } } }, 'Search in');
            const refresh = h('button', { type: 'button', class: 'secondary', disabled: busyNow, 'aria-label': `Refresh ${s.name}` }, 'Refresh');
            refresh.addEventListener('click', () => onRefresh(s.name, refresh));
            const remove = h('button', { type: 'button', class: 'danger', disabled: busyNow, 'aria-label': `Remove ${s.name}` }, 'Remove');
            remove.addEventListener('click', () => onRemove(s.name, remove));
            return h('div', { class: 'row' }, searchIn, refresh, remove);
          } },
        ];
        sourcesBody.replaceChildren(exai.table(columns, sources));
      }

      // ---- search -----------------------------------------------------------------------
      function searchQuery() {
        const query = { query: q.value.trim(), mode: mode.value };
        for (const el of [fSource, fVersion, fTech, fCat, fPrefix, fType, fMin, fLimit, fContext]) {
          const v = el.value.trim();
          if (v !== '') query[el.name] = v;
        }
        if (fGroup.checked) query.group_by_document = 'true';
        return query;
      }

      async function onSearch(ev) {
        ev.preventDefault();
        if (!q.value.trim()) { q.focus(); return; }
        const query = searchQuery();
        let res;
        try {
          res = await exai.busy(searchButton, exai.api('/kb/search', { query }));
        } catch (e) {
          hitsBody.replaceChildren(h('p', { class: 'error-text', role: 'alert' }, e.message));
          return;
        }
        if (!alive) return;
        renderHits(res);
      }

      function renderHits(res) {
        const head = h('p', { class: 'muted' },
          `${res.hits.length} ${res.hits.length === 1 ? 'hit' : 'hits'} · ${res.mode} · ${exai.fmt.ms(res.took_ms)}`
          + (res.chunks_without_vectors ? ` · ${exai.fmt.num(res.chunks_without_vectors)} chunks without vectors` : ''));
        const notes = (res.notes || []).map((n) => h('p', { class: 'muted' }, n));
        if (res.hits.length === 0) {
          hitsBody.replaceChildren(head, ...notes, h('p', {}, 'Nothing matched. Try another mode, fewer words or fewer filters.'));
          return;
        }
        const list = h('ol', { class: 'kb-hit-list' }, res.hits.map((hit) => {
          const open = h('button', { type: 'button', class: 'ghost kb-open', on: { click: () => openDocument(hit) } }, hit.title || hit.path);
          return h('li', { class: 'kb-hit' },
            h('div', { class: 'spread' },
              open,
              h('span', { class: 'badge', title: `score (${res.mode})` }, hit.score.toFixed(hit.score < 10 ? 3 : 1))),
            h('div', { class: 'muted' },
              [hit.source, hit.path, hit.section].filter(Boolean).join(' › ')
              + ` · ${hit.technology} · ${hit.category} · ${hit.doc_type}`),
            h('pre', { class: ['kb-snippet', hit.doc_type === 'code' && 'code'] }, hit.snippet),
            hit.more_in_document ? h('small', { class: 'muted' }, `${hit.more_in_document} more matches in this document`) : null);
        }));
        hitsBody.replaceChildren(head, ...notes, list);
      }

      // ---- reader -----------------------------------------------------------------------
      async function openDocument(hit) {
        readerTitle.textContent = hit.title || hit.path;
        readerMeta.textContent = 'Loading…';
        readerMeta.className = 'muted';
        readerBody.replaceChildren();
        if (!reader.open) reader.showModal();
        let doc;
        try {
          doc = await exai.api('/kb/document', { query: { doc_id: String(hit.doc_id), chunk_id: String(hit.chunk_id) } });
        } catch (e) {
          readerMeta.textContent = e.message;
          readerMeta.className = 'error-text';
          return;
        }
        const d = doc.document;
        readerMeta.textContent = [d.source, d.path, d.format, exai.fmt.bytes(d.bytes), `${d.chunks} chunks`]
          .filter(Boolean).join(' · ');
        const parts = [];
        if (doc.chunks_before) parts.push(h('p', { class: 'muted' }, `… ${doc.chunks_before} chunks before this part are not shown`));
        let target = null;
        for (const s of doc.sections) {
          const block = h('section', { class: 'doc-section' },
            s.section ? h('h3', {}, s.section) : null,
            s.chunks.map((c) => {
              const text = h('pre', { class: ['kb-chunk', c.doc_type === 'code' && 'code'], id: 'kb-chunk-' + c.chunk_id }, c.text);
              if (c.chunk_id !== hit.chunk_id) return text;
              // The hit's chunk, marked and focusable so the reader opens on it.
              target = h('mark', { class: 'kb-hit-chunk', tabindex: '-1', 'aria-label': 'The matching part' }, text);
              return target;
            }));
          parts.push(block);
        }
        if (doc.chunks_after) parts.push(h('p', { class: 'muted' }, `… ${doc.chunks_after} chunks after this part are not shown`));
        readerBody.replaceChildren(...parts);
        if (target) {
          target.scrollIntoView({ block: 'center' });
          target.focus({ preventScroll: true });
        }
      }

      // ---- jobs -------------------------------------------------------------------------
      function renderJobs() {
        const list = [...jobs.values()].sort((a, b) => (b.started_at || '').localeCompare(a.started_at || ''));
        if (list.length === 0) {
          jobsBody.replaceChildren(h('p', { class: 'muted' }, 'No index jobs of yours on this daemon.'));
          return;
        }
        jobsBody.replaceChildren(h('ul', { class: 'kb-jobs-list' }, list.map((j) => {
          const [done, total, what] = progressOf(j);
          const running = j.state === 'running';
          let cancel = null;
          if (running) {
            cancel = h('button', { type: 'button', class: 'secondary', 'aria-label': `Cancel indexing ${j.source}` }, 'Cancel');
            cancel.addEventListener('click', () => onCancel(j.job_id, cancel));
          }
          const r = j.report;
          const report = r
            ? `${r.added ?? 0} added, ${r.updated ?? 0} updated, ${r.removed ?? 0} removed, ${r.unchanged ?? 0} unchanged`
            : '';
          return h('li', { class: 'kb-job', 'data-job': j.job_id, 'data-state': j.state },
            h('div', { class: 'spread' },
              h('span', {}, h('strong', {}, j.source), ' ', exai.badge(j.state), ' ',
                h('span', { class: 'muted' }, `${j.kind} · ${j.phase} · ${exai.fmt.secs(j.seconds)}`)),
              cancel),
            h('div', { class: 'kb-progress' },
              j.state === 'done' ? exai.progress(1, 1) : exai.progress(done, total),
              h('span', { class: 'mono' }, `${exai.fmt.num(done)}/${exai.fmt.num(total)} ${what}`)),
            j.error ? h('p', { class: 'error-text' }, j.error) : null,
            report ? h('small', { class: 'muted' }, report) : null);
        })));
      }

      function takeJob(j) {
        const before = jobs.get(j.job_id);
        jobs.set(j.job_id, j);
        // A job that just ended changed the sources.
        if (before && before.state === 'running' && j.state !== 'running') loadSources();
      }

      async function loadJobs() {
        try {
          const data = await exai.api('/kb/jobs');
          if (!alive) return;
          for (const j of data.jobs) jobs.set(j.job_id, j);
          renderJobs();
        } catch (e) {
          jobsBody.replaceChildren(h('p', { class: 'error-text' }, 'Cannot list the jobs: ' + e.message));
        }
      }

      const unsubscribe = exai.on('jobs', (data) => {
        // The topic sends every job of this principal each time.
        for (const j of Array.isArray(data) ? data : []) if (j && j.job_id) takeJob(j);
        renderJobs();
      });

      async function onAdd(ev) {
        ev.preventDefault();
        const list = (el) => el.value.split(',').map((s) => s.trim()).filter(Boolean);
        const body = { path: aPath.value.trim() };
        if (aSource.value.trim()) body.source = aSource.value.trim();
        if (aTech.value.trim()) body.technology = aTech.value.trim();
        if (list(aInclude).length) body.include = list(aInclude);
        if (list(aExclude).length) body.exclude = list(aExclude);
        if (aPrune.checked) body.prune = true;
        try {
          const job = await exai.busy(addButton, exai.api('/kb/sources', { method: 'POST', body }));
          takeJob(job);
          renderJobs();
          exai.toast(`Indexing ${job.source} (job ${job.job_id})`, 'ok');
        } catch (e) {
          exai.toast(e.message, 'error');
        }
      }

      async function onRefresh(name, button) {
        try {
          const job = await exai.busy(button, exai.api(`/kb/sources/${encodeURIComponent(name)}/refresh`, { method: 'POST' }));
          takeJob(job);
          renderJobs();
          exai.toast(`Refreshing ${name} (job ${job.job_id})`, 'ok');
        } catch (e) {
          exai.toast(e.message, 'error');
        }
      }

      function onRemove(name, button) {
        confirmText.textContent = `Remove the source “${name}” and all its documents from the knowledge base?`;
        confirmYes.onclick = async () => {
          confirmDialog.close();
          try {
            const res = await exai.busy(button, exai.api(`/kb/sources/${encodeURIComponent(name)}`, { method: 'DELETE' }));
            exai.toast(`Removed ${name} (${res.documents_removed} documents)`, 'ok');
            loadSources();
          } catch (e) {
            exai.toast(e.message, 'error');
          }
        };
        confirmNo.onclick = () => confirmDialog.close();
        confirmDialog.showModal();
        confirmNo.focus();
      }

      async function onCancel(id, button) {
        try {
          takeJob(await exai.busy(button, exai.api(`/kb/jobs/${encodeURIComponent(id)}/cancel`, { method: 'POST' })));
          renderJobs();
        } catch (e) {
          exai.toast(e.message, 'error');
        }
      }

      loadSources();
      loadJobs();
      if (params.get('q')) searchForm.requestSubmit();
      return () => {
        alive = false;
        unsubscribe();
        if (reader.open) reader.close();
        if (confirmDialog.open) confirmDialog.close();
      };
    },
  });
})();
