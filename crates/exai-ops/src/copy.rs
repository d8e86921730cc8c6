//! `exai db copy`: move a knowledge base between SQLite and PostgreSQL (either direction, or
//! between two of the same), then prove the copy.
//!
//! What moves: sources (roots, technology), documents with everything an incremental re-index
//! compares (source, path, content hash, metadata, uri, title, format, technology, category,
//! size), their chunks at the same positions with the same sections, texts and doc types, every
//! vector by text hash, and the embedding model's identity with the back ends that computed the
//! vectors. Writes are batched (one transaction per batch of documents or vectors); PostgreSQL
//! builds its HNSW index once, over the loaded vectors.
//!
//! The proof: counts equal on both sides; order-independent BLAKE3 checksums of the documents
//! with their chunks and of the vectors equal; the same model identity; and for a sample of
//! queries derived from document titles, the top 10 compared by (source, path, position).
//! Between two stores of one backend the keyword top 10 must be identical. Across backends
//! keyword ranking differs by design (`ts_rank` against BM25), so there the semantic top 10
//! for a stored chunk's vector must agree: overlap@10 of at least 0.9 on average (HNSW is
//! approximate).

use std::collections::HashSet;
use std::path::PathBuf;

use exai_core::config::DatabaseConfig;
use exai_kb::model::NewChunk;
use exai_kb::store::{NewDocument, hash_text, query_terms};
use exai_kb::vectors::VectorIndex;
use exai_kb::{ChunkRecord, DocRecord, Filters, PgStore, SqliteStore, Store};
use serde::Serialize;

use crate::db::DbError;
use crate::pg;

type Result<T> = std::result::Result<T, DbError>;

