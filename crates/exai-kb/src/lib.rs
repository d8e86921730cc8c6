//! exai's documentation knowledge base: ingest files, chunk them by headings, store them in
//! SQLite with an FTS5 index and vectors, and search them by keyword (BM25), meaning (vectors)
//! or both (reciprocal-rank fusion), with filters, snippets and neighbouring context.

pub mod ann;
pub mod category;
pub mod chunk;
pub mod error;
pub mod eval;
pub mod index;
pub mod ingest;
pub mod maintenance;
pub mod model;
pub mod search;
pub mod store;
pub mod vectors;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use exai_embed::Embedder;
use serde::Serialize;

pub use category::CategoryMap;
pub use chunk::ChunkOptions;
pub use error::{KbError, Result};
pub use index::{IndexReport, IndexRequest, Progress};
pub use model::{ContextChunk, DocType, Filters, Mode, SearchHit, SearchRequest, SearchResponse};
pub use store::NewDocument;
pub use store::{ChunkRecord, Count, DocRecord, PgStats, PgStore, SourceInfo, SqliteStore, Store};
use vectors::VectorIndex;

/// Knobs of the knowledge base (from configuration).
#[derive(Debug, Clone)]
pub struct KbOptions {
    pub chunk: ChunkOptions,
    pub max_file_bytes: u64,
    /// How long a search may serve vectors older than the newest committed ones while an
    /// indexing run keeps adding them (reloading the matrix on every batch would be wasteful).
    pub vector_refresh: Duration,
    /// Semantic search goes through an HNSW index from this many vectors on (0: never).
    pub ann_min_vectors: usize,
    /// Whether a search may start building a missing or stale ANN index in a background
    /// thread. A one-shot command turns this off: the thread would die with the process, and
    /// the exact scan answers meanwhile anyway (`exai index` refreshes the file at its end).
    pub ann_build_on_search: bool,
    /// What indexing may read: private files (dot-files, keys, credentials, the data directory)
    /// are left out of every walk, and refused as roots.
    pub access: exai_core::access::PathPolicy,
}

/// Background ANN builds start at most this often: during a long indexing run the store moves
/// on every batch, and rebuilding the graph after each would compete with the run for the CPU.
const ANN_REBUILD_INTERVAL: Duration = Duration::from_secs(30);

/// Longest query accepted, in bytes: far beyond any question, and a bound on the work one
/// request can ask for.
pub const MAX_QUERY_BYTES: usize = 4096;

/// Most distinct words in a query; each costs a keyword lookup.
pub const MAX_QUERY_TERMS: usize = 64;

/// Default of `kb.ann_min_vectors`: where the exact scan's p50 passes about 5 ms on a 2-core
/// machine (BENCHMARKS.md).
pub const DEFAULT_ANN_MIN_VECTORS: usize = 20_000;

impl Default for KbOptions {
    fn default() -> Self {
        Self {
            chunk: ChunkOptions::default(),
            max_file_bytes: 4 * 1024 * 1024,
            vector_refresh: Duration::from_secs(5),
            ann_min_vectors: DEFAULT_ANN_MIN_VECTORS,
            ann_build_on_search: true,
            access: exai_core::access::PathPolicy::default(),
        }
    }
}

struct LoadedVectors {
    index: Arc<VectorIndex>,
    missing: u64,
    loaded_at: Instant,
}

/// Where a knowledge base lives.
#[derive(Debug, Clone)]
pub enum Location {
    /// One SQLite file (the embedded default); vectors are searched in memory.
    Sqlite(PathBuf),
    /// PostgreSQL with pgvector, shared by several daemons; vectors are searched in the server.
    Postgres(Arc<exai_pg::Pool>),
}

impl Location {
    /// The file path, or the server URL with its password redacted.
    pub fn describe(&self) -> String {
        match self {
            Location::Sqlite(p) => p.display().to_string(),
            Location::Postgres(pool) => pool.target().to_string(),
        }
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self {
            Location::Sqlite(_) => "sqlite",
            Location::Postgres(_) => "postgres",
        }
    }

