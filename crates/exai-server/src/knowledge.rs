//! The knowledge base as the server and the CLI see it: built from configuration, opened once
//! and lazily (the embedding model loads off the startup path), shared by every session.

use std::path::PathBuf;
use std::sync::Arc;

use exai_core::Loaded;
use exai_embed::{Backend, EmbedSettings, Embedder, Precision};
use exai_kb::{CategoryMap, ChunkOptions, Kb, KbError, KbOptions};
use tokio::sync::OnceCell;

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

pub fn embed_settings(loaded: &Loaded) -> Result<EmbedSettings, exai_embed::EmbedError> {
    let e = &loaded.config.embed;
    let backend: Backend = e.backend.parse()?;
    let mut precision: Precision = e.precision.parse()?;
    // int8 is the default for ONNX Runtime; candle runs fp32 only, so an explicit
    // `backend = candle` with the default precision means fp32 rather than an error.
    if backend == Backend::Candle && loaded.source("embed.precision") == exai_core::Source::Default
    {
        precision = Precision::Fp32;
    }
    let onnx_runtime = e.onnx_runtime.trim();
    Ok(EmbedSettings {
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
    })
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
        ..KbOptions::default()
    };
    (options, CategoryMap::with_overrides(&k.categories))
}

/// Build the configured embedder (blocking: loads model weights).
pub fn build_embedder(
    loaded: &Loaded,
) -> Result<Option<Arc<dyn Embedder>>, exai_embed::EmbedError> {
    exai_embed::build(&embed_settings(loaded)?)
}

pub fn open_kb(loaded: &Loaded, embedder: Option<Arc<dyn Embedder>>) -> Result<Kb, KbError> {
    let (options, categories) = kb_options(loaded);
    Kb::open(&kb_path(loaded), embedder, options, categories)
}

/// The server's knowledge base: opened on first use (or warmed in the background).
pub struct Knowledge {
    loaded: Loaded,
    kb: OnceCell<Result<Arc<Kb>, String>>,
    /// Why semantic search is off, when the embedder could not be built.
    pub embed_problem: std::sync::Mutex<Option<String>>,
    pub jobs: Jobs,
}

impl std::fmt::Debug for Knowledge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Knowledge")
            .field("path", &self.path())
            .field("opened", &self.kb.initialized())
            .finish()
    }
}

impl Knowledge {
    pub fn new(loaded: Loaded) -> Self {
        Self {
            jobs: Jobs::new(&loaded.config.database),
            loaded,
            kb: OnceCell::new(),
            embed_problem: std::sync::Mutex::new(None),
        }
    }

    pub fn path(&self) -> PathBuf {
        kb_path(&self.loaded)
    }

    /// The knowledge base, opening it (and loading the embedder) on first call. An embedder
    /// that cannot be built leaves keyword search working and says why in `embed_problem`.
    pub async fn get(&self) -> Result<Arc<Kb>, String> {
        self.kb
            .get_or_init(|| async {
                let loaded = self.loaded.clone();
                let opened = tokio::task::spawn_blocking(move || {
                    let (embedder, problem) = match build_embedder(&loaded) {
                        Ok(e) => (e, None),
                        Err(e) => (None, Some(e.to_string())),
                    };
                    open_kb(&loaded, embedder)
                        .map(|kb| (Arc::new(kb), problem))
                        .map_err(|e| e.to_string())
                })
                .await
                .map_err(|e| format!("knowledge base task failed: {e}"))
                .and_then(|r| r);
                match opened {
                    Ok((kb, problem)) => {
                        if let Some(p) = &problem {
                            tracing::warn!("semantic search is off: {p}");
                        }
                        if let Ok(mut slot) = self.embed_problem.lock() {
                            *slot = problem;
                        }
                        Ok(kb)
                    }
                    Err(e) => {
                        tracing::error!("knowledge base unavailable: {e}");
                        Err(e)
                    }
                }
            })
            .await
            .clone()
    }

    pub fn is_open(&self) -> bool {
        self.kb.initialized()
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

pub use exai_core::paths::allowed_path;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_outside_roots_and_symlink_escapes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(root.join("docs")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
        let roots = vec![root.display().to_string()];
        assert!(allowed_path(&root.join("docs").display().to_string(), &roots).is_ok());
        assert!(allowed_path(&root.join("docs/../docs").display().to_string(), &roots).is_ok());
        let e = allowed_path(&outside.display().to_string(), &roots).unwrap_err();
        assert!(e.contains("outside the allowed roots"), "{e}");
        assert!(allowed_path(&root.join("escape").display().to_string(), &roots).is_err());
        assert!(allowed_path(&root.join("../outside").display().to_string(), &roots).is_err());
        assert!(
            allowed_path("/dev/null", &["/dev".to_string()])
                .unwrap_err()
                .contains("not a regular file")
        );
        assert!(allowed_path(&root.join("missing").display().to_string(), &roots).is_err());
    }
}
