//! What `exai validate` prints: a line per case as it finishes, the pass-rate table, and the
//! history of runs with their trend.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::RunReport;
use crate::track::{CaseResult, Grade, RunRow, Status, Totals};

pub(crate) fn percent(rate: Option<f64>) -> String {
    rate.map_or_else(|| "—".into(), |r| format!("{:.1}%", r * 100.0))
}

/// One case as it finishes: status, tool, variation, time, model; the reason below when it did
/// not pass; the watcher's grade when there is one.
pub fn case_line(r: &CaseResult, grade: Option<&Grade>) -> String {
    let mut line = format!(
        "{:<5}  {:<22} {:<16} {:>8.0} ms",
        r.status.as_str(),
        r.tool,
        r.variation,
        r.duration_ms
    );
    if let Some(m) = &r.model {
        let _ = write!(line, "  {m}");
    }
    if let Some(g) = grade {
        match (g.grade, &g.error) {
            (Some(n), _) => {
                let _ = write!(line, "  grade {n}/10");
            }
            (None, Some(e)) => {
                let _ = write!(line, "  grade: none ({e})");
            }
            (None, None) => {}
        }
    }
    if r.status != Status::Pass
        && let Some(e) = &r.error
    {
        let _ = write!(line, "\n       {e}");
    }
    line
}

/// Pass rate per tool and overall.
pub fn table(report: &RunReport) -> String {
    let mut by_tool: BTreeMap<&str, Totals> = BTreeMap::new();
    let mut order: Vec<&str> = Vec::new();
    for (r, _) in &report.results {
        if !by_tool.contains_key(r.tool.as_str()) {
            order.push(&r.tool);
        }
        by_tool.entry(&r.tool).or_default().add(r);
    }
    let mut out = format!(
        "{:<22} {:>5} {:>5} {:>5} {:>6}  {:>9}\n",
        "tool", "pass", "fail", "skip", "error", "pass rate"
    );
    let row = |out: &mut String, name: &str, t: &Totals| {
        let _ = writeln!(
            out,
            "{:<22} {:>5} {:>5} {:>5} {:>6}  {:>9}",
            name,
            t.passed,
            t.failed,
            t.skipped,
            t.errored,
            percent(t.pass_rate())
        );
    };
    for tool in order {
        if let Some(t) = by_tool.get(tool) {
            row(&mut out, tool, t);
        }
    }
    out.push_str(&"-".repeat(58));
    out.push('\n');
    row(&mut out, "overall", &report.totals);
    let _ = write!(
        out,
        "\nrun {} ({} provider): {} cases in {:.1} s; {} tokens in, {} out; ${:.6}",
        report.run_id,
        report.provider.as_str(),
        report.totals.total,
        report.duration.as_secs_f64(),
        report.totals.tokens_in,
        report.totals.tokens_out,
        report.totals.cost_usd
    );
    let asked: Vec<&Grade> = report
        .results
        .iter()
        .filter_map(|(_, g)| g.as_ref())
        .collect();
    let grades: Vec<u8> = asked.iter().filter_map(|g| g.grade).collect();
    if let Some(model) = &report.watcher {
        let mean = (!grades.is_empty())
            .then(|| grades.iter().map(|g| f64::from(*g)).sum::<f64>() / grades.len() as f64);
        let _ = write!(
            out,
            "\nwatcher {model}: {} of {} outputs graded, mean {}",
            grades.len(),
            asked.len(),
            mean.map_or_else(|| "—".into(), |m| format!("{m:.1}/10"))
        );
        if let Some(e) = asked.iter().find_map(|g| g.error.as_deref()) {
            let _ = write!(out, "; not graded: {e}");
        }
    }
    out
}

/// The run as JSON (`exai validate --json`).
pub fn run_json(report: &RunReport) -> Value {
    let results: Vec<Value> = report
        .results
        .iter()
        .map(|(r, g)| {
            let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
            if let Some(o) = v.as_object_mut() {
                o.remove("output");
                if let Some(g) = g {
                    o.insert(
                        "grade".into(),
                        serde_json::to_value(g).unwrap_or(Value::Null),
                    );
                }
            }
            v
        })
        .collect();
    json!({
        "run_id": report.run_id,
        "provider": report.provider.as_str(),
        "pass_rate": report.totals.pass_rate(),
        "totals": report.totals,
        "duration_ms": report.duration.as_secs_f64() * 1000.0,
        "watcher_model": report.watcher,
        "results": results,
    })
}

