//! exai's documentation knowledge base: ingest files, chunk them by headings, store them in
//! SQLite with an FTS5 index and vectors, and search them by keyword (BM25), meaning (vectors)
//! or both (reciprocal-rank fusion), with filters, snippets and neighbouring context.

pub mod ann;
pub mod category;
pub mod chunk;
pub mod config;
pub mod error;
pub mod eval;
pub mod feed;
pub mod index;
pub mod ingest;
pub mod maintenance;
pub mod model;
pub mod search;
pub mod store;
pub mod vectors;
pub mod versions;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use exai_embed::Embedder;
use serde::Serialize;

pub use category::CategoryMap;
pub use chunk::ChunkOptions;
pub use error::{KbError, Result};
pub use feed::{Feed, Item};
pub use index::{IndexReport, IndexRequest, PlannedFile, Progress};
pub use model::{ContextChunk, DocType, Filters, Mode, SearchHit, SearchRequest, SearchResponse};
pub use store::NewDocument;
pub use store::{
    ChunkRecord, Count, DocRecord, Location, PageState, PgStats, PgStore, SharedLogic, SourceInfo,
    SqliteStore, Store, StoreBackend,
};
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
    /// What indexing flags as untrusted text and does with it (`kb.untrusted_content`,
    /// `kb.untrusted_patterns`).
    pub untrusted: Arc<ingest::UntrustedFilter>,
}

/// Background ANN builds start at most this often: during a long indexing run the store moves
/// on every batch, and rebuilding the graph after each would compete with the run for the CPU.
const ANN_REBUILD_INTERVAL: Duration = Duration::from_secs(30);

/// Longest query accepted, in bytes: far beyond any question, and a bound on the work one
/// request can ask for.
pub const MAX_QUERY_BYTES: usize = 4096;

/// Most distinct words in a query; each costs a keyword lookup.
pub const MAX_QUERY_TERMS: usize = 64;

/// Default of `kb.ann_min_vectors`: the size from which the exact scan costs more than the HNSW
/// graph (BENCHMARKS.md, "Semantic search, exact scan vs HNSW").
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
            untrusted: Arc::new(ingest::UntrustedFilter::with_mode(
                exai_core::UntrustedContent::Drop,
            )),
        }
    }
}

/// Chunk ids with their scores, best first.
type Scored = Vec<(i64, f32)>;

struct LoadedVectors {
    index: Arc<VectorIndex>,
    missing: u64,
    loaded_at: Instant,
}

