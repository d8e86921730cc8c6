//! The knowledge base's storage: the records every backend shares, and [`Store`], one
//! connection to either backend — SQLite (embedded default, one file) or PostgreSQL with
//! pgvector (several daemons sharing one database).

mod bm25;
mod export;
pub mod postgres;
pub mod sqlite;

pub use bm25::KeywordPlan;

/// Keyword-term statistics, shared by the read connections of one knowledge base.
pub(crate) type SharedTermStats = std::sync::Arc<std::sync::Mutex<bm25::TermStats>>;
pub use postgres::{PgStats, PgStore, PgVerifyReport};
pub use sqlite::{SCHEMA_VERSION, SqliteStore};

use serde::Serialize;

use crate::error::Result;
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
    pub roots: Vec<String>,
    pub technology: String,
    pub documents: i64,
    pub chunks: i64,
    pub chunks_without_vectors: i64,
    pub created_at: String,
    pub updated_at: String,
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
        let lower = word.to_lowercase();
        if seen.insert(lower.clone()) {
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

/// One connection to the knowledge base, in whichever backend holds it.
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(Box<PgStore>),
}

/// Call the same method on either backend.
macro_rules! both {
    ($self:expr, $s:ident => $call:expr) => {
        match $self {
            Store::Sqlite($s) => $call,
            Store::Postgres($s) => $call,
        }
    };
}

impl Store {
    /// Where the data lives: the file path, or the server URL with its password redacted.
    pub fn describe(&self) -> String {
        match self {
            Store::Sqlite(s) => s.path().display().to_string(),
            Store::Postgres(p) => p.target().to_string(),
        }
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    pub fn schema_version(&self) -> Result<i64> {
        both!(self, s => s.schema_version())
    }
    /// Bumped by every committed change.
    pub fn generation(&self) -> Result<u64> {
        both!(self, s => s.generation())
    }
    /// The identity of the model whose vectors the index holds, if any.
    pub fn embed_model(&self) -> Result<Option<String>> {
        both!(self, s => s.embed_model())
    }
    /// Record the model the vectors come from; refuses a different one while vectors exist.
    pub fn claim_embed_model(&self, key: &str) -> Result<()> {
        both!(self, s => s.claim_embed_model(key))
    }
    pub fn embed_backends(&self) -> Result<Vec<String>> {
        both!(self, s => s.embed_backends())
    }
    pub fn record_embed_backend(&self, backend: &str) -> Result<()> {
        both!(self, s => s.record_embed_backend(backend))
    }
    /// Remove every vector (for `--reembed` with another model).
    pub fn drop_vectors(&self) -> Result<u64> {
        both!(self, s => s.drop_vectors())
    }
    pub fn upsert_source(&self, name: &str, roots: &[String], technology: &str) -> Result<()> {
        both!(self, s => s.upsert_source(name, roots, technology))
    }
    /// Content hashes of a source's documents, by path.
    pub fn document_hashes(
        &self,
        source: &str,
    ) -> Result<std::collections::HashMap<String, String>> {
        both!(self, s => s.document_hashes(source))
    }
    /// Replace documents and their chunks in one transaction: all or nothing.
    pub fn replace_documents(&mut self, docs: &[(NewDocument<'_>, Vec<NewChunk>)]) -> Result<()> {
        both!(self, s => s.replace_documents(docs))
    }
    pub fn delete_documents(&mut self, source: &str, paths: &[String]) -> Result<u64> {
        both!(self, s => s.delete_documents(source, paths))
    }
    /// Remove a whole source; returns the number of documents removed.
    pub fn remove_source(&mut self, source: &str) -> Result<u64> {
        both!(self, s => s.remove_source(source))
    }
    /// Distinct chunk texts without a vector: (text hash, title, section, text).
    pub fn texts_without_vectors(
        &self,
        limit: usize,
    ) -> Result<Vec<(String, String, String, String)>> {
        both!(self, s => s.texts_without_vectors(limit))
    }
    pub fn count_texts_without_vectors(&self) -> Result<u64> {
        both!(self, s => s.count_texts_without_vectors())
    }
    pub fn count_chunks_without_vectors(&self) -> Result<u64> {
        both!(self, s => s.count_chunks_without_vectors())
    }
    pub fn put_vectors(&mut self, vectors: &[(String, Vec<f32>)]) -> Result<()> {
        both!(self, s => s.put_vectors(vectors))
    }
    /// Keyword search, best first, scores positive.
    pub fn keyword_search(
        &self,
        query: &str,
        filters: &Filters,
        k: usize,
    ) -> Result<Vec<(i64, f32)>> {
        both!(self, s => s.keyword_search(query, filters, k))
    }
    pub fn chunks(&self, ids: &[i64]) -> Result<Vec<ChunkRecord>> {
        both!(self, s => s.chunks(ids))
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
        both!(self, s => s.neighbours(doc_id, position, section, n))
    }
    pub fn document_chunks(&self, doc_id: i64) -> Result<Vec<ChunkRecord>> {
        both!(self, s => s.document_chunks(doc_id))
    }
    pub fn document(
        &self,
        doc_id: Option<i64>,
        source_path: Option<(&str, &str)>,
    ) -> Result<DocRecord> {
        both!(self, s => s.document(doc_id, source_path))
    }
    pub fn sources(&self) -> Result<Vec<SourceInfo>> {
        both!(self, s => s.sources())
    }
    /// Distinct values of `technology`, `category` or `source` with counts.
    pub fn counts(&self, column: &str) -> Result<Vec<Count>> {
        both!(self, s => s.counts(column))
    }
    /// The distinct values of `source`, `technology` or `category` (for validating filters:
    /// far cheaper than [`Store::counts`], which counts every chunk).
    pub fn distinct_values(&self, column: &str) -> Result<Vec<String>> {
        let column = match column {
            "technology" => "technology",
            "category" => "category",
            "source" => "source",
            other => {
                return Err(crate::KbError::Invalid(format!("no filter on {other}")));
            }
        };
        match self {
            Store::Sqlite(s) => s.distinct_values(column),
            Store::Postgres(p) => p.distinct_values(column),
        }
    }
    /// (documents, chunks).
    pub fn totals(&self) -> Result<(u64, u64)> {
        both!(self, s => s.totals())
    }
    pub fn quick_check(&self) -> Result<Vec<String>> {
        both!(self, s => s.quick_check())
    }
}
