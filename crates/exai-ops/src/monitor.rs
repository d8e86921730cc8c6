//! Monitoring over time for the operator's commands: the resource history of this
//! configuration's daemon (`exai stats --resources`, `exai db stats --history`), the service
//! targets (`exai stats --slo`), and the checks of `exai health` that read them — memory against
//! the host's (`ops.memory_*_percent`), the resident memory's trend over 24 h, disk use
//! (`ops.disk_warn_percent`) and the targets over 24 h.

use chrono::{DateTime, Utc};
use exai_core::Loaded;
use exai_core::paths::DataPaths;
use serde::Serialize;

use crate::health::{Check, Status, check, human_bytes};
use crate::resources::series::{self, DaySize, Growth, Series};
use crate::resources::{ResourceError, Resources, Sample, instance, probe};
use crate::slo;

/// Run `f` where the blocking PostgreSQL client may run: on a thread of its own when this thread
/// belongs to an async runtime (the client would panic starting its runtime inside another).
pub fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|scope| match scope.spawn(f).join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// The samples of this configuration at or after `since`; only this daemon's when `own`. Empty
/// when nothing was recorded yet (the SQLite file is not created by reading).
pub fn samples(
    loaded: &Loaded,
    since: DateTime<Utc>,
    own: bool,
) -> Result<Vec<Sample>, ResourceError> {
    off_runtime(|| {
        let Some(store) = Resources::open_existing(loaded)? else {
            return Ok(Vec::new());
        };
        let me = instance(loaded);
        store.samples(since, own.then_some(me.as_str()))
    })
}

