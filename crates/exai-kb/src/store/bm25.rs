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
//!
//! Long questions make rare-first slow: they name several common words, which step 2 walks
//! inside its AND for every candidate, and whose bounds add up past the k-th score more often
//! (BENCHMARKS.md, "Keyword tail"). So without filters the terms' own scores answer first: each term in more than 1 % of the
//! chunks has its share of every chunk's score (FTS5's `bm25()` of the term alone; BM25 adds up
//! per term, each with its own idf) read once and kept, per store generation, under
//! [`MAX_CACHED_POSTINGS`] (least recently used out first). A question then costs one FTS5 query
//! over its rarest terms and one pass over the other terms' lists in memory, and its ranking is
//! exact at every depth; later questions naming the same words reuse the lists until the store
//! changes. Filtered searches keep rare-first (the lists hold every chunk, not the filter's).

use std::collections::HashMap;
use std::sync::Arc;

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
/// Terms in more than this share of the chunks have their scores kept (without filters): the
/// rest, each in at most 1 % of the chunks, are few enough rows for FTS5 to rank at once.
const LISTED_SHARE: f64 = 0.01;
/// Kept scores per knowledge base, in (chunk, score) pairs of 8 bytes: 16 MB. Enough for the
/// words questions name on an 11k-chunk corpus, and a few hundred of them at 100k chunks.
pub const MAX_CACHED_POSTINGS: usize = 1 << 21;

/// Document frequencies and common terms' scores at one store generation.
#[derive(Debug, Default)]
pub struct TermStats {
    generation: Option<u64>,
    chunks: f64,
    df: HashMap<String, f64>,
    /// Every chunk id in ascending order: a chunk's place here indexes the score lists.
    ids: Option<Arc<Vec<i64>>>,
    /// Common terms' scores, with when each was last used.
    lists: HashMap<String, (Arc<TermScores>, u64)>,
    postings: usize,
    clock: u64,
}

impl TermStats {
    /// A fresh record for `generation`.
    fn at(generation: u64, chunks: f64) -> Self {
        Self {
            generation: Some(generation),
            chunks,
            ..Default::default()
        }
    }

    /// Keep `scores` for `term`, dropping the least recently used lists to stay under the cap;
    /// a list larger than the cap alone is not kept.
    fn keep(&mut self, term: &str, scores: Arc<TermScores>) {
        let n = scores.len();
        if n > MAX_CACHED_POSTINGS || self.lists.contains_key(term) {
            return;
        }
        while self.postings + n > MAX_CACHED_POSTINGS {
            let Some(oldest) = self
                .lists
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(t, _)| t.clone())
            else {
                break;
            };
            if let Some((gone, _)) = self.lists.remove(&oldest) {
                self.postings -= gone.len();
            }
        }
        self.clock += 1;
        self.postings += n;
        self.lists.insert(term.to_string(), (scores, self.clock));
    }
}

/// Every chunk id in order, and the scores of some terms indexed by place in it.
type Listed = (Arc<Vec<i64>>, Vec<Arc<TermScores>>);

/// One term's share of the BM25 score of every chunk containing it: (place in
/// [`TermStats::ids`], score), in chunk order.
#[derive(Debug)]
pub struct TermScores {
    postings: Vec<(u32, f32)>,
    /// The highest of the scores: the most this term adds to any chunk.
    max: f32,
}

impl TermScores {
    fn new(mut postings: Vec<(u32, f32)>) -> Self {
        postings.sort_unstable_by_key(|p| p.0);
        let max = postings.iter().map(|p| p.1).fold(0.0, f32::max);
        Self { postings, max }
    }

    fn len(&self) -> usize {
        self.postings.len()
    }

