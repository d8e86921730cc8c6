//! The knowledge base's storage: the records every backend shares, [`StoreBackend`] (what a
//! backend implements: its SQL dialect, one file each — `sqlite.rs`, the embedded default in one
//! file; `postgres.rs`, PostgreSQL with pgvector for several daemons sharing one database), and
//! [`Store`], one connection to whichever backend, holding the logic every backend shares
//! (model bookkeeping, argument checks, ordering and not-found answers) once, above the trait.
//! Code outside this module never asks which backend it is on: where backends differ in what
//! they can do, the trait answers a capability (does the store search vectors itself, does it
//! need an embedding lock, how does it rank keywords).

mod bm25;
mod export;
pub mod fuzz;
mod location;
pub mod postgres;
pub mod sqlite;

pub use bm25::{KeywordPlan, TermStats};
pub use location::Location;

/// Keyword-term statistics, shared by the read connections of one knowledge base.
pub type SharedTermStats = std::sync::Arc<std::sync::Mutex<bm25::TermStats>>;
pub use postgres::{PgStats, PgStore, PgVerifyReport};
pub use sqlite::{SCHEMA_VERSION, SqliteStore};

use serde::Serialize;

use crate::error::{KbError, Result};
use crate::ingest::Flagged;
use crate::model::{DocType, Filters, NewChunk};

/// A document as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DocRecord {
    pub id: i64,
    pub source: String,
    pub path: String,
    pub uri: Option<String>,
    pub title: String,
    pub format: String,
    pub technology: String,
    pub category: String,
    pub hash: String,
    pub bytes: i64,
    pub metadata: serde_json::Value,
    pub indexed_at: String,
    pub chunks: i64,
    /// Untrusted spans flagged when the document was indexed.
    pub flagged: Flagged,
}

/// A document to store.
#[derive(Debug, Clone)]
pub struct NewDocument<'a> {
    pub source: &'a str,
    pub path: &'a str,
    pub uri: Option<&'a str>,
    pub title: &'a str,
    pub format: &'a str,
    pub technology: &'a str,
    pub category: &'a str,
    pub hash: &'a str,
    pub bytes: u64,
    pub metadata: &'a serde_json::Map<String, serde_json::Value>,
    /// Untrusted spans flagged in it (replacing the counts of its earlier copy).
    pub flagged: Flagged,
}

/// A chunk with its document's fields, as search results need them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChunkRecord {
    pub id: i64,
    pub doc_id: i64,
    pub position: i64,
    pub section: String,
    pub text: String,
    pub tokens: i64,
    pub doc_type: DocType,
    pub title: String,
    pub source: String,
    pub path: String,
    pub uri: Option<String>,
    pub technology: String,
    pub category: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceInfo {
    pub name: String,
    /// The library the source is a version of (its name before `@VERSION`, or the whole name).
    pub library: String,
    /// The version in its name (`react@18.2.0` → `18.2.0`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub roots: Vec<String>,
    pub technology: String,
    pub documents: i64,
    pub chunks: i64,
    pub chunks_without_vectors: i64,
    /// Untrusted spans flagged in its documents, by kind.
    pub flagged: Flagged,
    pub created_at: String,
    pub updated_at: String,
    /// Where its documents come from and how they were fetched (a web site, a repository at
    /// a commit, a package at a version), as the fetching layer wrote it; `{}` for local paths
    /// indexed before origins were recorded.
    #[serde(skip_serializing_if = "is_empty_object")]
    pub origin: serde_json::Value,
}

fn is_empty_object(v: &serde_json::Value) -> bool {
    v.as_object().is_none_or(|o| o.is_empty())
}

/// What the last fetch of one page of a web source found: its validators for a conditional
/// request next time, its links (a refresh of an unchanged page still follows them), and its
/// state — `indexed`, `failed` or `skipped` with the reason, or `queued` (found, not yet
/// fetched: a stopped crawl resumes from these).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct PageState {
    pub url: String,
    /// The document it was indexed as.
    pub path: Option<String>,
    pub state: String,
    pub reason: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// Hash of the decoded body (identical bodies are indexed once).
    pub hash: Option<String>,
    pub links: Vec<String>,
    pub depth: u32,
    pub fetched_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Count {
    pub name: String,
    pub documents: i64,
    pub chunks: i64,
}

pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub fn hash_text(text: &str) -> String {
    blake3::hash(text.as_bytes()).to_hex()[..32].to_string()
}

/// Vectors are stored as little-endian f32.
pub fn encode_vector(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn decode_vector(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// English function words that match nearly every chunk: they cost the most to rank and
/// change the order least, so questions drop them (a query of only such words keeps them).
const STOPWORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "can", "could", "do", "does", "for", "from",
    "how", "i", "if", "in", "into", "is", "it", "its", "me", "my", "of", "on", "or", "should",
    "so", "that", "the", "their", "them", "then", "there", "these", "this", "to", "was", "we",
    "what", "when", "where", "which", "who", "why", "will", "with", "would", "you", "your",
];

/// The words of a query, lower-cased and de-duplicated, function words dropped unless nothing
/// else is left; each is only letters, digits and `_`, so no input is read as query syntax.
pub fn query_terms(text: &str) -> Vec<String> {
    let mut terms: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for word in text.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
        if word.is_empty() {
            continue;
        }
        // Lower-casing can add characters that are neither (`İ` becomes `i` and a combining
        // dot): keep the word's letters and digits only.
        let lower: String = word
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !lower.is_empty() && seen.insert(lower.clone()) {
            terms.push(lower);
        }
    }
    let content: Vec<String> = terms
        .iter()
        .filter(|t| !STOPWORDS.contains(&t.as_str()))
        .cloned()
        .collect();
    if !content.is_empty() {
        terms = content;
    }
    terms
}

/// Fields the vector index filters on without touching SQLite.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorMeta {
    pub source: String,
    pub technology: String,
    pub category: String,
    pub path: String,
    pub doc_type: DocType,
}

/// A document column that results are counted or filtered by: one of a fixed few, so its name
/// may be written into SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Source,
    Technology,
    Category,
}

impl Column {
    fn parse(name: &str) -> Option<Column> {
        match name {
            "source" => Some(Column::Source),
            "technology" => Some(Column::Technology),
            "category" => Some(Column::Category),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Column::Source => "source",
            Column::Technology => "technology",
            Column::Category => "category",
        }
    }
}

/// Whether claiming the model `key` writes it (`Ok(true)`), keeps the record as it is
/// (`Ok(false)`), or is refused: another model's record is replaced only while no vector exists
/// (`has_vectors` is asked only then). Every backend calls this inside the one transaction
/// that reads and writes the record, so no other writer slips in between.
pub(crate) fn claim_writes(
    stored: Option<&str>,
    key: &str,
    has_vectors: impl FnOnce() -> Result<bool>,
) -> Result<bool> {
    match stored {
        Some(stored) if stored == key => Ok(false),
        Some(stored) => {
            if has_vectors()? {
                return Err(KbError::ModelMismatch {
                    stored: stored.to_string(),
                    configured: key.to_string(),
                });
            }
            Ok(true)
        }
        None => Ok(true),
    }
}

/// What `verify` says of the stored vectors' dimensions (`dims`: each dimension found with its
/// count) against the model's (`expected`), on every backend.
pub(crate) fn dimension_problems(expected: Option<usize>, dims: &[(usize, u64)]) -> Vec<String> {
    let mut problems = Vec::new();
    match (expected, dims) {
        (_, []) => {}
        (Some(want), found) => {
            let wrong: u64 = found.iter().filter(|(d, _)| *d != want).map(|p| p.1).sum();
            if wrong > 0 {
                problems.push(format!(
                    "{wrong} vector(s) do not have the model's dimension {want}; run `exai index --reembed`"
                ));
            }
        }
        (None, found) => {
            problems.push(
                "vectors are stored but no embedding model is recorded; run `exai index --reembed`"
                    .into(),
            );
            if found.len() > 1 {
                problems.push(format!("vectors of {} different dimensions", found.len()));
            }
        }
    }
    problems
}

/// What `verify` says of chunks still waiting for a vector (only once a model is recorded).
pub(crate) fn pending_vectors_warning(
    chunks_without_vectors: u64,
    has_model: bool,
) -> Option<String> {
    (chunks_without_vectors > 0 && has_model).then(|| {
        format!(
            "{chunks_without_vectors} chunk(s) have no vector yet (semantic search skips them); `exai index` embeds them"
        )
    })
}