/// Change of pass rate in percentage points against the previous finished run of the same
/// kind (provider and filters), for each run (newest first, as `runs` are).
fn trends(runs: &[RunRow]) -> Vec<Option<f64>> {
    let same = |a: &RunRow, b: &RunRow| {
        a.provider == b.provider
            && a.tools_filter == b.tools_filter
            && a.variations_filter == b.variations_filter
    };
    runs.iter()
        .enumerate()
        .map(|(i, run)| {
            let now = run.pass_rate?;
            let before = runs[i + 1..]
                .iter()
                .find(|r| same(r, run) && r.pass_rate.is_some())?
                .pass_rate?;
            Some((now - before) * 100.0)
        })
        .collect()
}

pub(crate) fn arrow(trend: Option<f64>) -> String {
    match trend {
        None => String::new(),
        Some(t) if t > 0.05 => format!("↑ +{t:.1}"),
        Some(t) if t < -0.05 => format!("↓ {t:.1}"),
        Some(_) => "= 0.0".into(),
    }
}

/// How many older runs to read beyond those shown, so the oldest shown still has a trend.
pub const TREND_LOOKBACK: usize = 200;

/// `exai validate history` as text: the newest `limit` of `runs`.
pub fn history(runs: &[RunRow], limit: usize) -> String {
    if runs.is_empty() {
        return "no validation runs recorded yet; run `exai validate`\n".into();
    }
    let trends = trends(runs);
    let mut out = format!(
        "{:>4}  {:<20} {:<8} {:>5} {:>5} {:>5} {:>5} {:>5}  {:>9}  {:>8}  {:>5}  {:>8}\n",
        "run",
        "started (UTC)",
        "provider",
        "cases",
        "pass",
        "fail",
        "skip",
        "error",
        "pass rate",
        "trend pp",
        "grade",
        "time"
    );
    for (run, trend) in runs.iter().zip(&trends).take(limit) {
        let started: String = run.started_at.chars().take(19).collect();
        let time = match (&run.finished_at, run.duration_ms) {
            (Some(_), Some(ms)) => format!("{:.1} s", ms / 1000.0),
            _ => "unfinished".into(),
        };
        let _ = writeln!(
            out,
            "{:>4}  {:<20} {:<8} {:>5} {:>5} {:>5} {:>5} {:>5}  {:>9}  {:>8}  {:>5}  {:>8}",
            run.id,
            started.replace('T', " "),
            run.provider,
            run.total,
            run.passed,
            run.failed,
            run.skipped,
            run.errored,
            percent(run.pass_rate),
            arrow(*trend),
            run.mean_grade
                .map_or_else(String::new, |g| format!("{g:.1}")),
            time
        );
    }
    out
}

/// `exai validate history --json`: the newest `limit` of `runs`.
pub fn history_json(runs: &[RunRow], limit: usize) -> Value {
    let trends = trends(runs);
    let rows: Vec<Value> = runs
        .iter()
        .zip(trends)
        .take(limit)
        .map(|(r, t)| {
            let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
            v["trend_pp"] = json!(t);
            v
        })
        .collect();
    json!({ "runs": rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: i64, provider: &str, rate: Option<f64>) -> RunRow {
        RunRow {
            id,
            started_at: "2025-01-01T00:00:00.000Z".into(),
            finished_at: Some("2025-01-01T00:00:05.000Z".into()),
            provider: provider.into(),
            exai_version: "0".into(),
            tools_filter: None,
            variations_filter: None,
            watcher_model: None,
            total: 10,
            passed: 9,
            failed: 1,
            skipped: 0,
            errored: 0,
            pass_rate: rate,
            duration_ms: Some(5000.0),
            tokens_in: 0,
            tokens_out: 0,
            cost_usd: 0.0,
            mean_grade: None,
        }
    }

    #[test]
    fn trend_compares_with_the_previous_run_of_the_same_provider() {
        let runs = vec![
            run(4, "mock", Some(0.9)),
            run(3, "live", Some(0.5)),
            run(2, "mock", Some(0.8)),
            run(1, "mock", None),
        ];
        let t = trends(&runs);
        assert!((t[0].unwrap_or(0.0) - 10.0).abs() < 1e-9);
        assert_eq!(t[1], None);
        assert_eq!(t[2], None);
        let text = history(&runs, 10);
        assert!(text.contains("↑ +10.0"), "{text}");
        let v = history_json(&runs, 1);
        assert_eq!(v["runs"][0]["id"], 4);
        assert!((v["runs"][0]["trend_pp"].as_f64().unwrap_or(0.0) - 10.0).abs() < 1e-9);
        assert_eq!(v["runs"].as_array().map(Vec::len), Some(1));
        let mut filtered = run(5, "mock", Some(0.1));
        filtered.tools_filter = Some("chat".into());
        let runs = [vec![filtered], runs].concat();
        assert_eq!(
            trends(&runs)[0],
            None,
            "a filtered run is not compared with a full one"
        );
    }
}
