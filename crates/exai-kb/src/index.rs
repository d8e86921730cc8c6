//! Indexing: discover → hash (unchanged files cost one read) → parse and chunk in parallel →
//! write in transactions (keyword search sees them at once) → embed the texts that have no
//! vector yet (each distinct chunk text once: vectors are keyed by the text's hash), longest
//! first in batches, each committed (a killed run resumes where it stopped).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use crate::Kb;
use crate::chunk::{self, ChunkOptions};
use crate::error::{KbError, Result};
use crate::ingest::{self, Candidate, SkipReason, UntrustedFilter, WalkOptions};
use crate::model::{Format, NewChunk, ParsedDoc};
use crate::store::{NewDocument, Store};

/// What to index.
#[derive(Debug, Clone, Default)]
pub struct IndexRequest {
    pub roots: Vec<PathBuf>,
    pub source: String,
    pub technology: Option<String>,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub dry_run: bool,
    /// Remove documents whose files are gone.
    pub prune: bool,
    /// Drop every vector first and embed again (after changing the model).
    pub reembed: bool,
    /// Skip the embedding phase (keyword-only now; `exai index` again later embeds).
    pub skip_embedding: bool,
}

/// Progress events, for bars and MCP progress notifications.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    Discovered {
        files: usize,
        skipped: usize,
    },
    Files {
        done: usize,
        total: usize,
        chunks: usize,
    },
    Embedding {
        done: usize,
        total: usize,
    },
    /// A crawl or download: pages fetched (or found unchanged), still queued, failed.
    Fetching {
        fetched: usize,
        queued: usize,
        failed: usize,
    },
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct IndexReport {
    pub source: String,
    pub dry_run: bool,
    pub files_seen: usize,
    pub unchanged: usize,
    pub added: usize,
    pub updated: usize,
    pub removed: usize,
    pub skipped: BTreeMap<String, usize>,
    /// Files read per format.
    pub by_format: BTreeMap<String, usize>,
    pub chunks_written: usize,
    /// Chunks past `kb.max_chunks_per_file` that were left out.
    pub chunks_dropped: usize,
    pub texts_embedded: usize,
    pub texts_without_vectors: u64,
    pub embedding_model: Option<String>,
    pub seconds: f64,
    pub chunks_per_second: f64,
    /// Untrusted spans flagged in the files read (`kb.untrusted_content` says what became of
    /// them).
    pub flagged: crate::ingest::Flagged,
    /// With `dry_run`: each file that would be added, updated, removed or skipped, and why
    /// (unchanged files are only counted).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<PlannedFile>,
}

/// What indexing would do with one file or page (a dry run's answer).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedFile {
    pub path: String,
    /// `add`, `update`, `remove` or `skip`.
    pub action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl IndexReport {
    /// Note, in a dry run, what would become of `path`.
    pub fn plan(&mut self, path: &str, action: &'static str, reason: Option<String>) {
        if self.dry_run {
            self.plan.push(PlannedFile {
                path: path.to_string(),
                action,
                reason,
            });
        }
    }
}

const WRITE_BATCH: usize = 64;
/// Texts per embedder call, each call's vectors committed at once (a killed run loses at most
/// one batch).
const EMBED_BATCH: usize = 64;
/// Texts without vectors read from the store at a time. Finding them scans every chunk, so
/// reading many per query keeps that scan off the embedding's critical path on large corpora;
/// and sorting a large window by length before cutting it into batches leaves less padding in
/// each batch than sorting only within one.
const EMBED_FETCH: usize = 16 * EMBED_BATCH;

pub(crate) struct Prepared {
    pub(crate) rel: String,
    uri: String,
    format: Format,
    pub(crate) hash: String,
    bytes: u64,
    doc: ParsedDoc,
    pub(crate) chunks: Vec<NewChunk>,
    dropped: usize,
}

/// A file's content hash as stored: its bytes and what the untrusted-text filter does to them,
/// so a file indexed under another `kb.untrusted_content` or other patterns is read again.
pub(crate) fn content_hash(bytes: &[u8], filter: &UntrustedFilter) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(bytes);
    hasher.update(filter.fingerprint().as_bytes());
    hasher.finalize().to_hex().to_string()
}

