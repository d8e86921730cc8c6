//! `exai stats --slo` and the `slo_24h` check of `exai health`: the runbooks' service targets
//! over a window — the daemon's uptime (from its resource samples), the 95th percentile latency
//! of simple and of workflow tools, and the error rate (from the activity records). Each target
//! is a setting (`ops.slo_*`).
//!
//! Calls the client cancelled count for neither latency nor errors: the client chose to stop
//! them. Errors are calls that ended in `error` or `timeout`.

use chrono::{DateTime, Utc};
use exai_core::activity::ActivityRecord;
use exai_core::config::OpsConfig;
use serde::Serialize;

use crate::resources::series::Uptime;
use crate::stats::percentile;

/// The targets, from `ops.slo_*`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Targets {
    pub uptime_percent: f64,
    pub simple_p95_secs: f64,
    pub workflow_p95_secs: f64,
    pub error_rate_percent: f64,
}

impl Targets {
    pub fn from_config(ops: &OpsConfig) -> Targets {
        Targets {
            uptime_percent: ops.slo_uptime_percent,
            simple_p95_secs: ops.slo_simple_p95_secs,
            workflow_p95_secs: ops.slo_workflow_p95_secs,
            error_rate_percent: ops.slo_error_rate_percent,
        }
    }
}

/// One target against what happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Objective {
    /// `uptime`, `simple_p95`, `workflow_p95`, `error_rate`.
    pub name: &'static str,
    /// The setting that holds the target.
    pub setting: &'static str,
    pub target: f64,
    /// `None` without data (no calls of that kind, no samples).
    pub actual: Option<f64>,
    /// `percent` or `seconds`.
    pub unit: &'static str,
    /// Calls (or samples) behind `actual`.
    pub count: u64,
    /// `None` without data.
    pub met: Option<bool>,
}

impl Objective {
    /// `uptime 99.95 % (target ≥ 99 %)`.
    pub fn describe(&self) -> String {
        let (cmp, unit) = match (self.name, self.unit) {
            ("uptime", _) => ("≥", " %"),
            (_, "percent") => ("<", " %"),
            _ => ("<", " s"),
        };
        match self.actual {
            Some(a) => format!(
                "{} {a:.2}{unit} (target {cmp} {}{unit}, {} {})",
                self.name,
                self.target,
                self.count,
                if self.name == "uptime" {
                    "samples"
                } else {
                    "calls"
                }
            ),
            None => format!("{} no data (target {cmp} {}{unit})", self.name, self.target),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub since: String,
    pub until: String,
    pub objectives: Vec<Objective>,
    /// No target breached (targets without data do not count).
    pub met: bool,
}

impl Report {
    pub fn breaches(&self) -> impl Iterator<Item = &Objective> {
        self.objectives.iter().filter(|o| o.met == Some(false))
    }
}

/// Check `targets` over the calls in `[since, now]`. `is_workflow` tells a workflow tool from a
/// simple one (the server's registry knows); `uptime` comes from the daemon's samples.
pub fn evaluate<'a>(
    records: impl IntoIterator<Item = &'a ActivityRecord>,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
    is_workflow: &dyn Fn(&str) -> bool,
    uptime: Option<&Uptime>,
    samples: u64,
    targets: &Targets,
) -> Report {
    let (mut simple, mut workflow) = (Vec::new(), Vec::new());
    let (mut calls, mut errors) = (0u64, 0u64);
    for r in records {
        let Some(time) = DateTime::parse_from_rfc3339(&r.time)
            .ok()
            .map(|t| t.with_timezone(&Utc))
        else {
            continue;
        };
        if time < since || time > now || r.outcome == "cancelled" {
            continue;
        }
        calls += 1;
        if r.outcome == "error" || r.outcome == "timeout" {
            errors += 1;
        }
        let secs = r.duration_ms / 1000.0;
        if is_workflow(&r.tool) {
            workflow.push(secs);
        } else {
            simple.push(secs);
        }
    }
    let p95 = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (!v.is_empty()).then(|| percentile(v, 95.0))
    };
    let objectives = vec![
        Objective {
            name: "uptime",
            setting: "ops.slo_uptime_percent",
            target: targets.uptime_percent,
            actual: uptime.map(|u| u.percent),
            unit: "percent",
            count: samples,
            met: uptime.map(|u| u.percent >= targets.uptime_percent),
        },
        latency(
            "simple_p95",
            "ops.slo_simple_p95_secs",
            targets.simple_p95_secs,
            p95(&mut simple),
            simple.len(),
        ),
        latency(
            "workflow_p95",
            "ops.slo_workflow_p95_secs",
            targets.workflow_p95_secs,
            p95(&mut workflow),
            workflow.len(),
        ),
        {
            let rate = (calls > 0).then(|| errors as f64 * 100.0 / calls as f64);
            Objective {
                name: "error_rate",
                setting: "ops.slo_error_rate_percent",
                target: targets.error_rate_percent,
                actual: rate,
                unit: "percent",
                count: calls,
                met: rate.map(|r| r < targets.error_rate_percent),
            }
        },
    ];
    let stamp = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    Report {
        since: stamp(since),
        until: stamp(now),
        met: !objectives.iter().any(|o| o.met == Some(false)),
        objectives,
    }
}

