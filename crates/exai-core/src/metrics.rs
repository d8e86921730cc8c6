//! Metrics on plain atomics, and the Prometheus text exposition format (0.0.4) they are served in.
//!
//! Recording a value is one or two relaxed atomic adds: no lock, no allocation, nothing that can
//! block a call. Label sets are fixed when a metric is created (tools from the registry, providers
//! from the configuration), so the hot path never looks a label up in a map. All formatting
//! happens when a scraper asks.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// The `Content-Type` of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A count that only goes up.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// A level that goes up and down (open connections, sessions).
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }

    pub fn dec(&self) {
        self.0.fetch_sub(1, Relaxed);
    }

    pub fn set(&self, v: u64) {
        self.0.store(i64::try_from(v).unwrap_or(i64::MAX), Relaxed);
    }

    /// Never below zero, even while an `inc` and a `dec` race.
    pub fn get(&self) -> u64 {
        u64::try_from(self.0.load(Relaxed)).unwrap_or(0)
    }
}

/// A fractional sum that only goes up (US dollars), kept as the bits of an `f64`.
#[derive(Debug, Default)]
pub struct FloatCounter(AtomicU64);

impl FloatCounter {
    /// Adds `v`; negative, NaN and infinite values are ignored, so the sum never goes down.
    pub fn add(&self, v: f64) {
        if !(v.is_finite() && v > 0.0) {
            return;
        }
        // fetch_update retries on contention; the closure never refuses, so the result is Ok.
        let _ = self.0.fetch_update(Relaxed, Relaxed, |bits| {
            Some((f64::from_bits(bits) + v).to_bits())
        });
    }

    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Relaxed))
    }
}

/// A histogram of durations with fixed bucket bounds in seconds. Each observation adds to one
/// bucket and to the sum (in nanoseconds, so both are plain integer adds); the cumulative counts
/// Prometheus wants are formed when encoding.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    bounds_nanos: Box<[u64]>,
    /// One per bound, then the `+Inf` bucket; not cumulative.
    buckets: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

/// A consistent-enough copy of a histogram: cumulative bucket counts, total count, sum.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound in seconds, observations ≤ bound)`, ascending, without `+Inf`.
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_secs: f64,
}

impl Histogram {
    /// `bounds` must be ascending, finite and positive (checked in debug builds).
    pub fn new(bounds: &'static [f64]) -> Self {
        debug_assert!(
            bounds.windows(2).all(|w| w[0] < w[1])
                && bounds.iter().all(|b| b.is_finite() && *b > 0.0),
            "histogram bounds must be ascending, finite and positive"
        );
        Self {
            bounds,
            bounds_nanos: bounds.iter().map(|b| (b * 1e9).round() as u64).collect(),
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        // The first bound that is ≥ the value: Prometheus buckets are `le` (less or equal).
        let i = self.bounds_nanos.partition_point(|&b| b < nanos);
        if let Some(bucket) = self.buckets.get(i) {
            bucket.fetch_add(1, Relaxed);
        }
        self.sum_nanos.fetch_add(nanos, Relaxed);
    }

    /// The total is the sum of the buckets read, so `_count` always equals the `+Inf` bucket
    /// even while other threads observe.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0;
        let mut buckets = Vec::with_capacity(self.bounds.len());
        for (bound, bucket) in self.bounds.iter().zip(self.buckets.iter()) {
            running += bucket.load(Relaxed);
            buckets.push((*bound, running));
        }
        let count = running + self.buckets.last().map_or(0, |b| b.load(Relaxed));
        HistogramSnapshot {
            buckets,
            count,
            sum_secs: self.sum_nanos.load(Relaxed) as f64 / 1e9,
        }
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Relaxed)).sum()
    }
}

/// The type of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Writes the text exposition format. Call [`Encoder::family`] once per metric family, then its
/// samples, before the next family: the format wants each family's samples together.
#[derive(Debug, Default)]
pub struct Encoder {
    out: String,
    family: String,
}

