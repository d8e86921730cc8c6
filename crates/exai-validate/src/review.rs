//! The weekly review (`exai validate history --since 7d --by-day --by-tool`): the runs of a
//! window, their pass rate per day and per tool, each compared with the window of the same
//! length before it, so a falling rate shows without reading run by run.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::report::{arrow, percent};
use crate::track::{ResultRow, RunRow, Status};

/// The window under review: `[since, now]`, compared with `[since - length, since)`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub since: DateTime<Utc>,
    pub length: chrono::Duration,
}

impl Window {
    /// The window of `length` that ends now.
    pub fn last(length: chrono::Duration) -> Window {
        Window {
            since: Utc::now() - length,
            length,
        }
    }

    /// Where the comparison window starts: what the store must be read from.
    pub fn previous_start(&self) -> DateTime<Utc> {
        self.since - self.length
    }

    /// Whether a run that started at `started_at` (RFC 3339) is in the window.
    pub fn contains(&self, started_at: &str) -> bool {
        started(started_at).is_some_and(|t| t >= self.since)
    }
}

fn started(started_at: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(started_at)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Case counts, for a run, a day, a tool or a whole window.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Tally {
    pub passed: u64,
    pub failed: u64,
    pub skipped: u64,
    pub errored: u64,
}

impl Tally {
    fn add_run(&mut self, run: &RunRow) {
        self.passed += run.passed;
        self.failed += run.failed;
        self.skipped += run.skipped;
        self.errored += run.errored;
    }

    fn add_status(&mut self, status: Status) {
        match status {
            Status::Pass => self.passed += 1,
            Status::Fail => self.failed += 1,
            Status::Skip => self.skipped += 1,
            Status::Error => self.errored += 1,
        }
    }

    /// Passed among the cases that ran (skips do not count), as a run's pass rate is.
    pub fn pass_rate(&self) -> Option<f64> {
        let ran = self.passed + self.failed + self.errored;
        (ran > 0).then(|| self.passed as f64 / ran as f64)
    }
}

/// Percentage points from `before` to `now`, when both are known.
fn trend(now: Option<f64>, before: Option<f64>) -> Option<f64> {
    Some((now? - before?) * 100.0)
}

/// The whole window against the one before it.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub runs: usize,
    pub cases: Tally,
    pub pass_rate: Option<f64>,
    pub previous_runs: usize,
    pub previous_pass_rate: Option<f64>,
    pub trend_pp: Option<f64>,
}

/// `runs` read from [`Window::previous_start`] on.
pub fn summary(runs: &[RunRow], window: &Window) -> Summary {
    let (mut now, mut before) = (Tally::default(), Tally::default());
    let (mut now_runs, mut before_runs) = (0, 0);
    for run in runs {
        if window.contains(&run.started_at) {
            now.add_run(run);
            now_runs += 1;
        } else {
            before.add_run(run);
            before_runs += 1;
        }
    }
    Summary {
        runs: now_runs,
        cases: now,
        pass_rate: now.pass_rate(),
        previous_runs: before_runs,
        previous_pass_rate: before.pass_rate(),
        trend_pp: trend(now.pass_rate(), before.pass_rate()),
    }
}

/// One UTC day of the window.
#[derive(Debug, Clone, Serialize)]
pub struct Day {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    pub runs: usize,
    pub cases: Tally,
    pub pass_rate: Option<f64>,
    /// Against the day before it that had runs (within the runs read).
    pub trend_pp: Option<f64>,
}

/// The window's days that had runs, newest first; `runs` as for [`summary`].
pub fn by_day(runs: &[RunRow], window: &Window) -> Vec<Day> {
    let mut days: BTreeMap<String, (usize, Tally)> = BTreeMap::new();
    for run in runs {
        let day: String = run.started_at.chars().take(10).collect();
        let entry = days.entry(day).or_default();
        entry.0 += 1;
        entry.1.add_run(run);
    }
    let first_day: String = window.since.format("%Y-%m-%d").to_string();
    let mut previous_rate = None;
    let mut out = Vec::new();
    for (day, (count, tally)) in days {
        let rate = tally.pass_rate();
        if day >= first_day {
            out.push(Day {
                day,
                runs: count,
                cases: tally,
                pass_rate: rate,
                trend_pp: trend(rate, previous_rate),
            });
        }
        if rate.is_some() {
            previous_rate = rate;
        }
    }
    out.reverse();
    out
}

/// One tool across the window's runs.
#[derive(Debug, Clone, Serialize)]
pub struct Tool {
    pub tool: String,
    /// Runs that had at least one case of this tool.
    pub runs: usize,
    pub cases: Tally,
    pub pass_rate: Option<f64>,
    pub previous_pass_rate: Option<f64>,
    pub trend_pp: Option<f64>,
    /// Variations that failed or errored, with how often, most often first.
    pub failing: Vec<(String, u64)>,
    /// The newest failure's reason.
    pub last_error: Option<String>,
}

