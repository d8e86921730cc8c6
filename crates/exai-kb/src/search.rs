//! The steps of a search that need no database: checking the request, fusing keyword and
//! semantic results, snippets, and shaping the hits.

use std::collections::HashMap;

use crate::error::{KbError, Result};
use crate::model::{Mode, SearchHit, SearchRequest};
use crate::store::ChunkRecord;
use crate::{MAX_QUERY_BYTES, MAX_QUERY_TERMS};

/// A chunk in the final order: (chunk id, score, keyword rank, semantic rank).
pub type Ranked = (i64, f32, Option<usize>, Option<usize>);

/// Refuse a request whose query or limits are out of bounds, before any work.
pub fn check_request(req: &SearchRequest) -> Result<()> {
    if req.query.trim().is_empty() {
        return Err(KbError::Invalid("the query is empty".into()));
    }
    if req.query.len() > MAX_QUERY_BYTES {
        return Err(KbError::Invalid(format!(
            "the query is {} bytes; at most {MAX_QUERY_BYTES}: ask a question or give \
             keywords, not a document",
            req.query.len()
        )));
    }
    let words = crate::store::query_terms(&req.query).len();
    if words > MAX_QUERY_TERMS {
        return Err(KbError::Invalid(format!(
            "the query has {words} distinct words; at most {MAX_QUERY_TERMS}: keep the \
             words that matter"
        )));
    }
    if !(1..=100).contains(&req.limit) {
        return Err(KbError::Invalid(format!(
            "limit must be 1–100, not {}",
            req.limit
        )));
    }
    if req.context > 3 {
        return Err(KbError::Invalid(format!(
            "context must be 0–3 chunks, not {}",
            req.context
        )));
    }
    Ok(())
}

/// How many candidates each retriever returns: several per hit shown, more when hits are
/// grouped by document (most candidates then fold into a document already shown).
pub fn candidate_pool(req: &SearchRequest) -> usize {
    (req.limit * if req.group_by_document { 10 } else { 4 }).max(50)
}

/// The candidates in their final order: fused (hybrid) or as one retriever ranked them,
/// without those under `min_score`, and cut to the hits shown unless they are grouped later.
pub fn rank(
    req: &SearchRequest,
    mode: Mode,
    keyword: &[(i64, f32)],
    semantic: &[(i64, f32)],
) -> Vec<Ranked> {
    let ranked: Vec<Ranked> = match mode {
        Mode::Hybrid => rrf(keyword, semantic),
        Mode::Keyword => keyword
            .iter()
            .enumerate()
            .map(|(i, (id, s))| (*id, *s, Some(i + 1), None))
            .collect(),
        Mode::Semantic => semantic
            .iter()
            .enumerate()
            .map(|(i, (id, s))| (*id, *s, None, Some(i + 1)))
            .collect(),
    };
    let mut ranked: Vec<Ranked> = ranked
        .into_iter()
        .filter(|r| req.min_score.is_none_or(|m| r.1 >= m))
        .collect();
    if !req.group_by_document {
        // Only these are shown: the rest need no text read.
        ranked.truncate(req.limit);
    }
    ranked
}

fn round4(x: f32) -> f32 {
    (x * 10_000.0).round() / 10_000.0
}

/// The hits shown, from the ranked candidates and their chunks: at most `req.limit`, one per
/// document when grouping (each then says how many more of its chunks ranked), with snippets.
pub fn hits(
    req: &SearchRequest,
    ranked: &[Ranked],
    records: &[ChunkRecord],
    semantic: &[(i64, f32)],
) -> Vec<SearchHit> {
    let cosine: HashMap<i64, f32> = semantic.iter().copied().collect();
    let by_id: HashMap<i64, &ChunkRecord> = records.iter().map(|c| (c.id, c)).collect();
    let terms = terms(&req.query);
    let mut hits: Vec<SearchHit> = Vec::new();
    let mut per_doc: HashMap<i64, usize> = HashMap::new();
    for (id, score, krank, vrank) in ranked {
        let Some(c) = by_id.get(id) else { continue };
        if req.group_by_document {
            let seen = per_doc.entry(c.doc_id).or_insert(0);
            *seen += 1;
            if *seen > 1 {
                continue;
            }
        }
        if hits.len() >= req.limit {
            if req.group_by_document {
                continue;
            }
            break;
        }
        hits.push(SearchHit {
            chunk_id: c.id,
            doc_id: c.doc_id,
            score: round4(*score),
            keyword_rank: *krank,
            semantic_rank: *vrank,
            cosine: cosine.get(id).map(|c| round4(*c)),
            title: c.title.clone(),
            section: c.section.clone(),
            source: c.source.clone(),
            path: c.path.clone(),
            uri: c.uri.clone(),
            technology: c.technology.clone(),
            category: c.category.clone(),
            doc_type: c.doc_type,
            position: c.position,
            snippet: snippet(&c.text, &terms, 320),
            before: Vec::new(),
            after: Vec::new(),
            more_in_document: None,
        });
    }
    if req.group_by_document {
        for h in &mut hits {
            h.more_in_document = per_doc.get(&h.doc_id).map(|n| n - 1);
        }
    }
    hits
}