/// Where a knowledge base is: `sqlite:PATH` (or a plain path), or a `postgres://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Endpoint {
    /// `sqlite:PATH`, `sqlite://PATH`, a plain path, or `postgres://…` / `postgresql://…`.
    pub fn parse(s: &str) -> Result<Endpoint> {
        let t = s.trim();
        if t.is_empty() {
            return Err(DbError::Invalid(
                "give sqlite:PATH (or a path) or a postgres:// URL".into(),
            ));
        }
        if exai_pg::is_postgres_url(t) {
            return Ok(Endpoint::Postgres(t.to_string()));
        }
        if let Some(rest) = t.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(DbError::Invalid(
                    "sqlite: needs a path, e.g. sqlite:kb.sqlite".into(),
                ));
            }
            return Ok(Endpoint::Sqlite(PathBuf::from(path)));
        }
        if let Some((scheme, _)) = t.split_once("://") {
            return Err(DbError::Invalid(format!(
                "unknown scheme `{scheme}://`; give sqlite:PATH (or a path) or a postgres:// URL"
            )));
        }
        Ok(Endpoint::Sqlite(PathBuf::from(t)))
    }

    /// The path, or the URL with its password redacted.
    pub fn describe(&self) -> String {
        match self {
            Endpoint::Sqlite(p) => format!("sqlite:{}", p.display()),
            Endpoint::Postgres(url) => exai_pg::redact(url),
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Endpoint::Sqlite(_) => "sqlite",
            Endpoint::Postgres(_) => "postgres",
        }
    }

    fn same_as(&self, other: &Endpoint) -> bool {
        match (self, other) {
            (Endpoint::Sqlite(a), Endpoint::Sqlite(b)) => {
                a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
            }
            (Endpoint::Postgres(a), Endpoint::Postgres(b)) => a == b,
            _ => false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Replace a destination that already holds a knowledge base.
    pub force: bool,
    /// How many sample queries the verification runs (per kind).
    pub queries: usize,
    /// Chunks per write transaction (whole documents; at least one document).
    pub batch_chunks: usize,
    /// Vectors per write transaction.
    pub batch_vectors: usize,
}

impl Default for CopyOptions {
    fn default() -> Self {
        Self {
            force: false,
            queries: 20,
            batch_chunks: 2_000,
            batch_vectors: 1_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Documents,
    Vectors,
    /// Recording the model identity (PostgreSQL: building the HNSW index).
    Index,
    Verify,
}

impl Phase {
    pub fn label(self) -> &'static str {
        match self {
            Phase::Documents => "documents",
            Phase::Vectors => "vectors",
            Phase::Index => "index",
            Phase::Verify => "verify",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub phase: Phase,
    pub done: u64,
    pub total: u64,
}

/// What a knowledge base holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub sources: u64,
    pub documents: u64,
    pub chunks: u64,
    pub vectors: u64,
}

impl Counts {
    pub fn of(store: &Store) -> Result<Counts> {
        let (documents, chunks) = store.totals()?;
        Ok(Counts {
            sources: store.sources()?.len() as u64,
            documents,
            chunks,
            vectors: store.count_vectors()?,
        })
    }

    pub fn is_empty(&self) -> bool {
        *self == Counts::default()
    }

    /// e.g. `2 sources, 30 documents, 61 chunks, 61 vectors`.
    pub fn describe(&self) -> String {
        format!(
            "{} sources, {} documents, {} chunks, {} vectors",
            self.sources, self.documents, self.chunks, self.vectors
        )
    }
}

/// Top-10 lists of one kind of search compared between the two sides.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub queries: usize,
    /// Queries whose top 10 are the same chunks in the same order.
    pub identical: usize,
    /// Mean and lowest |A ∩ B| / max(|A|, |B|) over the queries (1 when both are empty).
    pub mean_overlap: f64,
    pub min_overlap: f64,
    /// What passing takes (`identical`, `overlap >= 0.9`), `None` when only reported.
    pub required: Option<String>,
    pub passed: bool,
    /// The first few queries that differ.
    pub differences: Vec<QueryDiff>,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueryDiff {
    pub query: String,
    pub overlap: f64,
    pub from: Vec<String>,
    pub to: Vec<String>,
}

/// The proof that the destination holds what the source holds.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub ok: bool,
    pub from: Counts,
    pub to: Counts,
    pub counts_equal: bool,
    /// Checksums of documents with their chunks, and of the vectors, equal.
    pub content_equal: bool,
    pub vectors_equal: bool,
    pub model_equal: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyword: Option<Comparison>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub semantic: Option<Comparison>,
    pub problems: Vec<String>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CopyReport {
    pub from: String,
    pub to: String,
    pub from_backend: &'static str,
    pub to_backend: &'static str,
    /// What `--force` replaced in the destination.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced: Option<Counts>,
    pub copied: Counts,
    pub embed_model: Option<String>,
    pub embed_backends: Vec<String>,
    pub seconds: f64,
    pub verification: Verification,
}

/// The mean overlap@10 semantic search must reach.
pub const MIN_OVERLAP: f64 = 0.9;
const TOP: usize = 10;
const PAGE_DOCS: usize = 500;
const SHOWN_DIFFERENCES: usize = 5;

/// Which database a pool reaches, whatever the URL's spelling (host name or address,
/// `postgres://` or `postgresql://`, options): the server's start time, port, database and
/// schema.
fn database_identity(pool: &std::sync::Arc<exai_pg::Pool>) -> Result<String> {
    Ok(pool
        .get()?
        .query_one(
            "SELECT concat_ws('/', pg_postmaster_start_time()::text, current_setting('port'), current_database(), current_schema())",
            &[],
        )
        .map_err(exai_pg::PgError::from)?
        .get(0))
}

/// The source store, and for PostgreSQL the database's identity.
fn open_source(endpoint: &Endpoint, database: &DatabaseConfig) -> Result<(Store, Option<String>)> {
    match endpoint {
        Endpoint::Sqlite(path) => {
            if !path.is_file() {
                return Err(DbError::Invalid(format!(
                    "no knowledge base at {}",
                    path.display()
                )));
            }
            let store = SqliteStore::open_readonly(path)?;
            if store.schema_version()? == 0 {
                return Err(DbError::Invalid(format!(
                    "{} is not an exai knowledge base",
                    path.display()
                )));
            }
            Ok((store.into(), None))
        }
        Endpoint::Postgres(url) => {
            let pool = pg::connect(url, database)?;
            let version = exai_pg::schema_version(&mut *pool.get()?, "kb")?;
            if version == 0 {
                return Err(DbError::Invalid(format!(
                    "no exai knowledge base in {}",
                    pool.target()
                )));
            }
            let identity = database_identity(&pool)?;
            Ok((PgStore::open(&pool)?.into(), Some(identity)))
        }
    }
}

/// The destination store (created or migrated), and for PostgreSQL the database's identity.
fn open_destination(
    endpoint: &Endpoint,
    database: &DatabaseConfig,
) -> Result<(Store, Option<String>)> {
    match endpoint {
        Endpoint::Sqlite(path) => Ok((SqliteStore::open(path)?.into(), None)),
        Endpoint::Postgres(url) => {
            let pool = pg::connect(url, database)?;
            let identity = database_identity(&pool)?;
            Ok((PgStore::open(&pool)?.into(), Some(identity)))
        }
    }
}

/// Metadata with object keys in sorted order at every level, so SQLite's text and
/// PostgreSQL's JSONB (which reorders keys) hash alike.
fn canonical(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = serde_json::Map::new();
            for k in keys {
                out.insert(k.clone(), canonical(&m[k]));
            }
            serde_json::Value::Object(out)
        }
        serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// Order-independent checksums: the wrapping sum of one BLAKE3 hash per document (with its
/// chunks) and per vector, so rows may come in any order and ids may differ.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Digest {
    documents: u128,
    vectors: u128,
}

fn field(h: &mut blake3::Hasher, bytes: &[u8]) {
    h.update(&(bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

fn finish(h: &blake3::Hasher) -> u128 {
    let mut first = [0u8; 16];
    first.copy_from_slice(&h.finalize().as_bytes()[..16]);
    u128::from_le_bytes(first)
}

impl Digest {
    fn add_document(&mut self, d: &DocRecord, chunks: &[&ChunkRecord]) {
        let mut h = blake3::Hasher::new();
        for f in [
            &d.source,
            &d.path,
            d.uri.as_deref().unwrap_or("\u{0}"),
            &d.title,
            &d.format,
            &d.technology,
            &d.category,
            &d.hash,
        ] {
            field(&mut h, f.as_bytes());
        }
        field(&mut h, &d.bytes.to_le_bytes());
        field(&mut h, canonical(&d.metadata).to_string().as_bytes());
        for c in chunks {
            field(&mut h, &c.position.to_le_bytes());
            field(&mut h, c.section.as_bytes());
            field(&mut h, hash_text(&c.text).as_bytes());
            field(&mut h, &c.tokens.to_le_bytes());
            field(&mut h, c.doc_type.as_str().as_bytes());
        }
        self.documents = self.documents.wrapping_add(finish(&h));
    }

    fn add_vector(&mut self, text_hash: &str, v: &[f32]) {
        let mut h = blake3::Hasher::new();
        field(&mut h, text_hash.as_bytes());
        for x in v {
            h.update(&x.to_le_bytes());
        }
        self.vectors = self.vectors.wrapping_add(finish(&h));
    }
}

/// A document the sample queries may come from.
#[derive(Debug, Clone)]
struct Sample {
    source: String,
    path: String,
    title: String,
    first_chunk: Option<String>,
}

impl Sample {
    fn of(d: &DocRecord, chunks: &[&ChunkRecord]) -> Sample {
        Sample {
            source: d.source.clone(),
            path: d.path.clone(),
            title: d.title.clone(),
            first_chunk: chunks.first().map(|c| hash_text(&c.text)),
        }
    }
}

/// One page of documents with their chunks, grouped by document (chunks come ordered by
/// document id).
fn group<'a>(
    docs: &'a [DocRecord],
    chunks: &'a [ChunkRecord],
) -> Vec<(&'a DocRecord, Vec<&'a ChunkRecord>)> {
    let mut out: Vec<(&DocRecord, Vec<&ChunkRecord>)> =
        docs.iter().map(|d| (d, Vec::new())).collect();
    let index: std::collections::HashMap<i64, usize> =
        docs.iter().enumerate().map(|(i, d)| (d.id, i)).collect();
    for c in chunks {
        if let Some(i) = index.get(&c.doc_id) {
            out[*i].1.push(c);
        }
    }
    out
}

/// Read every document, chunk and vector of `store` into a digest (the destination's side of
/// the proof).
fn scan(store: &Store, progress: &dyn Fn(u64)) -> Result<Digest> {
    let mut digest = Digest::default();
    let mut after = 0;
    let mut done = 0u64;
    loop {
        let docs = store.documents_page(after, PAGE_DOCS)?;
        let Some(last) = docs.last() else { break };
        after = last.id;
        let ids: Vec<i64> = docs.iter().map(|d| d.id).collect();
        let chunks = store.chunks_of_documents(&ids)?;
        for (d, cs) in group(&docs, &chunks) {
            digest.add_document(d, &cs);
        }
        done += docs.len() as u64;
        progress(done);
    }
    let mut after = String::new();
    loop {
        let page = store.vectors_page(&after, 2_000)?;
        let Some(last) = page.last() else { break };
        after = last.0.clone();
        for (h, v) in &page {
            digest.add_vector(h, v);
        }
        done += page.len() as u64;
        progress(done);
    }
    Ok(digest)
}

/// Copy the knowledge base at `from` into `to`, then verify. A destination that holds anything
/// is refused unless `options.force`, which empties it first. Verification failing is not an
/// error: the report says so (`verification.ok`).
pub fn copy(
    from: &Endpoint,
    to: &Endpoint,
    database: &DatabaseConfig,
    options: &CopyOptions,
    progress: &dyn Fn(&Progress),
) -> Result<CopyReport> {
    let started = std::time::Instant::now();
    let (src, mut dst) = open_pair(from, to, database)?;
    let replaced = make_room(&mut dst, to, options.force)?;
    let totals = Counts::of(&src)?;
    for s in src.sources()? {
        dst.upsert_source(&s.name, &s.roots, &s.technology)?;
        dst.set_origin(&s.name, &s.origin)?;
        // Validators and links: a refresh after the copy still costs one conditional request
        // per unchanged page.
        dst.put_page_states(&s.name, &src.page_states(&s.name)?)?;
    }
    let mut transfer = Transfer {
        src: &src,
        dst: &mut dst,
        options,
        progress,
        digest: Digest::default(),
        samples: Vec::new(),
    };
    transfer.documents(totals.documents)?;
    transfer.vectors(totals.vectors)?;
    let (embed_model, embed_backends) = transfer.embed_model()?;
    let Transfer {
        digest, samples, ..
    } = transfer;

    let verification = verify(
        &src,
        &dst,
        src.keyword_ranking() == dst.keyword_ranking(),
        &digest,
        &samples,
        options,
        progress,
    )?;
    Ok(CopyReport {
        from: from.describe(),
        to: to.describe(),
        from_backend: from.backend(),
        to_backend: to.backend(),
        replaced,
        copied: Counts::of(&dst)?,
        embed_model,
        embed_backends,
        seconds: started.elapsed().as_secs_f64(),
        verification,
    })
}

/// Open the source and the destination, refusing two endpoints that name (or, for PostgreSQL,
/// reach) one knowledge base: the copy would empty what it reads.
fn open_pair(from: &Endpoint, to: &Endpoint, database: &DatabaseConfig) -> Result<(Store, Store)> {
    if from.same_as(to) {
        return Err(DbError::Invalid(format!(
            "--from and --to are the same knowledge base ({})",
            from.describe()
        )));
    }
    let (src, src_identity) = open_source(from, database)?;
    let (dst, dst_identity) = open_destination(to, database)?;
    if src_identity.is_some() && src_identity == dst_identity {
        return Err(DbError::Invalid(format!(
            "--from and --to are the same knowledge base ({} and {} reach one database)",
            from.describe(),
            to.describe()
        )));
    }
    Ok((src, dst))
}

/// Refuse a destination that holds a knowledge base unless `force`, which empties it; returns
/// what was replaced.
fn make_room(dst: &mut Store, to: &Endpoint, force: bool) -> Result<Option<Counts>> {
    let before = Counts::of(dst)?;
    let replaced = if !before.is_empty() || dst.embed_model()?.is_some() {
        if !force {
            return Err(DbError::Invalid(format!(
                "{} already holds a knowledge base ({}); pass --force to replace it",
                to.describe(),
                before.describe()
            )));
        }
        dst.clear_for_import()?;
        Some(before)
    } else {
        None
    };
    if let Endpoint::Sqlite(path) = to {
        // Derived from the old contents (its generation may even match the new one's).
        exai_kb::ann::remove(path)?;
    }
    Ok(replaced)
}

/// The copy under way: both stores, and the source's side of the proof (its digest and the
/// documents sample queries may come from), gathered while the rows pass through.
struct Transfer<'a> {
    src: &'a Store,
    dst: &'a mut Store,
    options: &'a CopyOptions,
    progress: &'a dyn Fn(&Progress),
    digest: Digest,
    samples: Vec<Sample>,
}

/// Documents with their chunks, ready for one write transaction.
type Batch<'a> = Vec<(NewDocument<'a>, Vec<NewChunk>)>;

impl Transfer<'_> {
    fn report(&self, phase: Phase, done: u64, total: u64) {
        (self.progress)(&Progress { phase, done, total });
    }

    /// Copy every document with its chunks, a page at a time, in batches of whole documents
    /// of about `batch_chunks` chunks.
    fn documents(&mut self, total: u64) -> Result<()> {
        let mut after = 0;
        let mut done = 0u64;
        self.report(Phase::Documents, done, total);
        loop {
            let docs = self.src.documents_page(after, PAGE_DOCS)?;
            let Some(last) = docs.last() else { break };
            after = last.id;
            let ids: Vec<i64> = docs.iter().map(|d| d.id).collect();
            let chunks = self.src.chunks_of_documents(&ids)?;
            let grouped = group(&docs, &chunks);
            let metadata: Vec<serde_json::Map<String, serde_json::Value>> = grouped
                .iter()
                .map(|(d, _)| d.metadata.as_object().cloned().unwrap_or_default())
                .collect();
            let mut batch: Batch<'_> = Vec::new();
            let mut batch_chunks = 0;
            for ((d, cs), meta) in grouped.iter().zip(&metadata) {
                self.digest.add_document(d, cs);
                self.samples.push(Sample::of(d, cs));
                batch_chunks += cs.len();
                batch.push((new_document(d, meta), new_chunks(cs)));
                if batch_chunks >= self.options.batch_chunks {
                    done += self.write(&mut batch)?;
                    batch_chunks = 0;
                    self.report(Phase::Documents, done, total);
                }
            }
            if !batch.is_empty() {
                done += self.write(&mut batch)?;
                self.report(Phase::Documents, done, total);
            }
        }
        Ok(())
    }

    /// Write one batch in one transaction and empty it; returns how many documents it held.
    fn write(&mut self, batch: &mut Batch<'_>) -> Result<u64> {
        self.dst.replace_documents(batch)?;
        let written = batch.len() as u64;
        batch.clear();
        Ok(written)
    }

    /// Copy every vector, a transaction per page of `batch_vectors`.
    fn vectors(&mut self, total: u64) -> Result<()> {
        let mut after = String::new();
        let mut done = 0u64;
        self.report(Phase::Vectors, done, total);
        loop {
            let page = self
                .src
                .vectors_page(&after, self.options.batch_vectors.max(1))?;
            let Some(last) = page.last() else { break };
            after = last.0.clone();
            for (h, v) in &page {
                self.digest.add_vector(h, v);
            }
            self.dst.import_vectors(&page)?;
            done += page.len() as u64;
            self.report(Phase::Vectors, done, total);
        }
        Ok(())
    }

    /// Record the source's embedding model and the back ends that computed its vectors (on
    /// PostgreSQL claiming the model builds the HNSW index); returns both for the report.
    fn embed_model(&mut self) -> Result<(Option<String>, Vec<String>)> {
        let embed_model = self.src.embed_model()?;
        let embed_backends = self.src.embed_backends()?;
        if let Some(model) = &embed_model {
            self.report(Phase::Index, 0, 1);
            self.dst.claim_embed_model(model)?;
            for b in &embed_backends {
                self.dst.record_embed_backend(b)?;
            }
            self.report(Phase::Index, 1, 1);
        }
        Ok((embed_model, embed_backends))
    }
}

/// A document as the destination stores it.
fn new_document<'a>(
    d: &'a DocRecord,
    metadata: &'a serde_json::Map<String, serde_json::Value>,
) -> NewDocument<'a> {
    NewDocument {
        source: &d.source,
        path: &d.path,
        uri: d.uri.as_deref(),
        title: &d.title,
        format: &d.format,
        technology: &d.technology,
        category: &d.category,
        hash: &d.hash,
        bytes: u64::try_from(d.bytes).unwrap_or(0),
        metadata,
        flagged: d.flagged,
    }
}

