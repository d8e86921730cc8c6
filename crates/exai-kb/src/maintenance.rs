//! Maintenance of the knowledge-base database: verify (SQLite integrity, FTS consistency,
//! vectors), compact, rebuild derived indexes and statistics. The operations toolkit
//! (`exai db …`) drives these; each works while a daemon serves (WAL: readers never block).

use rusqlite::OptionalExtension;
use serde::Serialize;

use crate::error::Result;
use crate::store::{
    SCHEMA_VERSION, SharedLogic, SqliteStore, StoreBackend, dimension_problems,
    pending_vectors_warning,
};

/// What `exai db verify` found. `problems` fail the check; `warnings` do not.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub schema_version: i64,
    /// `integrity_check` (full) or `quick_check`.
    pub integrity: String,
    pub documents: u64,
    pub chunks: u64,
    /// Chunks with a row in the keyword index.
    pub fts_rows: u64,
    /// Vectors stored (one per distinct chunk text).
    pub vectors: u64,
    /// The dimension every vector should have (from the stored model identity).
    pub expected_dim: Option<usize>,
    /// Distinct vector dimensions found, with their counts.
    pub dims: Vec<(usize, u64)>,
    pub chunks_without_vectors: u64,
    /// Vectors no chunk refers to any more (`exai db compact` removes them).
    pub orphan_vectors: u64,
    pub embed_model: Option<String>,
    /// Every committed change bumps it; the in-memory vector index is rebuilt when it moves.
    pub generation: u64,
    /// The HNSW index file next to the database (`kb.sqlite.ann`).
    pub ann: AnnStatus,
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
}

/// The ANN index file: whether it is there and what it was built from. It is derived, so a
/// stale or corrupt one is a warning (search scans exactly and rebuilds it), not a problem.
#[derive(Debug, Clone, Serialize)]
pub struct AnnStatus {
    pub present: bool,
    /// The store generation it was built from.
    pub generation: Option<u64>,
    pub vectors: Option<u64>,
    pub model: Option<String>,
    /// Built from the store as it is now.
    pub fresh: bool,
    /// Why it cannot be used, when it is corrupt.
    pub corrupt: Option<String>,
}