fn latency(
    name: &'static str,
    setting: &'static str,
    target: f64,
    p95: Option<f64>,
    count: usize,
) -> Objective {
    Objective {
        name,
        setting,
        target,
        actual: p95,
        unit: "seconds",
        count: count as u64,
        met: p95.map(|p| p < target),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(mins: i64, tool: &str, secs: f64, outcome: &str) -> ActivityRecord {
        let t = "2026-12-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
            + chrono::Duration::minutes(mins);
        ActivityRecord {
            time: t.to_rfc3339(),
            tool: tool.into(),
            session: "s".into(),
            request_id: "1".into(),
            duration_ms: secs * 1000.0,
            outcome: outcome.into(),
            error_kind: None,
            model: None,
            provider: None,
            tokens_in: None,
            tokens_out: None,
            cost_usd: None,
            route: None,
            search: None,
            client: None,
            client_version: None,
            principal: None,
        }
    }

    fn at(mins: i64) -> DateTime<Utc> {
        "2026-12-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap() + chrono::Duration::minutes(mins)
    }

    const TARGETS: Targets = Targets {
        uptime_percent: 99.0,
        simple_p95_secs: 5.0,
        workflow_p95_secs: 60.0,
        error_rate_percent: 1.0,
    };

    fn workflow(tool: &str) -> bool {
        tool == "codereview"
    }

    #[test]
    fn a_healthy_day_meets_every_target() {
        let mut records: Vec<_> = (0..200)
            .map(|i| r(i, "chat", 1.0 + (i % 10) as f64 * 0.3, "ok"))
            .collect();
        records.extend((0..20).map(|i| r(i, "codereview", 30.0, "ok")));
        // Cancelled calls count for nothing, however slow.
        records.push(r(5, "chat", 500.0, "cancelled"));
        let uptime = Uptime {
            percent: 99.5,
            up_secs: 0.0,
            observed_secs: 0.0,
        };
        let rep = evaluate(
            &records,
            at(0),
            at(1440),
            &workflow,
            Some(&uptime),
            1440,
            &TARGETS,
        );
        assert!(rep.met, "{rep:?}");
        let simple = &rep.objectives[1];
        assert_eq!(simple.count, 200);
        assert!((simple.actual.unwrap() - 3.7).abs() < 1e-9);
        assert_eq!(rep.objectives[2].actual, Some(30.0));
        assert_eq!(rep.objectives[3].actual, Some(0.0));
    }

    #[test]
    fn each_breach_is_named() {
        // 2 errors in 100 calls: 2 % against 1 %. Simple p95 at 6 s.
        let mut records: Vec<_> = (0..100)
            .map(|i| r(i, "search_docs", if i < 90 { 0.1 } else { 6.0 }, "ok"))
            .collect();
        records[0].outcome = "error".into();
        records[1].outcome = "timeout".into();
        // Outside the window: ignored.
        records.push(r(-10, "codereview", 600.0, "error"));
        let uptime = Uptime {
            percent: 95.0,
            up_secs: 0.0,
            observed_secs: 0.0,
        };
        let rep = evaluate(
            &records,
            at(0),
            at(1440),
            &workflow,
            Some(&uptime),
            10,
            &TARGETS,
        );
        let breached: Vec<_> = rep.breaches().map(|o| o.name).collect();
        assert_eq!(breached, vec!["uptime", "simple_p95", "error_rate"]);
        assert!(!rep.met);
        assert_eq!(rep.objectives[3].actual, Some(2.0));
        // No workflow call and no samples: no data, no breach.
        assert_eq!(rep.objectives[2].met, None);
        let rep = evaluate(
            &records[2..50],
            at(0),
            at(1440),
            &workflow,
            None,
            0,
            &TARGETS,
        );
        assert!(rep.met, "{rep:?}");
        assert_eq!(rep.objectives[0].met, None);
        assert!(rep.objectives[0].describe().contains("no data"));
    }
}