/// A document's chunks as the destination stores them, at the same positions.
fn new_chunks(chunks: &[&ChunkRecord]) -> Vec<NewChunk> {
    chunks
        .iter()
        .map(|c| NewChunk {
            position: usize::try_from(c.position).unwrap_or(0),
            section: c.section.clone(),
            text: c.text.clone(),
            tokens: usize::try_from(c.tokens).unwrap_or(0),
            doc_type: c.doc_type,
        })
        .collect()
}

/// The sample: documents spread evenly over (source, path) order whose titles make a query,
/// one per distinct title.
fn pick(samples: &[Sample], n: usize) -> Vec<&Sample> {
    let mut sorted: Vec<&Sample> = samples.iter().collect();
    sorted.sort_by(|a, b| (&a.source, &a.path).cmp(&(&b.source, &b.path)));
    let mut seen = HashSet::new();
    let usable: Vec<&Sample> = sorted
        .into_iter()
        .filter(|s| !query_terms(&s.title).is_empty() && seen.insert(s.title.to_lowercase()))
        .collect();
    if usable.len() <= n {
        return usable;
    }
    (0..n).map(|i| usable[i * usable.len() / n]).collect()
}

/// Documents spread evenly over (source, path) order whose first chunk's vector makes a query.
fn pick_chunks(samples: &[Sample], n: usize) -> Vec<&Sample> {
    let mut usable: Vec<&Sample> = samples.iter().filter(|s| s.first_chunk.is_some()).collect();
    usable.sort_by(|a, b| (&a.source, &a.path).cmp(&(&b.source, &b.path)));
    if usable.len() <= n {
        return usable;
    }
    (0..n).map(|i| usable[i * usable.len() / n]).collect()
}