/// Reciprocal-rank-fusion constant (the usual 60): rank r contributes 1 / (K + r).
pub const RRF_K: f32 = 60.0;

/// Fused (chunk id, normalised score, keyword rank, semantic rank), best first. The score is
/// divided by the best possible (first in both lists), so 1.0 means "top of both".
pub fn rrf(
    keyword: &[(i64, f32)],
    semantic: &[(i64, f32)],
) -> Vec<(i64, f32, Option<usize>, Option<usize>)> {
    let mut fused: HashMap<i64, (f32, Option<usize>, Option<usize>)> = HashMap::new();
    for (rank, (id, _)) in keyword.iter().enumerate() {
        let e = fused.entry(*id).or_insert((0.0, None, None));
        e.0 += 1.0 / (RRF_K + rank as f32 + 1.0);
        e.1 = Some(rank + 1);
    }
    for (rank, (id, _)) in semantic.iter().enumerate() {
        let e = fused.entry(*id).or_insert((0.0, None, None));
        e.0 += 1.0 / (RRF_K + rank as f32 + 1.0);
        e.2 = Some(rank + 1);
    }
    let best = 2.0 / (RRF_K + 1.0);
    let mut out: Vec<_> = fused
        .into_iter()
        .map(|(id, (s, k, v))| (id, s / best, k, v))
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    out
}

/// Lower-cased query words, for snippets.
pub fn terms(query: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for w in query.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
        let w = w.to_lowercase();
        if w.len() >= 2 && seen.insert(w.clone()) {
            out.push(w);
        }
    }
    out
}

/// The passage of `text` (about `max_chars`) with the most distinct query terms, on line
/// boundaries where possible, marked with "…" where cut.
pub fn snippet(text: &str, terms: &[String], max_chars: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return String::new();
    }
    let score = |line: &str| {
        let lower = line.to_lowercase();
        terms.iter().filter(|t| lower.contains(t.as_str())).count()
    };
    let best = (0..lines.len())
        .max_by_key(|i| (score(lines[*i]), std::cmp::Reverse(*i)))
        .unwrap_or(0);
    let (mut start, mut end) = (best, best + 1);
    let len = |s: usize, e: usize| lines[s..e].iter().map(|l| l.len() + 1).sum::<usize>();
    while len(start, end) < max_chars {
        let grew_after = end < lines.len() && len(start, end + 1) <= max_chars;
        if grew_after {
            end += 1;
        }
        let grew_before = start > 0 && len(start - 1, end) <= max_chars;
        if grew_before {
            start -= 1;
        }
        if !grew_after && !grew_before {
            break;
        }
    }
    let mut out = lines[start..end].join("\n");
    if out.len() > max_chars {
        let cut = out
            .char_indices()
            .take_while(|(i, _)| *i < max_chars)
            .last()
            .map_or(0, |(i, c)| i + c.len_utf8());
        out.truncate(cut);
        out.push('…');
    }
    if start > 0 {
        out.insert(0, '…');
    }
    if end < lines.len() && !out.ends_with('…') {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rrf_rewards_agreement() {
        let k = vec![(1, 9.0), (2, 5.0), (3, 1.0)];
        let v = vec![(2, 0.9), (4, 0.8)];
        let f = rrf(&k, &v);
        assert_eq!(f[0].0, 2);
        assert_eq!(f[0].2, Some(2));
        assert_eq!(f[0].3, Some(1));
        assert!(f[0].1 <= 1.0 && f[0].1 > f[1].1);
        let top = rrf(&[(7, 1.0)], &[(7, 1.0)]);
        assert!((top[0].1 - 1.0).abs() < 1e-6);
    }

    #[test]
    fn snippet_finds_the_matching_passage() {
        let text = (0..30)
            .map(|i| format!("line {i} filler text"))
            .collect::<Vec<_>>()
            .join("\n")
            + "\nthe borrow checker rejects this\nmore";
        let s = snippet(&text, &terms("borrow checker"), 80);
        assert!(s.contains("borrow checker"), "{s}");
        assert!(s.starts_with('…'));
        assert!(s.len() <= 90);
    }
}