impl Encoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// The `# HELP` and `# TYPE` lines that open a family. A counter's name ends in `_total`.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        debug_assert!(valid_name(name), "invalid metric name {name:?}");
        debug_assert!(
            kind != Kind::Counter || name.ends_with("_total"),
            "counter {name} must end in _total"
        );
        self.family.clear();
        self.family.push_str(name);
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        escape_help(&mut self.out, help);
        self.out.push('\n');
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
    }

    /// One sample of the current counter or gauge family.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: impl Into<Value>) {
        let name = std::mem::take(&mut self.family);
        self.line(&name, "", labels, None, value.into());
        self.family = name;
    }

    /// Buckets, sum and count of one histogram of the current histogram family.
    pub fn histogram(&mut self, labels: &[(&str, &str)], h: &Histogram) {
        let name = std::mem::take(&mut self.family);
        let snap = h.snapshot();
        let mut le = String::new();
        for (bound, count) in &snap.buckets {
            le.clear();
            write_float(&mut le, *bound);
            self.line(&name, "_bucket", labels, Some(&le), Value::Int(*count));
        }
        self.line(
            &name,
            "_bucket",
            labels,
            Some("+Inf"),
            Value::Int(snap.count),
        );
        self.line(&name, "_sum", labels, None, Value::Float(snap.sum_secs));
        self.line(&name, "_count", labels, None, Value::Int(snap.count));
        self.family = name;
    }

    pub fn finish(self) -> String {
        self.out
    }

    fn line(
        &mut self,
        name: &str,
        suffix: &str,
        labels: &[(&str, &str)],
        le: Option<&str>,
        value: Value,
    ) {
        debug_assert!(!name.is_empty(), "sample before any family");
        self.out.push_str(name);
        self.out.push_str(suffix);
        if !labels.is_empty() || le.is_some() {
            self.out.push('{');
            let extra = le.map(|v| ("le", v));
            for (i, (key, value)) in labels.iter().copied().chain(extra).enumerate() {
                debug_assert!(valid_label_name(key), "invalid label name {key:?}");
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(key);
                self.out.push_str("=\"");
                escape_label_value(&mut self.out, value);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        match value {
            Value::Int(n) => {
                let _ = write!(self.out, "{n}");
            }
            Value::Float(f) => write_float(&mut self.out, f),
        }
        self.out.push('\n');
    }
}

/// A sample value: integers are written exactly, floats as the format spells them.
#[derive(Debug, Clone, Copy)]
pub enum Value {
    Int(u64),
    Float(f64),
}

impl From<u64> for Value {
    fn from(n: u64) -> Self {
        Value::Int(n)
    }
}

impl From<usize> for Value {
    fn from(n: usize) -> Self {
        Value::Int(n as u64)
    }
}

impl From<f64> for Value {
    fn from(f: f64) -> Self {
        Value::Float(f)
    }
}

/// Rust prints infinities as `inf`; the format wants `+Inf`, `-Inf` and `NaN`.
fn write_float(out: &mut String, f: f64) {
    if f.is_nan() {
        out.push_str("NaN");
    } else if f == f64::INFINITY {
        out.push_str("+Inf");
    } else if f == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        let _ = write!(out, "{f}");
    }
}

fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_help(out: &mut String, help: &str) {
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_gauges_with_escaped_labels_and_help() {
        let mut e = Encoder::new();
        e.family(
            "x_calls_total",
            Kind::Counter,
            "Calls.\nBy tool, with a \\ too.",
        );
        e.sample(&[("tool", "a\"b\\c\nd"), ("outcome", "ok")], 3u64);
        e.sample(&[], 0u64);
        e.family("x_cost", Kind::Gauge, "Cost");
        e.sample(&[("p", "kimi")], 0.25);
        e.sample(&[], f64::INFINITY);
        e.sample(&[], f64::NEG_INFINITY);
        e.sample(&[], f64::NAN);
        e.sample(&[], 1e-7);
        assert_eq!(
            e.finish(),
            "# HELP x_calls_total Calls.\\nBy tool, with a \\\\ too.\n\
             # TYPE x_calls_total counter\n\
             x_calls_total{tool=\"a\\\"b\\\\c\\nd\",outcome=\"ok\"} 3\n\
             x_calls_total 0\n\
             # HELP x_cost Cost\n\
             # TYPE x_cost gauge\n\
             x_cost{p=\"kimi\"} 0.25\n\
             x_cost +Inf\n\
             x_cost -Inf\n\
             x_cost NaN\n\
             x_cost 0.0000001\n"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_le_inclusive() {
        static BOUNDS: &[f64] = &[0.005, 0.1, 1.0];
        let h = Histogram::new(BOUNDS);
        h.observe(Duration::from_millis(5)); // exactly on a bound: counts in that bucket
        h.observe(Duration::from_millis(50));
        h.observe(Duration::from_millis(50));
        h.observe(Duration::from_secs(3)); // above every bound: +Inf only
        let mut e = Encoder::new();
        e.family("x_seconds", Kind::Histogram, "Latency");
        e.histogram(&[("tool", "chat")], &h);
        assert_eq!(
            e.finish(),
            "# HELP x_seconds Latency\n\
             # TYPE x_seconds histogram\n\
             x_seconds_bucket{tool=\"chat\",le=\"0.005\"} 1\n\
             x_seconds_bucket{tool=\"chat\",le=\"0.1\"} 3\n\
             x_seconds_bucket{tool=\"chat\",le=\"1\"} 3\n\
             x_seconds_bucket{tool=\"chat\",le=\"+Inf\"} 4\n\
             x_seconds_sum{tool=\"chat\"} 3.105\n\
             x_seconds_count{tool=\"chat\"} 4\n"
        );
        assert_eq!(h.count(), 4);
    }

    #[test]
    fn histogram_without_labels_and_empty() {
        static BOUNDS: &[f64] = &[0.5];
        let h = Histogram::new(BOUNDS);
        let mut e = Encoder::new();
        e.family("y_seconds", Kind::Histogram, "Empty");
        e.histogram(&[], &h);
        let text = e.finish();
        assert!(text.contains("y_seconds_bucket{le=\"0.5\"} 0\n"));
        assert!(text.contains("y_seconds_bucket{le=\"+Inf\"} 0\n"));
        assert!(text.contains("y_seconds_sum 0\n"));
        assert!(text.contains("y_seconds_count 0\n"));
    }

    #[test]
    fn float_counter_ignores_what_would_lower_it() {
        let c = FloatCounter::default();
        c.add(0.5);
        c.add(-1.0);
        c.add(f64::NAN);
        c.add(f64::INFINITY);
        c.add(0.25);
        assert_eq!(c.get(), 0.75);
    }

    #[test]
    fn concurrent_observations_are_all_counted() {
        static BOUNDS: &[f64] = &[0.001, 0.01];
        let h = std::sync::Arc::new(Histogram::new(BOUNDS));
        let c = std::sync::Arc::new(Counter::default());
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let (h, c) = (h.clone(), c.clone());
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        h.observe(Duration::from_micros(500 * (i + 1)));
                        c.inc();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let snap = h.snapshot();
        assert_eq!(snap.count, 4000);
        assert_eq!(c.get(), 4000);
        assert_eq!(snap.buckets, vec![(0.001, 2000), (0.01, 4000)]);
        assert!((snap.sum_secs - 1000.0 * (0.0005 + 0.001 + 0.0015 + 0.002)).abs() < 1e-9);
    }

    #[test]
    fn names() {
        assert!(valid_name("exai_tool_calls_total") && valid_name("a:b"));
        assert!(!valid_name("1abc") && !valid_name("a-b") && !valid_name(""));
        assert!(valid_label_name("le") && !valid_label_name("__x") && !valid_label_name("a b"));
    }
}