/// Chunk ids as `source:path#position`, in rank order.
fn keys(store: &Store, hits: &[(i64, f32)]) -> Result<Vec<String>> {
    let ids: Vec<i64> = hits.iter().map(|h| h.0).collect();
    Ok(store
        .chunks(&ids)?
        .iter()
        .map(|c| format!("{}:{}#{}", c.source, c.path, c.position))
        .collect())
}

/// Semantic search over the stored vectors: in the database where it searches them itself
/// (PostgreSQL's HNSW index), else exact over an in-memory index of them (SQLite's, without its
/// approximate graph), built on the first query.
struct Semantic<'a> {
    store: &'a Store,
    exact: std::cell::OnceCell<VectorIndex>,
}

impl<'a> Semantic<'a> {
    fn new(store: &'a Store) -> Result<Semantic<'a>> {
        Ok(Semantic {
            store,
            exact: std::cell::OnceCell::new(),
        })
    }

    fn search(&self, query: &[f32]) -> Result<Vec<(i64, f32)>> {
        if let Some(found) = self.store.vector_search(query, &Filters::default(), TOP)? {
            return Ok(found);
        }
        let index = match self.exact.get() {
            Some(index) => index,
            None => {
                let built = VectorIndex::build(self.store.vectors()?, 0);
                self.exact.get_or_init(|| built)
            }
        };
        Ok(index.search_exact(query, &Filters::default(), TOP))
    }
}

fn overlap(a: &[String], b: &[String]) -> f64 {
    let longest = a.len().max(b.len());
    if longest == 0 {
        return 1.0;
    }
    let set: HashSet<&String> = a.iter().collect();
    b.iter().filter(|k| set.contains(k)).count() as f64 / longest as f64
}

fn compare(results: Vec<(String, Vec<String>, Vec<String>)>, required: Option<&str>) -> Comparison {
    let queries = results.len();
    let overlaps: Vec<f64> = results.iter().map(|(_, a, b)| overlap(a, b)).collect();
    let identical = results.iter().filter(|(_, a, b)| a == b).count();
    let mean_overlap = if queries == 0 {
        1.0
    } else {
        overlaps.iter().sum::<f64>() / queries as f64
    };
    let min_overlap = overlaps.iter().copied().fold(1.0, f64::min);
    let passed = match required {
        Some("identical") => identical == queries,
        Some(_) => mean_overlap >= MIN_OVERLAP,
        None => true,
    };
    let differences = results
        .into_iter()
        .zip(&overlaps)
        .filter(|((_, a, b), _)| a != b)
        .take(SHOWN_DIFFERENCES)
        .map(|((query, from, to), o)| QueryDiff {
            query,
            overlap: *o,
            from,
            to,
        })
        .collect();
    Comparison {
        queries,
        identical,
        mean_overlap,
        min_overlap,
        required: required.map(str::to_string),
        passed,
        differences,
    }
}

/// Verification's progress: the destination's rows scanned, then one step per sample query.
struct Ticker<'a> {
    done: u64,
    total: u64,
    progress: &'a dyn Fn(&Progress),
}

