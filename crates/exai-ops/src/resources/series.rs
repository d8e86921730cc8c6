//! What the samples say: per series its minimum, maximum, latest value and trend; whether the
//! resident memory keeps growing; the daemon's uptime; each database's size per day.
//!
//! A trend is the least-squares slope of the values against time, per hour: every sample
//! counts, so one outlier moves it little, and it is zero for a flat line whatever its level.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use super::Sample;

/// A value at a time.
type Point = (DateTime<Utc>, f64);

/// Least-squares slope of `(time, value)` points, in value units per hour; `None` with fewer
/// than two points or when they all share one time.
pub fn slope_per_hour(points: &[(DateTime<Utc>, f64)]) -> Option<f64> {
    let first = points.first()?.0;
    if points.len() < 2 {
        return None;
    }
    let hours = |t: DateTime<Utc>| (t - first).num_milliseconds() as f64 / 3_600_000.0;
    let n = points.len() as f64;
    let mean_t = points.iter().map(|(t, _)| hours(*t)).sum::<f64>() / n;
    let mean_v = points.iter().map(|(_, v)| v).sum::<f64>() / n;
    let (mut cov, mut var) = (0.0, 0.0);
    for (t, v) in points {
        let dt = hours(*t) - mean_t;
        cov += dt * (v - mean_v);
        var += dt * dt;
    }
    (var > 0.0).then(|| cov / var)
}

/// One series over a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    pub name: String,
    /// `bytes`, `percent` or `count`.
    pub unit: &'static str,
    pub samples: usize,
    pub min: f64,
    pub max: f64,
    pub latest: f64,
    /// Units per hour (least-squares slope); `None` below two samples.
    pub trend_per_hour: Option<f64>,
}

fn series(name: String, unit: &'static str, points: &[(DateTime<Utc>, f64)]) -> Option<Series> {
    let latest = points.last()?.1;
    Some(Series {
        name,
        unit,
        samples: points.len(),
        min: points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min),
        max: points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max),
        latest,
        trend_per_hour: slope_per_hour(points),
    })
}

/// Whether two samples come from one run of the daemon.
fn same_process(a: &Sample, b: &Sample) -> bool {
    a.pid == b.pid && a.process_started_at == b.process_started_at
}

/// CPU use between consecutive samples of one process, in percent of one core, at the later
/// sample's time.
fn cpu_percent(samples: &[Sample]) -> Vec<(DateTime<Utc>, f64)> {
    samples
        .windows(2)
        .filter_map(|w| {
            let (a, b) = (&w[0], &w[1]);
            let secs = (b.time - a.time).num_milliseconds() as f64 / 1000.0;
            if !same_process(a, b) || secs <= 0.0 {
                return None;
            }
            let used = b.cpu_seconds? - a.cpu_seconds?;
            (used >= 0.0).then(|| (b.time, used * 100.0 / secs))
        })
        .collect()
}

/// Every series of one daemon's samples (oldest first). A series the platform does not record
/// is left out.
pub fn summarize(samples: &[Sample]) -> Vec<Series> {
    let points = |f: &dyn Fn(&Sample) -> Option<f64>| -> Vec<Point> {
        samples
            .iter()
            .filter_map(|s| Some((s.time, f(s)?)))
            .collect()
    };
    let mut out = Vec::new();
    let fixed: [(&str, &'static str, Vec<Point>); 5] = [
        (
            "rss_bytes",
            "bytes",
            points(&|s| s.rss_bytes.map(|v| v as f64)),
        ),
        ("cpu_percent", "percent", cpu_percent(samples)),
        (
            "open_fds",
            "count",
            points(&|s| s.open_fds.map(|v| v as f64)),
        ),
        (
            "host_memory_used_percent",
            "percent",
            points(&Sample::host_memory_used_percent),
        ),
        (
            "disk_free_bytes",
            "bytes",
            points(&|s| s.disk_free_bytes.map(|v| v as f64)),
        ),
    ];
    for (name, unit, p) in fixed {
        out.extend(series(name.to_string(), unit, &p));
    }
    let names: std::collections::BTreeSet<&String> =
        samples.iter().flat_map(|s| s.db_bytes.keys()).collect();
    for db in names {
        let p = points(&|s| s.db_bytes.get(db).map(|v| *v as f64));
        out.extend(series(format!("db_bytes.{db}"), "bytes", &p));
    }
    out
}

/// The samples grouped by daemon, each group oldest first.
pub fn by_instance(samples: Vec<Sample>) -> BTreeMap<String, Vec<Sample>> {
    let mut out: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
    for s in samples {
        out.entry(s.instance.clone()).or_default().push(s);
    }
    out
}

/// Fewest samples, and shortest stretch of time, over which a memory trend is judged.
pub const GROWTH_MIN_SAMPLES: usize = 30;
pub const GROWTH_MIN_HOURS: f64 = 6.0;

const MIB: f64 = 1024.0 * 1024.0;

/// Whether the daemon's resident memory keeps growing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Growth {
    /// Samples of the running process that were judged.
    pub samples: usize,
    pub span_hours: f64,
    /// Least-squares slope over all of them, MiB per hour.
    pub mib_per_hour: Option<f64>,
    /// The same over the newer half.
    pub newer_half_mib_per_hour: Option<f64>,
    /// At least [`GROWTH_MIN_SAMPLES`] over [`GROWTH_MIN_HOURS`].
    pub enough: bool,
    pub growing: bool,
}

