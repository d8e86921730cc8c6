//! Retrieval quality on a labeled question set: nDCG@10, MRR@10 and recall@10 per mode, with
//! documents as the unit (a question is answered by pages, not by chunks).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Kb;
use crate::error::{KbError, Result};
use crate::model::{Filters, Mode, SearchRequest};

#[derive(Debug, Clone, Deserialize)]
pub struct Question {
    pub id: u64,
    pub query: String,
    pub relevant: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct QuestionSet {
    #[serde(default)]
    pub corpus: String,
    pub questions: Vec<Question>,
}

impl QuestionSet {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| KbError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text)
            .map_err(|e| KbError::Invalid(format!("{}: {e}", path.display())))
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ModeScores {
    pub mode: String,
    pub ndcg_at_10: f64,
    pub mrr_at_10: f64,
    pub recall_at_10: f64,
    pub questions: usize,
    pub mean_ms: f64,
}

pub const K: usize = 10;

/// Binary-relevance metrics of one ranked list of document paths (paths relative to the
/// indexed root, exactly as the labels give them). Each relevant page counts once.
pub fn score(ranked: &[String], relevant: &[String]) -> (f64, f64, f64) {
    let mut dcg = 0.0;
    let mut rr = 0.0;
    let mut credited: Vec<&String> = Vec::new();
    for (i, path) in ranked.iter().take(K).enumerate() {
        let Some(r) = relevant
            .iter()
            .find(|r| *r == path && !credited.contains(r))
        else {
            continue;
        };
        credited.push(r);
        dcg += 1.0 / ((i + 2) as f64).log2();
        if rr == 0.0 {
            rr = 1.0 / (i + 1) as f64;
        }
    }
    let ideal: f64 = (0..relevant.len().min(K))
        .map(|i| 1.0 / ((i + 2) as f64).log2())
        .sum();
    let ndcg = if ideal > 0.0 { dcg / ideal } else { 0.0 };
    let recall = if relevant.is_empty() {
        0.0
    } else {
        credited.len() as f64 / relevant.len() as f64
    };
    (ndcg, rr, recall)
}

/// Run every question in each mode (documents ranked by their best chunk).
pub fn evaluate(
    kb: &Kb,
    set: &QuestionSet,
    modes: &[Mode],
    filters: &Filters,
) -> Result<Vec<ModeScores>> {
    let mut out = Vec::new();
    for mode in modes {
        let mut s = ModeScores {
            mode: mode.as_str().into(),
            questions: set.questions.len(),
            ..Default::default()
        };
        let mut ms = 0.0;
        for q in &set.questions {
            let mut req = SearchRequest::new(q.query.clone());
            req.limit = K;
            req.mode = *mode;
            req.group_by_document = true;
            req.filters = filters.clone();
            let resp = kb.search(&req)?;
            if resp.mode != *mode {
                return Err(KbError::Invalid(format!(
                    "{} search is not available: {}",
                    mode.as_str(),
                    resp.notes.join("; ")
                )));
            }
            ms += resp.took_ms;
            let ranked: Vec<String> = resp.hits.iter().map(|h| h.path.clone()).collect();
            let (ndcg, rr, recall) = score(&ranked, &q.relevant);
            s.ndcg_at_10 += ndcg;
            s.mrr_at_10 += rr;
            s.recall_at_10 += recall;
        }
        let n = set.questions.len().max(1) as f64;
        s.ndcg_at_10 /= n;
        s.mrr_at_10 /= n;
        s.recall_at_10 /= n;
        s.mean_ms = ms / n;
        out.push(s);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics() {
        let rel = vec!["a.html".to_string(), "b.html".to_string()];
        let (ndcg, rr, recall) = score(
            &[
                "a.html".into(),
                "x".into(),
                "b.html".into(),
                "a.html".into(),
            ],
            &rel,
        );
        assert!((rr - 1.0).abs() < 1e-9);
        assert!((recall - 1.0).abs() < 1e-9);
        let ideal = 1.0 + 1.0 / 3f64.log2();
        assert!((ndcg - (1.0 + 1.0 / 4f64.log2()) / ideal).abs() < 1e-9);
        let (ndcg, rr, recall) = score(&["x".into(), "y".into()], &rel);
        assert_eq!((ndcg, rr, recall), (0.0, 0.0, 0.0));
        let (_, rr, _) = score(&["x".into(), "b.html".into()], &rel);
        assert!((rr - 0.5).abs() < 1e-9);
        // A page under another directory with the same name is not the labeled page.
        let (_, _, recall) = score(&["old/a.html".into()], &rel);
        assert_eq!(recall, 0.0);
    }
}