impl Ticker<'_> {
    fn report(&self, done: u64) {
        (self.progress)(&Progress {
            phase: Phase::Verify,
            done,
            total: self.total,
        });
    }

    fn step(&mut self) {
        self.done += 1;
        self.report(self.done);
    }
}

fn verify(
    src: &Store,
    dst: &Store,
    same_ranking: bool,
    src_digest: &Digest,
    samples: &[Sample],
    options: &CopyOptions,
    progress: &dyn Fn(&Progress),
) -> Result<Verification> {
    let from = Counts::of(src)?;
    let to = Counts::of(dst)?;
    let picked = pick(samples, options.queries);
    let by_vector = if from.vectors > 0 && to.vectors > 0 {
        pick_chunks(samples, options.queries)
    } else {
        Vec::new()
    };
    let mut ticker = Ticker {
        done: to.documents + to.vectors,
        total: to.documents + to.vectors + (picked.len() + by_vector.len()) as u64,
        progress,
    };
    let mut v = Verification {
        ok: false,
        from,
        to,
        counts_equal: from == to,
        content_equal: false,
        vectors_equal: false,
        model_equal: false,
        keyword: None,
        semantic: None,
        problems: Vec::new(),
        notes: Vec::new(),
    };
    v.check_contents(src, dst, src_digest, samples, &ticker)?;
    v.keyword = compare_keyword(src, dst, &picked, same_ranking, &mut ticker)?;
    if !same_ranking {
        v.notes.push(
            "keyword ranking differs across backends by design (PostgreSQL ts_rank without inverse document frequency, SQLite BM25): its overlap is reported, not required".into(),
        );
    }
    v.compare_semantic(src, dst, &by_vector, &mut ticker)?;
    v.judge_rankings();
    v.ok = v.problems.is_empty();
    Ok(v)
}