    /// A new connection (creating and migrating the schema if needed).
    pub fn open_store(&self) -> Result<Store> {
        Ok(match self {
            Location::Sqlite(p) => Store::Sqlite(SqliteStore::open(p)?),
            Location::Postgres(pool) => Store::Postgres(Box::new(PgStore::open(pool)?)),
        })
    }
}

/// The knowledge base: one database (a SQLite file or PostgreSQL), an optional embedder, and
/// (SQLite) the derived in-memory vector index.
pub struct Kb {
    location: Location,
    /// The SQLite file (`None` on PostgreSQL), for the derived ANN index beside it.
    path: PathBuf,
    embedder: Option<Arc<dyn Embedder>>,
    options: KbOptions,
    categories: CategoryMap,
    readers: Mutex<Vec<Store>>,
    /// Keyword-term statistics, one cache for every reader (SQLite).
    term_stats: Option<store::SharedTermStats>,
    vectors: RwLock<Option<LoadedVectors>>,
    /// PostgreSQL: chunks without a vector, at a store generation (one count per change).
    missing: Mutex<Option<(u64, u64)>>,
    reload: Mutex<()>,
    /// Set while a background thread builds the ANN index.
    ann_building: Arc<std::sync::atomic::AtomicBool>,
    /// When the last background ANN build started (debounce, `ANN_REBUILD_INTERVAL`).
    ann_last_build: Mutex<Option<Instant>>,
}

/// A chunk with optional neighbours, for `get_chunk`.
#[derive(Debug, Clone, Serialize)]
pub struct ChunkWithContext {
    pub chunk: ChunkRecord,
    pub before: Vec<ChunkRecord>,
    pub after: Vec<ChunkRecord>,
}

/// A document with its chunks, for `get_document`.
#[derive(Debug, Clone, Serialize)]
pub struct DocumentWithChunks {
    pub document: DocRecord,
    pub chunks: Vec<ChunkRecord>,
}

/// What `exai health` and `list_sources` say about the knowledge base as a whole.
#[derive(Debug, Clone, Serialize)]
pub struct KbStatus {
    pub database: String,
    pub documents: u64,
    pub chunks: u64,
    pub chunks_without_vectors: u64,
    /// The configured embedder: identity key, back end (`onnx`, `candle`, `remote`) and
    /// precision (`fp32`, `int8`).
    pub embedding_model: Option<String>,
    pub embedding_backend: Option<&'static str>,
    pub embedding_precision: Option<String>,
    /// The identity key the index's vectors carry.
    pub index_model: Option<String>,
    /// How the index's vectors were computed; `None` before the first embedding pass.
    pub index_embedding: Option<IndexEmbedding>,
    pub search_modes: Vec<&'static str>,
}

/// How the vectors of an index were computed, from what the index recorded when they were
/// written: `exai sources` shows it as e.g. "onnx int8".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IndexEmbedding {
    /// The model identity key (`name:dim:precision`).
    pub model: String,
    /// `fp32` or `int8` (the older spelling `f32` reads as `fp32`).
    pub precision: String,
    /// The back ends that computed the vectors (`onnx`, `candle`, `remote`), in order of first
    /// use; empty for an index written before exai recorded them.
    pub backends: Vec<String>,
}

impl IndexEmbedding {
    fn new(model: String, backends: Vec<String>) -> IndexEmbedding {
        let precision = match model.rsplit(':').next() {
            Some("f32") | None => "fp32",
            Some(p) => p,
        }
        .to_string();
        IndexEmbedding {
            model,
            precision,
            backends,
        }
    }

    /// Back end and precision, e.g. `onnx int8`, `candle+onnx fp32`, or `fp32 (back end not
    /// recorded)`.
    pub fn describe(&self) -> String {
        if self.backends.is_empty() {
            format!("{} (back end not recorded)", self.precision)
        } else {
            format!("{} {}", self.backends.join("+"), self.precision)
        }
    }
}

