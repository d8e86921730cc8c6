//! The knowledge base as the server and the CLI see it: built from configuration, opened once
//! and lazily (the embedding model loads off the startup path), shared by every session.

use std::sync::Arc;

use exai_core::Loaded;
use exai_embed::Embedder;
use exai_kb::Kb;

use crate::jobs::Jobs;

/// The configured embedder, built once (loading weights is slow), and why not when it failed.
type BuiltEmbedder = (Option<Arc<dyn Embedder>>, Option<String>);

/// The server's knowledge base: opened on first use (or warmed in the background).
pub struct Knowledge {
    loaded: Loaded,
    kb: std::sync::OnceLock<Arc<Kb>>,
    embedder: std::sync::OnceLock<BuiltEmbedder>,
    /// Held while opening; after a failure, calls get the same error for
    /// [`exai_pg::REOPEN_AFTER`] before exai tries again (so a database that is down costs each
    /// call nothing, and one that comes back is used again).
    opening: tokio::sync::Mutex<exai_pg::Reopening<Arc<Kb>>>,
    /// Why semantic search is off, when the embedder could not be built.
    pub embed_problem: std::sync::Mutex<Option<String>>,
    pub jobs: Jobs,
}

impl std::fmt::Debug for Knowledge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Knowledge")
            .field("database", &self.describe())
            .field("opened", &self.is_open())
            .finish()
    }
}

impl Knowledge {
    pub fn new(loaded: Loaded) -> Self {
        Self {
            jobs: Jobs::new(&loaded.config.database),
            loaded,
            kb: std::sync::OnceLock::new(),
            embedder: std::sync::OnceLock::new(),
            opening: tokio::sync::Mutex::default(),
            embed_problem: std::sync::Mutex::new(None),
        }
    }

    /// The database as it may be shown: the file, or the redacted PostgreSQL URL.
    pub fn describe(&self) -> String {
        exai_kb::config::describe(&self.loaded)
    }

    /// (documents, chunks) without opening the knowledge base; `None` where counting would
    /// connect to a server (see [`exai_kb::config::peek_totals`]).
    pub fn peek_totals(&self) -> Result<Option<(u64, u64)>, exai_kb::KbError> {
        exai_kb::config::peek_totals(&self.loaded)
    }

    /// The knowledge base, opening it (and loading the embedder) on first call. An embedder
    /// that cannot be built leaves keyword search working and says why in `embed_problem`. A
    /// database that cannot be opened (PostgreSQL down, a locked or corrupt file) is an error
    /// for `exai_pg::REOPEN_AFTER`, then tried again, so the server recovers when it is back.
    pub async fn get(&self) -> Result<Arc<Kb>, String> {
        if let Some(kb) = self.kb.get() {
            return Ok(kb.clone());
        }
        let mut opening = self.opening.lock().await;
        let kb = opening
            .get_or_open_async(|| self.open())
            .await
            .map_err(|e| e.to_string())?;
        let _ = self.kb.set(kb.clone());
        Ok(kb)
    }

    /// Build the embedder (once) and open the knowledge base, off the async workers.
    async fn open(&self) -> Result<Arc<Kb>, String> {
        let loaded = self.loaded.clone();
        let built = self.embedder.get().cloned();
        let (built, kb) = tokio::task::spawn_blocking(move || {
            let built = built.unwrap_or_else(|| match exai_kb::config::build_embedder(&loaded) {
                Ok(e) => (e, None),
                Err(e) => (None, Some(e.to_string())),
            });
            let kb = Kb::open_configured(&loaded, built.0.clone()).map_err(|e| e.to_string());
            (built, kb)
        })
        .await
        .map_err(|e| format!("knowledge base task failed: {e}"))?;
        if self.embedder.get().is_none() {
            if let Some(p) = &built.1 {
                tracing::warn!("semantic search is off: {p}");
            }
            if let Ok(mut slot) = self.embed_problem.lock() {
                slot.clone_from(&built.1);
            }
            let _ = self.embedder.set(built);
        }
        kb.map(Arc::new).map_err(|e| {
            tracing::error!("knowledge base unavailable: {e}");
            e
        })
    }

    pub fn is_open(&self) -> bool {
        self.kb.get().is_some()
    }

    pub fn embed_problem(&self) -> Option<String> {
        self.embed_problem.lock().ok().and_then(|p| p.clone())
    }
}