/// Tools with failures first (most first), then by name; `results` read from
/// [`Window::previous_start`] on, newest run first.
pub fn by_tool(results: &[ResultRow], window: &Window) -> Vec<Tool> {
    #[derive(Default)]
    struct Acc {
        runs: BTreeSet<i64>,
        now: Tally,
        before: Tally,
        failing: BTreeMap<String, u64>,
        last_error: Option<String>,
    }
    let mut tools: BTreeMap<&str, Acc> = BTreeMap::new();
    for r in results {
        let acc = tools.entry(&r.tool).or_default();
        if !window.contains(&r.started_at) {
            acc.before.add_status(r.status);
            continue;
        }
        acc.runs.insert(r.run_id);
        acc.now.add_status(r.status);
        if matches!(r.status, Status::Fail | Status::Error) {
            *acc.failing.entry(r.variation.clone()).or_default() += 1;
            if acc.last_error.is_none() {
                acc.last_error.clone_from(&r.error);
            }
        }
    }
    let mut out: Vec<Tool> = tools
        .into_iter()
        .filter(|(_, acc)| !acc.runs.is_empty())
        .map(|(tool, acc)| {
            let mut failing: Vec<(String, u64)> = acc.failing.into_iter().collect();
            failing.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            Tool {
                tool: tool.to_string(),
                runs: acc.runs.len(),
                cases: acc.now,
                pass_rate: acc.now.pass_rate(),
                previous_pass_rate: acc.before.pass_rate(),
                trend_pp: trend(acc.now.pass_rate(), acc.before.pass_rate()),
                failing,
                last_error: acc.last_error,
            }
        })
        .collect();
    let failures = |t: &Tool| t.cases.failed + t.cases.errored;
    out.sort_by(|a, b| {
        failures(b)
            .cmp(&failures(a))
            .then_with(|| a.tool.cmp(&b.tool))
    });
    out
}

/// The summary line: `label` names the window as the user gave it (`7d`).
pub fn summary_text(s: &Summary, window: &Window, label: &str) -> String {
    if s.runs == 0 {
        return format!(
            "no validation runs since {} UTC ({label}); run `exai validate`\n",
            window.since.format("%Y-%m-%d %H:%M")
        );
    }
    format!(
        "{} run(s) since {} UTC ({label}): {} cases, {} passed, {} failed, {} errors, pass rate {}; previous {label}: {} run(s), pass rate {} {}\n",
        s.runs,
        window.since.format("%Y-%m-%d %H:%M"),
        s.cases.passed + s.cases.failed + s.cases.skipped + s.cases.errored,
        s.cases.passed,
        s.cases.failed,
        s.cases.errored,
        percent(s.pass_rate),
        s.previous_runs,
        percent(s.previous_pass_rate),
        arrow(s.trend_pp),
    )
}

/// `--by-day` as text.
pub fn days_text(days: &[Day]) -> String {
    let mut out = format!(
        "{:<10}  {:>4} {:>6} {:>5} {:>5} {:>5} {:>5}  {:>9}  {:>8}\n",
        "day (UTC)", "runs", "cases", "pass", "fail", "skip", "error", "pass rate", "trend pp"
    );
    for d in days {
        let c = d.cases;
        let _ = writeln!(
            out,
            "{:<10}  {:>4} {:>6} {:>5} {:>5} {:>5} {:>5}  {:>9}  {:>8}",
            d.day,
            d.runs,
            c.passed + c.failed + c.skipped + c.errored,
            c.passed,
            c.failed,
            c.skipped,
            c.errored,
            percent(d.pass_rate),
            arrow(d.trend_pp)
        );
    }
    out
}