impl Verification {
    /// Counts, checksums and model identity: the destination scanned into a digest and held
    /// against the one the copy read from the source.
    fn check_contents(
        &mut self,
        src: &Store,
        dst: &Store,
        src_digest: &Digest,
        samples: &[Sample],
        ticker: &Ticker<'_>,
    ) -> Result<()> {
        if !self.counts_equal {
            self.problems.push(format!(
                "counts differ: source {}, destination {}",
                self.from.describe(),
                self.to.describe()
            ));
        }
        let dst_digest = scan(dst, &|done| ticker.report(done))?;
        self.content_equal = dst_digest.documents == src_digest.documents;
        if !self.content_equal {
            self.problems.push(
                "the documents and chunks differ (checksums of source, path, hash, metadata, positions, sections and texts)".into(),
            );
        }
        self.vectors_equal = dst_digest.vectors == src_digest.vectors;
        if !self.vectors_equal {
            self.problems
                .push("the vectors differ (checksum by text hash)".into());
        }
        let (src_model, dst_model) = (src.embed_model()?, dst.embed_model()?);
        self.model_equal =
            src_model == dst_model && src.embed_backends()? == dst.embed_backends()?;
        if !self.model_equal {
            self.problems.push(format!(
                "the embedding model differs: source {}, destination {}",
                src_model.as_deref().unwrap_or("none"),
                dst_model.as_deref().unwrap_or("none")
            ));
        }
        // The source may have changed while it was copied (an index run elsewhere).
        if self.from.documents != samples.len() as u64 {
            self.problems.push(format!(
                "the source changed while it was copied ({} documents read, {} now); copy again with --force",
                samples.len(),
                self.from.documents
            ));
        }
        Ok(())
    }