/// Judge the resident memory of the latest process in `samples` (one daemon, oldest first,
/// usually the last 24 h): growing when its slope exceeds `limit_mib_per_hour` and the newer
/// half of the samples still grows at half that rate or more — a one-time step (the embedding
/// model or a large index loaded) raises the whole-window slope but leaves the newer half flat.
/// Samples of an earlier process are left out: a restart starts memory afresh.
pub fn memory_growth(samples: &[Sample], limit_mib_per_hour: f64) -> Growth {
    let current: Vec<(DateTime<Utc>, f64)> = match samples.last() {
        Some(last) => samples
            .iter()
            .filter(|s| same_process(s, last))
            .filter_map(|s| Some((s.time, s.rss_bytes? as f64 / MIB)))
            .collect(),
        None => Vec::new(),
    };
    let span_hours = match (current.first(), current.last()) {
        (Some(a), Some(b)) => (b.0 - a.0).num_milliseconds() as f64 / 3_600_000.0,
        _ => 0.0,
    };
    let mib_per_hour = slope_per_hour(&current);
    let newer_half_mib_per_hour = slope_per_hour(&current[current.len() / 2..]);
    let enough = current.len() >= GROWTH_MIN_SAMPLES && span_hours >= GROWTH_MIN_HOURS;
    let growing = enough
        && mib_per_hour.is_some_and(|s| s > limit_mib_per_hour)
        && newer_half_mib_per_hour.is_some_and(|s| s >= limit_mib_per_hour / 2.0);
    Growth {
        samples: current.len(),
        span_hours,
        mib_per_hour,
        newer_half_mib_per_hour,
        enough,
        growing,
    }
}

/// The daemon's time up within a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Uptime {
    pub percent: f64,
    pub up_secs: f64,
    /// From the window's start, or the first known start of the daemon if later, to now.
    pub observed_secs: f64,
}

/// Uptime over `[since, now]` from one daemon's samples (oldest first). Each run of the daemon
/// was up from its start (or `since`) to its last sample; the running one, whose last sample is
/// at most two intervals old, up to now. The time before the first known start is not counted
/// against it. `None` without samples.
pub fn uptime(samples: &[Sample], since: DateTime<Utc>, now: DateTime<Utc>) -> Option<Uptime> {
    let first_start = samples.iter().map(|s| s.process_started_at).min()?;
    let mut spans: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
    let mut i = 0;
    while i < samples.len() {
        let mut j = i;
        while j + 1 < samples.len() && same_process(&samples[j + 1], &samples[i]) {
            j += 1;
        }
        let (run, last) = (&samples[i], &samples[j]);
        let fresh = chrono::Duration::milliseconds((last.interval_secs * 2000.0) as i64);
        let end = if j + 1 == samples.len() && now - last.time <= fresh {
            now
        } else {
            last.time
        };
        spans.push((run.process_started_at.max(since), end.min(now)));
        i = j + 1;
    }
    spans.sort();
    let mut up = chrono::Duration::zero();
    let mut reach: Option<DateTime<Utc>> = None;
    for (start, end) in spans {
        let start = reach.map_or(start, |r| start.max(r));
        if end > start {
            up += end - start;
            reach = Some(end);
        }
    }
    let observed = now - first_start.max(since);
    let secs = |d: chrono::Duration| d.num_milliseconds() as f64 / 1000.0;
    let observed_secs = secs(observed);
    Some(Uptime {
        percent: if observed_secs > 0.0 {
            (secs(up) * 100.0 / observed_secs).min(100.0)
        } else {
            100.0
        },
        up_secs: secs(up),
        observed_secs,
    })
}

