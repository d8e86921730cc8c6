//! PostgreSQL with pgvector, for several daemons sharing one knowledge base: the same
//! documents, chunks and vectors-by-text-hash as the SQLite store, keyword search over a
//! weighted `tsvector` (title A, section B, text D) with a GIN index, and semantic search over
//! an HNSW index (cosine) inside the database, so a search on any daemon sees every committed
//! change at once.
//!
//! Ranking differs from SQLite's BM25: PostgreSQL ranks with `ts_rank` (term frequency with the
//! same 4:2:1 title/section/text weights, normalised by document length) and has no inverse
//! document frequency, so rare words do not outweigh common ones as they do under BM25. The
//! fusion with vector ranks is the same reciprocal-rank fusion on both.

use std::collections::HashMap;
use std::sync::Arc;

use exai_pg::postgres::types::ToSql;
use exai_pg::{Conn, Pool};
use pgvector::Vector;

use crate::error::{KbError, Result};
use crate::ingest::Flagged;
use crate::model::{DocType, Filters, NewChunk};
use crate::store::{
    ChunkRecord, Column, Count, DocRecord, NewDocument, PageState, SharedLogic, SourceInfo,
    StoreBackend, VectorMeta, claim_writes, dimension_problems, hash_text, now,
    pending_vectors_warning, query_terms,
};

/// The schema, step by step (component `kb` in `exai_schema`; the SQL is in exai-pg, with every
/// component's, so `exai db migrate` covers them all).
const MIGRATIONS: &[&str] = exai_pg::schema::KB.steps;

/// The text-search configuration: English stemming, as SQLite's porter tokenizer.
const TS_CONFIG: &str = "english";

/// `ts_rank` weights {D, C, B, A}: text 1, section 2, title 4 (BM25 column weights of SQLite).
const TS_WEIGHTS: &str = "'{0.25, 0.25, 0.5, 1.0}'";

const CHUNK_COLUMNS: &str = "c.id, c.doc_id, c.position, c.section, c.text, c.tokens, c.doc_type, d.title, d.source, d.path, d.uri, d.technology, d.category";

const BUMP_GENERATION: &str =
    "UPDATE kb_meta SET value = (value::bigint + 1)::text WHERE key = 'generation'";

/// The HNSW index over the vectors; created when the model (and so the dimension) is known.
const HNSW_INDEX: &str = "kb_embeddings_hnsw";

/// One pooled connection to the knowledge base in PostgreSQL.
pub struct PgStore {
    conn: std::sync::Mutex<Conn>,
    target: String,
}

fn chunk_from_row(r: &exai_pg::postgres::Row) -> ChunkRecord {
    let doc_type: String = r.get(6);
    ChunkRecord {
        id: r.get(0),
        doc_id: r.get(1),
        position: r.get(2),
        section: r.get(3),
        text: r.get(4),
        tokens: r.get(5),
        doc_type: DocType::parse(&doc_type).unwrap_or(DocType::Text),
        title: r.get(7),
        source: r.get(8),
        path: r.get(9),
        uri: r.get(10),
        technology: r.get(11),
        category: r.get(12),
    }
}

/// The untrusted counts of a document row, after its chunk count.
const FLAGGED_COLUMNS: &str =
    "d.flagged_hidden, d.flagged_invisible, d.flagged_comment, d.flagged_instruction";

fn flagged_from_row(r: &exai_pg::postgres::Row, first: usize) -> Flagged {
    Flagged {
        hidden: r.get(first),
        invisible: r.get(first + 1),
        comment: r.get(first + 2),
        instruction: r.get(first + 3),
    }
}

/// A document row of `SELECT id, source, path, uri, title, format, technology, category, hash,
/// bytes, metadata, indexed_at, <chunk count>, FLAGGED_COLUMNS`.
fn doc_from_row(r: &exai_pg::postgres::Row) -> DocRecord {
    DocRecord {
        id: r.get(0),
        source: r.get(1),
        path: r.get(2),
        uri: r.get(3),
        title: r.get(4),
        format: r.get(5),
        technology: r.get(6),
        category: r.get(7),
        hash: r.get(8),
        bytes: r.get(9),
        metadata: r.get(10),
        indexed_at: r.get(11),
        chunks: r.get(12),
        flagged: flagged_from_row(r, 13),
    }
}

/// Filters as SQL over `kb_documents d` and `kb_chunks c`, numbering parameters from `first`.
fn filter_sql(filters: &Filters, first: usize) -> (String, Vec<Box<dyn ToSql + Sync + Send>>) {
    let mut sql = String::new();
    let mut args: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    let mut n = first;
    for (column, values) in [
        ("d.source", &filters.sources),
        ("d.technology", &filters.technologies),
        ("d.category", &filters.categories),
    ] {
        if !values.is_empty() {
            sql.push_str(&format!(" AND {column} = ANY(${n})"));
            args.push(Box::new(values.clone()));
            n += 1;
        }
    }
    if let Some(prefix) = &filters.path_prefix {
        sql.push_str(&format!(" AND starts_with(d.path, ${n})"));
        args.push(Box::new(prefix.clone()));
        n += 1;
    }
    if let Some(t) = filters.doc_type {
        sql.push_str(&format!(" AND c.doc_type = ${n}"));
        args.push(Box::new(t.as_str().to_string()));
    }
    (sql, args)
}

/// The vector column's declared dimension (`None`: not fixed yet).
fn vector_column_dim(c: &mut Conn) -> Result<Option<i32>> {
    Ok(c.query_one(
        "SELECT NULLIF(atttypmod, -1) FROM pg_attribute WHERE attrelid = 'kb_embeddings'::regclass AND attname = 'vector'",
        &[],
    )?
    .get(0))
}

