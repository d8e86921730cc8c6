//! The knowledge base's nouns: documents, sections, chunks, and the shapes of search requests
//! and results that every interface (CLI, MCP) shares.

use serde::{Deserialize, Serialize};

/// Whether a chunk is prose or source code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum DocType {
    Text,
    Code,
}

impl DocType {
    pub fn as_str(self) -> &'static str {
        match self {
            DocType::Text => "text",
            DocType::Code => "code",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "text" => Some(DocType::Text),
            "code" => Some(DocType::Code),
            _ => None,
        }
    }
}

/// The format a file was read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Markdown,
    Html,
    Text,
    Code,
    Pdf,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Markdown => "markdown",
            Format::Html => "html",
            Format::Text => "text",
            Format::Code => "code",
            Format::Pdf => "pdf",
        }
    }
}

/// A run of content under one heading path, before chunking.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    /// Headings from the document's top down to this section, e.g. ["Ownership", "The Stack and the Heap"].
    pub headings: Vec<String>,
    pub text: String,
    pub doc_type: DocType,
}

/// A parsed file: title, metadata and sections in reading order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ParsedDoc {
    pub title: String,
    pub sections: Vec<Section>,
    /// Front matter and similar key/value metadata.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Spans flagged as untrusted ([`crate::ingest::untrusted`]).
    pub flagged: crate::ingest::untrusted::Flagged,
}

/// A chunk ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewChunk {
    pub position: usize,
    /// The heading path joined with " > ".
    pub section: String,
    pub text: String,
    pub tokens: usize,
    pub doc_type: DocType,
}

/// How to search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Keyword (BM25) and semantic (vector) results fused by reciprocal rank.
    #[default]
    Hybrid,
    Keyword,
    Semantic,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Hybrid => "hybrid",
            Mode::Keyword => "keyword",
            Mode::Semantic => "semantic",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "hybrid" => Some(Mode::Hybrid),
            "keyword" => Some(Mode::Keyword),
            "semantic" => Some(Mode::Semantic),
            _ => None,
        }
    }
}

/// Restrictions on which chunks a search may return. Empty lists mean "any".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Filters {
    /// Source names; a library name (`react`) or `NAME@RANGE` stands for one of its indexed
    /// versions, chosen by [`SearchRequest::version`] or else the newest ([`crate::versions`]).
    pub sources: Vec<String>,
    pub technologies: Vec<String>,
    pub categories: Vec<String>,
    pub path_prefix: Option<String>,
    pub doc_type: Option<DocType>,
}

/// One search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchRequest {
    pub query: String,
    pub limit: usize,
    pub mode: Mode,
    pub filters: Filters,
    pub min_score: Option<f32>,
    /// Neighbouring chunks of the same section to include on each side (0–3).
    pub context: usize,
    /// Keep only the best chunk of each document.
    pub group_by_document: bool,
    /// The version of the (one) library in `filters.sources`: exact or a semver range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl SearchRequest {
    pub fn new(query: impl Into<String>) -> Self {
        Self {
            query: query.into(),
            limit: 10,
            mode: Mode::Hybrid,
            filters: Filters::default(),
            min_score: None,
            context: 0,
            group_by_document: false,
            version: None,
        }
    }
}

/// A neighbouring chunk returned as context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContextChunk {
    pub chunk_id: i64,
    pub position: i64,
    pub text: String,
}

/// One result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    pub chunk_id: i64,
    pub doc_id: i64,
    /// The mode's score: hybrid 0–1 (1 = ranked first by both), keyword BM25 (higher is
    /// better), semantic cosine similarity.
    pub score: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyword_rank: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub semantic_rank: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cosine: Option<f32>,
    pub title: String,
    pub section: String,
    pub source: String,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    pub technology: String,
    pub category: String,
    pub doc_type: DocType,
    pub position: i64,
    pub snippet: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub before: Vec<ContextChunk>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<ContextChunk>,
    /// With `group_by_document`: how many other chunks of this document matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub more_in_document: Option<usize>,
}

/// What a search returns besides hits: how it was answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResponse {
    pub query: String,
    pub mode: Mode,
    pub hits: Vec<SearchHit>,
    /// Set when the mode asked for could not be fully honoured, e.g. no embedding model
    /// configured (keyword only) or chunks still waiting for vectors.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Chunks that have no vector yet (semantic search does not see them).
    pub chunks_without_vectors: u64,
    pub took_ms: f64,
}