/// What a storage backend implements, in its own SQL dialect. Callers use [`Store`], which adds
/// the logic every backend shares; the capability methods (`vector_search`,
/// `try_lock_embedding`, `keyword_ranking`, `keep_between_calls`) say how a backend differs,
/// so that no caller asks which one it is.
pub trait StoreBackend: Send {
    /// Where the data lives: the file path, or the server URL with its password redacted.
    fn describe(&self) -> String;
    fn schema_version(&self) -> Result<i64>;
    /// A value of the store's key-value metadata (`generation`, `embed_model`, …).
    fn meta(&self, key: &str) -> Result<Option<String>>;
    fn set_meta(&self, key: &str, value: &str) -> Result<()>;
    /// Record the model the vectors come from, deciding with [`claim_writes`] and writing in
    /// the same transaction; a new record forgets the back ends of the old one.
    fn claim_embed_model(&self, key: &str) -> Result<()>;
    /// Remove every vector and the model record, in one transaction.
    fn drop_vectors(&self) -> Result<u64>;
    fn upsert_source(&self, name: &str, roots: &[String], technology: &str) -> Result<()>;
    /// Record where an existing source comes from ([`SourceInfo::origin`]).
    fn set_origin(&self, source: &str, origin: &serde_json::Value) -> Result<()>;
    /// The pages of a web source as last fetched, by URL.
    fn page_states(&self, source: &str) -> Result<Vec<PageState>>;
    /// Insert or replace page states of an existing source, in one transaction.
    fn put_page_states(&mut self, source: &str, pages: &[PageState]) -> Result<()>;
    /// Forget page states (all of the source's with `urls` = None).
    fn delete_page_states(&mut self, source: &str, urls: Option<&[String]>) -> Result<u64>;
    fn document_hashes(&self, source: &str) -> Result<std::collections::HashMap<String, String>>;
    /// Replace documents and their chunks in one transaction: all or nothing.
    fn replace_documents(&mut self, docs: &[(NewDocument<'_>, Vec<NewChunk>)]) -> Result<()>;
    fn delete_documents(&mut self, source: &str, paths: &[String]) -> Result<u64>;
    /// Remove a whole source; returns the number of documents removed.
    fn remove_source(&mut self, source: &str) -> Result<u64>;
    /// Distinct chunk texts without a vector: (text hash, title, section, text).
    fn texts_without_vectors(&self, limit: usize) -> Result<Vec<(String, String, String, String)>>;
    fn count_texts_without_vectors(&self) -> Result<u64>;
    fn count_chunks_without_vectors(&self) -> Result<u64>;
    fn put_vectors(&mut self, vectors: &[(String, Vec<f32>)]) -> Result<()>;
    /// Keyword search, best first, scores positive.
    fn keyword_search(&self, query: &str, filters: &Filters, k: usize) -> Result<Vec<(i64, f32)>>;
    /// How keyword scores are computed (`bm25`, `ts_rank`): two stores with the same ranking
    /// order the same chunks alike.
    fn keyword_ranking(&self) -> &'static str;
    /// Nearest chunks by cosine similarity when the store searches its vectors itself;
    /// `None` when it leaves that to an in-memory index the caller builds from
    /// [`StoreBackend::vectors`].
    fn vector_search(
        &self,
        query: &[f32],
        filters: &Filters,
        k: usize,
    ) -> Result<Option<Vec<(i64, f32)>>>;
    /// Every (chunk id, vector, filter fields), by chunk id.
    fn vectors(&self) -> Result<Vec<(i64, Vec<f32>, VectorMeta)>>;
    /// These chunks, in any order; ids that do not exist are left out.
    fn chunks(&self, ids: &[i64]) -> Result<Vec<ChunkRecord>>;
    /// Chunks of a document's section with positions in `from..=to` except `position`, by
    /// position.
    fn section_chunks(
        &self,
        doc_id: i64,
        section: &str,
        from: i64,
        to: i64,
        position: i64,
    ) -> Result<Vec<ChunkRecord>>;
    fn document_chunks(&self, doc_id: i64) -> Result<Vec<ChunkRecord>>;
    /// A document by id, else by path (in `source`, or any source when it is empty).
    fn find_document(
        &self,
        doc_id: Option<i64>,
        source_path: Option<(&str, &str)>,
    ) -> Result<Option<DocRecord>>;
    fn sources(&self) -> Result<Vec<SourceInfo>>;
    /// Each source's name and last update, by name (cheap: no counts).
    fn source_names(&self) -> Result<Vec<(String, String)>>;
    fn counts(&self, column: Column) -> Result<Vec<Count>>;
    fn distinct_values(&self, column: Column) -> Result<Vec<String>>;
    /// (documents, chunks).
    fn totals(&self) -> Result<(u64, u64)>;
    fn quick_check(&self) -> Result<Vec<String>>;
    /// Take the lock that lets one process at a time embed a store several processes share
    /// (the others would compute the same vectors); `false` when another holds it. The lock
    /// dies with its connection.
    fn try_lock_embedding(&self) -> Result<bool>;
    /// Release what [`StoreBackend::try_lock_embedding`] took.
    fn unlock_embedding(&self) -> Result<()>;
    /// Whether a read connection is worth keeping open between calls (rather than going back to
    /// a connection pool of its own).
    fn keep_between_calls(&self) -> bool;
    /// Keyword-term statistics that other connections to the same data may share.
    fn term_stats(&self) -> Option<SharedTermStats>;
    /// Use statistics shared with other connections to the same data.
    fn share_term_stats(&mut self, shared: SharedTermStats);

    // Export and import, for `exai db copy`.

    /// Documents with an id above `after`, in id order (insertion order), `limit` at most.
    fn documents_page(&self, after: i64, limit: usize) -> Result<Vec<DocRecord>>;
    /// Every chunk of these documents, by document and position.
    fn chunks_of_documents(&self, doc_ids: &[i64]) -> Result<Vec<ChunkRecord>>;
    /// Vectors by text hash, in hash order, `limit` from the one after `after`.
    fn vectors_page(&self, after: &str, limit: usize) -> Result<Vec<(String, Vec<f32>)>>;
    /// The vector stored for a chunk text.
    fn vector(&self, text_hash: &str) -> Result<Option<Vec<f32>>>;
    /// Vectors stored (one per distinct chunk text, orphans included).
    fn count_vectors(&self) -> Result<u64>;
    /// Store a batch of vectors in one transaction, as fast as the backend can.
    fn import_vectors(&mut self, vectors: &[(String, Vec<f32>)]) -> Result<()>;
    /// Empty the knowledge base in one transaction, keeping the schema.
    fn clear_for_import(&mut self) -> Result<()>;
}

/// What every backend does the same way, written once over [`StoreBackend`]'s primitives (and
/// so available on each backend and on [`Store`]).
pub trait SharedLogic: StoreBackend {
    /// Bumped by every committed change; derived in-memory indexes compare it to know they
    /// are stale.
    fn generation(&self) -> Result<u64> {
        Ok(self
            .meta("generation")?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// The identity of the model whose vectors the index holds, if any.
    fn embed_model(&self) -> Result<Option<String>> {
        self.meta("embed_model")
    }

    /// The back ends (`onnx`, `candle`, `remote`) that computed the index's vectors, in order
    /// of first use; empty for an index written before exai recorded them. Not part of the
    /// model identity: candle and ONNX Runtime fp32 vectors are the same and may share an index.
    fn embed_backends(&self) -> Result<Vec<String>> {
        Ok(self
            .meta("embed_backends")?
            .map(|v| {
                v.split(',')
                    .filter(|b| !b.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Note that `backend` computes vectors for this index (after claiming its model).
    fn record_embed_backend(&self, backend: &str) -> Result<()> {
        let mut backends = self.embed_backends()?;
        if backends.iter().any(|b| b == backend) {
            return Ok(());
        }
        backends.push(backend.to_string());
        self.set_meta("embed_backends", &backends.join(","))
    }
}

impl<B: StoreBackend + ?Sized> SharedLogic for B {}

/// One connection to the knowledge base, in whichever backend holds it.
pub struct Store {
    backend: Box<dyn StoreBackend>,
}

impl<B: StoreBackend + 'static> From<B> for Store {
    fn from(backend: B) -> Store {
        Store {
            backend: Box::new(backend),
        }
    }
}

impl Store {
    /// Where the data lives: the file path, or the server URL with its password redacted.
    pub fn describe(&self) -> String {
        self.backend.describe()
    }

    pub fn schema_version(&self) -> Result<i64> {
        self.backend.schema_version()
    }
    /// Bumped by every committed change.
    pub fn generation(&self) -> Result<u64> {
        self.backend.generation()
    }
    /// The identity of the model whose vectors the index holds, if any.
    pub fn embed_model(&self) -> Result<Option<String>> {
        self.backend.embed_model()
    }
    /// Record the model the vectors come from; refuses a different one while vectors exist.
    /// One transaction: a claim that fails leaves the old record whole.
    pub fn claim_embed_model(&self, key: &str) -> Result<()> {
        self.backend.claim_embed_model(key)
    }
    /// The back ends that computed the index's vectors, in order of first use.
    pub fn embed_backends(&self) -> Result<Vec<String>> {
        self.backend.embed_backends()
    }
    /// Note that `backend` computes vectors for this index (after [`Store::claim_embed_model`]).
    pub fn record_embed_backend(&self, backend: &str) -> Result<()> {
        self.backend.record_embed_backend(backend)
    }
    /// Remove every vector (for `--reembed` with another model).
    pub fn drop_vectors(&self) -> Result<u64> {
        self.backend.drop_vectors()
    }
    pub fn upsert_source(&self, name: &str, roots: &[String], technology: &str) -> Result<()> {
        self.backend.upsert_source(name, roots, technology)
    }
    pub fn set_origin(&self, source: &str, origin: &serde_json::Value) -> Result<()> {
        self.backend.set_origin(source, origin)
    }
    pub fn page_states(&self, source: &str) -> Result<Vec<PageState>> {
        self.backend.page_states(source)
    }
    pub fn put_page_states(&mut self, source: &str, pages: &[PageState]) -> Result<()> {
        self.backend.put_page_states(source, pages)
    }
    pub fn delete_page_states(&mut self, source: &str, urls: Option<&[String]>) -> Result<u64> {
        self.backend.delete_page_states(source, urls)
    }
    /// Content hashes of a source's documents, by path.
    pub fn document_hashes(
        &self,
        source: &str,
    ) -> Result<std::collections::HashMap<String, String>> {
        self.backend.document_hashes(source)
    }
    /// Replace documents and their chunks in one transaction: all or nothing.
    pub fn replace_documents(&mut self, docs: &[(NewDocument<'_>, Vec<NewChunk>)]) -> Result<()> {
        self.backend.replace_documents(docs)
    }
    pub fn delete_documents(&mut self, source: &str, paths: &[String]) -> Result<u64> {
        self.backend.delete_documents(source, paths)
    }
    /// Remove a whole source; returns the number of documents removed.
    pub fn remove_source(&mut self, source: &str) -> Result<u64> {
        self.backend.remove_source(source)
    }
    /// Distinct chunk texts without a vector: (text hash, title, section, text).
    pub fn texts_without_vectors(
        &self,
        limit: usize,
    ) -> Result<Vec<(String, String, String, String)>> {
        self.backend.texts_without_vectors(limit)
    }
    pub fn count_texts_without_vectors(&self) -> Result<u64> {
        self.backend.count_texts_without_vectors()
    }
    pub fn count_chunks_without_vectors(&self) -> Result<u64> {
        self.backend.count_chunks_without_vectors()
    }
    pub fn put_vectors(&mut self, vectors: &[(String, Vec<f32>)]) -> Result<()> {
        self.backend.put_vectors(vectors)
    }
    /// Keyword search, best first, scores positive.
    pub fn keyword_search(
        &self,
        query: &str,
        filters: &Filters,
        k: usize,
    ) -> Result<Vec<(i64, f32)>> {
        self.backend.keyword_search(query, filters, k)
    }
    /// How keyword scores are computed: stores with the same ranking order chunks alike.
    pub fn keyword_ranking(&self) -> &'static str {
        self.backend.keyword_ranking()
    }
    /// Nearest chunks when the store searches its vectors itself; `None` when the caller
    /// searches an in-memory index built from [`Store::vectors`].
    pub fn vector_search(
        &self,
        query: &[f32],
        filters: &Filters,
        k: usize,
    ) -> Result<Option<Vec<(i64, f32)>>> {
        self.backend.vector_search(query, filters, k)
    }
    /// Every (chunk id, vector, filter fields) for the in-memory vector index.
    pub fn vectors(&self) -> Result<Vec<(i64, Vec<f32>, VectorMeta)>> {
        self.backend.vectors()
    }
    /// These chunks in the order of `ids` (ids that do not exist are left out).
    pub fn chunks(&self, ids: &[i64]) -> Result<Vec<ChunkRecord>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut found = self.backend.chunks(ids)?;
        let mut order = std::collections::HashMap::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            order.entry(*id).or_insert(i);
        }
        found.sort_by_key(|c| order.get(&c.id).copied().unwrap_or(usize::MAX));
        Ok(found)
    }
    pub fn chunk(&self, id: i64) -> Result<ChunkRecord> {
        self.chunks(&[id])?.into_iter().next().ok_or_else(|| {
            crate::KbError::NotFound(format!("chunk {id}; search again for current ids"))
        })
    }
    /// Chunks of the same document and section around `position`.
    pub fn neighbours(
        &self,
        doc_id: i64,
        position: i64,
        section: &str,
        n: usize,
    ) -> Result<(Vec<ChunkRecord>, Vec<ChunkRecord>)> {
        if n == 0 {
            return Ok((Vec::new(), Vec::new()));
        }
        let reach = i64::try_from(n).unwrap_or(i64::MAX);
        let around = self.backend.section_chunks(
            doc_id,
            section,
            position.saturating_sub(reach),
            position.saturating_add(reach),
            position,
        )?;
        Ok(around.into_iter().partition(|c| c.position < position))
    }
    pub fn document_chunks(&self, doc_id: i64) -> Result<Vec<ChunkRecord>> {
        self.backend.document_chunks(doc_id)
    }
    pub fn document(
        &self,
        doc_id: Option<i64>,
        source_path: Option<(&str, &str)>,
    ) -> Result<DocRecord> {
        if doc_id.is_none() && source_path.is_none() {
            return Err(KbError::Invalid("give a document id or a path".into()));
        }
        self.backend
            .find_document(doc_id, source_path)?
            .ok_or_else(|| {
                KbError::NotFound(match (doc_id, source_path) {
                    (Some(id), _) => format!("document {id}"),
                    (_, Some((s, p))) => format!("document `{p}` in source `{s}`"),
                    _ => "document".into(),
                })
            })
    }
    pub fn sources(&self) -> Result<Vec<SourceInfo>> {
        self.backend.sources()
    }
    /// Each source's name and last update, by name (cheap: no counts).
    pub fn source_names(&self) -> Result<Vec<(String, String)>> {
        self.backend.source_names()
    }
    /// Distinct values of `technology`, `category` or `source` with counts.
    pub fn counts(&self, column: &str) -> Result<Vec<Count>> {
        let column = Column::parse(column)
            .ok_or_else(|| KbError::Invalid(format!("cannot count by {column}")))?;
        self.backend.counts(column)
    }
    /// The distinct values of `source`, `technology` or `category` (for validating filters:
    /// far cheaper than [`Store::counts`], which counts every chunk).
    pub fn distinct_values(&self, column: &str) -> Result<Vec<String>> {
        let column = Column::parse(column)
            .ok_or_else(|| KbError::Invalid(format!("no filter on {column}")))?;
        self.backend.distinct_values(column)
    }
    /// (documents, chunks).
    pub fn totals(&self) -> Result<(u64, u64)> {
        self.backend.totals()
    }
    pub fn quick_check(&self) -> Result<Vec<String>> {
        self.backend.quick_check()
    }
    /// Take the embedding lock of a store several processes share; `false` when another
    /// process holds it.
    pub fn try_lock_embedding(&self) -> Result<bool> {
        self.backend.try_lock_embedding()
    }
    /// Release the lock [`Store::try_lock_embedding`] took.
    pub fn unlock_embedding(&self) -> Result<()> {
        self.backend.unlock_embedding()
    }
    /// The backend itself, for code that works on any backend's primitives.
    pub(crate) fn backend_ref(&self) -> &dyn StoreBackend {
        self.backend.as_ref()
    }
    /// Whether this connection is worth keeping open for the next call.
    pub(crate) fn keep_between_calls(&self) -> bool {
        self.backend.keep_between_calls()
    }
    pub(crate) fn term_stats(&self) -> Option<SharedTermStats> {
        self.backend.term_stats()
    }
    pub(crate) fn share_term_stats(&mut self, shared: SharedTermStats) {
        self.backend.share_term_stats(shared);
    }
}