fn refs(args: &[Box<dyn ToSql + Sync + Send>]) -> Vec<&(dyn ToSql + Sync)> {
    args.iter()
        .map(|a| a.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

impl PgStore {
    /// A store on a pooled connection; migrates the schema and checks pgvector on first use.
    pub fn open(pool: &Arc<Pool>) -> Result<PgStore> {
        let mut conn = pool.get()?;
        let target = pool.target().to_string();
        if exai_pg::schema_version(&mut *conn, "kb")? != MIGRATIONS.len() as i64 {
            exai_pg::ensure_vector(&mut conn, &target)?;
            exai_pg::migrate(&mut conn, "kb", MIGRATIONS)?;
        }
        Ok(PgStore {
            conn: std::sync::Mutex::new(conn),
            target,
        })
    }

    /// A store on a pooled connection, without the schema check (after [`PgStore::open`]
    /// succeeded once in this process).
    pub fn attach(pool: &Arc<Pool>) -> Result<PgStore> {
        Ok(PgStore {
            conn: std::sync::Mutex::new(pool.get()?),
            target: pool.target().to_string(),
        })
    }

    /// The server, password redacted.
    pub fn target(&self) -> &str {
        &self.target
    }

    fn with<T>(&self, f: impl FnOnce(&mut Conn) -> Result<T>) -> Result<T> {
        let mut conn = self
            .conn
            .lock()
            .map_err(|_| KbError::Invalid("a PostgreSQL connection was poisoned".into()))?;
        f(&mut conn).map_err(|e| match e {
            KbError::Postgres(p) => KbError::Postgres(p.at(&self.target)),
            other => other,
        })
    }

    /// The schema this build writes.
    pub fn known_schema_version() -> i64 {
        MIGRATIONS.len() as i64
    }

    pub fn schema_version(&self) -> Result<i64> {
        self.with(|c| Ok(exai_pg::schema_version(&mut **c, "kb")?))
    }

    /// Give the vector column the model's dimension and an HNSW index (idempotent).
    fn ensure_hnsw(&self, key: &str) -> Result<()> {
        let Some(dim) = crate::maintenance::identity_dim(key) else {
            return Ok(());
        };
        self.with(|c| {
            let current = vector_column_dim(c)?;
            let exists: bool = c
                .query_one("SELECT to_regclass($1) IS NOT NULL", &[&HNSW_INDEX])?
                .get(0);
            if current == Some(dim as i32) && exists {
                return Ok(());
            }
            let mut tx = c.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock(hashtext('kb_embeddings_hnsw'))", &[])?;
            if current != Some(dim as i32) {
                tx.batch_execute(&format!(
                    "DROP INDEX IF EXISTS {HNSW_INDEX}; ALTER TABLE kb_embeddings ALTER COLUMN vector TYPE vector({dim})"
                ))?;
            }
            tx.batch_execute(&format!(
                "CREATE INDEX IF NOT EXISTS {HNSW_INDEX} ON kb_embeddings USING hnsw (vector vector_cosine_ops)"
            ))?;
            tx.commit()?;
            Ok(())
        })
    }

    fn count(&self, sql: &str) -> Result<u64> {
        self.with(|c| {
            let n: i64 = c.query_one(sql, &[])?.get(0);
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }

    /// Take the knowledge base's embedding lock for this connection's session, if free.
    pub fn try_lock_embedding(&self) -> Result<bool> {
        self.with(|c| {
            Ok(c.query_one(
                "SELECT pg_try_advisory_lock(hashtext('exai-kb-embedding'))",
                &[],
            )?
            .get(0))
        })
    }

    /// Release the lock [`PgStore::try_lock_embedding`] took.
    pub fn unlock_embedding(&self) -> Result<()> {
        self.with(|c| {
            c.execute(
                "SELECT pg_advisory_unlock(hashtext('exai-kb-embedding'))",
                &[],
            )?;
            Ok(())
        })
    }

    /// Counts and sizes for `exai db stats` / `verify` / `health`.
    pub fn stats(&self) -> Result<PgStats> {
        let (documents, chunks) = self.totals()?;
        let vectors = self.count("SELECT count(*) FROM kb_embeddings")?;
        let sources = self.count("SELECT count(*) FROM kb_sources")?;
        let bytes = self.count("SELECT (pg_total_relation_size('kb_chunks') + pg_total_relation_size('kb_documents') + pg_total_relation_size('kb_embeddings') + pg_total_relation_size('kb_sources'))::bigint")?;
        let hnsw: Option<(bool, i64)> = self.with(|c| {
            Ok(c.query_opt(
                "SELECT i.indisvalid, pg_relation_size(i.indexrelid) FROM pg_index i WHERE i.indexrelid = to_regclass($1)",
                &[&HNSW_INDEX],
            )?
            .map(|r| (r.get(0), r.get(1))))
        })?;
        let server: String = self.with(|c| {
            Ok(
                c.query_one("SELECT current_setting('server_version')", &[])?
                    .get(0),
            )
        })?;
        let pgvector: Option<String> = self.with(|c| {
            Ok(c.query_opt(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'",
                &[],
            )?
            .map(|r| r.get(0)))
        })?;
        Ok(PgStats {
            target: self.target.clone(),
            server_version: server,
            pgvector,
            schema_version: self.schema_version()?,
            sources,
            documents,
            chunks,
            vectors,
            chunks_without_vectors: self.count_chunks_without_vectors()?,
            bytes,
            hnsw_valid: hnsw.map(|h| h.0),
            hnsw_bytes: hnsw.map(|h| h.1.max(0) as u64),
            embed_model: self.embed_model()?,
            generation: self.generation()?,
        })
    }
}

/// What `exai db stats|verify` and `exai health` show of a PostgreSQL knowledge base.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PgStats {
    pub target: String,
    pub server_version: String,
    pub pgvector: Option<String>,
    pub schema_version: i64,
    pub sources: u64,
    pub documents: u64,
    pub chunks: u64,
    pub vectors: u64,
    pub chunks_without_vectors: u64,
    pub bytes: u64,
    /// The HNSW index: present and valid (`None`: not built yet — no model claimed).
    pub hnsw_valid: Option<bool>,
    pub hnsw_bytes: Option<u64>,
    pub embed_model: Option<String>,
    pub generation: u64,
}

/// PostgreSQL's dialect of the store (the shared logic is in [`super::Store`]).
impl StoreBackend for PgStore {
    fn describe(&self) -> String {
        self.target.clone()
    }

    fn schema_version(&self) -> Result<i64> {
        PgStore::schema_version(self)
    }

    fn meta(&self, key: &str) -> Result<Option<String>> {
        self.with(|c| {
            Ok(
                c.query_opt("SELECT value FROM kb_meta WHERE key = $1", &[&key])?
                    .map(|r| r.get(0)),
            )
        })
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO kb_meta(key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                &[&key, &value],
            )?;
            Ok(())
        })
    }

    /// Record the model the vectors come from (deciding with [`claim_writes`] in one
    /// transaction, under a lock that orders concurrent claims), then fix the vector column's
    /// dimension and build the HNSW index for it.
    fn claim_embed_model(&self, key: &str) -> Result<()> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtext('exai-kb-embed-model'))",
                &[],
            )?;
            let stored: Option<String> = tx
                .query_opt("SELECT value FROM kb_meta WHERE key = 'embed_model'", &[])?
                .map(|r| r.get(0));
            let writes = claim_writes(stored.as_deref(), key, || {
                Ok(tx
                    .query_one("SELECT EXISTS (SELECT 1 FROM kb_embeddings)", &[])?
                    .get(0))
            })?;
            if writes {
                tx.execute(
                    "DELETE FROM kb_meta WHERE key IN ('embed_model', 'embed_backends')",
                    &[],
                )?;
                tx.execute(
                    "INSERT INTO kb_meta(key, value) VALUES ('embed_model', $1)",
                    &[&key],
                )?;
            }
            tx.commit()?;
            Ok(())
        })?;
        self.ensure_hnsw(key)
    }

    fn drop_vectors(&self) -> Result<u64> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            let n = tx.execute("DELETE FROM kb_embeddings", &[])?;
            tx.execute(
                "DELETE FROM kb_meta WHERE key IN ('embed_model', 'embed_backends')",
                &[],
            )?;
            tx.execute(BUMP_GENERATION, &[])?;
            tx.commit()?;
            Ok(n)
        })
    }

    fn upsert_source(&self, name: &str, roots: &[String], technology: &str) -> Result<()> {
        let roots = serde_json::json!(roots);
        let t = now();
        self.with(|c| {
            c.execute(
                "INSERT INTO kb_sources(name, roots, technology, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)
                 ON CONFLICT (name) DO UPDATE SET roots = $2, technology = $3, updated_at = $4",
                &[&name, &roots, &technology, &t],
            )?;
            Ok(())
        })
    }

    fn set_origin(&self, source: &str, origin: &serde_json::Value) -> Result<()> {
        let changed = self.with(|c| {
            Ok(c.execute(
                "UPDATE kb_sources SET origin = $2 WHERE name = $1",
                &[&source, origin],
            )?)
        })?;
        if changed == 0 {
            return Err(KbError::NotFound(format!("source `{source}`")));
        }
        Ok(())
    }

    fn page_states(&self, source: &str) -> Result<Vec<PageState>> {
        self.with(|c| {
            Ok(c.query(
                "SELECT url, path, state, reason, etag, last_modified, hash, links, depth, fetched_at
                 FROM kb_fetched_pages WHERE source = $1 ORDER BY url",
                &[&source],
            )?
            .iter()
            .map(|r| PageState {
                url: r.get(0),
                path: r.get(1),
                state: r.get(2),
                reason: r.get(3),
                etag: r.get(4),
                last_modified: r.get(5),
                hash: r.get(6),
                links: serde_json::from_value(r.get(7)).unwrap_or_default(),
                depth: u32::try_from(r.get::<_, i32>(8)).unwrap_or(0),
                fetched_at: r.get(9),
            })
            .collect())
        })
    }

    fn put_page_states(&mut self, source: &str, pages: &[PageState]) -> Result<()> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            let stmt = tx.prepare(
                "INSERT INTO kb_fetched_pages(source, url, path, state, reason, etag, last_modified, hash, links, depth, fetched_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                 ON CONFLICT (source, url) DO UPDATE SET path = $3, state = $4, reason = $5, etag = $6,
                     last_modified = $7, hash = $8, links = $9, depth = $10, fetched_at = $11",
            )?;
            for p in pages {
                let links = serde_json::json!(p.links);
                let depth = i32::try_from(p.depth).unwrap_or(i32::MAX);
                tx.execute(
                    &stmt,
                    &[
                        &source,
                        &p.url,
                        &p.path,
                        &p.state,
                        &p.reason,
                        &p.etag,
                        &p.last_modified,
                        &p.hash,
                        &links,
                        &depth,
                        &p.fetched_at,
                    ],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn delete_page_states(&mut self, source: &str, urls: Option<&[String]>) -> Result<u64> {
        self.with(|c| {
            Ok(match urls {
                None => c.execute("DELETE FROM kb_fetched_pages WHERE source = $1", &[&source])?,
                Some(urls) => c.execute(
                    "DELETE FROM kb_fetched_pages WHERE source = $1 AND url = ANY($2)",
                    &[&source, &urls],
                )?,
            })
        })
    }

    fn document_hashes(&self, source: &str) -> Result<HashMap<String, String>> {
        self.with(|c| {
            Ok(c.query(
                "SELECT path, hash FROM kb_documents WHERE source = $1",
                &[&source],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
        })
    }

    fn replace_documents(&mut self, docs: &[(NewDocument<'_>, Vec<NewChunk>)]) -> Result<()> {
        let indexed_at = now();
        self.with(|c| {
            let mut tx = c.transaction()?;
            let del = tx
                .prepare("DELETE FROM kb_documents WHERE source = $1 AND path = $2")?;
            let ins_doc = tx
                .prepare(
                    "INSERT INTO kb_documents(source, path, uri, title, format, technology, category, hash, bytes, metadata, indexed_at,
                        flagged_hidden, flagged_invisible, flagged_comment, flagged_instruction)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING id",
                )?;
            let ins_chunks = tx
                .prepare(&format!(
                    "INSERT INTO kb_chunks(doc_id, position, section, text, tokens, doc_type, text_hash, tsv)
                     SELECT $1, u.p, u.s, u.t, u.k, u.d, u.h,
                            setweight(to_tsvector('{TS_CONFIG}', $2), 'A')
                            || setweight(to_tsvector('{TS_CONFIG}', u.s), 'B')
                            || setweight(to_tsvector('{TS_CONFIG}', u.t), 'D')
                     FROM unnest($3::bigint[], $4::text[], $5::text[], $6::bigint[], $7::text[], $8::text[]) AS u(p, s, t, k, d, h)"
                ))?;
            for (doc, chunks) in docs {
                tx.execute(&del, &[&doc.source, &doc.path])?;
                let metadata = serde_json::Value::Object(doc.metadata.clone());
                let id: i64 = tx
                    .query_one(
                        &ins_doc,
                        &[
                            &doc.source,
                            &doc.path,
                            &doc.uri,
                            &doc.title,
                            &doc.format,
                            &doc.technology,
                            &doc.category,
                            &doc.hash,
                            &(doc.bytes as i64),
                            &metadata,
                            &indexed_at,
                            &doc.flagged.hidden,
                            &doc.flagged.invisible,
                            &doc.flagged.comment,
                            &doc.flagged.instruction,
                        ],
                    )?
                    .get(0);
                if chunks.is_empty() {
                    continue;
                }
                let positions: Vec<i64> = chunks.iter().map(|c| c.position as i64).collect();
                let sections: Vec<&str> = chunks.iter().map(|c| c.section.as_str()).collect();
                let texts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
                let tokens: Vec<i64> = chunks.iter().map(|c| c.tokens as i64).collect();
                let types: Vec<&str> = chunks.iter().map(|c| c.doc_type.as_str()).collect();
                let hashes: Vec<String> = chunks.iter().map(|c| hash_text(&c.text)).collect();
                tx.execute(
                    &ins_chunks,
                    &[&id, &doc.title, &positions, &sections, &texts, &tokens, &types, &hashes],
                )?;
            }
            tx.execute(BUMP_GENERATION, &[])?;
            tx.commit()?;
            Ok(())
        })
    }

    fn delete_documents(&mut self, source: &str, paths: &[String]) -> Result<u64> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            let n = tx.execute(
                "DELETE FROM kb_documents WHERE source = $1 AND path = ANY($2)",
                &[&source, &paths],
            )?;
            tx.execute(BUMP_GENERATION, &[])?;
            tx.commit()?;
            Ok(n)
        })
    }

    fn remove_source(&mut self, source: &str) -> Result<u64> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            let n = tx.execute("DELETE FROM kb_documents WHERE source = $1", &[&source])?;
            tx.execute("DELETE FROM kb_sources WHERE name = $1", &[&source])?;
            tx.execute(BUMP_GENERATION, &[])?;
            tx.commit()?;
            Ok(n)
        })
    }

    fn texts_without_vectors(&self, limit: usize) -> Result<Vec<(String, String, String, String)>> {
        self.with(|c| {
            Ok(c.query(
                "SELECT DISTINCT ON (c.text_hash) c.text_hash, d.title, c.section, c.text
                 FROM kb_chunks c JOIN kb_documents d ON d.id = c.doc_id
                 WHERE NOT EXISTS (SELECT 1 FROM kb_embeddings e WHERE e.text_hash = c.text_hash)
                 ORDER BY c.text_hash LIMIT $1",
                &[&(limit as i64)],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect())
        })
    }

    fn count_texts_without_vectors(&self) -> Result<u64> {
        self.count("SELECT count(DISTINCT text_hash) FROM kb_chunks c WHERE NOT EXISTS (SELECT 1 FROM kb_embeddings e WHERE e.text_hash = c.text_hash)")
    }

    fn count_chunks_without_vectors(&self) -> Result<u64> {
        self.count("SELECT count(*) FROM kb_chunks c WHERE NOT EXISTS (SELECT 1 FROM kb_embeddings e WHERE e.text_hash = c.text_hash)")
    }

    fn put_vectors(&mut self, vectors: &[(String, Vec<f32>)]) -> Result<()> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            let ins = tx.prepare(
                "INSERT INTO kb_embeddings(text_hash, vector) VALUES ($1, $2)
                     ON CONFLICT (text_hash) DO UPDATE SET vector = EXCLUDED.vector",
            )?;
            for (hash, v) in vectors {
                tx.execute(&ins, &[hash, &Vector::from(v.clone())])?;
            }
            tx.execute(BUMP_GENERATION, &[])?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Weighted full-text match, best first, scores positive (higher is better).
    fn keyword_search(&self, query: &str, filters: &Filters, k: usize) -> Result<Vec<(i64, f32)>> {
        let terms = query_terms(query);
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let tsquery = terms.join(" | ");
        let (filter, args) = filter_sql(filters, 3);
        let join = if filter.is_empty() {
            ""
        } else {
            " JOIN kb_documents d ON d.id = c.doc_id"
        };
        let sql = format!(
            "SELECT c.id, ts_rank({TS_WEIGHTS}, c.tsv, q, 1)::real AS score
             FROM kb_chunks c{join}, to_tsquery('{TS_CONFIG}', $1) q
             WHERE c.tsv @@ q{filter}
             ORDER BY score DESC, c.id LIMIT $2"
        );
        let k = k as i64;
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&tsquery, &k];
        params.extend(refs(&args));
        self.with(|c| {
            Ok(c.query(&sql, &params)?
                .iter()
                .map(|r| (r.get::<_, i64>(0), r.get::<_, f32>(1)))
                .collect())
        })
    }

    /// Nearest chunks by cosine similarity through the HNSW index; with filters that leave
    /// fewer than `k` among the index's candidates, an exact scan of the filtered chunks.
    fn vector_search(
        &self,
        query: &[f32],
        filters: &Filters,
        k: usize,
    ) -> Result<Option<Vec<(i64, f32)>>> {
        let q = Vector::from(query.to_vec());
        let (filter, args) = filter_sql(filters, 3);
        let join = if filter.is_empty() {
            ""
        } else {
            " JOIN kb_documents d ON d.id = c.doc_id"
        };
        let k_sql = k as i64;
        let ef = (k * 2).clamp(64, 1000);
        let run = |c: &mut Conn, exact: bool| -> Result<Vec<(i64, f32)>> {
            // `+ 0` keeps the planner off the index: an exact scan.
            let order = if exact {
                "(e.vector <=> $1) + 0"
            } else {
                "e.vector <=> $1"
            };
            let sql = format!(
                "SELECT c.id, (1 - (e.vector <=> $1))::real
                 FROM kb_embeddings e JOIN kb_chunks c ON c.text_hash = e.text_hash{join}
                 WHERE true{filter}
                 ORDER BY {order} LIMIT $2"
            );
            let mut params: Vec<&(dyn ToSql + Sync)> = vec![&q, &k_sql];
            params.extend(refs(&args));
            let mut tx = c.transaction()?;
            tx.batch_execute(&format!("SET LOCAL hnsw.ef_search = {ef}"))?;
            let rows = tx.query(&sql, &params)?;
            tx.commit()?;
            Ok(rows
                .iter()
                .map(|r| (r.get::<_, i64>(0), r.get::<_, f32>(1)))
                .collect())
        };
        self.with(|c| {
            let found = run(c, false)?;
            if found.len() >= k || filter.is_empty() {
                return Ok(found);
            }
            run(c, true)
        })
        .map(Some)
    }

    fn vectors(&self) -> Result<Vec<(i64, Vec<f32>, VectorMeta)>> {
        self.with(|c| {
            Ok(c.query(
                "SELECT c.id, e.vector, d.source, d.technology, d.category, d.path, c.doc_type
                 FROM kb_chunks c JOIN kb_embeddings e ON e.text_hash = c.text_hash JOIN kb_documents d ON d.id = c.doc_id
                 ORDER BY c.id",
                &[],
            )?
            .iter()
            .map(|r| {
                let doc_type: String = r.get(6);
                (
                    r.get::<_, i64>(0),
                    r.get::<_, Vector>(1).to_vec(),
                    VectorMeta {
                        source: r.get(2),
                        technology: r.get(3),
                        category: r.get(4),
                        path: r.get(5),
                        doc_type: DocType::parse(&doc_type).unwrap_or(DocType::Text),
                    },
                )
            })
            .collect())
        })
    }

    fn chunks(&self, ids: &[i64]) -> Result<Vec<ChunkRecord>> {
        let ids = ids.to_vec();
        self.with(|c| {
            Ok(c.query(
                &format!("SELECT {CHUNK_COLUMNS} FROM kb_chunks c JOIN kb_documents d ON d.id = c.doc_id WHERE c.id = ANY($1)"),
                &[&ids],
            )?
            .iter()
            .map(chunk_from_row)
            .collect())
        })
    }

    fn section_chunks(
        &self,
        doc_id: i64,
        section: &str,
        from: i64,
        to: i64,
        position: i64,
    ) -> Result<Vec<ChunkRecord>> {
        self.with(|c| {
            Ok(c.query(
                &format!("SELECT {CHUNK_COLUMNS} FROM kb_chunks c JOIN kb_documents d ON d.id = c.doc_id
                          WHERE c.doc_id = $1 AND c.section = $2 AND c.position BETWEEN $3 AND $4 AND c.position <> $5 ORDER BY c.position"),
                &[&doc_id, &section, &from, &to, &position],
            )?
            .iter()
            .map(chunk_from_row)
            .collect())
        })
    }

    fn document_chunks(&self, doc_id: i64) -> Result<Vec<ChunkRecord>> {
        self.with(|c| {
            Ok(c.query(
                &format!("SELECT {CHUNK_COLUMNS} FROM kb_chunks c JOIN kb_documents d ON d.id = c.doc_id WHERE c.doc_id = $1 ORDER BY c.position"),
                &[&doc_id],
            )?
            .iter()
            .map(chunk_from_row)
            .collect())
        })
    }

    fn find_document(
        &self,
        doc_id: Option<i64>,
        source_path: Option<(&str, &str)>,
    ) -> Result<Option<DocRecord>> {
        let base = format!("SELECT d.id, d.source, d.path, d.uri, d.title, d.format, d.technology, d.category, d.hash, d.bytes, d.metadata, d.indexed_at,
                    (SELECT count(*) FROM kb_chunks c WHERE c.doc_id = d.id), {FLAGGED_COLUMNS} FROM kb_documents d");
        let row = self.with(|c| {
            Ok(match (doc_id, source_path) {
                (Some(id), _) => c
                    .query_opt(&format!("{base} WHERE d.id = $1"), &[&id])?,
                (None, Some((source, path))) => c
                    .query_opt(
                        &format!("{base} WHERE d.path = $2 AND ($1 = '' OR d.source = $1) ORDER BY d.id LIMIT 1"),
                        &[&source, &path],
                    )?,
                (None, None) => None,
            })
        })?;
        Ok(row.as_ref().map(doc_from_row))
    }

    fn sources(&self) -> Result<Vec<SourceInfo>> {
        self.with(|c| {
            Ok(c.query(
                "SELECT s.name, s.roots, s.technology, s.created_at, s.updated_at,
                        (SELECT count(*) FROM kb_documents d WHERE d.source = s.name),
                        (SELECT count(*) FROM kb_chunks c JOIN kb_documents d ON d.id = c.doc_id WHERE d.source = s.name),
                        (SELECT count(*) FROM kb_chunks c JOIN kb_documents d ON d.id = c.doc_id WHERE d.source = s.name
                            AND NOT EXISTS (SELECT 1 FROM kb_embeddings e WHERE e.text_hash = c.text_hash)),
                        f.hidden, f.invisible, f.comment, f.instruction, s.origin
                 FROM kb_sources s
                 CROSS JOIN LATERAL (
                     SELECT coalesce(sum(d.flagged_hidden), 0)::bigint AS hidden,
                            coalesce(sum(d.flagged_invisible), 0)::bigint AS invisible,
                            coalesce(sum(d.flagged_comment), 0)::bigint AS comment,
                            coalesce(sum(d.flagged_instruction), 0)::bigint AS instruction
                     FROM kb_documents d WHERE d.source = s.name
                 ) f
                 ORDER BY s.name",
                &[],
            )?
            .iter()
            .map(|r| {
                let roots: serde_json::Value = r.get(1);
                let name: String = r.get(0);
                let (library, version) = crate::versions::split(&name);
                SourceInfo {
                    library: library.to_string(),
                    version: version.map(str::to_string),
                    name,
                    roots: serde_json::from_value(roots).unwrap_or_default(),
                    technology: r.get(2),
                    created_at: r.get(3),
                    updated_at: r.get(4),
                    documents: r.get(5),
                    chunks: r.get(6),
                    chunks_without_vectors: r.get(7),
                    flagged: flagged_from_row(r, 8),
                    origin: r.get(12),
                }
            })
            .collect())
        })
    }

    fn counts(&self, column: Column) -> Result<Vec<Count>> {
        let column = column.as_str();
        self.with(|c| {
            Ok(c.query(
                &format!(
                    "SELECT d.{column}, count(DISTINCT d.id), count(c.id) FROM kb_documents d LEFT JOIN kb_chunks c ON c.doc_id = d.id
                     GROUP BY d.{column} ORDER BY d.{column}"
                ),
                &[],
            )?
            .iter()
            .map(|r| Count {
                name: r.get(0),
                documents: r.get(1),
                chunks: r.get(2),
            })
            .collect())
        })
    }

    fn source_names(&self) -> Result<Vec<(String, String)>> {
        self.with(|c| {
            Ok(
                c.query("SELECT name, updated_at FROM kb_sources ORDER BY name", &[])?
                    .iter()
                    .map(|r| (r.get(0), r.get(1)))
                    .collect(),
            )
        })
    }

    fn distinct_values(&self, column: Column) -> Result<Vec<String>> {
        let column = column.as_str();
        self.with(|c| {
            Ok(c.query(
                &format!("SELECT DISTINCT {column} FROM kb_documents ORDER BY {column}"),
                &[],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect())
        })
    }

    fn totals(&self) -> Result<(u64, u64)> {
        Ok((
            self.count("SELECT count(*) FROM kb_documents")?,
            self.count("SELECT count(*) FROM kb_chunks")?,
        ))
    }

    /// The server answers and the schema is this build's.
    fn quick_check(&self) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        let v = self.schema_version()?;
        if v != MIGRATIONS.len() as i64 {
            problems.push(format!(
                "kb schema version {v}, this build writes {}",
                MIGRATIONS.len()
            ));
        }
        Ok(problems)
    }

    /// Every vector by text hash, in hash order, `limit` from `after` (for `exai db copy`).
    fn vectors_page(&self, after: &str, limit: usize) -> Result<Vec<(String, Vec<f32>)>> {
        self.with(|c| {
            Ok(c.query(
                "SELECT text_hash, vector FROM kb_embeddings WHERE text_hash > $1 ORDER BY text_hash LIMIT $2",
                &[&after, &(limit as i64)],
            )?
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, Vector>(1).to_vec()))
            .collect())
        })
    }

    fn keyword_ranking(&self) -> &'static str {
        "ts_rank"
    }

    /// Several daemons share the database: one embeds, the others wait for its vectors.
    fn try_lock_embedding(&self) -> Result<bool> {
        PgStore::try_lock_embedding(self)
    }

    fn unlock_embedding(&self) -> Result<()> {
        PgStore::unlock_embedding(self)
    }

    /// The connection pool is the pool; a connection goes back when the store drops.
    fn keep_between_calls(&self) -> bool {
        false
    }

    /// PostgreSQL keeps its own statistics.
    fn term_stats(&self) -> Option<super::SharedTermStats> {
        None
    }

    fn share_term_stats(&mut self, _shared: super::SharedTermStats) {}

    // Export and import for `exai db copy`.

    /// Documents with an id above `after`, in id order (insertion order), `limit` at most.
    fn documents_page(&self, after: i64, limit: usize) -> Result<Vec<DocRecord>> {
        self.with(|c| {
            Ok(c.query(
                &format!("SELECT d.id, d.source, d.path, d.uri, d.title, d.format, d.technology, d.category, d.hash, d.bytes, d.metadata, d.indexed_at,
                        (SELECT count(*) FROM kb_chunks c WHERE c.doc_id = d.id), {FLAGGED_COLUMNS}
                 FROM kb_documents d WHERE d.id > $1 ORDER BY d.id LIMIT $2"),
                &[&after, &(limit as i64)],
            )?
            .iter()
            .map(doc_from_row)
            .collect())
        })
    }

    /// Every chunk of these documents, by document and position.
    fn chunks_of_documents(&self, doc_ids: &[i64]) -> Result<Vec<ChunkRecord>> {
        let ids = doc_ids.to_vec();
        self.with(|c| {
            Ok(c.query(
                &format!(
                    "SELECT {CHUNK_COLUMNS} FROM kb_chunks c JOIN kb_documents d ON d.id = c.doc_id
                     WHERE c.doc_id = ANY($1) ORDER BY c.doc_id, c.position, c.id"
                ),
                &[&ids],
            )?
            .iter()
            .map(chunk_from_row)
            .collect())
        })
    }

    /// The vector stored for a chunk text.
    fn vector(&self, text_hash: &str) -> Result<Option<Vec<f32>>> {
        self.with(|c| {
            Ok(c.query_opt(
                "SELECT vector FROM kb_embeddings WHERE text_hash = $1",
                &[&text_hash],
            )?
            .map(|r| r.get::<_, Vector>(0).to_vec()))
        })
    }

    /// Vectors stored (one per distinct chunk text, orphans included).
    fn count_vectors(&self) -> Result<u64> {
        self.count("SELECT count(*) FROM kb_embeddings")
    }

    /// Store vectors (by text hash) with one statement per batch, in one transaction.
    fn import_vectors(&mut self, vectors: &[(String, Vec<f32>)]) -> Result<()> {
        let hashes: Vec<&str> = vectors.iter().map(|(h, _)| h.as_str()).collect();
        let values: Vec<Vector> = vectors
            .iter()
            .map(|(_, v)| Vector::from(v.clone()))
            .collect();
        self.with(|c| {
            let mut tx = c.transaction()?;
            tx.execute(
                "INSERT INTO kb_embeddings(text_hash, vector) SELECT * FROM unnest($1::text[], $2::vector[])
                 ON CONFLICT (text_hash) DO UPDATE SET vector = EXCLUDED.vector",
                &[&hashes, &values],
            )?;
            tx.execute(BUMP_GENERATION, &[])?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Empty the knowledge base (sources, documents, chunks, vectors and the model identity) in
    /// one transaction, keeping the schema, and leave the vector column without a dimension or
    /// HNSW index, so the next model claimed builds its index in bulk over the loaded vectors:
    /// the destination of a copy.
    fn clear_for_import(&mut self) -> Result<()> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtext('kb_embeddings_hnsw'))",
                &[],
            )?;
            tx.batch_execute(&format!(
                "TRUNCATE kb_embeddings, kb_chunks, kb_documents, kb_fetched_pages, kb_sources;
                 DELETE FROM kb_meta WHERE key IN ('embed_model', 'embed_backends');
                 DROP INDEX IF EXISTS {HNSW_INDEX};
                 ALTER TABLE kb_embeddings ALTER COLUMN vector TYPE vector;
                 {BUMP_GENERATION}"
            ))?;
            tx.commit()?;
            Ok(())
        })
    }
}