impl AnnStatus {
    /// One line for `exai db verify`.
    pub fn describe(&self, current_generation: u64) -> String {
        match (&self.corrupt, self.generation) {
            (Some(why), _) => format!("corrupt ({why}); rebuilt on next use"),
            (None, Some(g)) => format!(
                "{} vectors, built from generation {g} (store: {current_generation}), {}",
                self.vectors.unwrap_or(0),
                if self.fresh {
                    "fresh"
                } else {
                    "stale; rebuilt on next use"
                }
            ),
            (None, None) => {
                "absent (semantic search scans exactly, or builds it above kb.ann_min_vectors)"
                    .into()
            }
        }
    }
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// What `exai db compact` did.
#[derive(Debug, Clone, Serialize)]
pub struct CompactReport {
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub orphan_vectors_removed: u64,
}

/// Sizes and counts for `exai db stats`.
#[derive(Debug, Clone, Serialize)]
pub struct DbStats {
    pub schema_version: i64,
    pub page_size: u64,
    pub pages: u64,
    pub free_pages: u64,
    pub sources: u64,
    pub documents: u64,
    pub chunks: u64,
    pub vectors: u64,
    pub distinct_chunk_texts: u64,
    pub text_bytes: u64,
    pub embed_model: Option<String>,
    pub generation: u64,
}

/// The dimension in a model identity `name:dim:precision` (older files: `name:dim`).
pub fn identity_dim(identity: &str) -> Option<usize> {
    let mut parts = identity.rsplit(':');
    let last = parts.next()?;
    match last.parse() {
        Ok(dim) => Some(dim),
        Err(_) => parts.next()?.parse().ok(),
    }
}

impl SqliteStore {
    fn count(&self, sql: &str) -> Result<u64> {
        let n: i64 = self
            .conn
            .query_row(sql, [], |r| r.get(0))
            .map_err(|e| self.corrupt_or(e))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Check the database: SQLite's own integrity check (`full`) or quick check, foreign keys,
    /// the keyword index against the chunks, and the vectors' count and dimension.
    pub fn verify(&self, full: bool) -> Result<VerifyReport> {
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        let pragma = if full {
            "integrity_check"
        } else {
            "quick_check"
        };
        problems.extend(self.integrity_problems(pragma)?);
        let schema_version = self.schema_version()?;
        if schema_version != SCHEMA_VERSION {
            problems.push(format!(
                "schema version {schema_version}, this build writes {SCHEMA_VERSION}; run `exai db migrate`"
            ));
        }
        let documents = self.count("SELECT count(*) FROM documents")?;
        let chunks = self.count("SELECT count(*) FROM chunks")?;
        // A contentless FTS5 table keeps one size row per indexed chunk.
        let fts_rows = self.count("SELECT count(*) FROM chunks_fts_docsize")?;
        problems.extend(self.keyword_index_problems()?);
        let vectors = self.count("SELECT count(*) FROM embeddings")?;
        let embed_model = self.embed_model()?;
        let expected_dim = embed_model.as_deref().and_then(identity_dim);
        let dims = self.vector_dims()?;
        problems.extend(dimension_problems(expected_dim, &dims));
        let chunks_without_vectors = self.count_chunks_without_vectors()?;
        warnings.extend(pending_vectors_warning(
            chunks_without_vectors,
            embed_model.is_some(),
        ));
        let orphan_vectors = self.count(
            "SELECT count(*) FROM embeddings WHERE text_hash NOT IN (SELECT text_hash FROM chunks)",
        )?;
        if orphan_vectors > 0 {
            warnings.push(format!(
                "{orphan_vectors} vector(s) belong to no chunk; `exai db compact` removes them"
            ));
        }
        let generation = self.generation()?;
        let ann = self.ann_status(generation, embed_model.as_deref());
        if ann.present && !ann.fresh {
            warnings.push(format!("ANN index {}", ann.describe(generation)));
        }
        Ok(VerifyReport {
            schema_version,
            integrity: pragma.into(),
            documents,
            chunks,
            fts_rows,
            vectors,
            expected_dim,
            dims,
            chunks_without_vectors,
            orphan_vectors,
            embed_model,
            generation,
            ann,
            problems,
            warnings,
        })
    }

    /// What SQLite's own check (`pragma`: `integrity_check` or `quick_check`) and its foreign
    /// key check find.
    fn integrity_problems(&self, pragma: &str) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        let mut stmt = self
            .conn
            .prepare(&format!("PRAGMA {pragma}"))
            .map_err(|e| self.corrupt_or(e))?;
        let lines: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.corrupt_or(e))?;
        drop(stmt);
        if lines.len() != 1 || lines[0] != "ok" {
            let shown: Vec<&str> = lines.iter().take(5).map(String::as_str).collect();
            problems.push(format!(
                "{pragma} found {} problem(s): {}",
                lines.len(),
                shown.join("; ")
            ));
        }
        let fk: Vec<String> = {
            let mut stmt = self.conn.prepare("PRAGMA foreign_key_check")?;
            stmt.query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        if !fk.is_empty() {
            problems.push(format!(
                "{} row(s) violate foreign keys (tables: {})",
                fk.len(),
                fk.join(", ")
            ));
        }
        Ok(problems)
    }

    /// The keyword index against the chunks: rows missing or stray, and FTS5's own check.
    fn keyword_index_problems(&self) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        let missing = self.count(
            "SELECT count(*) FROM chunks WHERE id NOT IN (SELECT id FROM chunks_fts_docsize)",
        )?;
        let stray = self.count(
            "SELECT count(*) FROM chunks_fts_docsize WHERE id NOT IN (SELECT id FROM chunks)",
        )?;
        if missing > 0 {
            problems.push(format!(
                "{missing} chunk(s) missing from the keyword index; run `exai db reindex`"
            ));
        }
        if stray > 0 {
            problems.push(format!(
                "{stray} keyword-index row(s) without a chunk; run `exai db reindex`"
            ));
        }
        // FTS5's own check runs as a write; a read-only connection skips it (the row
        // comparison above still ran).
        match self.conn.execute(
            "INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('integrity-check', 0)",
            [],
        ) {
            Ok(_) => {}
            Err(rusqlite::Error::SqliteFailure(f, _))
                if f.code == rusqlite::ErrorCode::ReadOnly => {}
            Err(e) => problems.push(format!(
                "keyword index integrity check failed ({e}); run `exai db reindex`"
            )),
        }
        Ok(problems)
    }