    /// The term's score in the chunk at `at` (0 where the chunk does not contain it).
    fn score(&self, at: usize) -> f32 {
        self.postings
            .binary_search_by_key(&at, |p| p.0 as usize)
            .map_or(0.0, |i| self.postings[i].1)
    }
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
    /// The rare terms through FTS5, the common ones from their kept scores; exact.
    TermScores,
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

/// The best `k`, best first, equal scores by chunk id.
fn top_k(mut rows: Vec<(i64, f64)>, k: usize) -> Vec<(i64, f32)> {
    let order = |a: &(i64, f64), b: &(i64, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if k == 0 {
        return Vec::new();
    }
    if rows.len() > k {
        // Every chunk of the corpus may be scored: order only the best k.
        rows.select_nth_unstable_by(k - 1, order);
        rows.truncate(k);
    }
    rows.sort_by(order);
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
        let common = by_df
            .iter()
            .take_while(|t| t.1 <= COMMON_SHARE * chunks)
            .count();
        let listed = by_df
            .iter()
            .take_while(|t| t.1 <= LISTED_SHARE * chunks)
            .count();
        // The listed terms' scores are kept for the whole store only: a filter leaves the
        // ranking to FTS5.
        if filters == &Filters::default()
            && let Some(top) = self.by_term_scores(&by_df, listed, chunks, k)?
        {
            return Ok((top, KeywordPlan::TermScores));
        }
        let mut rare = common;
        // Rare terms in fewer than k chunks cannot fill the answer: take in the next ones.
        let mut reach: f64 = by_df[..rare].iter().map(|t| t.1).sum();
        while rare < by_df.len() && reach < k as f64 && by_df[rare].1 <= chunks / 2.0 {
            reach += by_df[rare].1;
            rare += 1;
        }
        if rare == by_df.len() {
            return plain(KeywordPlan::Plain);
        }
        if rare == 0 {
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

    /// The best `k` chunks by BM25 over every term of `by_df` (rarest first): the rarest
    /// (`by_df[..common]`) through FTS5, the others from their kept scores (read and kept now
    /// where missing), so every chunk is scored exactly. `None` when nothing would be gained (no
    /// listed term that scores), when the store changed under the search, or when terms in most
    /// chunks would have to fill the answer.
    fn by_term_scores(
        &self,
        by_df: &[(&str, f64)],
        common: usize,
        chunks: f64,
        k: usize,
    ) -> Result<Option<Vec<(i64, f32)>>> {
        let (rare, common) = by_df.split_at(common);
        // As in rare-first, a term in more than half the chunks adds at most 2.2e-6.
        let scoring: Vec<&str> = common
            .iter()
            .filter(|t| idf(chunks, t.1) > 1e-6)
            .map(|t| t.0)
            .collect();
        if scoring.is_empty() {
            return Ok(None);
        }
        let Some((ids, lists)) = self.term_scores(&scoring)? else {
            return Ok(None);
        };
        let rare_rows = if rare.is_empty() {
            Vec::new()
        } else {
            let rare: Vec<&str> = rare.iter().map(|t| t.0).collect();
            let mut rows = Vec::new();
            for (id, score) in self.ranked_all(&or_query(&rare), &Filters::default())? {
                // A chunk written after the ids were read: the store changed under this search.
                let Ok(at) = ids.binary_search(&id) else {
                    return Ok(None);
                };
                rows.push((at, score));
            }
            rows
        };
        // The chunks holding a rare term, each with its full score: when the k-th of them
        // reaches the most a chunk with common terms only can score, no other chunk can enter.
        if rare_rows.len() >= k {
            let scored: Vec<(i64, f64)> = rare_rows
                .iter()
                .map(|&(at, score)| {
                    let common: f64 = lists.iter().map(|l| f64::from(l.score(at))).sum();
                    (ids[at], score + common)
                })
                .collect();
            let top = top_k(scored, k);
            let bound: f64 = lists.iter().map(|l| f64::from(l.max)).sum::<f64>() * BOUND_MARGIN;
            if top.last().is_some_and(|t| f64::from(t.1) >= bound) {
                return Ok(Some(top));
            }
        }
        // Otherwise every chunk holding any term is scored, in one pass over the lists.
        let mut total = vec![0f64; ids.len()];
        for list in &lists {
            for &(at, score) in &list.postings {
                total[at as usize] += f64::from(score);
            }
        }
        for (at, score) in rare_rows {
            total[at] += score;
        }
        let scored: Vec<(i64, f64)> = total
            .iter()
            .enumerate()
            .filter(|(_, s)| **s > 0.0)
            .map(|(at, s)| (ids[at], *s))
            .collect();
        if scored.len() < k && scoring.len() < common.len() {
            // Chunks holding only a term in most chunks rank last, by its 1e-6 each: too few
            // others to fill the answer, so the OR-query lists those too.
            return Ok(None);
        }
        Ok(Some(top_k(scored, k)))
    }

    /// The chunk ids in order and the scores of each of `terms`, read and kept (under the cap)
    /// where not kept yet; `None` when the store changed under the search.
    fn term_scores(&self, terms: &[&str]) -> Result<Option<Listed>> {
        let generation = self.generation()?;
        let (ids, mut known) = {
            let mut stats = self.lock_term_stats();
            if stats.generation != Some(generation) {
                return Ok(None);
            }
            stats.clock += 1;
            let clock = stats.clock;
            let known: Vec<Option<Arc<TermScores>>> = terms
                .iter()
                .map(|t| {
                    stats.lists.get_mut(*t).map(|(list, used)| {
                        *used = clock;
                        list.clone()
                    })
                })
                .collect();
            (stats.ids.clone(), known)
        };
        // Read outside the lock: one search's new terms do not stall the others.
        let ids = match ids {
            Some(ids) => ids,
            None => {
                let mut stmt = self
                    .conn
                    .prepare_cached("SELECT id FROM chunks ORDER BY id")?;
                let ids = stmt.query_map([], |r| r.get(0))?;
                Arc::new(ids.collect::<rusqlite::Result<Vec<i64>>>()?)
            }
        };
        let mut read = Vec::new();
        for (term, list) in terms.iter().zip(known.iter_mut()) {
            if list.is_some() {
                continue;
            }
            let rows = self.ranked_all(&term_query(term), &Filters::default())?;
            let mut postings = Vec::with_capacity(rows.len());
            for (id, score) in rows {
                let Ok(at) = ids.binary_search(&id) else {
                    return Ok(None);
                };
                postings.push((u32::try_from(at).unwrap_or(u32::MAX), score as f32));
            }
            let scores = Arc::new(TermScores::new(postings));
            read.push(((*term).to_string(), scores.clone()));
            *list = Some(scores);
        }
        // Kept only if the store did not change while they were read (every write moves the
        // generation), so the lists and ids describe one state of it.
        if self.generation()? == generation {
            let mut stats = self.lock_term_stats();
            if stats.generation == Some(generation) {
                if stats.ids.is_none() {
                    stats.ids = Some(ids.clone());
                }
                if stats
                    .ids
                    .as_ref()
                    .is_some_and(|kept| Arc::ptr_eq(kept, &ids))
                {
                    for (term, scores) in read {
                        stats.keep(&term, scores);
                    }
                }
            }
        }
        Ok(Some((ids, known.into_iter().flatten().collect())))
    }

    fn lock_term_stats(&self) -> std::sync::MutexGuard<'_, TermStats> {
        match self.term_stats.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
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
        let lock = || self.lock_term_stats();
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
        if stats.generation != Some(generation) {
            *stats = TermStats::at(generation, chunks);
        } else if stats.df.len() > MAX_CACHED_TERMS {
            stats.df.clear();
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
        // bound must sometimes send a query back to the OR-query. Unfiltered questions naming
        // a common word that scores take the kept lists instead, so a third or so of the runs
        // (the filtered ones, and those whose common words are all clamped) remain to it.
        assert!(
            plans.get(&KeywordPlan::RareFirst).copied().unwrap_or(0) > 50,
            "{plans:?}"
        );
        assert!(
            plans.get(&KeywordPlan::TermScores).copied().unwrap_or(0) > 100,
            "{plans:?}"
        );
        assert!(
            plans.get(&KeywordPlan::Plain).copied().unwrap_or(0) > 0,
            "{plans:?}"
        );
    }

    /// Rankings from the kept common-term scores are the plain OR-query's at every depth (same
    /// chunks, same order up to ties, same scores), are really used once the lists are kept,
    /// and follow a change of the store instead of answering from the old lists.
    #[test]
    fn term_scores_equal_the_plain_or_query_at_every_depth() {
        let (_dir, mut store) = corpus();
        let check = |store: &SqliteStore, query: &str, k: usize| -> KeywordPlan {
            let terms = query_terms(query);
            let terms: Vec<&str> = terms.iter().map(String::as_str).collect();
            let (got, plan) = store
                .keyword_search_planned(query, &Filters::default(), k)
                .unwrap();
            let all = store
                .ranked(&or_query(&terms), &Filters::default(), None)
                .unwrap();
            assert_eq!(got.len(), all.len().min(k), "{query}");
            if plan == KeywordPlan::TermScores {
                let last = all[got.len() - 1].1;
                for (g, w) in got.iter().zip(&all) {
                    assert!((g.1 - w.1).abs() < 1e-4, "{query}: {got:?} vs {all:?}");
                    assert!(
                        g.0 == w.0 || (g.1 - last).abs() < 1e-4 || (g.1 - w.1).abs() < 1e-5,
                        "{query}: {got:?} vs {all:?}"
                    );
                }
            }
            plan
        };
        let mut rng = Rng(7);
        let mut plans: HashMap<KeywordPlan, usize> = HashMap::new();
        for _ in 0..150 {
            let mut words = vec!["type".to_string(), "value".to_string()];
            for _ in 0..(1 + rng.below(4)) {
                words.push(format!("w{}", rng.below(300)));
            }
            let query = words.join(" ");
            for k in [10, 50] {
                *plans.entry(check(&store, &query, k)).or_insert(0) += 1;
            }
        }
        assert!(
            plans.get(&KeywordPlan::TermScores).copied().unwrap_or(0) > 200,
            "{plans:?}"
        );
        // A query of common words only: no rare term chooses candidates at all.
        assert_eq!(check(&store, "type value", 50), KeywordPlan::TermScores);
        {
            let stats = store.lock_term_stats();
            assert!(stats.lists.contains_key("type") && stats.postings > 0);
        }
        // A change moves the generation: the kept lists are dropped, the answer is new.
        let before = store
            .bm25_search("type value w1", &Filters::default(), 50)
            .unwrap();
        let removed = store.remove_source("small").unwrap();
        assert!(removed > 0);
        let after = store
            .bm25_search("type value w1", &Filters::default(), 50)
            .unwrap();
        assert_ne!(before, after);
        check(&store, "type value w1", 50);
        check(&store, "type value w1", 10);
    }

    /// The kept lists stay under the cap, the least recently used leaving first.
    #[test]
    fn kept_scores_stay_under_the_cap() {
        let list = |n: usize| Arc::new(TermScores::new(vec![(0, 1.0); n]));
        let mut stats = TermStats::at(1, 10.0);
        let half = MAX_CACHED_POSTINGS / 2;
        stats.keep("a", list(half));
        stats.keep("b", list(half));
        assert_eq!(stats.postings, MAX_CACHED_POSTINGS);
        // "a" used last: "b" leaves for "c".
        stats.clock += 1;
        stats.lists.get_mut("a").unwrap().1 = stats.clock;
        stats.keep("c", list(10));
        assert!(stats.lists.contains_key("a") && stats.lists.contains_key("c"));
        assert!(!stats.lists.contains_key("b"));
        assert_eq!(stats.postings, half + 10);
        // Larger than the cap alone: not kept, nothing dropped for it.
        stats.keep("d", list(MAX_CACHED_POSTINGS + 1));
        assert!(!stats.lists.contains_key("d"));
        assert_eq!(stats.postings, half + 10);
    }

    #[test]
    fn idf_matches_fts5() {
        assert!((idf(1000.0, 10.0) - (990.5f64 / 10.5).ln()).abs() < 1e-12);
        assert_eq!(idf(1000.0, 600.0), 1e-6);
        assert_eq!(or_query(&["a", "b"]), "\"a\" OR \"b\"");
    }
}
