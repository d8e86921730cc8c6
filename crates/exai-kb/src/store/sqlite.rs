//! SQLite, the embedded default: documents, chunks, an FTS5 index for BM25, embeddings
//! keyed by chunk-text hash (identical texts share one vector; a re-indexed document keeps the
//! vectors of its unchanged chunks), and a schema version with migrations. WAL mode: readers
//! never block the writer, and a writer killed mid-run leaves the last committed state.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params, params_from_iter};

use crate::error::{KbError, Result};
use crate::ingest::Flagged;
use crate::model::{DocType, Filters, NewChunk};
use crate::store::{
    ChunkRecord, Column, Count, DocRecord, NewDocument, PageState, SourceInfo, StoreBackend,
    VectorMeta, claim_writes, decode_vector, encode_vector, hash_text, now,
};

/// Every committed change bumps this counter; derived indexes compare it to know they are stale.
pub(crate) const BUMP_GENERATION: &str =
    "UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE key = 'generation'";

/// Delete one document inside a transaction: its FTS rows (a contentless table cannot cascade)
/// and then the document, whose chunks cascade.
fn delete_document_tx(tx: &rusqlite::Transaction<'_>, doc_id: i64) -> rusqlite::Result<()> {
    let mut chunk_ids = tx.prepare_cached("SELECT id FROM chunks WHERE doc_id = ?")?;
    let mut del_fts = tx.prepare_cached("DELETE FROM chunks_fts WHERE rowid = ?")?;
    let ids: Vec<i64> = chunk_ids
        .query_map([doc_id], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for id in ids {
        del_fts.execute([id])?;
    }
    tx.prepare_cached("DELETE FROM documents WHERE id = ?")?
        .execute([doc_id])?;
    Ok(())
}

/// The schema this build writes.
pub const SCHEMA_VERSION: i64 = 3;

/// Version 2: untrusted spans flagged per document, by kind (`ingest::untrusted`).
const SCHEMA_V2: &str = "
ALTER TABLE documents ADD COLUMN flagged_hidden INTEGER NOT NULL DEFAULT 0;
ALTER TABLE documents ADD COLUMN flagged_invisible INTEGER NOT NULL DEFAULT 0;
ALTER TABLE documents ADD COLUMN flagged_comment INTEGER NOT NULL DEFAULT 0;
ALTER TABLE documents ADD COLUMN flagged_instruction INTEGER NOT NULL DEFAULT 0;
";

/// Version 3: where each source comes from, and the fetch state of web sources' pages
/// ([`super::PageState`]).
const SCHEMA_V3: &str = "
ALTER TABLE sources ADD COLUMN origin TEXT NOT NULL DEFAULT '{}';
CREATE TABLE IF NOT EXISTS fetched_pages (
    source TEXT NOT NULL REFERENCES sources(name) ON DELETE CASCADE,
    url TEXT NOT NULL,
    path TEXT,
    state TEXT NOT NULL,
    reason TEXT,
    etag TEXT,
    last_modified TEXT,
    hash TEXT,
    links TEXT NOT NULL DEFAULT '[]',
    depth INTEGER NOT NULL DEFAULT 0,
    fetched_at TEXT NOT NULL,
    PRIMARY KEY (source, url)
);
";

/// The counts of [`SCHEMA_V2`] over `documents d`; zeros in a file opened read-only at
/// version 1 (`exai db copy` from an old backup), which has no such columns.
fn flagged_columns(version: i64) -> &'static str {
    if version >= 2 {
        "d.flagged_hidden, d.flagged_invisible, d.flagged_comment, d.flagged_instruction"
    } else {
        "0, 0, 0, 0"
    }
}

