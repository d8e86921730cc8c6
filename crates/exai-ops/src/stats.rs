//! `exai stats`: calls, error rate, latency percentiles, tokens and cost per tool and per
//! provider, from the activity records; with `--by-client`, per MCP client and per principal.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use exai_core::activity::ActivityRecord;
use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Row {
    pub name: String,
    pub calls: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cost_usd: f64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Stats {
    pub since: Option<String>,
    pub first: Option<String>,
    pub last: Option<String>,
    pub total: Row,
    pub by_tool: Vec<Row>,
    pub by_provider: Vec<Row>,
    pub by_model: Vec<Row>,
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Sums and durations of a group of calls, turned into a [`Row`] once the group is complete.
#[derive(Debug, Default)]
pub struct Acc {
    durations: Vec<f64>,
    errors: u64,
    tokens_in: u64,
    tokens_out: u64,
    cost: f64,
}

/// Whether a call counts as an error: anything but `ok` (a cancelled call did not answer).
pub fn is_error(r: &ActivityRecord) -> bool {
    r.outcome != "ok"
}

impl Acc {
    pub fn add(&mut self, r: &ActivityRecord) {
        self.add_call(
            r.duration_ms,
            is_error(r),
            r.tokens_in.unwrap_or(0),
            r.tokens_out.unwrap_or(0),
            r.cost_usd.unwrap_or(0.0),
        );
    }

    /// Add one call given by its parts, for callers that keep calls in a smaller form than
    /// the record.
    pub fn add_call(
        &mut self,
        duration_ms: f64,
        error: bool,
        tokens_in: u64,
        tokens_out: u64,
        cost_usd: f64,
    ) {
        self.durations.push(duration_ms);
        if error {
            self.errors += 1;
        }
        self.tokens_in += tokens_in;
        self.tokens_out += tokens_out;
        self.cost += cost_usd;
    }

    pub fn row(mut self, name: String) -> Row {
        self.durations.sort_by(f64::total_cmp);
        let calls = self.durations.len() as u64;
        Row {
            name,
            calls,
            errors: self.errors,
            error_rate: if calls == 0 {
                0.0
            } else {
                self.errors as f64 / calls as f64
            },
            p50_ms: percentile(&self.durations, 50.0),
            p95_ms: percentile(&self.durations, 95.0),
            p99_ms: percentile(&self.durations, 99.0),
            max_ms: self.durations.last().copied().unwrap_or(0.0),
            tokens_in: self.tokens_in,
            tokens_out: self.tokens_out,
            cost_usd: self.cost,
        }
    }
}

/// One row per group, most calls first.
pub fn rows(map: BTreeMap<String, Acc>) -> Vec<Row> {
    let mut rows: Vec<Row> = map.into_iter().map(|(k, a)| a.row(k)).collect();
    rows.sort_by(|a, b| b.calls.cmp(&a.calls).then(a.name.cmp(&b.name)));
    rows
}

/// Calls per MCP client (`name version` from its `initialize`) and per principal (the named
/// bearer token, or `local`).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ClientStats {
    pub since: Option<String>,
    pub by_client: Vec<Row>,
    pub by_principal: Vec<Row>,
}

/// Records written before clients were recorded, or calls from a client that never said.
pub const UNKNOWN_CLIENT: &str = "(not recorded)";

/// Aggregate the records at or after `since` by client and by principal.
pub fn by_client<'a>(
    records: impl IntoIterator<Item = &'a ActivityRecord>,
    since: Option<DateTime<Utc>>,
) -> ClientStats {
    let (mut clients, mut principals) = (BTreeMap::new(), BTreeMap::new());
    for r in records.into_iter().filter(|r| within(r, since)) {
        let client = match (&r.client, &r.client_version) {
            (Some(name), Some(version)) if !version.is_empty() => format!("{name} {version}"),
            (Some(name), _) => name.clone(),
            (None, _) => UNKNOWN_CLIENT.to_string(),
        };
        clients.entry(client).or_insert_with(Acc::default).add(r);
        let principal = r.principal.as_deref().unwrap_or(UNKNOWN_CLIENT);
        principals
            .entry(principal.to_string())
            .or_insert_with(Acc::default)
            .add(r);
    }
    ClientStats {
        since: since.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        by_client: rows(clients),
        by_principal: rows(principals),
    }
}

/// Whether a record is at or after `since`; one without a readable time counts.
fn within(r: &ActivityRecord, since: Option<DateTime<Utc>>) -> bool {
    match (since, DateTime::parse_from_rfc3339(&r.time)) {
        (Some(s), Ok(t)) => t.with_timezone(&Utc) >= s,
        _ => true,
    }
}

