//! `exai stats --queries`: what users search for — the most frequent and the slowest knowledge-base
//! queries, from the activity records. The text is there only for searches made while
//! `logging.log_queries` was on; the report says how many searches carried none.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use exai_core::activity::ActivityRecord;
use serde::Serialize;

use crate::stats::percentile;

/// One distinct query (compared without case and extra spaces).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Frequent {
    pub query: String,
    pub count: u64,
    pub p50_ms: f64,
    pub max_ms: f64,
    /// Searches of it that found nothing.
    pub no_hits: u64,
}

/// One search.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Slow {
    pub time: String,
    pub query: String,
    pub mode: String,
    pub hits: u64,
    pub duration_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// `search_docs` calls in the window.
    pub searches: u64,
    /// Of those, the ones whose text was recorded.
    pub with_text: u64,
    pub most_frequent: Vec<Frequent>,
    pub slowest: Vec<Slow>,
}

fn normalized(query: &str) -> String {
    query
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// The `limit` most frequent and slowest queries among the searches at or after `since`.
pub fn compute<'a>(
    records: impl IntoIterator<Item = &'a ActivityRecord>,
    since: Option<DateTime<Utc>>,
    limit: usize,
) -> Report {
    let mut searches = 0;
    let mut slow = Vec::new();
    let mut groups: HashMap<String, (Vec<f64>, u64)> = HashMap::new();
    for r in records {
        let Some(search) = &r.search else { continue };
        if let Some(s) = since {
            let time = DateTime::parse_from_rfc3339(&r.time).map(|t| t.with_timezone(&Utc));
            if time.is_ok_and(|t| t < s) {
                continue;
            }
        }
        searches += 1;
        let Some(query) = &search.query else { continue };
        let key = normalized(query);
        let entry = groups.entry(key.clone()).or_default();
        entry.0.push(r.duration_ms);
        entry.1 += u64::from(search.hits == 0);
        slow.push(Slow {
            time: r.time.clone(),
            query: key,
            mode: search.mode.clone(),
            hits: search.hits,
            duration_ms: r.duration_ms,
        });
    }
    let with_text = slow.len() as u64;
    let mut most_frequent: Vec<Frequent> = groups
        .into_iter()
        .map(|(query, (mut durations, no_hits))| {
            durations.sort_by(f64::total_cmp);
            Frequent {
                query,
                count: durations.len() as u64,
                p50_ms: percentile(&durations, 50.0),
                max_ms: durations.last().copied().unwrap_or(0.0),
                no_hits,
            }
        })
        .collect();
    most_frequent.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.query.cmp(&b.query)));
    most_frequent.truncate(limit);
    slow.sort_by(|a, b| b.duration_ms.total_cmp(&a.duration_ms));
    slow.truncate(limit);
    Report {
        searches,
        with_text,
        most_frequent,
        slowest: slow,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exai_core::activity::SearchActivity;

    fn search(time: &str, query: Option<&str>, ms: f64, hits: u64) -> ActivityRecord {
        ActivityRecord {
            time: time.into(),
            tool: "search_docs".into(),
            session: "s".into(),
            request_id: "1".into(),
            duration_ms: ms,
            outcome: "ok".into(),
            error_kind: None,
            model: None,
            provider: None,
            tokens_in: None,
            tokens_out: None,
            cost_usd: None,
            route: None,
            search: Some(SearchActivity {
                mode: "keyword".into(),
                hits,
                query: query.map(str::to_string),
            }),
            client: None,
            client_version: None,
            principal: None,
        }
    }

    #[test]
    fn frequent_and_slow_queries_from_the_recorded_text() {
        let records = vec![
            search("2026-12-01T10:00:00Z", Some("borrow checker"), 5.0, 3),
            search("2026-12-01T10:01:00Z", Some("Borrow  Checker "), 7.0, 3),
            search("2026-12-01T10:02:00Z", Some("lifetimes"), 900.0, 0),
            search("2026-12-01T10:03:00Z", None, 2000.0, 1),
            search("2026-12-01T08:00:00Z", Some("old"), 5000.0, 1),
        ];
        let rep = compute(&records, Some("2026-12-01T09:00:00Z".parse().unwrap()), 10);
        assert_eq!((rep.searches, rep.with_text), (4, 3));
        assert_eq!(rep.most_frequent[0].query, "borrow checker");
        assert_eq!(rep.most_frequent[0].count, 2);
        assert_eq!(rep.most_frequent[0].max_ms, 7.0);
        assert_eq!(rep.most_frequent[1].no_hits, 1);
        // The search without text is counted but never listed.
        assert_eq!(rep.slowest[0].query, "lifetimes");
        assert_eq!(rep.slowest.len(), 3);
        assert_eq!(compute(&records, None, 1).slowest[0].query, "old");
    }
}