/// Checks for `exai db verify` (the operations toolkit).
impl PgStore {
    /// Check the knowledge base in PostgreSQL: schema version, pgvector, the HNSW index (once a
    /// model is claimed), vector dimensions against the model identity, rows pointing at
    /// missing rows, and vectors no chunk uses. Reads only.
    pub fn verify(&self) -> Result<PgVerifyReport> {
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        let known = MIGRATIONS.len() as i64;
        let schema_version = self.schema_version()?;
        problems.extend(schema_problem(schema_version, known));
        let pgvector = self.pgvector_version()?;
        if pgvector.is_none() {
            problems.push(
                "pgvector is not installed in this database; run `CREATE EXTENSION vector;` (Supabase: Database → Extensions → vector)".into(),
            );
        }
        let (documents, chunks) = self.totals()?;
        let vectors = self.count_vectors()?;
        let embed_model = self.embed_model()?;
        let expected_dim = embed_model
            .as_deref()
            .and_then(crate::maintenance::identity_dim);
        let VectorLayout {
            column_dim,
            dims,
            hnsw_valid,
        } = self.vector_layout()?;
        problems.extend(dimension_problems(expected_dim, &dims));
        if let (Some(want), Some(column)) = (expected_dim, column_dim)
            && want != column
        {
            problems.push(format!(
                "the vector column has dimension {column}, the model {want}; run `exai index --reembed`"
            ));
        }
        if embed_model.is_some() {
            problems.extend(hnsw_problem(hnsw_valid));
        }
        let orphan_chunks = self.count(
            "SELECT count(*) FROM kb_chunks c WHERE NOT EXISTS (SELECT 1 FROM kb_documents d WHERE d.id = c.doc_id)",
        )?;
        if orphan_chunks > 0 {
            problems.push(format!(
                "{orphan_chunks} chunk(s) point at missing documents"
            ));
        }
        let orphan_documents = self.count(
            "SELECT count(*) FROM kb_documents d WHERE NOT EXISTS (SELECT 1 FROM kb_sources s WHERE s.name = d.source)",
        )?;
        if orphan_documents > 0 {
            problems.push(format!(
                "{orphan_documents} document(s) point at missing sources"
            ));
        }
        let chunks_without_vectors = self.count_chunks_without_vectors()?;
        warnings.extend(pending_vectors_warning(
            chunks_without_vectors,
            embed_model.is_some(),
        ));
        let orphan_vectors = self.count(
            "SELECT count(*) FROM kb_embeddings e WHERE NOT EXISTS (SELECT 1 FROM kb_chunks c WHERE c.text_hash = e.text_hash)",
        )?;
        if orphan_vectors > 0 {
            warnings.push(format!(
                "{orphan_vectors} embedding(s) belong to no chunk (kept for texts that come back; `DELETE FROM kb_embeddings e WHERE NOT EXISTS (SELECT 1 FROM kb_chunks c WHERE c.text_hash = e.text_hash)` removes them)"
            ));
        }
        Ok(PgVerifyReport {
            schema_version,
            known_schema_version: known,
            pgvector,
            documents,
            chunks,
            vectors,
            embed_model,
            expected_dim,
            column_dim,
            dims,
            hnsw_valid,
            chunks_without_vectors,
            orphan_chunks,
            orphan_documents,
            orphan_vectors,
            generation: self.generation()?,
            problems,
            warnings,
        })
    }