/// Aggregate the records at or after `since`.
pub fn compute<'a>(
    records: impl IntoIterator<Item = &'a ActivityRecord>,
    since: Option<DateTime<Utc>>,
) -> Stats {
    let mut total = Acc::default();
    let (mut tools, mut providers, mut models) =
        (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    let (mut first, mut last): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) = (None, None);
    for r in records {
        let time = DateTime::parse_from_rfc3339(&r.time)
            .ok()
            .map(|t| t.with_timezone(&Utc));
        if let (Some(s), Some(t)) = (since, time)
            && t < s
        {
            continue;
        }
        if let Some(t) = time {
            first = Some(first.map_or(t, |f| f.min(t)));
            last = Some(last.map_or(t, |l| l.max(t)));
        }
        total.add(r);
        tools
            .entry(r.tool.clone())
            .or_insert_with(Acc::default)
            .add(r);
        if let Some(p) = &r.provider {
            providers
                .entry(p.clone())
                .or_insert_with(Acc::default)
                .add(r);
        }
        if let Some(m) = &r.model {
            models.entry(m.clone()).or_insert_with(Acc::default).add(r);
        }
    }
    let stamp = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    Stats {
        since: since.map(stamp),
        first: first.map(stamp),
        last: last.map(stamp),
        total: total.row("all".into()),
        by_tool: rows(tools),
        by_provider: rows(providers),
        by_model: rows(models),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(time: &str, tool: &str, ms: f64, ok: bool, provider: Option<&str>) -> ActivityRecord {
        ActivityRecord {
            time: time.into(),
            tool: tool.into(),
            session: "s".into(),
            request_id: "1".into(),
            duration_ms: ms,
            outcome: if ok { "ok" } else { "error" }.into(),
            error_kind: None,
            model: provider.map(|_| "glm-4.6".to_string()),
            provider: provider.map(str::to_string),
            tokens_in: provider.map(|_| 100),
            tokens_out: provider.map(|_| 10),
            cost_usd: provider.map(|_| 0.001),
            route: None,
            client: None,
            client_version: None,
            principal: None,
            search: None,
        }
    }

    #[test]
    fn groups_by_client_and_principal() {
        let from = |client: Option<(&str, &str)>, principal: Option<&str>, ok: bool| {
            let mut rec = r("2026-12-01T10:00:00Z", "chat", 20.0, ok, Some("glm"));
            rec.client = client.map(|c| c.0.to_string());
            rec.client_version = client.map(|c| c.1.to_string());
            rec.principal = principal.map(str::to_string);
            rec
        };
        let mut old = from(None, None, true);
        old.time = "2026-11-01T10:00:00Z".into();
        let records = [
            from(Some(("claude-code", "2.0.1")), Some("alice"), true),
            from(Some(("claude-code", "2.0.1")), Some("alice"), false),
            from(Some(("mcp", "")), Some("local"), true),
            from(None, None, true),
            old,
        ];
        let s = by_client(&records, Some("2026-12-01T00:00:00Z".parse().unwrap()));
        let clients: Vec<(&str, u64, u64)> = s
            .by_client
            .iter()
            .map(|r| (r.name.as_str(), r.calls, r.errors))
            .collect();
        assert_eq!(
            clients,
            [
                ("claude-code 2.0.1", 2, 1),
                ("(not recorded)", 1, 0),
                ("mcp", 1, 0)
            ]
        );
        let principals: Vec<(&str, u64)> = s
            .by_principal
            .iter()
            .map(|r| (r.name.as_str(), r.calls))
            .collect();
        assert_eq!(
            principals,
            [("alice", 2), ("(not recorded)", 1), ("local", 1)]
        );
        assert_eq!(s.by_client[0].p50_ms, 20.0);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 95.0), 95.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn groups_by_tool_and_provider_within_the_window() {
        let records = [
            r("2026-12-01T09:00:00Z", "chat", 999.0, true, Some("glm")),
            r("2026-12-01T10:00:00Z", "chat", 10.0, true, Some("glm")),
            r("2026-12-01T10:01:00Z", "chat", 30.0, false, Some("glm")),
            r("2026-12-01T10:02:00Z", "version", 1.0, true, None),
        ];
        let s = compute(&records, Some("2026-12-01T09:30:00Z".parse().unwrap()));
        assert_eq!(s.total.calls, 3);
        assert_eq!(s.by_tool[0].name, "chat");
        assert_eq!(s.by_tool[0].calls, 2);
        assert_eq!(s.by_tool[0].errors, 1);
        assert_eq!(s.by_tool[0].error_rate, 0.5);
        assert_eq!(s.by_tool[0].p50_ms, 10.0);
        assert_eq!(s.by_tool[0].p99_ms, 30.0);
        assert_eq!(s.by_provider.len(), 1);
        assert_eq!(s.by_provider[0].tokens_in, 200);
        assert!((s.by_provider[0].cost_usd - 0.002).abs() < 1e-12);
        assert_eq!(s.first.as_deref(), Some("2026-12-01T10:00:00Z"));
    }
}