fn flagged_from_row(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Flagged> {
    Ok(Flagged {
        hidden: r.get(first)?,
        invisible: r.get(first + 1)?,
        comment: r.get(first + 2)?,
        instruction: r.get(first + 3)?,
    })
}

pub(super) const SCHEMA_V1: &str = r#"
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sources (
    name TEXT PRIMARY KEY,
    roots TEXT NOT NULL DEFAULT '[]',
    technology TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL REFERENCES sources(name) ON DELETE CASCADE,
    path TEXT NOT NULL,
    uri TEXT,
    title TEXT NOT NULL,
    format TEXT NOT NULL,
    technology TEXT NOT NULL,
    category TEXT NOT NULL,
    hash TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    indexed_at TEXT NOT NULL,
    UNIQUE (source, path)
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,
    doc_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    section TEXT NOT NULL,
    text TEXT NOT NULL,
    tokens INTEGER NOT NULL,
    doc_type TEXT NOT NULL,
    text_hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_doc ON chunks(doc_id, position);
CREATE INDEX IF NOT EXISTS chunks_by_hash ON chunks(text_hash);
CREATE INDEX IF NOT EXISTS documents_by_filter ON documents(source, technology, category);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
    title, section, text,
    content = '', contentless_delete = 1,
    tokenize = "porter unicode61 remove_diacritics 2"
);
CREATE TABLE IF NOT EXISTS embeddings (
    text_hash TEXT PRIMARY KEY,
    vector BLOB NOT NULL
);
"#;

/// How much of the file is read through a memory map (SQLite caps it at 2 GiB by default).
const MMAP_BYTES: i64 = 1 << 30;
/// Page cache per connection, in KiB.
const CACHE_KIB: i64 = 16 * 1024;

/// One connection to the knowledge base database.
pub struct SqliteStore {
    pub(crate) conn: Connection,
    path: PathBuf,
    /// The schema version the file was at when opened (a read-only open of an older file does
    /// not migrate it).
    version: i64,
    /// Document frequencies of query terms (keyword search's planning; see `bm25.rs`), shared
    /// by the read connections of one `Kb`.
    pub(crate) term_stats: super::SharedTermStats,
}

fn map_open_error(path: &Path, e: rusqlite::Error) -> KbError {
    match &e {
        rusqlite::Error::SqliteFailure(f, msg) => match f.code {
            rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked => {
                KbError::Locked {
                    path: path.to_path_buf(),
                }
            }
            rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt => {
                KbError::Corrupt {
                    path: path.to_path_buf(),
                    reason: msg.clone().unwrap_or_else(|| f.to_string()),
                }
            }
            _ => KbError::Open {
                path: path.to_path_buf(),
                source: e,
            },
        },
        _ => KbError::Open {
            path: path.to_path_buf(),
            source: e,
        },
    }
}

/// `WHERE`-clause fragments and parameters for filters over `documents d` and `chunks c`.
pub(crate) fn filter_sql(filters: &Filters) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    let mut sql = String::new();
    let mut args = Vec::new();
    let list = |column: &str, values: &[String], sql: &mut String, args: &mut Vec<Value>| {
        if values.is_empty() {
            return;
        }
        sql.push_str(&format!(
            " AND {column} IN ({})",
            vec!["?"; values.len()].join(",")
        ));
        args.extend(values.iter().map(|v| Value::Text(v.clone())));
    };
    list("d.source", &filters.sources, &mut sql, &mut args);
    list("d.technology", &filters.technologies, &mut sql, &mut args);
    list("d.category", &filters.categories, &mut sql, &mut args);
    if let Some(prefix) = &filters.path_prefix {
        sql.push_str(" AND substr(d.path, 1, ?) = ?");
        args.push(Value::Integer(prefix.len() as i64));
        args.push(Value::Text(prefix.clone()));
    }
    if let Some(t) = filters.doc_type {
        sql.push_str(" AND c.doc_type = ?");
        args.push(Value::Text(t.as_str().into()));
    }
    (sql, args)
}

const CHUNK_COLUMNS: &str = "c.id, c.doc_id, c.position, c.section, c.text, c.tokens, c.doc_type, d.title, d.source, d.path, d.uri, d.technology, d.category";

/// A document row of `SELECT id, source, path, uri, title, format, technology, category, hash,
/// bytes, metadata, indexed_at, <chunk count>, <flagged_columns>`.
fn doc_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DocRecord> {
    let metadata: String = r.get(10)?;
    Ok(DocRecord {
        id: r.get(0)?,
        source: r.get(1)?,
        path: r.get(2)?,
        uri: r.get(3)?,
        title: r.get(4)?,
        format: r.get(5)?,
        technology: r.get(6)?,
        category: r.get(7)?,
        hash: r.get(8)?,
        bytes: r.get(9)?,
        metadata: serde_json::from_str(&metadata).unwrap_or(serde_json::Value::Null),
        indexed_at: r.get(11)?,
        chunks: r.get(12)?,
        flagged: flagged_from_row(r, 13)?,
    })
}

fn chunk_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ChunkRecord> {
    let doc_type: String = row.get(6)?;
    Ok(ChunkRecord {
        id: row.get(0)?,
        doc_id: row.get(1)?,
        position: row.get(2)?,
        section: row.get(3)?,
        text: row.get(4)?,
        tokens: row.get(5)?,
        doc_type: DocType::parse(&doc_type).unwrap_or(DocType::Text),
        title: row.get(7)?,
        source: row.get(8)?,
        path: row.get(9)?,
        uri: row.get(10)?,
        technology: row.get(11)?,
        category: row.get(12)?,
    })
}