    /// Distinct vector dimensions with their counts, most common first.
    fn vector_dims(&self) -> Result<Vec<(usize, u64)>> {
        let mut stmt = self.conn.prepare(
            "SELECT length(vector) / 4, count(*) FROM embeddings GROUP BY 1 ORDER BY 2 DESC",
        )?;
        let dims = stmt
            .query_map([], |r| {
                let d: i64 = r.get(0)?;
                let n: i64 = r.get(1)?;
                Ok((
                    usize::try_from(d).unwrap_or(0),
                    u64::try_from(n).unwrap_or(0),
                ))
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(dims)
    }

    /// The ANN file beside the database: absent, fresh (built from this generation's vectors
    /// of this model), stale or corrupt.
    fn ann_status(&self, generation: u64, embed_model: Option<&str>) -> AnnStatus {
        match crate::ann::inspect(&crate::ann::ann_path(self.path())) {
            Ok(None) => AnnStatus {
                present: false,
                generation: None,
                vectors: None,
                model: None,
                fresh: false,
                corrupt: None,
            },
            Ok(Some(h)) => AnnStatus {
                present: true,
                fresh: h.generation == generation && Some(h.model.as_str()) == embed_model,
                generation: Some(h.generation),
                vectors: Some(h.vectors),
                model: Some(h.model),
                corrupt: None,
            },
            Err(why) => AnnStatus {
                present: true,
                generation: None,
                vectors: None,
                model: None,
                fresh: false,
                corrupt: Some(why),
            },
        }
    }

    fn file_bytes(&self) -> u64 {
        ["", "-wal"]
            .iter()
            .map(|suffix| {
                let mut name = self.path().as_os_str().to_owned();
                name.push(suffix);
                std::fs::metadata(name).map_or(0, |m| m.len())
            })
            .sum()
    }

    /// Remove vectors no chunk uses, merge the keyword index's segments, let SQLite refresh its
    /// statistics, rewrite the file without free pages and truncate the WAL.
    pub fn compact(&mut self) -> Result<CompactReport> {
        let bytes_before = self.file_bytes();
        let removed = self.conn.execute(
            "DELETE FROM embeddings WHERE text_hash NOT IN (SELECT text_hash FROM chunks)",
            [],
        )?;
        if removed > 0 {
            self.bump_generation()?;
        }
        self.conn.execute(
            "INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('optimize', 0)",
            [],
        )?;
        self.conn.execute_batch("PRAGMA optimize; VACUUM;")?;
        self.checkpoint()?;
        Ok(CompactReport {
            bytes_before,
            bytes_after: self.file_bytes(),
            orphan_vectors_removed: removed as u64,
        })
    }

    /// Fold the WAL into the main file and truncate it.
    pub fn checkpoint(&self) -> Result<()> {
        // The pragma returns a row; a busy reader only means a partial checkpoint.
        let _busy: Option<i64> = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
            .optional()?;
        Ok(())
    }

    /// Rebuild what is derived from the chunks: the keyword index (from the stored texts),
    /// SQLite's own indexes and statistics; bumps the generation so every process rebuilds its
    /// in-memory vector index. Returns the chunks indexed.
    pub fn reindex(&mut self) -> Result<u64> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('delete-all', 0)",
            [],
        )?;
        let n = tx.execute(
            "INSERT INTO chunks_fts(rowid, title, section, text)
             SELECT c.id, d.title, c.section, c.text FROM chunks c JOIN documents d ON d.id = c.doc_id",
            [],
        )?;
        tx.execute_batch("REINDEX; ANALYZE;")?;
        tx.execute(crate::store::sqlite::BUMP_GENERATION, [])?;
        tx.commit()?;
        self.conn.execute(
            "INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('optimize', 0)",
            [],
        )?;
        Ok(n as u64)
    }

