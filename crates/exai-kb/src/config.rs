//! The knowledge base as exai's configuration describes it: where it lives (`kb.database`,
//! `database.url`), its options (`kb.*`) and the embedder (`embed.*`), built here, beside what
//! they configure, so that the server, the CLI and the operations toolkit open it alike.

use std::path::PathBuf;
use std::sync::Arc;

use exai_core::Loaded;
use exai_embed::{EmbedSettings, Embedder};

use crate::chunk::ChunkOptions;
use crate::error::Result;
use crate::ingest::UntrustedFilter;
use crate::{CategoryMap, Kb, KbOptions, Location, SqliteStore, StoreBackend};

/// The SQLite file: `kb.database`, else `kb.sqlite` in the data directory (named even when
/// PostgreSQL holds the knowledge base; then unused).
pub fn sqlite_path(loaded: &Loaded) -> PathBuf {
    let configured = loaded.config.kb.database.trim();
    if configured.is_empty() {
        loaded.data_dir.join("kb.sqlite")
    } else {
        PathBuf::from(configured)
    }
}

/// Where the knowledge base lives: PostgreSQL when `database.url` is set (the process's shared
/// pool, connecting with the start-up retries on first use), else the SQLite file.
pub fn location(loaded: &Loaded) -> Result<Location> {
    match exai_pg::from_config(&loaded.config.database)? {
        Some(pool) => Ok(Location::Postgres(pool)),
        None => Ok(Location::Sqlite(sqlite_path(loaded))),
    }
}

/// The knowledge base's database as it may be shown: the file path, or the PostgreSQL URL
/// with its password redacted.
pub fn describe(loaded: &Loaded) -> String {
    match loaded.config.database.postgres_url() {
        Some(url) => exai_pg::redact(url),
        None => sqlite_path(loaded).display().to_string(),
    }
}

/// (documents, chunks) read from the database file without opening the knowledge base (no
/// migration, no pool, no embedder): `(0, 0)` before the file exists, `None` where the
/// knowledge base lives on a server (counting would connect).
pub fn peek_totals(loaded: &Loaded) -> Result<Option<(u64, u64)>> {
    if loaded.config.database.postgres_url().is_some() {
        return Ok(None);
    }
    let path = sqlite_path(loaded);
    if !path.exists() {
        return Ok(Some((0, 0)));
    }
    SqliteStore::open_readonly(&path)?.totals().map(Some)
}

impl KbOptions {
    /// The options of the `kb.*` configuration (and the process's path policy).
    pub fn from_config(loaded: &Loaded) -> KbOptions {
        let k = &loaded.config.kb;
        // Loading the configuration compiled the patterns already, so this cannot fail there.
        let untrusted = UntrustedFilter::new(k.untrusted_content, &k.untrusted_patterns)
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "kb.untrusted_patterns: using the built-in rules only");
                UntrustedFilter::with_mode(k.untrusted_content)
            });
        KbOptions {
            chunk: ChunkOptions {
                max_tokens: usize::try_from(k.chunk_tokens).unwrap_or(200),
                overlap_tokens: usize::try_from(k.chunk_overlap).unwrap_or(32),
                max_chunks_per_file: usize::try_from(k.max_chunks_per_file).unwrap_or(2000),
            },
            max_file_bytes: k.max_file_bytes,
            ann_min_vectors: usize::try_from(k.ann_min_vectors).unwrap_or(usize::MAX),
            access: loaded.access(),
            untrusted: Arc::new(untrusted),
            ..KbOptions::default()
        }
    }
}

impl CategoryMap {
    /// The default categories with `kb.categories`' overrides.
    pub fn from_config(loaded: &Loaded) -> CategoryMap {
        CategoryMap::with_overrides(&loaded.config.kb.categories)
    }
}

/// Build the configured embedder (blocking: loads model weights).
pub fn build_embedder(
    loaded: &Loaded,
) -> std::result::Result<Option<Arc<dyn Embedder>>, exai_embed::EmbedError> {
    exai_embed::build(&EmbedSettings::from_config(loaded))
}

impl Kb {
    /// Open (creating and migrating if needed) the configured knowledge base.
    pub fn open_configured(loaded: &Loaded, embedder: Option<Arc<dyn Embedder>>) -> Result<Kb> {
        Kb::open_at(
            location(loaded)?,
            embedder,
            KbOptions::from_config(loaded),
            CategoryMap::from_config(loaded),
        )
    }
}
