//! BM25 through FTS5 without ranking every chunk that shares a common word with the query.
//!
//! FTS5 computes `bm25()` for every row that matches an OR-query before it can sort: a common
//! word is in most chunks of a corpus, so a question naming one ranks nearly the whole corpus to
//! return 50 (BENCHMARKS.md, "Keyword search on SQLite, rare terms first"). BM25 is a sum over the query's terms, and a term
//! in many chunks adds little: at most `idf · (k1 + 1)` (FTS5's `bm25()` with k1 = 1.2; idf is
//! clamped to 1e-6 for a term in more than half the chunks). So, as Lucene's common-terms
//! query does, only the rarer terms choose the candidates and every query term scores them:
//!
//! 1. `R`: the rare terms OR-ed, every match with its score (few rows: cheap).
//! 2. `S`: `(rare) AND (common OR rare)`: the same rows, each scored `2·R + C` (a phrase counts
//!    once per occurrence in the expression), so `S − R` is the row's BM25 over all terms.
//! 3. The answer is exact when the k-th score reaches the most a chunk with only common terms
//!    could score (the sum of their bounds), for k up to [`EXACT_RANKS`]; deeper ranks are the
//!    best chunks holding a rare term. Otherwise that k-th score is a floor for the true
//!    one, and the most frequent terms whose bounds sum below it are provably safe to leave to
//!    scoring: one more round with the others choosing candidates is exact (MaxScore's
//!    argument). When the rare terms find fewer than k chunks, or nothing can be left out, the
//!    plain OR-query answers as before.
//!
//! Terms in more than half the chunks (idf clamped) are left out of step 2: each could add at
//! most 2.2e-6, which only reorders exact ties. Document frequencies come from FTS5 itself, one
//! `count(*)` per term, cached per store generation.

use std::collections::HashMap;

use rusqlite::{params, params_from_iter};

use crate::error::Result;
use crate::model::Filters;
use crate::store::SharedLogic;
use crate::store::query_terms;
use crate::store::sqlite::{SqliteStore, filter_sql};

/// FTS5's `bm25()` constant: a term's share saturates at `idf · (K1 + 1)`.
const K1: f64 = 1.2;
/// Terms in more than this share of the chunks only score; the rarer ones find candidates.
const COMMON_SHARE: f64 = 0.05;
/// The ranks the bound proves. Deeper ranks (hybrid search asks for 50 to fuse) come from the
/// chunks holding a rare term, best first by their full scores: proving them too would pull
/// the next common terms in as candidates far more often (on the std docs the 50th score is
/// much lower than the 20th) and cost several times as much for ranks that RRF weighs least.
const EXACT_RANKS: usize = 20;
/// FTS5 counts rows itself; a margin keeps a rounding difference on the safe side of a bound.
const BOUND_MARGIN: f64 = 1.01;
/// Cached document frequencies per connection (reset when the store changes).
const MAX_CACHED_TERMS: usize = 20_000;

/// Document frequencies of query terms at one store generation.
#[derive(Debug, Default)]
pub struct TermStats {
    generation: Option<u64>,
    chunks: f64,
    df: HashMap<String, f64>,
}

/// How a keyword search was answered (for tests and benchmarks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeywordPlan {
    /// One OR-query over every term.
    Plain,
    /// Candidates from the rare terms, scored by all; exact by the bound.
    RareFirst,
    /// Rare-first was tried and could not prove its answer; the OR-query answered.
    Fallback,
}

