//! The knowledge base as the server and the CLI see it: built from configuration, opened once
//! and lazily (the embedding model loads off the startup path), shared by every session.

use std::path::PathBuf;
use std::sync::Arc;

use exai_core::Loaded;
use exai_embed::{Backend, EmbedSettings, Embedder, Precision};
use exai_kb::{CategoryMap, ChunkOptions, Kb, KbError, KbOptions, Location};

use crate::jobs::Jobs;

/// The database file: `kb.database`, else `kb.sqlite` in the data directory.
pub fn kb_path(loaded: &Loaded) -> PathBuf {
    let configured = loaded.config.kb.database.trim();
    if configured.is_empty() {
        loaded.data_dir.join("kb.sqlite")
    } else {
        PathBuf::from(configured)
    }
}

/// Where the knowledge base lives: PostgreSQL when `database.url` is set (the process's shared
/// pool, connecting with the start-up retries on first use), else the SQLite file.
pub fn kb_location(loaded: &Loaded) -> Result<Location, KbError> {
    match exai_pg::from_config(&loaded.config.database)? {
        Some(pool) => Ok(Location::Postgres(pool)),
        None => Ok(Location::Sqlite(kb_path(loaded))),
    }
}

/// The knowledge base's database as it may be shown: the file path, or the PostgreSQL URL
/// with its password redacted.
pub fn kb_describe(loaded: &Loaded) -> String {
    match loaded.config.database.postgres_url() {
        Some(url) => exai_pg::redact(url),
        None => kb_path(loaded).display().to_string(),
    }
}

pub fn embed_settings(loaded: &Loaded) -> EmbedSettings {
    let e = &loaded.config.embed;
    let backend = Backend::from(e.backend);
    let mut precision = Precision::from(e.precision);
    // int8 is the default for ONNX Runtime; candle runs fp32 only, so an explicit
    // `backend = candle` with the default precision means fp32 rather than an error.
    if backend == Backend::Candle && loaded.source("embed.precision") == exai_core::Source::Default
    {
        precision = Precision::Fp32;
    }
    let onnx_runtime = e.onnx_runtime.trim();
    EmbedSettings {
        backend,
        precision,
        onnx_runtime: (!onnx_runtime.is_empty()).then(|| PathBuf::from(onnx_runtime)),
        model: (!e.model.trim().is_empty()).then(|| PathBuf::from(e.model.trim())),
        data_dir: loaded.data_dir.clone(),
        remote_url: e.remote_url.clone(),
        remote_model: e.remote_model.clone(),
        remote_api_key: e
            .remote_api_key
            .is_set()
            .then(|| e.remote_api_key.expose().to_string()),
        remote_dim: None,
        batch_size: usize::try_from(e.batch_size).unwrap_or(32),
    }
}

pub fn kb_options(loaded: &Loaded) -> (KbOptions, CategoryMap) {
    let k = &loaded.config.kb;
    let options = KbOptions {
        chunk: ChunkOptions {
            max_tokens: usize::try_from(k.chunk_tokens).unwrap_or(200),
            overlap_tokens: usize::try_from(k.chunk_overlap).unwrap_or(32),
            max_chunks_per_file: usize::try_from(k.max_chunks_per_file).unwrap_or(2000),
        },
        max_file_bytes: k.max_file_bytes,
        ann_min_vectors: usize::try_from(k.ann_min_vectors).unwrap_or(usize::MAX),
        access: loaded.access(),
        ..KbOptions::default()
    };
    (options, CategoryMap::with_overrides(&k.categories))
}

/// Build the configured embedder (blocking: loads model weights).
pub fn build_embedder(
    loaded: &Loaded,
) -> Result<Option<Arc<dyn Embedder>>, exai_embed::EmbedError> {
    exai_embed::build(&embed_settings(loaded))
}

pub fn open_kb(loaded: &Loaded, embedder: Option<Arc<dyn Embedder>>) -> Result<Kb, KbError> {
    let (options, categories) = kb_options(loaded);
    Kb::open_at(kb_location(loaded)?, embedder, options, categories)
}

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

    /// The SQLite file (also named when PostgreSQL is configured; then unused).
    pub fn path(&self) -> PathBuf {
        kb_path(&self.loaded)
    }

    /// The database as it may be shown: the file, or the redacted PostgreSQL URL.
    pub fn describe(&self) -> String {
        kb_describe(&self.loaded)
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        if self.loaded.config.database.postgres_url().is_some() {
            "postgres"
        } else {
            "sqlite"
        }
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
            let built = built.unwrap_or_else(|| match build_embedder(&loaded) {
                Ok(e) => (e, None),
                Err(e) => (None, Some(e.to_string())),
            });
            let kb = open_kb(&loaded, built.0.clone()).map_err(|e| e.to_string());
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