/// One database's size at the end of one day (UTC), and the change since the day before.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DaySize {
    pub date: NaiveDate,
    pub db: String,
    pub bytes: u64,
    /// Since the previous day with a sample; `None` on the first.
    pub growth_bytes: Option<i64>,
}

/// Each database's size per day from the samples (oldest first): the day's last sample.
pub fn daily_sizes(samples: &[Sample]) -> Vec<DaySize> {
    let mut last: BTreeMap<(String, NaiveDate), u64> = BTreeMap::new();
    for s in samples {
        for (db, bytes) in &s.db_bytes {
            last.insert((db.clone(), s.time.date_naive()), *bytes);
        }
    }
    let mut out = Vec::new();
    let mut previous: Option<(String, u64)> = None;
    for ((db, date), bytes) in last {
        let growth = match &previous {
            Some((p, b)) if *p == db => {
                Some(i64::try_from(bytes).unwrap_or(i64::MAX) - i64::try_from(*b).unwrap_or(0))
            }
            _ => None,
        };
        previous = Some((db.clone(), bytes));
        out.push(DaySize {
            date,
            db,
            bytes,
            growth_bytes: growth,
        });
    }
    out.sort_by(|a, b| a.date.cmp(&b.date).then(a.db.cmp(&b.db)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(mins: i64) -> DateTime<Utc> {
        "2026-12-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap() + chrono::Duration::minutes(mins)
    }

    fn sample(mins: i64, rss_mib: f64, started: i64) -> Sample {
        Sample {
            time: at(mins),
            instance: "h:/d".into(),
            pid: 7,
            process_started_at: at(started),
            interval_secs: 60.0,
            rss_bytes: Some((rss_mib * MIB) as u64),
            cpu_seconds: Some(mins as f64 * 0.6),
            open_fds: Some(10),
            max_fds: Some(1024),
            host_memory_total_bytes: Some(1000),
            host_memory_available_bytes: Some(250),
            disk_free_bytes: Some(5000 - mins as u64),
            disk_total_bytes: Some(10_000),
            db_bytes: BTreeMap::from([("state".to_string(), 4096 + mins as u64 * 10)]),
        }
    }

    #[test]
    fn slope_is_least_squares_per_hour() {
        let line: Vec<_> = (0..10)
            .map(|i| (at(i * 30), 5.0 + 2.0 * i as f64))
            .collect();
        // 2 units per 30 minutes.
        assert!((slope_per_hour(&line).unwrap() - 4.0).abs() < 1e-9);
        let flat: Vec<_> = (0..10).map(|i| (at(i), 42.0)).collect();
        assert_eq!(slope_per_hour(&flat), Some(0.0));
        assert_eq!(slope_per_hour(&[(at(0), 1.0)]), None);
        assert_eq!(slope_per_hour(&[(at(0), 1.0), (at(0), 2.0)]), None);
        // Noise around a line: the fit finds the line.
        let noisy: Vec<_> = (0..100)
            .map(|i| (at(i), i as f64 + if i % 2 == 0 { 3.0 } else { -3.0 }))
            .collect();
        assert!((slope_per_hour(&noisy).unwrap() - 60.0).abs() < 1.0);
    }

    #[test]
    fn summary_has_min_max_latest_and_trend() {
        let samples: Vec<_> = (0..=60).map(|m| sample(m, 100.0 + m as f64, 0)).collect();
        let s = summarize(&samples);
        let rss = s.iter().find(|x| x.name == "rss_bytes").unwrap();
        assert_eq!(rss.samples, 61);
        assert_eq!(rss.min, 100.0 * MIB);
        assert_eq!(rss.max, 160.0 * MIB);
        assert_eq!(rss.latest, 160.0 * MIB);
        assert!((rss.trend_per_hour.unwrap() - 60.0 * MIB).abs() < 1.0);
        // 0.6 CPU seconds a minute: 1 % of a core.
        let cpu = s.iter().find(|x| x.name == "cpu_percent").unwrap();
        assert_eq!(cpu.samples, 60);
        assert!((cpu.latest - 1.0).abs() < 1e-9);
        let mem = s
            .iter()
            .find(|x| x.name == "host_memory_used_percent")
            .unwrap();
        assert_eq!(mem.latest, 75.0);
        let db = s.iter().find(|x| x.name == "db_bytes.state").unwrap();
        assert!((db.trend_per_hour.unwrap() - 600.0).abs() < 1e-6);
    }

    #[test]
    fn steady_growth_warns_and_a_step_or_a_short_history_does_not() {
        // 24 h, a sample every 10 min, +10 MiB/h throughout.
        let leak: Vec<_> = (0..=144)
            .map(|i| sample(i * 10, 50.0 + i as f64 * 10.0 / 6.0, 0))
            .collect();
        let g = memory_growth(&leak, 5.0);
        assert!(g.enough && g.growing, "{g:?}");
        assert!((g.mib_per_hour.unwrap() - 10.0).abs() < 1e-6);
        assert!(!memory_growth(&leak, 20.0).growing);
        // Flat, then one 300 MiB step at hour 8 (a model loaded), flat after.
        let step: Vec<_> = (0..=144)
            .map(|i| sample(i * 10, if i < 48 { 50.0 } else { 350.0 }, 0))
            .collect();
        let g = memory_growth(&step, 5.0);
        assert!(g.mib_per_hour.unwrap() > 5.0, "{g:?}");
        assert!(!g.growing, "{g:?}");
        // Two hours only: not enough to judge.
        let short = &leak[..13];
        let g = memory_growth(short, 5.0);
        assert!(!g.enough && !g.growing, "{g:?}");
        // A restart an hour ago: only the new process counts, and it is too young.
        let mut restarted = leak.clone();
        for s in restarted.iter_mut().skip(138) {
            s.pid = 8;
            s.process_started_at = at(1375);
        }
        let g = memory_growth(&restarted, 5.0);
        assert_eq!(g.samples, 7);
        assert!(!g.growing);
    }

    #[test]
    fn uptime_counts_runs_and_the_gaps_between_them() {
        // Up from 00:00 to 10:00, down until 12:00, up again until now (24:00).
        let mut samples: Vec<_> = (0..=600).step_by(10).map(|m| sample(m, 50.0, 0)).collect();
        samples.extend((720..=1440).step_by(10).map(|m| {
            let mut s = sample(m, 50.0, 720);
            s.pid = 8;
            s
        }));
        let u = uptime(&samples, at(0), at(1440)).unwrap();
        assert!((u.percent - 22.0 / 24.0 * 100.0).abs() < 1e-6, "{u:?}");
        // Stopped at 24:00 and asked at 26:00: the last two hours are down time.
        let u = uptime(&samples, at(120), at(1560)).unwrap();
        assert!((u.percent - 20.0 / 24.0 * 100.0).abs() < 1e-6, "{u:?}");
        // The time before the first start is not held against it.
        let young: Vec<_> = (600..=660)
            .step_by(10)
            .map(|m| sample(m, 50.0, 600))
            .collect();
        let u = uptime(&young, at(0), at(661)).unwrap();
        assert!((u.percent - 100.0).abs() < 1e-9, "{u:?}");
        assert_eq!(uptime(&[], at(0), at(1)), None);
    }

    #[test]
    fn daily_sizes_take_each_days_last_sample() {
        let samples: Vec<_> = [0, 600, 1440, 1500, 2880 + 60]
            .iter()
            .map(|&m| sample(m, 1.0, 0))
            .collect();
        let days = daily_sizes(&samples);
        let state: Vec<_> = days.iter().map(|d| (d.bytes, d.growth_bytes)).collect();
        assert_eq!(
            state,
            vec![
                (4096 + 6000, None),
                (4096 + 15000, Some(9000)),
                (4096 + 29400, Some(14400))
            ]
        );
        assert_eq!(days[0].date.to_string(), "2026-12-01");
    }
}