/// `--by-tool` as text.
pub fn tools_text(tools: &[Tool]) -> String {
    let width = tools.iter().map(|t| t.tool.len()).max().unwrap_or(4).max(4);
    let mut out = format!(
        "{:<width$}  {:>4} {:>5} {:>5} {:>5}  {:>9}  {:>8}  {:>8}  failing variations\n",
        "tool", "runs", "pass", "fail", "error", "pass rate", "previous", "trend pp"
    );
    for t in tools {
        let failing: Vec<String> = t
            .failing
            .iter()
            .map(|(variation, n)| format!("{variation} ×{n}"))
            .collect();
        let _ = writeln!(
            out,
            "{:<width$}  {:>4} {:>5} {:>5} {:>5}  {:>9}  {:>8}  {:>8}  {}",
            t.tool,
            t.runs,
            t.cases.passed,
            t.cases.failed,
            t.cases.errored,
            percent(t.pass_rate),
            percent(t.previous_pass_rate),
            arrow(t.trend_pp),
            failing.join(", ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(days_ago: i64, hour: u32) -> String {
        let day = (Utc::now() - chrono::Duration::days(days_ago)).date_naive();
        let t = day
            .and_hms_opt(hour, 0, 0)
            .map(|t| t.and_utc())
            .unwrap_or_else(Utc::now);
        crate::track::stored_time(t)
    }

    fn run(id: i64, started_at: String, passed: u64, failed: u64) -> RunRow {
        RunRow {
            id,
            started_at,
            finished_at: None,
            provider: "mock".into(),
            exai_version: "0".into(),
            tools_filter: None,
            variations_filter: None,
            watcher_model: None,
            total: passed + failed,
            passed,
            failed,
            skipped: 1,
            errored: 0,
            pass_rate: None,
            duration_ms: None,
            tokens_in: 0,
            tokens_out: 0,
            cost_usd: 0.0,
            mean_grade: None,
        }
    }

    fn result(run_id: i64, started_at: &str, tool: &str, variation: &str, s: Status) -> ResultRow {
        ResultRow {
            run_id,
            started_at: started_at.into(),
            provider: "mock".into(),
            tool: tool.into(),
            variation: variation.into(),
            status: s,
            error: (s == Status::Fail).then(|| format!("{tool} {variation} broke in {run_id}")),
        }
    }

    /// A week from midnight (UTC) six days ago, so every run below is on a whole day in it.
    fn week() -> Window {
        let since = (Utc::now() - chrono::Duration::days(6))
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc())
            .unwrap_or_else(Utc::now);
        Window {
            since,
            length: chrono::Duration::days(7),
        }
    }

    #[test]
    fn summary_compares_the_window_with_the_one_before() {
        let runs = vec![
            run(4, at(0, 1), 9, 1),
            run(3, at(2, 1), 8, 2),
            run(2, at(9, 1), 5, 5),
        ];
        let s = summary(&runs, &week());
        assert_eq!((s.runs, s.previous_runs), (2, 1));
        assert_eq!(s.cases.passed, 17);
        assert!((s.pass_rate.unwrap() - 0.85).abs() < 1e-9);
        assert!((s.trend_pp.unwrap() - 35.0).abs() < 1e-9);
        let text = summary_text(&s, &week(), "7d");
        assert!(text.starts_with("2 run(s) since"), "{text}");
        assert!(
            text.contains("pass rate 85.0%") && text.contains("↑ +35.0"),
            "{text}"
        );
        let empty = summary(&runs[2..], &week());
        assert!(summary_text(&empty, &week(), "7d").starts_with("no validation runs"));
    }

    #[test]
    fn days_group_runs_newest_first_with_the_trend_against_the_day_before() {
        let runs = vec![
            run(5, at(0, 3), 10, 0),
            run(4, at(0, 1), 6, 4),
            run(3, at(2, 1), 9, 1),
            run(2, at(9, 1), 1, 9),
        ];
        let days = by_day(&runs, &week());
        assert_eq!(
            days.len(),
            2,
            "the day outside the window only sets the first trend"
        );
        assert_eq!(days[0].runs, 2);
        assert_eq!(days[0].cases.passed, 16);
        assert!((days[0].pass_rate.unwrap() - 0.8).abs() < 1e-9);
        assert!((days[0].trend_pp.unwrap() + 10.0).abs() < 1e-9);
        assert!((days[1].trend_pp.unwrap() - 80.0).abs() < 1e-9);
        let text = days_text(&days);
        assert!(text.contains("↓ -10.0"), "{text}");
        assert_eq!(text.lines().count(), 3);
    }

    #[test]
    fn tools_with_failures_come_first_with_their_variations_and_newest_reason() {
        let now = at(0, 1);
        let earlier = at(1, 1);
        let before = at(10, 1);
        let results = vec![
            result(3, &now, "chat", "basic", Status::Pass),
            result(3, &now, "debug", "basic", Status::Fail),
            result(3, &now, "debug", "files", Status::Error),
            result(2, &earlier, "chat", "basic", Status::Pass),
            result(2, &earlier, "debug", "basic", Status::Fail),
            result(2, &earlier, "debug", "files", Status::Pass),
            result(2, &earlier, "planner", "basic", Status::Skip),
            result(1, &before, "debug", "basic", Status::Pass),
            result(1, &before, "gone", "basic", Status::Pass),
        ];
        let tools = by_tool(&results, &week());
        let names: Vec<&str> = tools.iter().map(|t| t.tool.as_str()).collect();
        assert_eq!(
            names,
            ["debug", "chat", "planner"],
            "a tool only before is left out"
        );
        let debug = &tools[0];
        assert_eq!(debug.runs, 2);
        assert_eq!((debug.cases.failed, debug.cases.errored), (2, 1));
        assert_eq!(
            debug.failing,
            [("basic".to_string(), 2), ("files".to_string(), 1)]
        );
        assert_eq!(debug.last_error.as_deref(), Some("debug basic broke in 3"));
        assert!((debug.trend_pp.unwrap() + 75.0).abs() < 1e-9);
        assert_eq!(tools[2].pass_rate, None, "only skips: no rate");
        let text = tools_text(&tools);
        assert!(text.contains("basic ×2, files ×1"), "{text}");
    }
}