    fn pgvector_version(&self) -> Result<Option<String>> {
        self.with(|c| {
            Ok(c.query_opt(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'",
                &[],
            )?
            .map(|r| r.get(0)))
        })
    }

    /// The vector column's declared dimension, the dimensions stored, and the HNSW index.
    fn vector_layout(&self) -> Result<VectorLayout> {
        self.with(|c| {
            let column = vector_column_dim(c)?;
            let dims: Vec<(usize, u64)> = c
                .query(
                    "SELECT vector_dims(vector), count(*) FROM kb_embeddings GROUP BY 1 ORDER BY 2 DESC",
                    &[],
                )?
                .iter()
                .map(|r| {
                    (
                        usize::try_from(r.get::<_, i32>(0)).unwrap_or(0),
                        u64::try_from(r.get::<_, i64>(1)).unwrap_or(0),
                    )
                })
                .collect();
            let hnsw_valid: Option<bool> = c
                .query_opt(
                    "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)",
                    &[&HNSW_INDEX],
                )?
                .map(|r| r.get(0));
            Ok(VectorLayout {
                column_dim: column.and_then(|d| usize::try_from(d).ok()),
                dims,
                hnsw_valid,
            })
        })
    }
}

/// How the vectors are laid out in PostgreSQL (see [`PgVerifyReport`] for each field).
struct VectorLayout {
    column_dim: Option<usize>,
    dims: Vec<(usize, u64)>,
    hnsw_valid: Option<bool>,
}

