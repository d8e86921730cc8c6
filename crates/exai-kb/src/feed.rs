//! Indexing documents that a fetching layer hands over rather than files the walk finds: pages
//! of a web site as a crawl fetches them. A [`Feed`] writes each batch as it comes (what a
//! stopped crawl indexed stays searchable), through the same parsing, chunking, hashing and
//! writing as [`Kb::index`], and ends like it: removals, then embedding and the ANN index.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use rayon::prelude::*;

use crate::Kb;
use crate::error::Result;
use crate::index::{Batch, IndexReport, IndexRequest, Progress, prepare_bytes};
use crate::model::Format;
use crate::store::Store;

/// One document to index: its path in the source (the key a later run finds it by), where it
/// came from (a URL), its format and its bytes.
#[derive(Debug, Clone)]
pub struct Item {
    pub path: String,
    pub uri: String,
    pub format: Format,
    pub bytes: Vec<u8>,
}

/// An indexing run fed batch by batch. Dropping it without [`Feed::finish`] keeps every batch
/// already written (there is nothing to roll back: each batch is its own transaction).
pub struct Feed<'a> {
    kb: &'a Kb,
    store: Store,
    req: IndexRequest,
    known: HashMap<String, String>,
    technology: String,
    report: IndexReport,
    started: Instant,
}

impl Kb {
    /// Start feeding documents into `req.source` (`req.roots` is not read; `roots`, e.g. the
    /// site's URL, are recorded as the source's roots).
    pub fn feed(&self, req: IndexRequest, roots: &[String]) -> Result<Feed<'_>> {
        crate::index::check_source_name(&req.source)?;
        let store = self.writer()?;
        let known = store.document_hashes(&req.source)?;
        let technology = req.technology.clone().unwrap_or_else(|| req.source.clone());
        if !req.dry_run {
            store.upsert_source(&req.source, roots, &technology)?;
        }
        let report = IndexReport {
            source: req.source.clone(),
            dry_run: req.dry_run,
            ..Default::default()
        };
        Ok(Feed {
            kb: self,
            store,
            req,
            known,
            technology,
            report,
            started: Instant::now(),
        })
    }
}

impl Feed<'_> {
    /// The store the run writes through (for the fetching layer's own records).
    pub fn store(&mut self) -> &mut Store {
        &mut self.store
    }

    /// Whether a document of this path is stored with exactly this content (same hash as
    /// these bytes would get): the caller may then skip it.
    pub fn is_unchanged(&self, path: &str, bytes: &[u8]) -> bool {
        self.known.get(path).is_some_and(|old| {
            *old == crate::index::content_hash(bytes, &self.kb.options.untrusted)
        })
    }

    /// Count documents the caller knows are unchanged (a `304 Not Modified`).
    pub fn unchanged(&mut self, documents: usize) {
        self.report.files_seen += documents;
        self.report.unchanged += documents;
    }

    /// Count a document skipped before it reached the indexer (a page that failed, was
    /// excluded, or is a duplicate), listing it in a dry run.
    pub fn skipped(&mut self, path: &str, reason: &str) {
        *self.report.skipped.entry(reason.to_string()).or_default() += 1;
        self.report.plan(path, "skip", Some(reason.to_string()));
    }

    /// Parse, chunk and write a batch of documents in one transaction; unchanged ones (same
    /// content hash) cost nothing more. Returns the chunks the batch yielded.
    pub fn add(&mut self, items: &[Item]) -> Result<usize> {
        let opts = &self.kb.options;
        self.report.files_seen += items.len();
        let todo: Vec<&Item> = items
            .iter()
            .filter(|i| !self.is_unchanged(&i.path, &i.bytes))
            .collect();
        self.report.unchanged += items.len() - todo.len();
        let prepared: Vec<_> = todo
            .par_iter()
            .map(|i| {
                let max = usize::try_from(opts.max_file_bytes).unwrap_or(usize::MAX);
                let result = if i.bytes.len() > max {
                    Err(crate::ingest::SkipReason::TooLarge)
                } else {
                    prepare_bytes(
                        &i.path,
                        i.uri.clone(),
                        i.format,
                        &i.bytes,
                        &opts.chunk,
                        &opts.untrusted,
                    )
                };
                (i.path.clone(), result)
            })
            .collect();
        let mut writes = Vec::new();
        for (path, p) in prepared {
            match p {
                Ok(p) => writes.push(p),
                Err(reason) => {
                    self.skipped(&path, reason.as_str());
                    if self.known.contains_key(&path) {
                        self.remove(&[path])?;
                    }
                }
            }
        }
        let batch = Batch {
            req: &self.req,
            known: &self.known,
            technology: &self.technology,
        };
        batch.count(&writes, &mut self.report);
        if !self.req.dry_run && !writes.is_empty() {
            self.kb.write_documents(&mut self.store, &batch, &writes)?;
        }
        for p in &writes {
            self.known.insert(p.rel.clone(), p.hash.clone());
        }
        Ok(writes.iter().map(|p| p.chunks.len()).sum())
    }

    /// Remove documents by path (pages gone from the site).
    pub fn remove(&mut self, paths: &[String]) -> Result<()> {
        let present: Vec<String> = paths
            .iter()
            .filter(|p| self.known.contains_key(*p))
            .cloned()
            .collect();
        for p in &present {
            self.report
                .plan(p, "remove", Some("gone from the source".into()));
            self.known.remove(p);
        }
        if self.req.dry_run {
            self.report.removed += present.len();
        } else if !present.is_empty() {
            self.report.removed +=
                self.store.delete_documents(&self.req.source, &present)? as usize;
        }
        Ok(())
    }

    /// End the run: embed what has no vector yet (unless the request skips it), bring the ANN
    /// index up to date, and report.
    pub fn finish(
        mut self,
        progress: &(dyn Fn(&Progress) + Sync),
        cancel: &AtomicBool,
    ) -> Result<IndexReport> {
        let elapsed = self.started.elapsed().as_secs_f64();
        if elapsed > 0.0 {
            self.report.chunks_per_second = self.report.chunks_written as f64 / elapsed;
        }
        let mut report = std::mem::take(&mut self.report);
        self.kb
            .after_writing(&mut self.store, &self.req, progress, cancel, &mut report)?;
        report.seconds = self.started.elapsed().as_secs_f64();
        Ok(report)
    }

    /// The report so far (counts of what the run did until now).
    pub fn report(&self) -> &IndexReport {
        &self.report
    }
}