/// The knowledge base: one database (a SQLite file or PostgreSQL), an optional embedder, and
/// (SQLite) the derived in-memory vector index.
pub struct Kb {
    location: Location,
    /// Where the ANN graph of the in-memory vector index is saved (`None` where the database
    /// searches its vectors itself).
    ann_base: Option<PathBuf>,
    embedder: Option<Arc<dyn Embedder>>,
    options: KbOptions,
    categories: CategoryMap,
    readers: Mutex<Vec<Store>>,
    /// Keyword-term statistics, one cache for every reader (where the backend keeps them).
    term_stats: Option<store::SharedTermStats>,
    vectors: RwLock<Option<LoadedVectors>>,
    /// Chunks without a vector, at a store generation (one count per change), where the
    /// in-memory vector index does not count them.
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
    /// What indexing does with untrusted text (`kb.untrusted_content`): `drop`, `mark`, `keep`.
    pub untrusted_content: &'static str,
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

/// Give each hit the chunks around it in its section (`context` before and after).
fn add_neighbours(store: &Store, hits: &mut [SearchHit], context: usize) -> Result<()> {
    for h in hits {
        let (before, after) = store.neighbours(h.doc_id, h.position, &h.section, context)?;
        let conv = |c: ChunkRecord| ContextChunk {
            chunk_id: c.id,
            position: c.position,
            text: c.text,
        };
        h.before = before.into_iter().map(conv).collect();
        h.after = after.into_iter().map(conv).collect();
    }
    Ok(())
}

pub(crate) fn closest(value: &str, valid: &[String]) -> Option<String> {
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
        let ann_base = location.derived_files().map(Path::to_path_buf);
        let term_stats = store.term_stats();
        let readers = if store.keep_between_calls() {
            vec![store]
        } else {
            Vec::new()
        };
        Ok(Self {
            location,
            ann_base,
            embedder,
            options,
            categories,
            term_stats,
            readers: Mutex::new(readers),
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
        self.location.connect()
    }

    /// Run `f` with a pooled read connection.
    pub fn with_reader<T>(&self, f: impl FnOnce(&Store) -> Result<T>) -> Result<T> {
        let pooled = self.readers.lock().ok().and_then(|mut p| p.pop());
        let store = match pooled {
            Some(s) => s,
            None => {
                let mut store = self.location.connect()?;
                if let Some(shared) = &self.term_stats {
                    store.share_term_stats(shared.clone());
                }
                store
            }
        };
        let out = f(&store);
        if store.keep_between_calls()
            && let Ok(mut pool) = self.readers.lock()
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
    fn current_vectors(&self, store: &Store) -> Result<(Arc<VectorIndex>, u64)> {
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
        store: &Store,
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
    fn attach_ann(&self, store: &Store, index: &Arc<VectorIndex>, background: bool) -> Result<()> {
        use std::sync::atomic::Ordering;
        if !ann::wanted(index.distinct(), self.options.ann_min_vectors) || index.ann().is_some() {
            return Ok(());
        }
        let Some(base) = &self.ann_base else {
            return Ok(());
        };
        let Some(model) = store.embed_model()? else {
            return Ok(());
        };
        if index.try_load_ann(base, &model) {
            return Ok(());
        }
        if !background {
            index.build_and_save_ann(base, &model)?;
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
        let (index, base, building) = (index.clone(), base.clone(), self.ann_building.clone());
        let spawned = std::thread::Builder::new()
            .name("exai-ann-build".into())
            .spawn(move || {
                if let Err(e) = index.build_and_save_ann(&base, &model) {
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
        let Some(base) = &self.ann_base else {
            // The database keeps its vector index itself.
            return Ok(None);
        };
        self.with_reader(|store| {
            if !self.vectors_usable(store)? {
                return vectors::refresh_ann(
                    store.backend_ref(),
                    base,
                    self.options.ann_min_vectors,
                );
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

    /// One search: check the request, retrieve candidates by keyword and by meaning, rank
    /// them, read the chunks shown and add their neighbours.
    pub fn search(&self, req: &SearchRequest) -> Result<SearchResponse> {
        let started = Instant::now();
        search::check_request(req)?;
        self.with_reader(|store| {
            let mut notes = Vec::new();
            let resolved = self.resolve_versions(store, req, &mut notes)?;
            let req = resolved.as_ref().unwrap_or(req);
            self.validate_filters(store, &req.filters)?;
            let mode = self.usable_mode(store, req.mode, &mut notes)?;
            let pool = search::candidate_pool(req);
            let (keyword, query_vector) = self.keyword_and_query_vector(store, req, mode, pool)?;
            let (semantic, missing) = match query_vector {
                Some(q) => {
                    let (semantic, missing) = self.semantic_search(store, &q, &req.filters, pool)?;
                    if missing > 0 {
                        notes.push(format!("{missing} chunks have no vector yet (embedding in progress or pending): semantic search does not see them, keyword search does"));
                    }
                    (semantic, missing)
                }
                None => (Vec::new(), self.missing_cached(store).unwrap_or(0)),
            };
            let ranked = search::rank(req, mode, &keyword, &semantic);
            let records = store.chunks(&ranked.iter().map(|r| r.0).collect::<Vec<_>>())?;
            let mut hits = search::hits(req, &ranked, &records, &semantic);
            if req.context > 0 {
                add_neighbours(store, &mut hits, req.context)?;
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

    /// The request with each library name or `NAME@RANGE` among its sources replaced by the
    /// indexed version it resolves to (saying which in `notes` when the library has several),
    /// or `None` when every source is a source's own name and no version was asked for.
    fn resolve_versions(
        &self,
        store: &Store,
        req: &SearchRequest,
        notes: &mut Vec<String>,
    ) -> Result<Option<SearchRequest>> {
        let version = req.version.as_deref().filter(|v| !v.trim().is_empty());
        if version.is_some() && req.filters.sources.len() != 1 {
            return Err(KbError::Invalid(
                "`version` needs exactly one source: the library whose version it names".into(),
            ));
        }
        if req.filters.sources.is_empty() {
            // Nothing to resolve: no lookup on the search's path.
            return Ok(None);
        }
        let names = store.source_names()?;
        let exact = |s: &String| names.iter().any(|(n, _)| n == s);
        if version.is_none() && req.filters.sources.iter().all(exact) {
            return Ok(None);
        }
        let mut out = req.clone();
        let has_versions = |library: &str| {
            names
                .iter()
                .any(|(n, _)| matches!(versions::split(n), (l, Some(_)) if l == library))
        };
        for source in &mut out.filters.sources {
            if version.is_none() && (exact(source) || !has_versions(versions::split(source).0)) {
                // A source's own name, or an unknown one `validate_filters` explains.
                continue;
            }
            let r = versions::resolve(&names, source, version)?;
            if r.versions.len() > 1 {
                notes.push(format!(
                    "searched {} ({} of {}: {})",
                    r.source,
                    r.chosen_by,
                    r.library,
                    r.versions.join(", ")
                ));
            }
            *source = r.source;
        }
        Ok(Some(out))
    }

    /// Every library with its indexed versions, newest first.
    pub fn libraries(&self) -> Result<Vec<versions::Library>> {
        self.with_reader(|s| Ok(versions::libraries(&s.source_names()?)))
    }

    /// The indexed version of `library` that `version` (exact or a semver range; default the
    /// newest) names, with every version that exists.
    pub fn resolve_library(
        &self,
        library: &str,
        version: Option<&str>,
    ) -> Result<versions::Resolved> {
        self.with_reader(|s| versions::resolve(&s.source_names()?, library, version))
    }

    /// The mode asked for, or keyword search (saying why in `notes`) when the index's vectors
    /// cannot serve it.
    fn usable_mode(&self, store: &Store, asked: Mode, notes: &mut Vec<String>) -> Result<Mode> {
        if asked == Mode::Keyword || self.vectors_usable(store)? {
            return Ok(asked);
        }
        notes.push(match &self.embedder {
            None => "no embedding model is configured: keyword results only; see `exai health`".to_string(),
            Some(_) => "the index's vectors come from another model: keyword results only until `exai index --reembed`".to_string(),
        });
        Ok(Mode::Keyword)
    }

    /// The keyword candidates and the query's vector, as `mode` needs them. Hybrid embeds the
    /// query on another core while the keyword index ranks on this one.
    fn keyword_and_query_vector(
        &self,
        store: &Store,
        req: &SearchRequest,
        mode: Mode,
        pool: usize,
    ) -> Result<(Scored, Option<Vec<f32>>)> {
        let embedder = match mode {
            Mode::Keyword => None,
            _ => Some(
                self.embedder
                    .as_ref()
                    .ok_or_else(|| KbError::Embed("no embedder".into()))?,
            ),
        };
        let embed = |e: &Arc<dyn Embedder>| {
            e.embed_query(&req.query)
                .map_err(|e| KbError::Embed(e.to_string()))
        };
        let (keyword, query_vector) = match (mode, embedder) {
            (Mode::Hybrid, Some(e)) => std::thread::scope(|s| {
                let embedding = s.spawn(|| embed(e));
                let keyword = store.keyword_search(&req.query, &req.filters, pool);
                let vector = embedding
                    .join()
                    .unwrap_or_else(|_| Err(KbError::Embed("the query embedding panicked".into())));
                (keyword, Some(vector))
            }),
            (Mode::Semantic, Some(e)) => (Ok(Vec::new()), Some(embed(e))),
            _ => (store.keyword_search(&req.query, &req.filters, pool), None),
        };
        Ok((keyword?, query_vector.transpose()?))
    }

    /// The `k` nearest chunks to `query` and how many chunks have no vector: in the database
    /// when it searches its vectors itself, else in the in-memory vector index.
    fn semantic_search(
        &self,
        store: &Store,
        query: &[f32],
        filters: &Filters,
        k: usize,
    ) -> Result<(Scored, u64)> {
        if let Some(found) = store.vector_search(query, filters, k)? {
            return Ok((found, self.missing_cached(store)?));
        }
        let (index, missing) = self.current_vectors(store)?;
        Ok((index.search(query, filters, k), missing))
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
                untrusted_content: self.options.untrusted.mode().as_str(),
            })
        })
    }
}