/// `exai stats --resources`: one entry per daemon that recorded samples in the window.
#[derive(Debug, Clone, Serialize)]
pub struct ResourceReport {
    pub since: String,
    /// The platform's gaps, if any (see `resources::probe`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<&'static str>,
    pub instances: Vec<InstanceSeries>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InstanceSeries {
    pub instance: String,
    /// This configuration's daemon.
    pub own: bool,
    pub samples: usize,
    pub first: String,
    pub last: String,
    pub series: Vec<Series>,
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub fn resource_report(
    loaded: &Loaded,
    since: DateTime<Utc>,
) -> Result<ResourceReport, ResourceError> {
    let me = instance(loaded);
    let instances = series::by_instance(samples(loaded, since, false)?)
        .into_iter()
        .filter_map(|(name, samples)| {
            let (first, last) = (samples.first()?.time, samples.last()?.time);
            Some(InstanceSeries {
                own: name == me,
                instance: name,
                samples: samples.len(),
                first: stamp(first),
                last: stamp(last),
                series: series::summarize(&samples),
            })
        })
        .collect();
    Ok(ResourceReport {
        since: stamp(since),
        note: probe::UNAVAILABLE,
        instances,
    })
}

/// `exai db stats --history`: each database's size per day, from every daemon's samples.
pub fn db_history(loaded: &Loaded, since: DateTime<Utc>) -> Result<Vec<DaySize>, ResourceError> {
    Ok(series::daily_sizes(&samples(loaded, since, false)?))
}

/// The service targets over `[since, now]`: the calls of this data directory's activity log,
/// the uptime of this configuration's daemon.
pub fn slo_report(
    loaded: &Loaded,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
    is_workflow: &dyn Fn(&str) -> bool,
) -> Result<slo::Report, ResourceError> {
    let own = samples(loaded, since, true)?;
    let uptime = series::uptime(&own, since, now);
    let records = crate::logs::activity_records(&DataPaths::new(loaded.data_dir.clone()));
    Ok(slo::evaluate(
        &records,
        since,
        now,
        is_workflow,
        uptime.as_ref(),
        own.len() as u64,
        &slo::Targets::from_config(&loaded.config.ops),
    ))
}

/// `slo_24h`: a breach of a target over the last 24 h is a warning.
pub fn slo_check(loaded: &Loaded, is_workflow: &dyn Fn(&str) -> bool) -> Check {
    let now = Utc::now();
    let report = match slo_report(loaded, now - chrono::Duration::hours(24), now, is_workflow) {
        Ok(r) => r,
        Err(e) => return check("slo_24h", Status::Warn, e.to_string()),
    };
    let breaches: Vec<String> = report.breaches().map(slo::Objective::describe).collect();
    let mut c = if breaches.is_empty() {
        let parts: Vec<String> = report
            .objectives
            .iter()
            .map(slo::Objective::describe)
            .collect();
        check("slo_24h", Status::Ok, parts.join("; "))
    } else {
        check(
            "slo_24h",
            Status::Warn,
            format!(
                "missed: {}; `exai stats --slo` and `exai logs --errors --since 24h`",
                breaches.join("; ")
            ),
        )
    };
    c.data = serde_json::to_value(&report).unwrap_or_default();
    c
}

/// `daemon_memory`: the daemon's resident memory (`rss`, when known) and the host's memory in
/// use against `ops.memory_warn_percent` (a warning) and `ops.memory_review_percent` (a note).
pub fn memory_check(loaded: &Loaded, rss: Option<u64>) -> Option<Check> {
    let ops = &loaded.config.ops;
    let host = probe::host_memory();
    if rss.is_none() && host.is_none() {
        return None;
    }
    let mut parts = Vec::new();
    if let Some(rss) = rss {
        let share = host
            .filter(|h| h.total_bytes > 0)
            .map(|h| {
                format!(
                    " ({:.1} % of the host's memory)",
                    rss as f64 * 100.0 / h.total_bytes as f64
                )
            })
            .unwrap_or_default();
        parts.push(format!("{} resident{share}", human_bytes(rss)));
    }
    let mut status = Status::Ok;
    match host {
        Some(h) => {
            let used = h.used_percent();
            parts.push(format!(
                "host memory {used:.0} % used of {}",
                human_bytes(h.total_bytes)
            ));
            if used >= ops.memory_warn_percent {
                status = Status::Warn;
                parts.push(format!(
                    "at or above {} % (ops.memory_warn_percent): find what holds it; `exai daemon restart` returns what exai gathered",
                    ops.memory_warn_percent
                ));
            } else if used >= ops.memory_review_percent {
                parts.push(format!(
                    "above the review level {} % (ops.memory_review_percent): review memory use",
                    ops.memory_review_percent
                ));
            }
        }
        None => parts.push(
            probe::UNAVAILABLE
                .unwrap_or("host memory unreadable")
                .into(),
        ),
    }
    let mut c = check("daemon_memory", status, parts.join("; "));
    c.data = serde_json::json!({
        "rss_bytes": rss,
        "host_memory_total_bytes": host.map(|h| h.total_bytes),
        "host_memory_available_bytes": host.map(|h| h.available_bytes),
        "host_memory_used_percent": host.map(|h| h.used_percent()),
        "warn_percent": ops.memory_warn_percent,
        "review_percent": ops.memory_review_percent,
    });
    Some(c)
}

/// `memory_trend`: whether the daemon's resident memory grew over the last 24 h (see
/// `series::memory_growth` for the rule).
pub fn memory_trend_check(loaded: &Loaded) -> Check {
    let limit = loaded.config.ops.memory_growth_mb_per_hour;
    let since = Utc::now() - chrono::Duration::hours(24);
    let own = match samples(loaded, since, true) {
        Ok(s) => s,
        Err(e) => return check("memory_trend", Status::Warn, e.to_string()),
    };
    let g = series::memory_growth(&own, limit);
    let mut c = trend_verdict(&g, limit, own.is_empty());
    c.data = serde_json::to_value(&g).unwrap_or_default();
    c
}

fn trend_verdict(g: &Growth, limit: f64, none: bool) -> Check {
    let slope = g
        .mib_per_hour
        .map_or("?".into(), |s| format!("{s:+.1} MiB/h"));
    if none {
        return check(
            "memory_trend",
            Status::Ok,
            "no resource samples in the last 24 h (the daemon records one every ops.sample_interval_secs)",
        );
    }
    if !g.enough {
        return check(
            "memory_trend",
            Status::Ok,
            format!(
                "not judged yet: {} sample(s) of the running daemon over {:.1} h (needs {} over {} h); {slope} so far",
                g.samples,
                g.span_hours,
                series::GROWTH_MIN_SAMPLES,
                series::GROWTH_MIN_HOURS
            ),
        );
    }
    if g.growing {
        check(
            "memory_trend",
            Status::Warn,
            format!(
                "resident memory growing {slope} over {:.1} h ({} samples; limit {limit} MiB/h, ops.memory_growth_mb_per_hour): `exai stats --resources --since 24h`; `exai daemon restart` returns it",
                g.span_hours, g.samples
            ),
        )
    } else {
        check(
            "memory_trend",
            Status::Ok,
            format!(
                "steady: {slope} over {:.1} h ({} samples; limit {limit} MiB/h)",
                g.span_hours, g.samples
            ),
        )
    }
}

/// Disk use against `ops.disk_warn_percent`; under 100 MiB free fails (SQLite can no longer
/// count on writing its journal).
pub fn disk_status(loaded: &Loaded, disk: &probe::Disk) -> (Status, String) {
    let warn = loaded.config.ops.disk_warn_percent;
    let used = disk.used_percent();
    let detail = format!(
        "{} free of {} ({used:.0} % used)",
        human_bytes(disk.free_bytes),
        human_bytes(disk.total_bytes)
    );
    if disk.free_bytes < DISK_FAIL_BYTES {
        (
            Status::Fail,
            format!(
                "{detail}: almost full; `exai logs prune`, fewer backups (ops.backup_keep), `exai db compact`"
            ),
        )
    } else if used >= warn {
        (
            Status::Warn,
            format!(
                "{detail}: at or above {warn} % (ops.disk_warn_percent); `exai logs prune`, fewer backups (ops.backup_keep), `exai db compact`"
            ),
        )
    } else {
        (Status::Ok, detail)
    }
}

const DISK_FAIL_BYTES: u64 = 100 << 20;

/// A `/health` that takes longer than this means the daemon's runtime is starved.
pub const HEALTH_SLOW_MS: f64 = 1000.0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_thresholds_are_percent_of_the_file_system() {
        let home = tempfile::tempdir().unwrap();
        let loaded = exai_core::config::load(&exai_core::config::Inputs {
            env: vec![("EXAI_HOME".into(), home.path().display().to_string())],
            ..Default::default()
        })
        .unwrap();
        let gib = 1u64 << 30;
        let at = |free: u64| {
            disk_status(
                &loaded,
                &probe::Disk {
                    free_bytes: free,
                    total_bytes: 100 * gib,
                },
            )
            .0
        };
        assert_eq!(at(20 * gib), Status::Ok);
        assert_eq!(at(15 * gib), Status::Warn);
        assert_eq!(at(50 << 20), Status::Fail);
    }

    #[test]
    fn a_trend_is_judged_only_with_enough_samples() {
        let g = Growth {
            samples: 5,
            span_hours: 0.1,
            mib_per_hour: Some(50.0),
            newer_half_mib_per_hour: Some(50.0),
            enough: false,
            growing: false,
        };
        let c = trend_verdict(&g, 5.0, false);
        assert_eq!(c.status, Status::Ok);
        assert!(c.detail.contains("not judged yet"), "{}", c.detail);
        let g = Growth {
            enough: true,
            growing: true,
            samples: 1440,
            span_hours: 24.0,
            ..g
        };
        let c = trend_verdict(&g, 5.0, false);
        assert_eq!(c.status, Status::Warn);
        assert!(c.detail.contains("+50.0 MiB/h"), "{}", c.detail);
    }
}