    /// The semantic top 10 on both sides for the vector of each sampled document's first
    /// chunk, or a note saying why there is nothing to compare.
    fn compare_semantic(
        &mut self,
        src: &Store,
        dst: &Store,
        by_vector: &[&Sample],
        ticker: &mut Ticker<'_>,
    ) -> Result<()> {
        if by_vector.is_empty() {
            self.notes.push(
                "no vectors: semantic results not compared (counts and checksums prove the copy)"
                    .into(),
            );
            return Ok(());
        }
        let (src_search, dst_search) = (Semantic::new(src)?, Semantic::new(dst)?);
        let mut results = Vec::new();
        for s in by_vector {
            ticker.step();
            let Some(hash) = &s.first_chunk else { continue };
            let Some(vector) = src.vector(hash)? else {
                continue;
            };
            let a = keys(src, &src_search.search(&vector)?)?;
            let b = keys(dst, &dst_search.search(&vector)?)?;
            results.push((
                format!("the vector of the first chunk of {}:{}", s.source, s.path),
                a,
                b,
            ));
        }
        if results.is_empty() {
            self.notes.push(
                "none of the sampled chunks has a vector: semantic results not compared".into(),
            );
        } else {
            self.semantic = Some(compare(results, Some("overlap >= 0.9")));
        }
        Ok(())
    }