/// How the vectors in `store` were computed; `None` before the first embedding pass.
pub fn index_embedding(store: &Store) -> Result<Option<IndexEmbedding>> {
    let Some(model) = store.embed_model()? else {
        return Ok(None);
    };
    Ok(Some(IndexEmbedding::new(model, store.embed_backends()?)))
}

fn closest(value: &str, valid: &[String]) -> Option<String> {
    let lower = value.to_lowercase();
    valid
        .iter()
        .find(|v| v.to_lowercase() == lower)
        .or_else(|| {
            valid.iter().find(|v| {
                v.to_lowercase().starts_with(&lower) || lower.starts_with(&v.to_lowercase())
            })
        })
        .or_else(|| valid.iter().find(|v| v.to_lowercase().contains(&lower)))
        .cloned()
}

impl Kb {
    /// Open (creating and migrating if needed) the SQLite database at `path`.
    pub fn open(
        path: &Path,
        embedder: Option<Arc<dyn Embedder>>,
        options: KbOptions,
        categories: CategoryMap,
    ) -> Result<Self> {
        Self::open_at(
            Location::Sqlite(path.to_path_buf()),
            embedder,
            options,
            categories,
        )
    }

    /// Open (creating and migrating if needed) the knowledge base at `location`.
    pub fn open_at(
        location: Location,
        embedder: Option<Arc<dyn Embedder>>,
        options: KbOptions,
        categories: CategoryMap,
    ) -> Result<Self> {
        let store = location.open_store()?;
        if let (Some(stored), Some(e)) = (store.embed_model()?, &embedder) {
            let key = e.identity().key();
            if !e.identity().matches_key(&stored) {
                tracing::warn!(stored = %stored, configured = %key, "the index's vectors come from another model; semantic search is off until `exai index --reembed`");
            }
        }
        let path = match &location {
            Location::Sqlite(p) => p.clone(),
            Location::Postgres(_) => PathBuf::new(),
        };
        Ok(Self {
            location,
            path,
            embedder,
            options,
            categories,
            term_stats: match &store {
                Store::Sqlite(s) => Some(s.term_stats()),
                Store::Postgres(_) => None,
            },
            readers: Mutex::new(vec![store]),
            vectors: RwLock::new(None),
            missing: Mutex::new(None),
            reload: Mutex::new(()),
            ann_building: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            ann_last_build: Mutex::new(None),
        })
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The file path, or the server URL with its password redacted.
    pub fn describe(&self) -> String {
        self.location.describe()
    }

    pub fn embedder(&self) -> Option<&Arc<dyn Embedder>> {
        self.embedder.as_ref()
    }

    pub fn categories_map(&self) -> &CategoryMap {
        &self.categories
    }

    /// A fresh connection for writing (one per indexing run).
    pub fn writer(&self) -> Result<Store> {
        match &self.location {
            Location::Sqlite(p) => Ok(Store::Sqlite(SqliteStore::open(p)?)),
            Location::Postgres(pool) => Ok(Store::Postgres(Box::new(PgStore::attach(pool)?))),
        }
    }

    /// Run `f` with a pooled read connection.
    pub fn with_reader<T>(&self, f: impl FnOnce(&Store) -> Result<T>) -> Result<T> {
        if let Location::Postgres(pool) = &self.location {
            // The connection pool is the pool; a connection goes back when the store drops.
            return f(&Store::Postgres(Box::new(PgStore::attach(pool)?)));
        }
        let pooled = self.readers.lock().ok().and_then(|mut p| p.pop());
        let store = match pooled {
            Some(s) => s,
            None => {
                let mut store = SqliteStore::open(&self.path)?;
                if let Some(shared) = &self.term_stats {
                    store.share_term_stats(shared.clone());
                }
                Store::Sqlite(store)
            }
        };
        let out = f(&store);
        if let Ok(mut pool) = self.readers.lock()
            && pool.len() < 8
        {
            pool.push(store);
        }
        out
    }

    /// Whether the index's vectors come from the configured embedder.
    fn vectors_usable(&self, store: &Store) -> Result<bool> {
        self.model_usable(store.embed_model()?)
    }

    fn vectors_usable_sqlite(&self, store: &SqliteStore) -> Result<bool> {
        self.model_usable(store.embed_model()?)
    }

    fn model_usable(&self, stored: Option<String>) -> Result<bool> {
        let Some(e) = &self.embedder else {
            return Ok(false);
        };
        Ok(stored.is_none_or(|m| e.identity().matches_key(&m)))
    }

    /// Chunks without a vector, counted once per store generation (the count scans every
    /// chunk: tens of milliseconds on a large index).
    fn missing_cached(&self, store: &Store) -> Result<u64> {
        let generation = store.generation()?;
        if let Ok(guard) = self.missing.lock()
            && let Some((g, n)) = *guard
            && g == generation
        {
            return Ok(n);
        }
        let n = store.count_chunks_without_vectors()?;
        if let Ok(mut guard) = self.missing.lock() {
            *guard = Some((generation, n));
        }
        Ok(n)
    }

    /// The vector index, rebuilt when the store has moved on (at most every `vector_refresh`
    /// while it keeps moving).
    fn current_vectors(&self, store: &SqliteStore) -> Result<(Arc<VectorIndex>, u64)> {
        let generation = store.generation()?;
        if let Ok(guard) = self.vectors.read()
            && let Some(v) = guard.as_ref()
            && (v.index.generation == generation
                || v.loaded_at.elapsed() < self.options.vector_refresh)
        {
            return Ok((v.index.clone(), v.missing));
        }
        self.load_vectors(store, generation, true)
    }

    fn load_vectors(
        &self,
        store: &SqliteStore,
        generation: u64,
        ann_in_background: bool,
    ) -> Result<(Arc<VectorIndex>, u64)> {
        let _one_loader = self.reload.lock();
        if let Ok(guard) = self.vectors.read()
            && let Some(v) = guard.as_ref()
            && v.index.generation == generation
        {
            return Ok((v.index.clone(), v.missing));
        }
        let started = Instant::now();
        let index = Arc::new(VectorIndex::build(store.vectors()?, generation));
        let missing = store.count_chunks_without_vectors()?;
        tracing::debug!(
            vectors = index.len(),
            distinct = index.distinct(),
            missing,
            ms = started.elapsed().as_millis() as u64,
            "vector index loaded"
        );
        self.attach_ann(store, &index, ann_in_background)?;
        if let Ok(mut guard) = self.vectors.write() {
            *guard = Some(LoadedVectors {
                index: index.clone(),
                missing,
                loaded_at: Instant::now(),
            });
        }
        Ok((index, missing))
    }

    /// Give `index` its ANN index when it is big enough: load the file when it matches, else
    /// build it, in a background thread (`background`; search scans exactly meanwhile) or here.
    fn attach_ann(
        &self,
        store: &SqliteStore,
        index: &Arc<VectorIndex>,
        background: bool,
    ) -> Result<()> {
        use std::sync::atomic::Ordering;
        if !ann::wanted(index.distinct(), self.options.ann_min_vectors) || index.ann().is_some() {
            return Ok(());
        }
        let Some(model) = store.embed_model()? else {
            return Ok(());
        };
        if ann::try_load(index, &self.path, &model) {
            return Ok(());
        }
        if !background {
            ann::build_and_save(index, &self.path, &model)?;
            return Ok(());
        }
        if !self.options.ann_build_on_search {
            return Ok(());
        }
        if let Ok(last) = self.ann_last_build.lock()
            && last.is_some_and(|at| at.elapsed() < ANN_REBUILD_INTERVAL)
        {
            return Ok(());
        }
        if self.ann_building.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        if let Ok(mut last) = self.ann_last_build.lock() {
            *last = Some(Instant::now());
        }
        let (index, path, building) = (index.clone(), self.path.clone(), self.ann_building.clone());
        let spawned = std::thread::Builder::new()
            .name("exai-ann-build".into())
            .spawn(move || {
                if let Err(e) = ann::build_and_save(&index, &path, &model) {
                    tracing::warn!(
                        "building the ANN index failed ({e}); semantic search stays exact"
                    );
                }
                building.store(false, Ordering::Release);
            });
        if let Err(e) = spawned {
            self.ann_building.store(false, Ordering::Release);
            tracing::warn!("cannot start the ANN build ({e}); semantic search stays exact");
        }
        Ok(())
    }

    /// Make the ANN index match the store now (load or build it, here), e.g. at the end of an
    /// indexing run. `None` when the store has too few vectors for one.
    pub fn refresh_ann(&self) -> Result<Option<ann::AnnHeader>> {
        self.with_reader(|store| {
            let Store::Sqlite(store) = store else {
                // PostgreSQL keeps its HNSW index itself.
                return Ok(None);
            };
            if !self.vectors_usable_sqlite(store)? {
                return ann::refresh(store, self.options.ann_min_vectors);
            }
            let (index, _) = self.load_vectors(store, store.generation()?, false)?;
            self.attach_ann(store, &index, false)?;
            Ok(index.ann().map(|a| a.header.clone()))
        })
    }

    /// Whether the loaded vector index currently searches through an ANN index (for tests and
    /// benchmarks).
    pub fn ann_in_use(&self) -> bool {
        self.vectors
            .read()
            .ok()
            .and_then(|g| g.as_ref().map(|v| v.index.ann().is_some()))
            .unwrap_or(false)
    }

    /// Reject unknown sources, technologies and categories with the valid ones listed.
    pub fn validate_filters(&self, store: &Store, filters: &Filters) -> Result<()> {
        let checks: [(&'static str, &Vec<String>, &str); 3] = [
            ("source", &filters.sources, "source"),
            ("technology", &filters.technologies, "technology"),
            ("category", &filters.categories, "category"),
        ];
        for (kind, values, column) in checks {
            if values.is_empty() {
                continue;
            }
            let valid = store.distinct_values(column)?;
            for v in values {
                if !valid.contains(v) {
                    return Err(KbError::UnknownValue {
                        kind,
                        value: v.clone(),
                        hint: closest(v, &valid),
                        valid,
                    });
                }
            }
        }
        Ok(())
    }

    /// One search.
    pub fn search(&self, req: &SearchRequest) -> Result<SearchResponse> {
        let started = Instant::now();
        if req.query.trim().is_empty() {
            return Err(KbError::Invalid("the query is empty".into()));
        }
        if req.query.len() > MAX_QUERY_BYTES {
            return Err(KbError::Invalid(format!(
                "the query is {} bytes; at most {MAX_QUERY_BYTES}: ask a question or give \
                 keywords, not a document",
                req.query.len()
            )));
        }
        let words = store::query_terms(&req.query).len();
        if words > MAX_QUERY_TERMS {
            return Err(KbError::Invalid(format!(
                "the query has {words} distinct words; at most {MAX_QUERY_TERMS}: keep the \
                 words that matter"
            )));
        }
        if !(1..=100).contains(&req.limit) {
            return Err(KbError::Invalid(format!(
                "limit must be 1–100, not {}",
                req.limit
            )));
        }
        if req.context > 3 {
            return Err(KbError::Invalid(format!(
                "context must be 0–3 chunks, not {}",
                req.context
            )));
        }
        self.with_reader(|store| {
            self.validate_filters(store, &req.filters)?;
            let mut notes = Vec::new();
            let mut mode = req.mode;
            let semantic_ok = self.vectors_usable(store)?;
            if mode != Mode::Keyword && !semantic_ok {
                notes.push(match &self.embedder {
                    None => "no embedding model is configured: keyword results only; see `exai health`".to_string(),
                    Some(_) => "the index's vectors come from another model: keyword results only until `exai index --reembed`".to_string(),
                });
                mode = Mode::Keyword;
            }
            let pool = (req.limit * if req.group_by_document { 10 } else { 4 }).max(50);
            let embedder = match mode {
                Mode::Keyword => None,
                _ => Some(self.embedder.as_ref().ok_or_else(|| KbError::Embed("no embedder".into()))?),
            };
            let embed = |e: &Arc<dyn Embedder>| e.embed_query(&req.query).map_err(|e| KbError::Embed(e.to_string()));
            // Hybrid: the query is embedded on another core while FTS5 ranks on this one.
            let (keyword, query_vector) = match (mode, embedder) {
                (Mode::Hybrid, Some(e)) => std::thread::scope(|s| {
                    let embedding = s.spawn(|| embed(e));
                    let keyword = store.keyword_search(&req.query, &req.filters, pool);
                    let vector = embedding.join().unwrap_or_else(|_| Err(KbError::Embed("the query embedding panicked".into())));
                    (keyword, Some(vector))
                }),
                (Mode::Semantic, Some(e)) => (Ok(Vec::new()), Some(embed(e))),
                _ => (store.keyword_search(&req.query, &req.filters, pool), None),
            };
            let keyword = keyword?;
            let (semantic, missing) = if let Some(q) = query_vector {
                let q = q?;
                let (semantic, missing) = match store {
                    Store::Sqlite(s) => {
                        let (index, missing) = self.current_vectors(s)?;
                        (index.search(&q, &req.filters, pool), missing)
                    }
                    Store::Postgres(p) => {
                        let missing = self.missing_cached(store)?;
                        (p.vector_search(&q, &req.filters, pool)?, missing)
                    }
                };
                if missing > 0 {
                    notes.push(format!("{missing} chunks have no vector yet (embedding in progress or pending): semantic search does not see them, keyword search does"));
                }
                (semantic, missing)
            } else {
                (Vec::new(), self.missing_cached(store).unwrap_or(0))
            };
            let cosine: std::collections::HashMap<i64, f32> = semantic.iter().copied().collect();
            let ranked: Vec<(i64, f32, Option<usize>, Option<usize>)> = match mode {
                Mode::Hybrid => search::rrf(&keyword, &semantic),
                Mode::Keyword => keyword.iter().enumerate().map(|(i, (id, s))| (*id, *s, Some(i + 1), None)).collect(),
                Mode::Semantic => semantic.iter().enumerate().map(|(i, (id, s))| (*id, *s, None, Some(i + 1))).collect(),
            };
            let mut ranked: Vec<_> = ranked.into_iter().filter(|r| req.min_score.is_none_or(|m| r.1 >= m)).collect();
            if !req.group_by_document {
                // Only these are shown: the rest need no text read.
                ranked.truncate(req.limit);
            }
            let records = store.chunks(&ranked.iter().map(|r| r.0).collect::<Vec<_>>())?;
            let by_id: std::collections::HashMap<i64, &ChunkRecord> = records.iter().map(|c| (c.id, c)).collect();
            let terms = search::terms(&req.query);
            let mut hits: Vec<SearchHit> = Vec::new();
            let mut per_doc: std::collections::HashMap<i64, usize> = std::collections::HashMap::new();
            for (id, score, krank, vrank) in &ranked {
                let Some(c) = by_id.get(id) else { continue };
                if req.group_by_document {
                    let seen = per_doc.entry(c.doc_id).or_insert(0);
                    *seen += 1;
                    if *seen > 1 {
                        continue;
                    }
                }
                if hits.len() >= req.limit {
                    if req.group_by_document {
                        continue;
                    }
                    break;
                }
                hits.push(SearchHit {
                    chunk_id: c.id,
                    doc_id: c.doc_id,
                    score: (*score * 10_000.0).round() / 10_000.0,
                    keyword_rank: *krank,
                    semantic_rank: *vrank,
                    cosine: cosine.get(id).map(|c| (c * 10_000.0).round() / 10_000.0),
                    title: c.title.clone(),
                    section: c.section.clone(),
                    source: c.source.clone(),
                    path: c.path.clone(),
                    uri: c.uri.clone(),
                    technology: c.technology.clone(),
                    category: c.category.clone(),
                    doc_type: c.doc_type,
                    position: c.position,
                    snippet: search::snippet(&c.text, &terms, 320),
                    before: Vec::new(),
                    after: Vec::new(),
                    more_in_document: None,
                });
            }
            if req.group_by_document {
                for h in &mut hits {
                    h.more_in_document = per_doc.get(&h.doc_id).map(|n| n - 1);
                }
            }
            if req.context > 0 {
                for h in &mut hits {
                    let (before, after) = store.neighbours(h.doc_id, h.position, &h.section, req.context)?;
                    let conv = |c: ChunkRecord| ContextChunk { chunk_id: c.id, position: c.position, text: c.text };
                    h.before = before.into_iter().map(conv).collect();
                    h.after = after.into_iter().map(conv).collect();
                }
            }
            Ok(SearchResponse {
                query: req.query.clone(),
                mode,
                hits,
                notes,
                chunks_without_vectors: missing,
                took_ms: (started.elapsed().as_secs_f64() * 1e6).round() / 1e3,
            })
        })
    }

    pub fn get_chunk(&self, id: i64, context: usize) -> Result<ChunkWithContext> {
        self.with_reader(|store| {
            let chunk = store.chunk(id)?;
            let (before, after) =
                store.neighbours(chunk.doc_id, chunk.position, &chunk.section, context.min(5))?;
            Ok(ChunkWithContext {
                chunk,
                before,
                after,
            })
        })
    }

    pub fn get_document(
        &self,
        doc_id: Option<i64>,
        source: Option<&str>,
        path: Option<&str>,
    ) -> Result<DocumentWithChunks> {
        self.with_reader(|store| {
            let document = store.document(doc_id, path.map(|p| (source.unwrap_or(""), p)))?;
            let chunks = store.document_chunks(document.id)?;
            Ok(DocumentWithChunks { document, chunks })
        })
    }

    pub fn sources(&self) -> Result<Vec<SourceInfo>> {
        self.with_reader(|s| s.sources())
    }

    pub fn counts(&self, column: &str) -> Result<Vec<Count>> {
        self.with_reader(|s| s.counts(column))
    }

    pub fn remove_source(&self, source: &str) -> Result<u64> {
        let mut store = self.writer()?;
        let valid: Vec<String> = store.sources()?.into_iter().map(|s| s.name).collect();
        if !valid.iter().any(|v| v == source) {
            return Err(KbError::UnknownValue {
                kind: "source",
                value: source.into(),
                hint: closest(source, &valid),
                valid,
            });
        }
        store.remove_source(source)
    }

    /// How the index's vectors were computed (model, precision, back ends); `None` before the
    /// first embedding pass.
    pub fn index_embedding(&self) -> Result<Option<IndexEmbedding>> {
        self.with_reader(index_embedding)
    }

    pub fn status(&self) -> Result<KbStatus> {
        self.with_reader(|store| {
            let (documents, chunks) = store.totals()?;
            let semantic = self.vectors_usable(store)?;
            Ok(KbStatus {
                database: self.location.describe(),
                documents,
                chunks,
                chunks_without_vectors: store.count_chunks_without_vectors()?,
                embedding_model: self.embedder.as_ref().map(|e| e.identity().key()),
                embedding_backend: self.embedder.as_ref().map(|e| e.backend()),
                embedding_precision: self
                    .embedder
                    .as_ref()
                    .map(|e| e.identity().precision.clone()),
                index_model: store.embed_model()?,
                index_embedding: index_embedding(store)?,
                search_modes: if semantic {
                    vec!["hybrid", "keyword", "semantic"]
                } else {
                    vec!["keyword"]
                },
            })
        })
    }
}