fn prepare(
    c: &Candidate,
    opts: &ChunkOptions,
    max_bytes: u64,
    filter: &UntrustedFilter,
) -> std::result::Result<Prepared, SkipReason> {
    // Bounded: a file that grew past the cap since it was found is skipped, not read whole.
    let bytes = exai_core::access::read_capped(&c.path, max_bytes)
        .map_err(|_| SkipReason::Unreadable)?
        .ok_or(SkipReason::TooLarge)?;
    let uri = c.path.display().to_string();
    prepare_bytes(&c.rel, uri, c.format, &bytes, opts, filter)
}

/// Parse and chunk one document's bytes (a file's, or a page a fetching layer handed over).
pub(crate) fn prepare_bytes(
    rel: &str,
    uri: String,
    format: Format,
    bytes: &[u8],
    opts: &ChunkOptions,
    filter: &UntrustedFilter,
) -> std::result::Result<Prepared, SkipReason> {
    if let Some(reason) = ingest::content_skip(format, bytes) {
        return Err(reason);
    }
    let hash = content_hash(bytes, filter);
    let doc = ingest::parse_bytes(format, bytes, rel, filter)?;
    let (chunks, dropped) = chunk::chunk(&doc, opts);
    if chunks.is_empty() {
        return Err(SkipReason::Empty);
    }
    Ok(Prepared {
        rel: rel.to_string(),
        uri,
        format,
        hash,
        bytes: bytes.len() as u64,
        doc,
        chunks,
        dropped,
    })
}

/// What every batch of one indexing run shares.
pub(crate) struct Batch<'a> {
    pub(crate) req: &'a IndexRequest,
    /// Content hashes of the source's stored documents, by path.
    pub(crate) known: &'a std::collections::HashMap<String, String>,
    /// The source's technology (a document's own metadata may name another).
    pub(crate) technology: &'a str,
}

impl Batch<'_> {
    /// Count prepared files into the report (added or updated, by format, chunks written and
    /// dropped), warning about files cut at `kb.max_chunks_per_file`.
    pub(crate) fn count(&self, writes: &[Prepared], report: &mut IndexReport) {
        for p in writes {
            *report
                .by_format
                .entry(p.format.as_str().to_string())
                .or_default() += 1;
            if self.known.contains_key(&p.rel) {
                report.updated += 1;
                report.plan(&p.rel, "update", None);
            } else {
                report.added += 1;
                report.plan(&p.rel, "add", None);
            }
            report.chunks_written += p.chunks.len();
            report.flagged.add(&p.doc.flagged);
            report.chunks_dropped += p.dropped;
            if p.dropped > 0 {
                tracing::warn!(file = %p.rel, dropped = p.dropped, "file exceeds kb.max_chunks_per_file; the rest of it is not indexed");
            }
        }
    }
}

fn file_hash(c: &Candidate, max_bytes: u64, filter: &UntrustedFilter) -> Option<String> {
    exai_core::access::read_capped(&c.path, max_bytes)
        .ok()
        .flatten()
        .map(|b| content_hash(&b, filter))
}

/// A source name is short and path-free: `react`, `rust-book`, `react@18.2.0`.
pub(crate) fn check_source_name(source: &str) -> Result<()> {
    if source.trim().is_empty() || source.contains(['/', '\\']) {
        return Err(KbError::Invalid(format!(
            "invalid source name `{source}`: use a short name like `react`, `rust-book` or `react@18.2.0`"
        )));
    }
    Ok(())
}

/// `file` relative to the root it was found under, for reports.
fn relative_to(file: &std::path::Path, roots: &[PathBuf]) -> String {
    roots
        .iter()
        .find_map(|r| file.strip_prefix(r).ok())
        .filter(|rel| !rel.as_os_str().is_empty())
        .unwrap_or(file)
        .display()
        .to_string()
}