    /// Problems for the comparisons that did not reach what they require.
    fn judge_rankings(&mut self) {
        if let Some(k) = &self.keyword
            && !k.passed
        {
            self.problems.push(format!(
                "keyword top {TOP} identical for {} of {} sample queries; the same backend must rank alike",
                k.identical, k.queries
            ));
        }
        if let Some(s) = &self.semantic
            && !s.passed
        {
            self.problems.push(format!(
                "semantic top {TOP} overlap {:.2} on average (required {MIN_OVERLAP})",
                s.mean_overlap
            ));
        }
    }
}

/// The keyword top 10 on both sides for each sampled title; required identical only between
/// two stores that rank alike.
fn compare_keyword(
    src: &Store,
    dst: &Store,
    picked: &[&Sample],
    same_ranking: bool,
    ticker: &mut Ticker<'_>,
) -> Result<Option<Comparison>> {
    let mut results = Vec::new();
    for s in picked {
        let a = keys(
            src,
            &src.keyword_search(&s.title, &Filters::default(), TOP)?,
        )?;
        let b = keys(
            dst,
            &dst.keyword_search(&s.title, &Filters::default(), TOP)?,
        )?;
        results.push((s.title.clone(), a, b));
        ticker.step();
    }
    Ok((!picked.is_empty()).then(|| compare(results, same_ranking.then_some("identical"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            Endpoint::parse("sqlite:/tmp/kb.sqlite").unwrap(),
            Endpoint::Sqlite("/tmp/kb.sqlite".into())
        );
        assert_eq!(
            Endpoint::parse("sqlite:///tmp/kb.sqlite").unwrap(),
            Endpoint::Sqlite("/tmp/kb.sqlite".into())
        );
        assert_eq!(
            Endpoint::parse("kb.sqlite").unwrap(),
            Endpoint::Sqlite("kb.sqlite".into())
        );
        let pg = Endpoint::parse("postgresql://u:secret@h/db").unwrap();
        assert_eq!(pg.backend(), "postgres");
        assert!(!pg.describe().contains("secret"), "{}", pg.describe());
        assert!(Endpoint::parse("mysql://x").is_err());
        assert!(Endpoint::parse("sqlite:").is_err());
        assert!(Endpoint::parse(" ").is_err());
    }

    #[test]
    fn metadata_hashes_alike_in_any_key_order() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"b":1,"a":{"y":2,"x":[{"q":1,"p":2}]}}"#).unwrap();
        let b: serde_json::Value =
            serde_json::from_str(r#"{"a":{"x":[{"p":2,"q":1}],"y":2},"b":1}"#).unwrap();
        assert_eq!(canonical(&a).to_string(), canonical(&b).to_string());
    }

    #[test]
    fn overlap_and_comparison() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(overlap(&s(&["a", "b"]), &s(&["b", "a"])), 1.0);
        assert_eq!(overlap(&s(&["a", "b"]), &s(&["a", "c"])), 0.5);
        assert_eq!(overlap(&[], &[]), 1.0);
        let c = compare(
            vec![
                ("q1".into(), s(&["a", "b"]), s(&["a", "b"])),
                ("q2".into(), s(&["a", "b"]), s(&["b", "a"])),
            ],
            Some("identical"),
        );
        assert!(!c.passed && c.identical == 1 && c.mean_overlap == 1.0);
        assert_eq!(c.differences.len(), 1);
        let c = compare(
            vec![("q2".into(), s(&["a", "b"]), s(&["b", "a"]))],
            Some("overlap >= 0.9"),
        );
        assert!(c.passed);
    }
}