/// What `verify` says of the schema version against the one this build writes.
fn schema_problem(found: i64, known: i64) -> Option<String> {
    if found < known {
        Some(format!(
            "kb schema version {found}, this build writes {known}; run `exai db migrate`"
        ))
    } else if found > known {
        Some(format!(
            "kb schema version {found} is newer than this build knows ({known}); upgrade exai"
        ))
    } else {
        None
    }
}

/// What `verify` says of the HNSW index once a model is recorded (valid, invalid, absent).
fn hnsw_problem(valid: Option<bool>) -> Option<String> {
    match valid {
        Some(true) => None,
        Some(false) => Some(format!(
            "the HNSW index {HNSW_INDEX} is invalid (a build was interrupted); run `REINDEX INDEX {HNSW_INDEX};`"
        )),
        None => Some(format!(
            "the HNSW index {HNSW_INDEX} is missing; the next `exai index` run builds it (semantic search scans exactly meanwhile)"
        )),
    }
}

/// What `exai db verify` found in a PostgreSQL knowledge base. `problems` fail the check;
/// `warnings` do not.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PgVerifyReport {
    pub schema_version: i64,
    pub known_schema_version: i64,
    pub pgvector: Option<String>,
    pub documents: u64,
    pub chunks: u64,
    pub vectors: u64,
    pub embed_model: Option<String>,
    /// The dimension every vector should have (from the stored model identity).
    pub expected_dim: Option<usize>,
    /// The vector column's declared dimension (`None`: not fixed yet).
    pub column_dim: Option<usize>,
    /// Distinct vector dimensions found, with their counts.
    pub dims: Vec<(usize, u64)>,
    /// The HNSW index: valid, invalid, or `None` when absent.
    pub hnsw_valid: Option<bool>,
    pub chunks_without_vectors: u64,
    /// Chunks whose document is gone, documents whose source is gone (foreign keys prevent
    /// both; counted in case they were dropped by hand).
    pub orphan_chunks: u64,
    pub orphan_documents: u64,
    /// Vectors no chunk refers to.
    pub orphan_vectors: u64,
    pub generation: u64,
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
}