impl SqliteStore {
    /// Open (creating if needed, private to the user) and migrate.
    pub fn open(path: &Path) -> Result<Self> {
        exai_core::private::prepare_sqlite(path).map_err(|source| KbError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let conn = Connection::open(path).map_err(|e| map_open_error(path, e))?;
        let mut store = Self {
            conn,
            path: path.to_path_buf(),
            version: SCHEMA_VERSION,
            term_stats: Default::default(),
        };
        store.configure().map_err(|e| map_open_error(path, e))?;
        store.migrate()?;
        store.version = SCHEMA_VERSION;
        Ok(store)
    }

    /// Open an existing database for reading only; never creates or migrates it.
    pub fn open_readonly(path: &Path) -> Result<Self> {
        Self::open_existing(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
    }

    /// Open an existing database for checks that need a write transaction (the keyword index's
    /// own integrity check); never creates or migrates it.
    pub fn open_for_check(path: &Path) -> Result<Self> {
        Self::open_existing(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
    }

    fn open_existing(path: &Path, mode: OpenFlags) -> Result<Self> {
        let conn = Connection::open_with_flags(path, mode | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(|e| map_open_error(path, e))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(|e| map_open_error(path, e))?;
        let mut store = Self {
            conn,
            path: path.to_path_buf(),
            version: 0,
            term_stats: Default::default(),
        };
        let version = store.schema_version()?;
        store.version = version;
        if version > SCHEMA_VERSION {
            return Err(KbError::SchemaTooNew {
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        store
            .configure_cache()
            .map_err(|e| map_open_error(path, e))?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn configure(&self) -> rusqlite::Result<()> {
        self.conn.busy_timeout(Duration::from_secs(5))?;
        self.conn.pragma_update(None, "journal_mode", "WAL")?;
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        self.conn.pragma_update(None, "foreign_keys", "ON")?;
        self.conn.pragma_update(None, "temp_store", "MEMORY")?;
        self.configure_cache()
    }

    /// Reads come from a memory map of the file, and each connection caches 16 MiB of pages.
    /// SQLite's default 2 MiB cache, which the bundled build shares between all connections of
    /// a process (SQLITE_ENABLE_MEMORY_MANAGEMENT: one LRU for every cache), stopped caching
    /// for an older reader once another connection had streamed the vectors through its own:
    /// counting the chunks without a vector then re-read the file in 4 KB system calls on every
    /// probe (BENCHMARKS.md). With the map, pages are read in place and no connection evicts
    /// another's.
    fn configure_cache(&self) -> rusqlite::Result<()> {
        self.conn.pragma_update(None, "mmap_size", MMAP_BYTES)?;
        self.conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
        Ok(())
    }

    /// The schema version the file holds (0: empty or not an exai database).
    pub fn schema_version(&self) -> Result<i64> {
        let exists: Option<String> = self
            .conn
            .query_row(
                "SELECT name FROM sqlite_master WHERE type='table' AND name='meta'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.corrupt_or(e))?;
        if exists.is_none() {
            return Ok(0);
        }
        let v: Option<String> = self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key='schema_version'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        Ok(v.and_then(|s| s.parse().ok()).unwrap_or(0))
    }

    pub(crate) fn corrupt_or(&self, e: rusqlite::Error) -> KbError {
        map_open_error(&self.path, e)
    }

    /// A write transaction that takes the lock at its start, so what it reads cannot change
    /// before it writes.
    fn immediate(&self) -> rusqlite::Result<rusqlite::Transaction<'_>> {
        rusqlite::Transaction::new_unchecked(&self.conn, rusqlite::TransactionBehavior::Immediate)
    }

    pub(crate) fn bump_generation(&self) -> Result<()> {
        self.conn.execute(BUMP_GENERATION, [])?;
        Ok(())
    }

    fn migrate(&self) -> Result<()> {
        let version = self.schema_version()?;
        if version > SCHEMA_VERSION {
            return Err(KbError::SchemaTooNew {
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        if version < 1 {
            self.conn.execute_batch(&format!(
                "BEGIN IMMEDIATE; {SCHEMA_V1} INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('rank', 'bm25(4.0, 2.0, 1.0)'); INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', '1'); INSERT OR IGNORE INTO meta(key, value) VALUES ('generation', '0'); COMMIT;"
            )).map_err(|e| self.corrupt_or(e))?;
        }
        if version < 2 {
            self.conn
                .execute_batch(&format!(
                    "BEGIN IMMEDIATE; {SCHEMA_V2} UPDATE meta SET value = '2' WHERE key = 'schema_version'; COMMIT;"
                ))
                .map_err(|e| self.corrupt_or(e))?;
        }
        if version < 3 {
            self.conn
                .execute_batch(&format!(
                    "BEGIN IMMEDIATE; {SCHEMA_V3} UPDATE meta SET value = '3' WHERE key = 'schema_version'; COMMIT;"
                ))
                .map_err(|e| self.corrupt_or(e))?;
        }
        Ok(())
    }
}

/// SQLite's dialect of the store (the shared logic is in [`super::Store`]).
impl StoreBackend for SqliteStore {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn schema_version(&self) -> Result<i64> {
        SqliteStore::schema_version(self)
    }

    fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?", [key], |r| r.get(0))
            .optional()?)
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
            params![key, value],
        )?;
        Ok(())
    }

    fn claim_embed_model(&self, key: &str) -> Result<()> {
        let tx = self.immediate()?;
        let stored: Option<String> = tx
            .query_row(
                "SELECT value FROM meta WHERE key = 'embed_model'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        let has_vectors = || -> Result<bool> {
            Ok(tx.query_row("SELECT EXISTS (SELECT 1 FROM embeddings)", [], |r| r.get(0))?)
        };
        if claim_writes(stored.as_deref(), key, has_vectors)? {
            tx.execute(
                "DELETE FROM meta WHERE key IN ('embed_model', 'embed_backends')",
                [],
            )?;
            tx.execute(
                "INSERT INTO meta(key, value) VALUES ('embed_model', ?)",
                [key],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn drop_vectors(&self) -> Result<u64> {
        let tx = self.immediate()?;
        let n = tx.execute("DELETE FROM embeddings", [])?;
        tx.execute(
            "DELETE FROM meta WHERE key IN ('embed_model', 'embed_backends')",
            [],
        )?;
        tx.execute(BUMP_GENERATION, [])?;
        tx.commit()?;
        Ok(n as u64)
    }

    fn upsert_source(&self, name: &str, roots: &[String], technology: &str) -> Result<()> {
        let roots = serde_json::to_string(roots).unwrap_or_else(|_| "[]".into());
        let t = now();
        self.conn.execute(
            "INSERT INTO sources(name, roots, technology, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)
             ON CONFLICT(name) DO UPDATE SET roots = ?2, technology = ?3, updated_at = ?4",
            params![name, roots, technology, t],
        )?;
        Ok(())
    }

    fn set_origin(&self, source: &str, origin: &serde_json::Value) -> Result<()> {
        let changed = self.conn.execute(
            "UPDATE sources SET origin = ?2 WHERE name = ?1",
            params![source, origin.to_string()],
        )?;
        if changed == 0 {
            return Err(KbError::NotFound(format!("source `{source}`")));
        }
        Ok(())
    }

    fn page_states(&self, source: &str) -> Result<Vec<PageState>> {
        if self.version < 3 {
            return Ok(Vec::new());
        }
        let mut stmt = self.conn.prepare_cached(
            "SELECT url, path, state, reason, etag, last_modified, hash, links, depth, fetched_at
             FROM fetched_pages WHERE source = ? ORDER BY url",
        )?;
        let rows = stmt.query_map([source], |r| {
            Ok(PageState {
                url: r.get(0)?,
                path: r.get(1)?,
                state: r.get(2)?,
                reason: r.get(3)?,
                etag: r.get(4)?,
                last_modified: r.get(5)?,
                hash: r.get(6)?,
                links: serde_json::from_str(&r.get::<_, String>(7)?).unwrap_or_default(),
                depth: r.get(8)?,
                fetched_at: r.get(9)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn put_page_states(&mut self, source: &str, pages: &[PageState]) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR REPLACE INTO fetched_pages(source, url, path, state, reason, etag, last_modified, hash, links, depth, fetched_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            for p in pages {
                let links = serde_json::to_string(&p.links).unwrap_or_else(|_| "[]".into());
                stmt.execute(params![
                    source,
                    p.url,
                    p.path,
                    p.state,
                    p.reason,
                    p.etag,
                    p.last_modified,
                    p.hash,
                    links,
                    p.depth,
                    p.fetched_at
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn delete_page_states(&mut self, source: &str, urls: Option<&[String]>) -> Result<u64> {
        let Some(urls) = urls else {
            let n = self
                .conn
                .execute("DELETE FROM fetched_pages WHERE source = ?", [source])?;
            return Ok(n as u64);
        };
        let tx = self.conn.transaction()?;
        let mut n = 0;
        {
            let mut stmt =
                tx.prepare_cached("DELETE FROM fetched_pages WHERE source = ? AND url = ?")?;
            for url in urls {
                n += stmt.execute(params![source, url])?;
            }
        }
        tx.commit()?;
        Ok(n as u64)
    }

    /// Content hashes of a source's documents, by path.
    fn document_hashes(&self, source: &str) -> Result<std::collections::HashMap<String, String>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT path, hash FROM documents WHERE source = ?")?;
        let rows = stmt.query_map([source], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Replace documents and their chunks in one transaction each batch: all or nothing, so a
    /// killed run never leaves half a document.
    fn replace_documents(&mut self, docs: &[(NewDocument<'_>, Vec<NewChunk>)]) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut find =
                tx.prepare_cached("SELECT id FROM documents WHERE source = ? AND path = ?")?;
            let mut ins_doc = tx.prepare_cached(
                "INSERT INTO documents(source, path, uri, title, format, technology, category, hash, bytes, metadata, indexed_at,
                    flagged_hidden, flagged_invisible, flagged_comment, flagged_instruction)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )?;
            let mut ins_chunk = tx.prepare_cached(
                "INSERT INTO chunks(doc_id, position, section, text, tokens, doc_type, text_hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
            )?;
            let mut ins_fts = tx.prepare_cached(
                "INSERT INTO chunks_fts(rowid, title, section, text) VALUES (?, ?, ?, ?)",
            )?;
            let indexed_at = now();
            for (doc, chunks) in docs {
                if let Some(old) = find
                    .query_row(params![doc.source, doc.path], |r| r.get::<_, i64>(0))
                    .optional()?
                {
                    delete_document_tx(&tx, old)?;
                }
                let metadata = serde_json::Value::Object(doc.metadata.clone()).to_string();
                ins_doc.execute(params![
                    doc.source,
                    doc.path,
                    doc.uri,
                    doc.title,
                    doc.format,
                    doc.technology,
                    doc.category,
                    doc.hash,
                    doc.bytes as i64,
                    metadata,
                    indexed_at,
                    doc.flagged.hidden,
                    doc.flagged.invisible,
                    doc.flagged.comment,
                    doc.flagged.instruction
                ])?;
                let doc_id = tx.last_insert_rowid();
                for chunk in chunks {
                    ins_chunk.execute(params![
                        doc_id,
                        chunk.position as i64,
                        chunk.section,
                        chunk.text,
                        chunk.tokens as i64,
                        chunk.doc_type.as_str(),
                        hash_text(&chunk.text)
                    ])?;
                    let chunk_id = tx.last_insert_rowid();
                    ins_fts.execute(params![chunk_id, doc.title, chunk.section, chunk.text])?;
                }
            }
        }
        tx.execute(BUMP_GENERATION, [])?;
        tx.commit()?;
        Ok(())
    }

    /// Delete documents (and their chunks) by path.
    fn delete_documents(&mut self, source: &str, paths: &[String]) -> Result<u64> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut removed = 0;
        {
            let mut find =
                tx.prepare_cached("SELECT id FROM documents WHERE source = ? AND path = ?")?;
            for path in paths {
                if let Some(id) = find
                    .query_row(params![source, path], |r| r.get::<_, i64>(0))
                    .optional()?
                {
                    delete_document_tx(&tx, id)?;
                    removed += 1;
                }
            }
        }
        tx.execute(BUMP_GENERATION, [])?;
        tx.commit()?;
        Ok(removed)
    }

    /// Remove a whole source in one transaction. Returns the number of documents removed.
    fn remove_source(&mut self, source: &str) -> Result<u64> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let ids: Vec<i64> = {
            let mut stmt = tx.prepare("SELECT id FROM documents WHERE source = ?")?;
            stmt.query_map([source], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        for id in &ids {
            delete_document_tx(&tx, *id)?;
        }
        tx.execute("DELETE FROM sources WHERE name = ?", [source])?;
        tx.execute(BUMP_GENERATION, [])?;
        tx.commit()?;
        Ok(ids.len() as u64)
    }

    /// Distinct chunk texts that have no vector yet: (text hash, title, section, text).
    fn texts_without_vectors(&self, limit: usize) -> Result<Vec<(String, String, String, String)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT c.text_hash, d.title, c.section, c.text FROM chunks c JOIN documents d ON d.id = c.doc_id
             WHERE NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.text_hash = c.text_hash)
             GROUP BY c.text_hash LIMIT ?",
        )?;
        let rows = stmt.query_map([limit as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn count_texts_without_vectors(&self) -> Result<u64> {
        let n: i64 = self.conn.query_row(
            "SELECT count(DISTINCT text_hash) FROM chunks c WHERE NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.text_hash = c.text_hash)",
            [],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    fn count_chunks_without_vectors(&self) -> Result<u64> {
        let n: i64 = self.conn.query_row(
            "SELECT count(*) FROM chunks c WHERE NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.text_hash = c.text_hash)",
            [],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    fn put_vectors(&mut self, vectors: &[(String, Vec<f32>)]) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut ins = tx.prepare_cached(
                "INSERT OR REPLACE INTO embeddings(text_hash, vector) VALUES (?, ?)",
            )?;
            for (hash, v) in vectors {
                ins.execute(params![hash, encode_vector(v)])?;
            }
        }
        tx.execute(BUMP_GENERATION, [])?;
        tx.commit()?;
        Ok(())
    }

    /// Every (chunk id, vector, filter fields) for the in-memory vector index.
    fn vectors(&self) -> Result<Vec<(i64, Vec<f32>, VectorMeta)>> {
        let mut stmt = self.conn.prepare(
            "SELECT c.id, e.vector, d.source, d.technology, d.category, d.path, c.doc_type
             FROM chunks c JOIN embeddings e ON e.text_hash = c.text_hash JOIN documents d ON d.id = c.doc_id
             ORDER BY c.id",
        )?;
        let rows = stmt.query_map([], |r| {
            let blob: Vec<u8> = r.get(1)?;
            let doc_type: String = r.get(6)?;
            Ok((
                r.get::<_, i64>(0)?,
                decode_vector(&blob),
                VectorMeta {
                    source: r.get(2)?,
                    technology: r.get(3)?,
                    category: r.get(4)?,
                    path: r.get(5)?,
                    doc_type: DocType::parse(&doc_type).unwrap_or(DocType::Text),
                },
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn chunks(&self, ids: &[i64]) -> Result<Vec<ChunkRecord>> {
        let sql = format!(
            "SELECT {CHUNK_COLUMNS} FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE c.id IN ({})",
            vec!["?"; ids.len()].join(",")
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(params_from_iter(ids.iter()), chunk_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn section_chunks(
        &self,
        doc_id: i64,
        section: &str,
        from: i64,
        to: i64,
        position: i64,
    ) -> Result<Vec<ChunkRecord>> {
        let sql = format!(
            "SELECT {CHUNK_COLUMNS} FROM chunks c JOIN documents d ON d.id = c.doc_id
             WHERE c.doc_id = ? AND c.section = ? AND c.position BETWEEN ? AND ? AND c.position != ? ORDER BY c.position"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![doc_id, section, from, to, position], chunk_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn document_chunks(&self, doc_id: i64) -> Result<Vec<ChunkRecord>> {
        let sql = format!(
            "SELECT {CHUNK_COLUMNS} FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE c.doc_id = ? ORDER BY c.position"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map([doc_id], chunk_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn find_document(
        &self,
        doc_id: Option<i64>,
        source_path: Option<(&str, &str)>,
    ) -> Result<Option<DocRecord>> {
        let base = format!("SELECT d.id, d.source, d.path, d.uri, d.title, d.format, d.technology, d.category, d.hash, d.bytes, d.metadata, d.indexed_at,
                    (SELECT count(*) FROM chunks c WHERE c.doc_id = d.id), {} FROM documents d", flagged_columns(self.version));
        Ok(match (doc_id, source_path) {
            (Some(id), _) => self.conn.query_row(&format!("{base} WHERE d.id = ?"), [id], doc_from_row).optional()?,
            (None, Some((source, path))) => self
                .conn
                .query_row(&format!("{base} WHERE d.path = ?2 AND (?1 = '' OR d.source = ?1) ORDER BY d.id LIMIT 1"), params![source, path], doc_from_row)
                .optional()?,
            (None, None) => None,
        })
    }

    fn sources(&self) -> Result<Vec<SourceInfo>> {
        let flagged = if self.version >= 2 {
            "(SELECT coalesce(sum(d.flagged_hidden), 0) FROM documents d WHERE d.source = s.name),
             (SELECT coalesce(sum(d.flagged_invisible), 0) FROM documents d WHERE d.source = s.name),
             (SELECT coalesce(sum(d.flagged_comment), 0) FROM documents d WHERE d.source = s.name),
             (SELECT coalesce(sum(d.flagged_instruction), 0) FROM documents d WHERE d.source = s.name)"
        } else {
            "0, 0, 0, 0"
        };
        // A file opened read-only at an older version has no origins.
        let origin = if self.version >= 3 {
            "s.origin"
        } else {
            "'{}'"
        };
        let mut stmt = self.conn.prepare(&format!(
            "SELECT s.name, s.roots, s.technology, s.created_at, s.updated_at,
                    (SELECT count(*) FROM documents d WHERE d.source = s.name),
                    (SELECT count(*) FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE d.source = s.name),
                    (SELECT count(*) FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE d.source = s.name
                        AND NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.text_hash = c.text_hash)),
                    {flagged}, {origin}
             FROM sources s ORDER BY s.name",
        ))?;
        let rows = stmt.query_map([], |r| {
            let roots: String = r.get(1)?;
            let name: String = r.get(0)?;
            let (library, version) = crate::versions::split(&name);
            Ok(SourceInfo {
                library: library.to_string(),
                version: version.map(str::to_string),
                name,
                roots: serde_json::from_str(&roots).unwrap_or_default(),
                technology: r.get(2)?,
                created_at: r.get(3)?,
                updated_at: r.get(4)?,
                documents: r.get(5)?,
                chunks: r.get(6)?,
                chunks_without_vectors: r.get(7)?,
                flagged: flagged_from_row(r, 8)?,
                origin: serde_json::from_str(&r.get::<_, String>(12)?).unwrap_or_default(),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn counts(&self, column: Column) -> Result<Vec<Count>> {
        let column = column.as_str();
        let mut stmt = self.conn.prepare(&format!(
            "SELECT d.{column}, count(DISTINCT d.id), count(c.id) FROM documents d LEFT JOIN chunks c ON c.doc_id = d.id
             GROUP BY d.{column} ORDER BY d.{column}"
        ))?;
        let rows = stmt.query_map([], |r| {
            Ok(Count {
                name: r.get(0)?,
                documents: r.get(1)?,
                chunks: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn source_names(&self) -> Result<Vec<(String, String)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT name, updated_at FROM sources ORDER BY name")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn distinct_values(&self, column: Column) -> Result<Vec<String>> {
        let column = column.as_str();
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT DISTINCT {column} FROM documents ORDER BY {column}"
        ))?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn totals(&self) -> Result<(u64, u64)> {
        let docs: i64 = self
            .conn
            .query_row("SELECT count(*) FROM documents", [], |r| r.get(0))?;
        let chunks: i64 = self
            .conn
            .query_row("SELECT count(*) FROM chunks", [], |r| r.get(0))?;
        Ok((docs as u64, chunks as u64))
    }

    /// SQLite's own quick check plus FTS row count against chunks.
    fn quick_check(&self) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        let ok: String = self
            .conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(|e| self.corrupt_or(e))?;
        if ok != "ok" {
            problems.push(format!("quick_check: {ok}"));
        }
        Ok(problems)
    }

    fn keyword_search(&self, query: &str, filters: &Filters, k: usize) -> Result<Vec<(i64, f32)>> {
        self.bm25_search(query, filters, k)
    }

    fn keyword_ranking(&self) -> &'static str {
        "bm25"
    }

    /// SQLite leaves vectors to the in-memory index (`crate::vectors`), built from
    /// [`StoreBackend::vectors`].
    fn vector_search(
        &self,
        _query: &[f32],
        _filters: &Filters,
        _k: usize,
    ) -> Result<Option<Vec<(i64, f32)>>> {
        Ok(None)
    }

    /// One file on one machine: SQLite's own write lock already serialises the writers.
    fn try_lock_embedding(&self) -> Result<bool> {
        Ok(true)
    }

    fn unlock_embedding(&self) -> Result<()> {
        Ok(())
    }

    /// A connection carries its page cache and prepared statements: readers are kept.
    fn keep_between_calls(&self) -> bool {
        true
    }

    fn term_stats(&self) -> Option<super::SharedTermStats> {
        Some(self.term_stats.clone())
    }

    fn share_term_stats(&mut self, shared: super::SharedTermStats) {
        self.term_stats = shared;
    }

    // Export and import for `exai db copy`: whole documents and vectors page by page, and a
    // clean slate to copy into.

    /// Documents with an id above `after`, in id order (insertion order), `limit` at most.
    fn documents_page(&self, after: i64, limit: usize) -> Result<Vec<DocRecord>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT d.id, d.source, d.path, d.uri, d.title, d.format, d.technology, d.category, d.hash, d.bytes, d.metadata, d.indexed_at,
                    (SELECT count(*) FROM chunks c WHERE c.doc_id = d.id), {}
             FROM documents d WHERE d.id > ? ORDER BY d.id LIMIT ?",
            flagged_columns(self.version)
        ))?;
        let rows = stmt.query_map(params![after, limit as i64], doc_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Every chunk of these documents, by document and position.
    fn chunks_of_documents(&self, doc_ids: &[i64]) -> Result<Vec<ChunkRecord>> {
        let mut out = Vec::new();
        // SQLite caps the number of parameters of one statement.
        for ids in doc_ids.chunks(500) {
            let sql = format!(
                "SELECT {CHUNK_COLUMNS} FROM chunks c JOIN documents d ON d.id = c.doc_id
                 WHERE c.doc_id IN ({}) ORDER BY c.doc_id, c.position, c.id",
                vec!["?"; ids.len()].join(",")
            );
            let mut stmt = self.conn.prepare(&sql)?;
            let rows = stmt.query_map(params_from_iter(ids.iter()), chunk_from_row)?;
            out.extend(rows.collect::<rusqlite::Result<Vec<_>>>()?);
        }
        Ok(out)
    }

    /// Vectors by text hash, in hash order, `limit` from the one after `after`.
    fn vectors_page(&self, after: &str, limit: usize) -> Result<Vec<(String, Vec<f32>)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT text_hash, vector FROM embeddings WHERE text_hash > ? ORDER BY text_hash LIMIT ?",
        )?;
        let rows = stmt.query_map(params![after, limit as i64], |r| {
            let blob: Vec<u8> = r.get(1)?;
            Ok((r.get::<_, String>(0)?, decode_vector(&blob)))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The vector stored for a chunk text.
    fn vector(&self, text_hash: &str) -> Result<Option<Vec<f32>>> {
        Ok(self
            .conn
            .query_row(
                "SELECT vector FROM embeddings WHERE text_hash = ?",
                [text_hash],
                |r| r.get::<_, Vec<u8>>(0),
            )
            .optional()?
            .map(|b| decode_vector(&b)))
    }

    fn import_vectors(&mut self, vectors: &[(String, Vec<f32>)]) -> Result<()> {
        self.put_vectors(vectors)
    }

    /// Vectors stored (one per distinct chunk text, orphans included).
    fn count_vectors(&self) -> Result<u64> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM embeddings", [], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Empty the knowledge base (sources, documents, chunks, keyword index, vectors and the
    /// model identity) in one transaction, keeping the schema: the destination of a copy.
    fn clear_for_import(&mut self) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(
            "INSERT INTO chunks_fts(chunks_fts) VALUES ('delete-all');
             DELETE FROM chunks; DELETE FROM documents; DELETE FROM fetched_pages; DELETE FROM sources; DELETE FROM embeddings;
             DELETE FROM meta WHERE key IN ('embed_model', 'embed_backends');",
        )?;
        tx.execute(BUMP_GENERATION, [])?;
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SharedLogic;

    fn doc<'a>(
        path: &'a str,
        hash: &'a str,
        meta: &'a serde_json::Map<String, serde_json::Value>,
    ) -> NewDocument<'a> {
        NewDocument {
            source: "s",
            path,
            uri: None,
            title: "Title",
            format: "markdown",
            technology: "rust",
            category: "guides",
            hash,
            bytes: 10,
            metadata: meta,
            flagged: Flagged {
                comment: 2,
                ..Flagged::default()
            },
        }
    }

    fn chunk(position: usize, text: &str) -> NewChunk {
        NewChunk {
            position,
            section: "Intro".into(),
            text: text.into(),
            tokens: 3,
            doc_type: DocType::Text,
        }
    }

    #[test]
    fn replace_search_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(&dir.path().join("kb.sqlite")).unwrap();
        store.upsert_source("s", &["/x".into()], "rust").unwrap();
        let meta = serde_json::Map::new();
        store
            .replace_documents(&[(
                doc("a.md", "h1", &meta),
                vec![
                    chunk(0, "ownership moves values"),
                    chunk(1, "borrowing rules"),
                ],
            )])
            .unwrap();
        let g1 = store.generation().unwrap();
        let hits = store
            .keyword_search("ownership", &Filters::default(), 10)
            .unwrap();
        assert_eq!(hits.len(), 1);
        // Replacing keeps one copy and drops the old FTS rows.
        store
            .replace_documents(&[(
                doc("a.md", "h2", &meta),
                vec![chunk(0, "lifetimes annotate references")],
            )])
            .unwrap();
        assert!(store.generation().unwrap() > g1);
        assert!(
            store
                .keyword_search("ownership", &Filters::default(), 10)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store
                .keyword_search("lifetimes", &Filters::default(), 10)
                .unwrap()
                .len(),
            1
        );
        assert_eq!(store.totals().unwrap(), (1, 1));
        // Filters.
        let f = Filters {
            sources: vec!["other".into()],
            ..Default::default()
        };
        assert!(
            store
                .keyword_search("lifetimes", &f, 10)
                .unwrap()
                .is_empty()
        );
        let f = Filters {
            path_prefix: Some("a.".into()),
            ..Default::default()
        };
        assert_eq!(store.keyword_search("lifetimes", &f, 10).unwrap().len(), 1);
        // Vectors keyed by text hash; model identity guarded.
        let missing = store.texts_without_vectors(10).unwrap();
        assert_eq!(missing.len(), 1);
        store.claim_embed_model("m:3:f32").unwrap();
        store
            .put_vectors(&[(missing[0].0.clone(), vec![1.0, 0.0, 0.0])])
            .unwrap();
        assert_eq!(store.count_chunks_without_vectors().unwrap(), 0);
        assert!(matches!(
            store.claim_embed_model("other:3:f32"),
            Err(KbError::ModelMismatch { .. })
        ));
        assert!(store.embed_backends().unwrap().is_empty());
        for backend in ["onnx", "candle", "onnx"] {
            store.record_embed_backend(backend).unwrap();
        }
        assert_eq!(store.embed_backends().unwrap(), ["onnx", "candle"]);
        assert_eq!(store.vectors().unwrap()[0].1, vec![1.0, 0.0, 0.0]);
        assert_eq!(store.remove_source("s").unwrap(), 1);
        assert_eq!(store.totals().unwrap(), (0, 0));
        assert!(
            store
                .keyword_search("lifetimes", &Filters::default(), 10)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_version_1_file_reads_with_zero_counts_and_migrates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kb.sqlite");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(&format!(
                "{SCHEMA_V1} INSERT INTO meta(key, value) VALUES ('schema_version', '1'), ('generation', '0');
                 INSERT INTO sources(name, created_at, updated_at) VALUES ('s', 't', 't');
                 INSERT INTO documents(source, path, title, format, technology, category, hash, bytes, indexed_at)
                 VALUES ('s', 'a.md', 'A', 'markdown', 'rust', 'guides', 'h', 1, 't');"
            ))
            .unwrap();
        }
        let old = SqliteStore::open_readonly(&path).unwrap();
        assert_eq!(old.schema_version().unwrap(), 1);
        assert_eq!(old.sources().unwrap()[0].flagged, Flagged::default());
        assert_eq!(old.sources().unwrap()[0].origin, serde_json::json!({}));
        assert!(old.page_states("s").unwrap().is_empty());
        assert_eq!(
            old.documents_page(0, 10).unwrap()[0].flagged,
            Flagged::default()
        );
        drop(old);
        let mut store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        let meta = serde_json::Map::new();
        store
            .replace_documents(&[(doc("a.md", "h2", &meta), vec![chunk(0, "text")])])
            .unwrap();
        let flagged = Flagged {
            comment: 2,
            ..Flagged::default()
        };
        assert_eq!(store.sources().unwrap()[0].flagged, flagged);
        assert_eq!(
            store
                .find_document(None, Some(("s", "a.md")))
                .unwrap()
                .unwrap()
                .flagged,
            flagged
        );
    }

    #[test]
    fn not_a_database_is_reported_as_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kb.sqlite");
        std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
        let err = SqliteStore::open(&path).err().unwrap();
        assert!(matches!(err, KbError::Corrupt { .. }), "{err}");
    }
}