/// Open the knowledge base and embed any chunk texts still without vectors, as a job that
/// `job_status` shows; stops when the server starts draining. Keyword search serves meanwhile.
pub async fn embed_in_background(state: std::sync::Arc<crate::state::AppState>) {
    let kb = match state.knowledge.get().await {
        Ok(kb) => kb,
        Err(_) => return,
    };
    if kb.embedder().is_none() {
        return;
    }
    let probe = kb.clone();
    let pending =
        tokio::task::spawn_blocking(move || probe.with_reader(|s| s.count_texts_without_vectors()))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(0);
    if pending == 0 {
        return;
    }
    tracing::info!(
        pending,
        "embedding chunk texts in the background; keyword search serves meanwhile"
    );
    let job = state.knowledge.jobs.start("embed", "*", Vec::new());
    let worker = job.clone();
    let watcher = state.clone();
    let watch_job = job.clone();
    let watch = tokio::spawn(async move {
        while !watch_job.is_finished() {
            if watcher.is_draining() {
                watch_job
                    .cancel
                    .store(true, std::sync::atomic::Ordering::SeqCst);
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    });
    let result = tokio::task::spawn_blocking(move || {
        let outcome = kb.embed_pending(&|p| worker.progress(p), &worker.cancel);
        let report = outcome.map(|(embedded, left)| exai_kb::IndexReport {
            source: "*".into(),
            texts_embedded: embedded,
            texts_without_vectors: left,
            embedding_model: kb.embedder().map(|e| e.identity().key()),
            ..Default::default()
        });
        worker.finish(report);
    })
    .await;
    watch.abort();
    if let Err(e) = result {
        tracing::warn!("background embedding stopped: {e}");
    }
    let status = job.status();
    tracing::info!(state = ?status.state, embedded = status.embedded, "background embedding finished");
}

/// Log a search that took `kb.slow_query_ms` or longer, as a warning with its mode, hit count
/// and duration; its text only with `logging.log_queries` (what users search for may be
/// private).
pub fn log_if_slow(
    config: &exai_core::Config,
    response: &exai_kb::SearchResponse,
    elapsed: std::time::Duration,
) {
    let duration_ms = (elapsed.as_secs_f64() * 1000.0 * 10.0).round() / 10.0;
    if duration_ms < config.kb.slow_query_ms as f64 {
        return;
    }
    let mode = response.mode.as_str();
    let hits = response.hits.len();
    let limit_ms = config.kb.slow_query_ms;
    if config.logging.log_queries {
        let query = exai_core::text::clip_with_ellipsis(&response.query, 200);
        tracing::warn!(mode, hits, duration_ms, limit_ms, query = %query, "slow search");
    } else {
        tracing::warn!(mode, hits, duration_ms, limit_ms, "slow search");
    }
}

/// Refresh every fetched source (web sites, git repositories, packages) every
/// `kb.refresh_interval_hours`, each as an index job of its own (one at a time; a source
/// already being indexed is left for the next round), until the daemon drains.
pub async fn refresh_on_schedule(state: std::sync::Arc<crate::state::AppState>) {
    let hours = state.loaded.config.kb.refresh_interval_hours;
    if hours <= 0.0 {
        return;
    }
    let every = std::time::Duration::from_secs_f64(hours * 3600.0);
    tracing::info!(hours, "refreshing fetched sources on a schedule");
    loop {
        tokio::time::sleep(every).await;
        if state.is_draining() {
            return;
        }
        refresh_fetched_sources(&state).await;
    }
}

/// One round of [`refresh_on_schedule`].
pub async fn refresh_fetched_sources(state: &std::sync::Arc<crate::state::AppState>) {
    let Ok(kb) = state.knowledge.get().await else {
        return;
    };
    let probe = kb.clone();
    let origins = match tokio::task::spawn_blocking(move || exai_sources::origins(&probe)).await {
        Ok(Ok(origins)) => origins,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "scheduled refresh: cannot list the sources");
            return;
        }
        Err(_) => return,
    };
    let settings = exai_sources::Settings::from_loaded(&state.loaded);
    for (source, origin) in origins.into_iter().filter(|(_, o)| o.is_fetched()) {
        if state.is_draining() {
            return;
        }
        let job = match state
            .knowledge
            .jobs
            .start_exclusive("refresh", &source, vec![origin.describe()], "daemon")
            .await
        {
            Ok(job) => job,
            Err(e) => {
                tracing::info!(source, reason = %e, "scheduled refresh skipped");
                continue;
            }
        };
        let (kb, worker, settings, name) =
            (kb.clone(), job.clone(), settings.clone(), source.clone());
        let result = tokio::task::spawn_blocking(move || {
            exai_sources::refresh(
                &kb,
                &name,
                &settings,
                false,
                &|p| worker.progress(p),
                &worker.cancel,
            )
        })
        .await
        .unwrap_or_else(|e| {
            Err(exai_kb::KbError::Invalid(format!(
                "the refresh stopped on an internal error: {e}"
            )))
        });
        match &result {
            Ok(r) => tracing::info!(
                source,
                added = r.added,
                updated = r.updated,
                removed = r.removed,
                unchanged = r.unchanged,
                "scheduled refresh done"
            ),
            Err(e) => tracing::warn!(source, error = %e, "scheduled refresh failed"),
        }
        job.finish(result);
    }
}