/// The FTS5 query matching any of `terms` (each a phrase, so nothing in it is query syntax).
pub(super) fn or_query(terms: &[&str]) -> String {
    terms
        .iter()
        .map(|t| term_query(t))
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// The FTS5 query matching one term, for its document frequency.
pub(super) fn term_query(term: &str) -> String {
    format!("\"{term}\"")
}

/// The FTS5 query of rare-first's second step: rows holding a rare term, where every term
/// (the common ones too) adds to the score. Both arguments are [`or_query`]s.
pub(super) fn rare_and_any(rare: &str, common: &str) -> String {
    format!("({rare}) AND ({common} OR {rare})")
}

/// FTS5's inverse document frequency.
fn idf(chunks: f64, df: f64) -> f64 {
    let v = ((chunks - df + 0.5) / (df + 0.5)).ln();
    if v <= 0.0 { 1e-6 } else { v }
}

/// Best first, equal scores by chunk id.
fn top_k(mut rows: Vec<(i64, f64)>, k: usize) -> Vec<(i64, f32)> {
    rows.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    rows.truncate(k);
    rows.into_iter().map(|(id, s)| (id, s as f32)).collect()
}

impl SqliteStore {
    /// BM25 over title, section and text (weights 4:2:1), best first, with filters. Scores are
    /// positive: higher is better.
    pub fn bm25_search(&self, query: &str, filters: &Filters, k: usize) -> Result<Vec<(i64, f32)>> {
        Ok(self.keyword_search_planned(query, filters, k)?.0)
    }

    /// [`Self::bm25_search`], saying how it was answered.
    pub fn keyword_search_planned(
        &self,
        query: &str,
        filters: &Filters,
        k: usize,
    ) -> Result<(Vec<(i64, f32)>, KeywordPlan)> {
        let terms = query_terms(query);
        let terms: Vec<&str> = terms.iter().map(String::as_str).collect();
        if terms.is_empty() || k == 0 {
            return Ok((Vec::new(), KeywordPlan::Plain));
        }
        let plain = |plan| Ok((self.ranked(&or_query(&terms), filters, Some(k))?, plan));
        if terms.len() == 1 {
            return plain(KeywordPlan::Plain);
        }
        let (chunks, dfs) = self.document_frequencies(&terms)?;
        let mut by_df: Vec<(&str, f64)> = terms.iter().copied().zip(dfs).collect();
        by_df.sort_by(|a, b| a.1.total_cmp(&b.1));
        let mut rare = by_df
            .iter()
            .take_while(|t| t.1 <= COMMON_SHARE * chunks)
            .count();
        // Rare terms in fewer than k chunks cannot fill the answer: take in the next ones.
        let mut reach: f64 = by_df[..rare].iter().map(|t| t.1).sum();
        while rare < by_df.len() && reach < k as f64 && by_df[rare].1 <= chunks / 2.0 {
            reach += by_df[rare].1;
            rare += 1;
        }
        if rare == 0 || rare == by_df.len() {
            return plain(KeywordPlan::Plain);
        }
        let Some(top) = self.rare_first(&by_df, rare, chunks, filters, k)? else {
            return plain(KeywordPlan::Fallback);
        };
        let ub = |df: f64| idf(chunks, df) * (K1 + 1.0) * BOUND_MARGIN;
        let proved = k.min(EXACT_RANKS);
        let kth = f64::from(top[proved - 1].1);
        if by_df[rare..].iter().map(|t| ub(t.1)).sum::<f64>() <= kth {
            return Ok((top, KeywordPlan::RareFirst));
        }
        // The common terms could lift a chunk above the k-th score found. That score is a floor
        // for the true k-th, so the most frequent terms whose bounds stay below it can be left
        // to scoring: with the rest choosing candidates the answer is provably complete.
        let (mut split, mut sum) = (by_df.len(), 0.0);
        while split > rare && sum + ub(by_df[split - 1].1) < kth {
            sum += ub(by_df[split - 1].1);
            split -= 1;
        }
        if split == by_df.len() {
            return plain(KeywordPlan::Fallback);
        }
        match self.rare_first(&by_df, split, chunks, filters, k)? {
            Some(top) if f64::from(top[proved - 1].1) >= sum => Ok((top, KeywordPlan::RareFirst)),
            _ => plain(KeywordPlan::Fallback),
        }
    }

    /// The best `k` chunks among those containing one of `by_df[..split]` (the rare terms),
    /// scored by BM25 over every term; `None` when fewer than `k` chunks contain one.
    fn rare_first(
        &self,
        by_df: &[(&str, f64)],
        split: usize,
        chunks: f64,
        filters: &Filters,
        k: usize,
    ) -> Result<Option<Vec<(i64, f32)>>> {
        let (rare, common) = by_df.split_at(split);
        let rare_terms: Vec<&str> = rare.iter().map(|t| t.0).collect();
        let scoring: Vec<&str> = common
            .iter()
            .filter(|t| idf(chunks, t.1) > 1e-6)
            .map(|t| t.0)
            .collect();
        let rare_q = or_query(&rare_terms);
        let r = self.ranked_all(&rare_q, filters)?;
        if r.len() < k {
            return Ok(None);
        }
        let full = if scoring.is_empty() {
            r
        } else {
            let partial: HashMap<i64, f64> = r.into_iter().collect();
            let both = rare_and_any(&rare_q, &or_query(&scoring));
            self.ranked_all(&both, filters)?
                .into_iter()
                .map(|(id, s)| (id, s - partial.get(&id).copied().unwrap_or(0.0)))
                .collect()
        };
        // Every candidate matches both queries; should FTS5 ever disagree, the plain query answers.
        Ok((full.len() >= k).then(|| top_k(full, k)))
    }

    /// Every match of an FTS5 query with its BM25 score (positive), unordered.
    fn ranked_all(&self, fts: &str, filters: &Filters) -> Result<Vec<(i64, f64)>> {
        self.scored(fts, filters, None)
    }

    /// The best `k` matches of an FTS5 query (all of them without `k`), best first.
    fn ranked(&self, fts: &str, filters: &Filters, k: Option<usize>) -> Result<Vec<(i64, f32)>> {
        let k = k.unwrap_or(usize::MAX).min(i64::MAX as usize) as i64;
        let rows = if filters == &Filters::default() {
            // No filters: let FTS5 rank and cut on its own (`rank` is bm25 with the column
            // weights, set at schema creation), without joining every match.
            let mut stmt = self.conn.prepare_cached(
                "SELECT rowid, -rank FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY rank LIMIT ?",
            )?;
            let rows = stmt.query_map(params![fts, k], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<rusqlite::Result<Vec<(i64, f64)>>>()?
        } else {
            self.scored(fts, filters, Some(k))?
        };
        Ok(rows.into_iter().map(|(id, s)| (id, s as f32)).collect())
    }

    /// (chunk id, BM25 score) of an FTS5 query's matches passing `filters`; the best `limit`
    /// of them, best first, when a limit is given.
    fn scored(&self, fts: &str, filters: &Filters, limit: Option<i64>) -> Result<Vec<(i64, f64)>> {
        let (filter, mut args) = filter_sql(filters);
        let mut sql = if filters == &Filters::default() {
            "SELECT rowid, -bm25(chunks_fts, 4.0, 2.0, 1.0) AS score FROM chunks_fts WHERE chunks_fts MATCH ?"
                .to_string()
        } else {
            format!(
                "SELECT c.id, -bm25(chunks_fts, 4.0, 2.0, 1.0) AS score
                 FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid JOIN documents d ON d.id = c.doc_id
                 WHERE chunks_fts MATCH ?{filter}"
            )
        };
        args.insert(0, rusqlite::types::Value::Text(fts.to_string()));
        if let Some(limit) = limit {
            sql.push_str(" ORDER BY score DESC LIMIT ?");
            args.push(rusqlite::types::Value::Integer(limit));
        }
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params_from_iter(args), |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The number of chunks containing `term` (as FTS5 counts: after its own stemming).
    pub fn term_chunks(&self, term: &str) -> Result<u64> {
        let n: i64 = self.conn.query_row(
            "SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH ?",
            [term_query(term)],
            |r| r.get(0),
        )?;
        Ok(n.max(0) as u64)
    }

    /// The number of chunks and, per term, the number of chunks containing it (as FTS5 counts:
    /// after its own stemming), cached until the store changes.
    fn document_frequencies(&self, terms: &[&str]) -> Result<(f64, Vec<f64>)> {
        let generation = self.generation()?;
        let lock = || match self.term_stats.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        // The cache is shared by a knowledge base's readers: its lock is never held while
        // SQLite counts, so one search's new terms do not stall the others.
        let (cached_chunks, mut known) = {
            let stats = lock();
            let current = stats.generation == Some(generation);
            let known: Vec<Option<f64>> = terms
                .iter()
                .map(|t| current.then(|| stats.df.get(*t).copied()).flatten())
                .collect();
            (current.then_some(stats.chunks), known)
        };
        let chunks = match cached_chunks {
            Some(n) => n,
            None => self
                .conn
                .query_row("SELECT count(*) FROM chunks", [], |r| r.get::<_, i64>(0))?
                as f64,
        };
        let mut counted = Vec::new();
        for (term, df) in terms.iter().zip(known.iter_mut()) {
            if df.is_none() {
                let n: i64 = self.conn.query_row(
                    "SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH ?",
                    [term_query(term)],
                    |r| r.get(0),
                )?;
                *df = Some(n as f64);
                counted.push(((*term).to_string(), n as f64));
            }
        }
        let mut stats = lock();
        if stats.generation != Some(generation) || stats.df.len() > MAX_CACHED_TERMS {
            *stats = TermStats {
                generation: Some(generation),
                chunks,
                df: HashMap::new(),
            };
        }
        stats.df.extend(counted);
        Ok((
            chunks,
            known.into_iter().map(|d| d.unwrap_or(0.0)).collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fts(text: &str) -> Option<String> {
        let terms = query_terms(text);
        let terms: Vec<&str> = terms.iter().map(String::as_str).collect();
        (!terms.is_empty()).then(|| or_query(&terms))
    }

    #[test]
    fn fts_query_quotes_everything() {
        assert_eq!(
            fts("Box<dyn Trait> AND \"x\"").as_deref(),
            Some("\"box\" OR \"dyn\" OR \"trait\" OR \"x\"")
        );
        assert_eq!(
            fts("how do I read a line").as_deref(),
            Some("\"read\" OR \"line\"")
        );
        assert_eq!(
            fts("what is it").as_deref(),
            Some("\"what\" OR \"is\" OR \"it\"")
        );
        assert_eq!(fts("  ?!  "), None);
        assert_eq!(fts("read_line").as_deref(), Some("\"read_line\""));
    }

    /// Fuzzing finding (`keyword_query` seed): lower-casing `İ` gives `i` and a combining dot,
    /// which is neither a letter nor a digit, so the term was not only word characters.
    #[test]
    fn lower_casing_keeps_terms_to_word_characters() {
        assert_eq!(query_terms("İstanbul"), vec!["istanbul"]);
        assert_eq!(query_terms("İ İ i"), vec!["i"]);
        assert_eq!(
            fts("ǅemal İSTANBUL").as_deref(),
            Some("\"ǆemal\" OR \"istanbul\"")
        );
    }

    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    /// 40 documents × 20 chunks over a vocabulary shaped like documentation: words in 90, 60,
    /// 30 and 12 % of the chunks, and 300 rarer ones with uneven counts and chunk lengths.
    use crate::store::StoreBackend;

    fn corpus() -> (tempfile::TempDir, SqliteStore) {
        use crate::model::{DocType, NewChunk};
        use crate::store::NewDocument;
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(&dir.path().join("kb.sqlite")).unwrap();
        let meta = serde_json::Map::new();
        let mut rng = Rng(0x5EED);
        let paths: Vec<String> = (0..40).map(|d| format!("doc{d}.md")).collect();
        let mut docs = Vec::new();
        for (d, path) in paths.iter().enumerate() {
            let chunks = (0..20)
                .map(|position| {
                    let mut words = Vec::new();
                    for (word, percent) in [
                        ("implement", 90),
                        ("trait", 60),
                        ("type", 30),
                        ("value", 12),
                    ] {
                        if rng.below(100) < percent {
                            for _ in 0..=rng.below(3) {
                                words.push(word.to_string());
                            }
                        }
                    }
                    for _ in 0..(2 + rng.below(12)) {
                        // Squared: low numbers are frequent, high ones rare.
                        let r = rng.below(300);
                        words.push(format!("w{}", r * r / 300));
                    }
                    NewChunk {
                        position,
                        section: format!("Section {}", rng.below(5)),
                        text: words.join(" "),
                        tokens: words.len(),
                        doc_type: DocType::Text,
                    }
                })
                .collect();
            docs.push((
                NewDocument {
                    source: if d % 4 == 0 { "small" } else { "big" },
                    path,
                    uri: None,
                    title: "Title",
                    format: "markdown",
                    technology: "rust",
                    category: "guides",
                    hash: path,
                    bytes: 10,
                    metadata: &meta,
                    flagged: Default::default(),
                },
                chunks,
            ));
        }
        for source in ["small", "big"] {
            store.upsert_source(source, &["/x".into()], "rust").unwrap();
        }
        store.replace_documents(&docs).unwrap();
        (dir, store)
    }

    /// Rare-first answers what one OR-query over every term answers: the same chunks in the
    /// same order with the same scores (up to the 2.2e-6 a clamped term may add to a tie) for
    /// the proved ranks, true scores in order below them.
    #[test]
    fn rare_first_equals_the_plain_or_query() {
        let (_dir, store) = corpus();
        let small = Filters {
            sources: vec!["small".into()],
            ..Default::default()
        };
        let mut rng = Rng(42);
        let mut plans = HashMap::new();
        for _ in 0..200 {
            let mut words: Vec<String> = ["implement", "trait", "type", "value"]
                .iter()
                .filter(|_| rng.below(2) == 0)
                .map(|w| w.to_string())
                .collect();
            for _ in 0..(1 + rng.below(3)) {
                words.push(format!("w{}", rng.below(300)));
            }
            let query = words.join(" ");
            let terms = query_terms(&query);
            let terms: Vec<&str> = terms.iter().map(String::as_str).collect();
            for (filters, k) in [
                (&Filters::default(), 10),
                (&Filters::default(), 50),
                (&small, 10),
            ] {
                let (got, plan) = store.keyword_search_planned(&query, filters, k).unwrap();
                *plans.entry(plan).or_insert(0) += 1;
                let all = store.ranked(&or_query(&terms), filters, None).unwrap();
                let score: HashMap<i64, f32> = all.iter().copied().collect();
                assert_eq!(got.len(), all.len().min(k), "{query}");
                // Every chunk with its true score, best first.
                for (i, g) in got.iter().enumerate() {
                    assert!((g.1 - score[&g.0]).abs() < 1e-4, "{query}: {g:?}");
                    assert!(i == 0 || got[i - 1].1 >= g.1 - 1e-6, "{query}: {got:?}");
                }
                // The proved ranks are the true top ones, except where scores tie at the cut.
                let want = &all[..all.len().min(k.min(EXACT_RANKS))];
                let last = want.last().map_or(f32::MAX, |w| w.1);
                for (g, w) in got.iter().zip(want) {
                    assert!((g.1 - w.1).abs() < 1e-4, "{query}: {got:?} vs {want:?}");
                    assert!(
                        want.iter().any(|o| o.0 == g.0) || (g.1 - last).abs() < 1e-4,
                        "{query}: {got:?} vs {want:?}"
                    );
                }
            }
        }
        // The pruned plan must really be taken (else this test proves nothing), and the
        // bound must sometimes send a query back to the OR-query.
        assert!(
            plans.get(&KeywordPlan::RareFirst).copied().unwrap_or(0) > 100,
            "{plans:?}"
        );
        assert!(
            plans.get(&KeywordPlan::Plain).copied().unwrap_or(0) > 0,
            "{plans:?}"
        );
    }

    #[test]
    fn idf_matches_fts5() {
        assert!((idf(1000.0, 10.0) - (990.5f64 / 10.5).ln()).abs() < 1e-12);
        assert_eq!(idf(1000.0, 600.0), 1e-6);
        assert_eq!(or_query(&["a", "b"]), "\"a\" OR \"b\"");
    }
}