    /// Sizes and counts.
    pub fn stats(&self) -> Result<DbStats> {
        let pragma = |name: &str| -> Result<u64> {
            let v: i64 = self
                .conn
                .query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))?;
            Ok(u64::try_from(v).unwrap_or(0))
        };
        Ok(DbStats {
            schema_version: self.schema_version()?,
            page_size: pragma("page_size")?,
            pages: pragma("page_count")?,
            free_pages: pragma("freelist_count")?,
            sources: self.count("SELECT count(*) FROM sources")?,
            documents: self.count("SELECT count(*) FROM documents")?,
            chunks: self.count("SELECT count(*) FROM chunks")?,
            vectors: self.count("SELECT count(*) FROM embeddings")?,
            distinct_chunk_texts: self.count("SELECT count(DISTINCT text_hash) FROM chunks")?,
            text_bytes: self.count("SELECT coalesce(sum(length(text)), 0) FROM chunks")?,
            embed_model: self.embed_model()?,
            generation: self.generation()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NewChunk;
    use crate::store::NewDocument;

    fn filled(dir: &std::path::Path) -> SqliteStore {
        let mut store = SqliteStore::open(&dir.join("kb.sqlite")).unwrap();
        store.upsert_source("s", &[], "rust").unwrap();
        let meta = serde_json::Map::new();
        let doc = NewDocument {
            source: "s",
            path: "a.md",
            uri: None,
            title: "Ownership",
            format: "markdown",
            technology: "rust",
            category: "concepts",
            hash: "h",
            bytes: 10,
            metadata: &meta,
            flagged: Default::default(),
        };
        let chunk = |position, section: &str, text: &str| NewChunk {
            position,
            section: section.into(),
            text: text.into(),
            tokens: 6,
            doc_type: crate::model::DocType::Text,
        };
        let chunks = vec![
            chunk(0, "Moves", "ownership moves values between bindings"),
            chunk(1, "Borrows", "references borrow without taking ownership"),
        ];
        store.replace_documents(&[(doc, chunks)]).unwrap();
        store
    }

    #[test]
    fn identity_dims() {
        assert_eq!(identity_dim("all-MiniLM-L6-v2:384:int8"), Some(384));
        assert_eq!(identity_dim("all-MiniLM-L6-v2:384"), Some(384));
        assert_eq!(identity_dim("x"), None);
    }

    #[test]
    fn verify_finds_a_broken_keyword_index_and_reindex_mends_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = filled(dir.path());
        let report = store.verify(true).unwrap();
        assert!(report.ok(), "{:?}", report.problems);
        assert_eq!(
            (report.documents, report.chunks, report.fts_rows),
            (1, 2, 2)
        );
        // Drop one chunk's keyword row behind the store's back.
        let id: i64 = store
            .conn
            .query_row("SELECT min(id) FROM chunks", [], |r| r.get(0))
            .unwrap();
        store
            .conn
            .execute("DELETE FROM chunks_fts WHERE rowid = ?", [id])
            .unwrap();
        let report = store.verify(false).unwrap();
        assert!(!report.ok());
        assert!(
            report.problems[0].contains("missing from the keyword index"),
            "{:?}",
            report.problems
        );
        assert_eq!(store.reindex().unwrap(), 2);
        assert!(store.verify(true).unwrap().ok());
        assert_eq!(
            store
                .keyword_search("borrow", &Default::default(), 5)
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn verify_checks_vector_dimensions_and_compact_drops_orphans() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = filled(dir.path());
        store.claim_embed_model("m:3:fp32").unwrap();
        let hash: String = store
            .conn
            .query_row("SELECT text_hash FROM chunks LIMIT 1", [], |r| r.get(0))
            .unwrap();
        store
            .put_vectors(&[(hash, vec![1.0, 0.0, 0.0]), ("gone".into(), vec![0.0; 4])])
            .unwrap();
        let report = store.verify(false).unwrap();
        assert_eq!(report.vectors, 2);
        assert_eq!(report.orphan_vectors, 1);
        assert_eq!(report.chunks_without_vectors, 1);
        assert!(
            report.problems.iter().any(|p| p.contains("dimension 3")),
            "{:?}",
            report.problems
        );
        let compacted = store.compact().unwrap();
        assert_eq!(compacted.orphan_vectors_removed, 1);
        let report = store.verify(false).unwrap();
        assert!(report.ok(), "{:?}", report.problems);
        assert_eq!(report.dims, [(3, 1)]);
        let stats = store.stats().unwrap();
        assert_eq!((stats.documents, stats.chunks, stats.vectors), (1, 2, 1));
    }

    #[test]
    fn verify_reports_the_ann_index_freshness() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = filled(dir.path());
        store.claim_embed_model("m:3:fp32").unwrap();
        let hashes: Vec<String> = {
            let mut stmt = store.conn.prepare("SELECT text_hash FROM chunks").unwrap();
            stmt.query_map([], |r| r.get(0))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap()
        };
        store
            .put_vectors(&[
                (hashes[0].clone(), vec![1.0, 0.0, 0.0]),
                (hashes[1].clone(), vec![0.0, 1.0, 0.0]),
            ])
            .unwrap();
        let absent = store.verify(false).unwrap().ann;
        assert!(!absent.present);
        assert!(
            crate::vectors::refresh_ann(&store, store.path(), 3)
                .unwrap()
                .is_none()
        );
        let built = crate::vectors::refresh_ann(&store, store.path(), 1)
            .unwrap()
            .unwrap();
        let report = store.verify(false).unwrap();
        assert!(report.ann.present && report.ann.fresh, "{:?}", report.ann);
        assert_eq!(report.ann.generation, Some(built.generation));
        assert_eq!(report.ann.vectors, Some(2));
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        // Any committed change makes it stale: a warning, not a problem.
        store.reindex().unwrap();
        let report = store.verify(false).unwrap();
        assert!(report.ok());
        assert!(!report.ann.fresh);
        assert!(
            report.warnings.iter().any(|w| w.contains("stale")),
            "{:?}",
            report.warnings
        );
        assert!(
            crate::vectors::refresh_ann(&store, store.path(), 1)
                .unwrap()
                .is_some()
        );
        assert!(store.verify(false).unwrap().ann.fresh);
        std::fs::write(crate::ann::ann_path(store.path()), b"junk").unwrap();
        let report = store.verify(false).unwrap();
        assert!(report.ok() && report.ann.corrupt.is_some());
        assert!(report.ann.describe(report.generation).contains("corrupt"));
    }
}