/// The text an embedder sees for a chunk: title and section give it context.
pub fn embedding_text(title: &str, section: &str, text: &str) -> String {
    match (title.is_empty(), section.is_empty()) {
        (false, false) => format!("{title} — {section}\n{text}"),
        (false, true) => format!("{title}\n{text}"),
        _ => text.to_string(),
    }
}

impl Kb {
    /// Run one indexing request: check it, find the files, write the changed ones batch by
    /// batch, drop the ones gone (`prune`), then embed the new texts and refresh the ANN index.
    /// `progress` is called from the indexing thread.
    pub fn index(
        &self,
        req: &IndexRequest,
        progress: &(dyn Fn(&Progress) + Sync),
        cancel: &AtomicBool,
    ) -> Result<IndexReport> {
        let started = Instant::now();
        let roots = self.checked_roots(req)?;
        let walk = WalkOptions {
            include: req.include.clone(),
            exclude: req.exclude.clone(),
            max_file_bytes: self.options.max_file_bytes,
            access: self.options.access.clone(),
        };
        let discovery = ingest::discover(&roots, &walk)?;
        let mut report = IndexReport {
            source: req.source.clone(),
            dry_run: req.dry_run,
            ..Default::default()
        };
        for (reason, files) in &discovery.skipped {
            *report
                .skipped
                .entry(reason.as_str().to_string())
                .or_default() += files.len();
            for file in files {
                report.plan(
                    &relative_to(file, &roots),
                    "skip",
                    Some(reason.as_str().to_string()),
                );
            }
        }
        report.files_seen = discovery.candidates.len();
        progress(&Progress::Discovered {
            files: discovery.candidates.len(),
            skipped: discovery.skipped.values().map(Vec::len).sum(),
        });

        let mut store = self.writer()?;
        let known = store.document_hashes(&req.source)?;
        let technology = req.technology.clone().unwrap_or_else(|| req.source.clone());
        if !req.dry_run {
            let root_names: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
            store.upsert_source(&req.source, &root_names, &technology)?;
        }
        let batch = Batch {
            req,
            known: &known,
            technology: &technology,
        };
        let total = discovery.candidates.len();
        let mut done = 0usize;
        let mut chunks_total = 0usize;
        for files in discovery.candidates.chunks(WRITE_BATCH) {
            if cancel.load(Ordering::Relaxed) {
                return Err(KbError::Cancelled);
            }
            chunks_total += self.index_batch(&mut store, &batch, files, &mut report)?;
            done += files.len();
            progress(&Progress::Files {
                done,
                total,
                chunks: chunks_total,
            });
        }
        if req.prune {
            let seen: std::collections::HashSet<&str> = discovery
                .candidates
                .iter()
                .map(|c| c.rel.as_str())
                .collect();
            let gone: Vec<String> = known
                .keys()
                .filter(|k| !seen.contains(k.as_str()))
                .cloned()
                .collect();
            if req.dry_run {
                for rel in &gone {
                    report.plan(rel, "remove", Some("gone from the source".into()));
                }
                report.removed += gone.len();
            } else {
                report.removed += store.delete_documents(&req.source, &gone)? as usize;
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        report.chunks_per_second = if elapsed > 0.0 {
            report.chunks_written as f64 / elapsed
        } else {
            0.0
        };
        self.after_writing(&mut store, req, progress, cancel, &mut report)?;
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }

    /// The request's roots, resolved, after checking its source name; a private root is
    /// refused.
    fn checked_roots(&self, req: &IndexRequest) -> Result<Vec<PathBuf>> {
        check_source_name(&req.source)?;
        if req.roots.is_empty() {
            return Err(KbError::Invalid("give at least one path to index".into()));
        }
        let mut roots = Vec::new();
        for r in &req.roots {
            let root = std::fs::canonicalize(r).map_err(|source| KbError::Io {
                path: r.clone(),
                source,
            })?;
            if let Some(reason) = self.options.access.named_root_reason(&root) {
                return Err(KbError::Invalid(format!(
                    "`{}` is private ({reason}) and is never indexed; to index it on purpose, add \
                     it to tools.allowed_private_paths",
                    r.display()
                )));
            }
            roots.push(root);
        }
        Ok(roots)
    }

    /// Index one batch of files: skip the unchanged, parse and chunk the others in parallel,
    /// drop the stored copy of a file that no longer yields content, and write the rest in one
    /// transaction. Returns the chunks the batch yielded.
    fn index_batch(
        &self,
        store: &mut Store,
        batch: &Batch<'_>,
        files: &[Candidate],
        report: &mut IndexReport,
    ) -> Result<usize> {
        let req = batch.req;
        // Unchanged files (same content hash) cost one read and nothing else.
        let todo: Vec<&Candidate> = files
            .iter()
            .filter(|c| match batch.known.get(&c.rel) {
                Some(old) => {
                    file_hash(c, self.options.max_file_bytes, &self.options.untrusted).as_deref()
                        != Some(old.as_str())
                }
                None => true,
            })
            .collect();
        report.unchanged += files.len() - todo.len();
        let prepared: Vec<(String, std::result::Result<Prepared, SkipReason>)> = todo
            .par_iter()
            .map(|c| {
                (
                    c.rel.clone(),
                    prepare(
                        c,
                        &self.options.chunk,
                        self.options.max_file_bytes,
                        &self.options.untrusted,
                    ),
                )
            })
            .collect();
        let mut writes = Vec::new();
        for (rel, p) in prepared {
            match p {
                Ok(p) => writes.push(p),
                Err(reason) => {
                    *report
                        .skipped
                        .entry(reason.as_str().to_string())
                        .or_default() += 1;
                    if !batch.known.contains_key(&rel) {
                        report.plan(&rel, "skip", Some(reason.as_str().to_string()));
                    } else if req.dry_run {
                        let why = format!("no longer yields content: {}", reason.as_str());
                        report.plan(&rel, "remove", Some(why));
                        report.removed += 1;
                    } else {
                        // The file no longer yields content: drop the stale copy.
                        report.removed += store.delete_documents(&req.source, &[rel])? as usize;
                    }
                }
            }
        }
        batch.count(&writes, report);
        if !req.dry_run && !writes.is_empty() {
            self.write_documents(store, batch, &writes)?;
        }
        Ok(writes.iter().map(|p| p.chunks.len()).sum())
    }

    /// Store prepared files with their category and technology, in one transaction.
    pub(crate) fn write_documents(
        &self,
        store: &mut Store,
        batch: &Batch<'_>,
        writes: &[Prepared],
    ) -> Result<()> {
        let req = batch.req;
        let categories: Vec<String> = writes
            .iter()
            .map(|p| {
                let explicit = p.doc.metadata.get("category").and_then(|v| v.as_str());
                self.categories.infer(&p.rel, &p.doc.title, explicit)
            })
            .collect();
        let techs: Vec<String> = writes
            .iter()
            .map(|p| {
                req.technology
                    .clone()
                    .or_else(|| {
                        p.doc
                            .metadata
                            .get("technology")
                            .and_then(|v| v.as_str())
                            .map(str::to_string)
                    })
                    .unwrap_or_else(|| batch.technology.to_string())
            })
            .collect();
        let docs: Vec<(NewDocument<'_>, Vec<NewChunk>)> = writes
            .iter()
            .zip(categories.iter().zip(&techs))
            .map(|(p, (category, tech))| {
                (
                    NewDocument {
                        source: &req.source,
                        path: &p.rel,
                        uri: Some(&p.uri),
                        title: &p.doc.title,
                        format: p.format.as_str(),
                        technology: tech,
                        category,
                        hash: &p.hash,
                        bytes: p.bytes,
                        metadata: &p.doc.metadata,
                        flagged: p.doc.flagged,
                    },
                    p.chunks.clone(),
                )
            })
            .collect();
        store.replace_documents(&docs)
    }

    /// After the files: embed the texts without a vector (all of them again with `reembed`)
    /// unless told not to, and bring the ANN index up to date.
    pub(crate) fn after_writing(
        &self,
        store: &mut Store,
        req: &IndexRequest,
        progress: &(dyn Fn(&Progress) + Sync),
        cancel: &AtomicBool,
        report: &mut IndexReport,
    ) -> Result<()> {
        if !req.dry_run && !req.skip_embedding {
            if req.reembed {
                let dropped = store.drop_vectors()?;
                tracing::info!(dropped, "dropped all vectors for re-embedding");
            }
            let (embedded, _) = self.embed_pending_with(store, progress, cancel)?;
            report.texts_embedded = embedded;
        }
        report.texts_without_vectors = store.count_texts_without_vectors()?;
        if !req.dry_run {
            // The ANN index is derived from the vectors: bring it up to date here rather than
            // leave the first search to scan exactly while it builds.
            self.refresh_ann()?;
        }
        report.embedding_model = self.embedder.as_ref().map(|e| e.identity().key());
        Ok(())
    }

    /// Embed every chunk text that has no vector, in committed batches. Returns (embedded, left).
    pub fn embed_pending(
        &self,
        progress: &(dyn Fn(&Progress) + Sync),
        cancel: &AtomicBool,
    ) -> Result<(usize, u64)> {
        let mut store = self.writer()?;
        self.embed_pending_with(&mut store, progress, cancel)
    }

    fn embed_pending_with(
        &self,
        store: &mut Store,
        progress: &(dyn Fn(&Progress) + Sync),
        cancel: &AtomicBool,
    ) -> Result<(usize, u64)> {
        let Some(embedder) = &self.embedder else {
            return Ok((0, store.count_texts_without_vectors()?));
        };
        // An index written under an older spelling of the same identity (`…:f32` for fp32)
        // keeps its key: its vectors are the ones this embedder computes.
        let key = match store.embed_model()? {
            Some(stored) if embedder.identity().matches_key(&stored) => stored,
            _ => embedder.identity().key(),
        };
        store.claim_embed_model(&key)?;
        // One process embeds a shared store at a time (the others would compute the same
        // vectors). The lock dies with its connection.
        if !store.try_lock_embedding()? {
            tracing::info!(
                "another exai process is embedding this knowledge base; its vectors appear as it commits them"
            );
            return Ok((0, store.count_texts_without_vectors()?));
        }
        let out = self.embed_loop(store, embedder, progress, cancel);
        store.unlock_embedding()?;
        out
    }

    fn embed_loop(
        &self,
        store: &mut Store,
        embedder: &std::sync::Arc<dyn exai_embed::Embedder>,
        progress: &(dyn Fn(&Progress) + Sync),
        cancel: &AtomicBool,
    ) -> Result<(usize, u64)> {
        let total = store.count_texts_without_vectors()? as usize;
        if total > 0 {
            store.record_embed_backend(embedder.backend())?;
        }
        let mut done = 0;
        progress(&Progress::Embedding { done, total });
        loop {
            if cancel.load(Ordering::Relaxed) {
                return Err(KbError::Cancelled);
            }
            let mut pending = store.texts_without_vectors(EMBED_FETCH)?;
            if pending.is_empty() {
                break;
            }
            // Longest first; byte length is a close enough proxy for word pieces here.
            pending.sort_by_key(|(_, title, section, text)| {
                std::cmp::Reverse(title.len() + section.len() + text.len())
            });
            for group in pending.chunks(EMBED_BATCH) {
                if cancel.load(Ordering::Relaxed) {
                    return Err(KbError::Cancelled);
                }
                let texts: Vec<String> = group
                    .iter()
                    .map(|(_, title, section, text)| embedding_text(title, section, text))
                    .collect();
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                let vectors = embedder
                    .embed_passages(&refs)
                    .map_err(|e| KbError::Embed(e.to_string()))?;
                if vectors.len() != group.len() {
                    return Err(KbError::Embed(format!(
                        "embedder returned {} vectors for {} texts",
                        vectors.len(),
                        group.len()
                    )));
                }
                let rows: Vec<(String, Vec<f32>)> =
                    group.iter().map(|(h, ..)| h.clone()).zip(vectors).collect();
                store.put_vectors(&rows)?;
                done += rows.len();
                progress(&Progress::Embedding {
                    done,
                    total: total.max(done),
                });
            }
        }
        Ok((done, store.count_texts_without_vectors()?))
    }
}
