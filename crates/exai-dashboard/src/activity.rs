//! The Activity page's API: calls, errors and p50/p95/p99 latency per tool over the last hour
//! (per minute) or day (per 15 minutes), totals per tool, tokens and cost per provider and
//! model, and the most recent calls.
//!
//! The source is the activity log (`logs/activity.jsonl` and its rotated files). Reading all of
//! it on every request would cost as much as the files are long, so the first request reads the
//! last day of it into memory, in a compact form, and each later request reads only what was
//! appended since (across rotations). Nothing runs between requests: an open page costs the
//! daemon nothing until it asks again, which it does when the `calls` topic says something
//! happened.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use exai_core::activity::ActivityRecord;
use exai_ops::stats::{self, Acc, Row};
use serde::Serialize;

use crate::context::Ctx;
use crate::error::{ApiError, ApiResult};

pub(crate) fn routes() -> Router<Ctx> {
    Router::new().route("/", get(activity))
}

/// The longest window the page shows; older calls are dropped from memory.
const DAY_MS: i64 = 24 * 3600 * 1000;
/// Most recent calls kept whole for the list.
const RECENT_KEEP: usize = 500;
const RECENT_DEFAULT: usize = 50;
/// Calls kept in memory at most (about 100 bytes each); past it the oldest go first and the
/// answer says from when its figures are complete.
const CALLS_KEEP: usize = 400_000;
/// Distinct tool, provider and model names shared between calls before the table starts over.
const NAMES_KEEP: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Span {
    Hour,
    Day,
}

impl Span {
    fn parse(text: Option<&str>) -> Result<Span, ApiError> {
        match text.unwrap_or("hour") {
            "hour" => Ok(Span::Hour),
            "day" => Ok(Span::Day),
            other => Err(ApiError::bad_request(format!(
                "window `{other}` is not one this page shows; use window=hour (per minute) or window=day (per 15 minutes)"
            ))),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Span::Hour => "hour",
            Span::Day => "day",
        }
    }

    fn bucket_ms(self) -> i64 {
        match self {
            Span::Hour => 60_000,
            Span::Day => 15 * 60_000,
        }
    }

    fn buckets(self) -> usize {
        match self {
            Span::Hour => 60,
            Span::Day => 96,
        }
    }
}

/// One finished call, as small as the page needs it.
#[derive(Debug, Clone)]
struct Call {
    at_ms: i64,
    tool: Arc<str>,
    provider: Option<Arc<str>>,
    model: Option<Arc<str>>,
    error: bool,
    duration_ms: f64,
    tokens_in: u64,
    tokens_out: u64,
    cost_usd: f64,
}

/// What the page keeps between requests ([`crate::Dashboard::activity`]).
#[derive(Default)]
pub(crate) struct Calls {
    inner: Mutex<Window>,
}

#[derive(Default)]
struct Window {
    tail: Option<Tail>,
    /// Oldest first (by arrival; times are nearly ordered).
    calls: VecDeque<Call>,
    /// Newest last.
    recent: VecDeque<ActivityRecord>,
    names: HashMap<String, Arc<str>>,
    /// Calls were dropped for room: figures before this time are incomplete.
    complete_from_ms: Option<i64>,
}

impl Window {
    fn name(&mut self, text: &str) -> Arc<str> {
        if let Some(n) = self.names.get(text) {
            return n.clone();
        }
        if self.names.len() >= NAMES_KEEP {
            self.names.clear();
        }
        let n: Arc<str> = Arc::from(text);
        self.names.insert(text.to_string(), n.clone());
        n
    }

    fn push(&mut self, r: ActivityRecord, oldest_ms: i64) {
        let Some(at_ms) = epoch_ms(&r.time) else {
            return;
        };
        if at_ms >= oldest_ms {
            let call = Call {
                at_ms,
                tool: self.name(&r.tool),
                provider: r.provider.as_deref().map(|p| self.name(p)),
                model: r.model.as_deref().map(|m| self.name(m)),
                error: stats::is_error(&r),
                duration_ms: r.duration_ms,
                tokens_in: r.tokens_in.unwrap_or(0),
                tokens_out: r.tokens_out.unwrap_or(0),
                cost_usd: r.cost_usd.unwrap_or(0.0),
            };
            self.calls.push_back(call);
            if self.calls.len() > CALLS_KEEP
                && let Some(dropped) = self.calls.pop_front()
            {
                self.complete_from_ms = Some(dropped.at_ms.max(self.complete_from_ms.unwrap_or(0)));
            }
        }
        self.recent.push_back(r);
        if self.recent.len() > RECENT_KEEP {
            self.recent.pop_front();
        }
    }

    fn forget_before(&mut self, oldest_ms: i64) {
        while self.calls.front().is_some_and(|c| c.at_ms < oldest_ms) {
            self.calls.pop_front();
        }
    }

    /// Bring the window up to date with the activity log.
    fn refresh(&mut self, live: &Path, now_ms: i64) {
        let oldest_ms = now_ms - DAY_MS;
        let mut tail = self.tail.take().unwrap_or_else(|| Tail::new(live));
        let since = SystemTime::UNIX_EPOCH + Duration::from_millis(oldest_ms.max(0) as u64);
        tail.read_new(since, &mut |r| self.push(r, oldest_ms));
        self.tail = Some(tail);
        self.forget_before(oldest_ms);
    }
}

fn epoch_ms(time: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(time)
        .ok()
        .map(|t| t.with_timezone(&Utc).timestamp_millis())
}

/// Reads what was appended to the activity log since the last read: the live file from where
/// the last read stopped, and when it was rotated meanwhile, the rest of the file it became
/// and any rotated after it. Only whole lines are taken; a record being written is read next
/// time.
struct Tail {
    live: PathBuf,
    /// The file last read (its inode) and how far.
    at: Option<(u64, u64)>,
}

impl Tail {
    fn new(live: &Path) -> Tail {
        Tail {
            live: live.to_path_buf(),
            at: None,
        }
    }

    /// Hand each new record to `found`, one at a time: a day of records is read without holding
    /// the file or the records in memory.
    fn read_new(&mut self, since: SystemTime, found: &mut dyn FnMut(ActivityRecord)) {
        let set = exai_ops::logs::rotated_set(&self.live);
        let inode = |p: &Path| std::fs::metadata(p).ok().map(|m| m.ino());
        // Where reading starts: the file last read, from its offset; every file after it whole.
        let (first, offset) = match self.at {
            Some((ino, off)) => match set.iter().position(|p| inode(p) == Some(ino)) {
                Some(i) => (i, off),
                // Rotated out of the set entirely: everything there is newer.
                None => (0, 0),
            },
            // The first read: rotated files written to within the window, and the live file.
            None => (
                set.iter()
                    .position(|p| {
                        p == &self.live
                            || std::fs::metadata(p)
                                .and_then(|m| m.modified())
                                .is_ok_and(|t| t >= since)
                    })
                    .unwrap_or(set.len()),
                0,
            ),
        };
        for (i, path) in set.iter().enumerate().skip(first) {
            let start = if i == first { offset } else { 0 };
            let Some((ino, end)) = read_records_from(path, start, found) else {
                continue;
            };
            if path == &self.live {
                self.at = Some((ino, end));
            }
        }
    }
}

/// The records on the whole lines of `path` from byte `start` on, each handed to `found`; the
/// file's inode and the offset after the last whole line. A file that shrank below `start` was
/// replaced: it is read from its start.
fn read_records_from(
    path: &Path,
    start: u64,
    found: &mut dyn FnMut(ActivityRecord),
) -> Option<(u64, u64)> {
    let mut file = std::fs::File::open(path).ok()?;
    let meta = file.metadata().ok()?;
    let start = if start > meta.len() { 0 } else { start };
    file.seek(SeekFrom::Start(start)).ok()?;
    let mut reader = BufReader::with_capacity(1 << 16, file.take(meta.len() - start));
    let mut end = start;
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(n) if n > 0 && line.ends_with(b"\n") => {
                end += n as u64;
                if let Ok(r) = serde_json::from_slice::<ActivityRecord>(&line) {
                    found(r);
                }
            }
            _ => break,
        }
    }
    Some((meta.ino(), end))
}

#[derive(Debug, Serialize)]
struct Series {
    calls: Vec<u64>,
    errors: Vec<u64>,
    p50_ms: Vec<Option<f64>>,
    p95_ms: Vec<Option<f64>>,
    p99_ms: Vec<Option<f64>>,
}

impl Series {
    fn of(buckets: Vec<(u64, Vec<f64>)>) -> Series {
        let mut s = Series {
            calls: Vec::with_capacity(buckets.len()),
            errors: Vec::with_capacity(buckets.len()),
            p50_ms: Vec::with_capacity(buckets.len()),
            p95_ms: Vec::with_capacity(buckets.len()),
            p99_ms: Vec::with_capacity(buckets.len()),
        };
        for (errors, mut durations) in buckets {
            durations.sort_by(f64::total_cmp);
            let p = |q: f64| (!durations.is_empty()).then(|| stats::percentile(&durations, q));
            s.calls.push(durations.len() as u64);
            s.errors.push(errors);
            s.p50_ms.push(p(50.0));
            s.p95_ms.push(p(95.0));
            s.p99_ms.push(p(99.0));
        }
        s
    }
}

#[derive(Debug, Serialize)]
struct ToolSeries {
    tool: String,
    #[serde(flatten)]
    series: Series,
}

#[derive(Debug, Serialize)]
pub(crate) struct Activity {
    window: &'static str,
    bucket_secs: i64,
    /// Start of each bucket, epoch milliseconds; the last one holds the current minute (or
    /// quarter hour).
    buckets: Vec<i64>,
    /// Every tool together.
    all: Series,
    /// Per tool, most calls first.
    tools: Vec<ToolSeries>,
    /// Over the whole window.
    total: Row,
    by_tool: Vec<Row>,
    by_provider: Vec<Row>,
    by_model: Vec<Row>,
    /// The most recent calls, newest first, whatever the window.
    recent: Vec<ActivityRecord>,
    /// Set when calls were dropped for room: the figures are complete only from this time on.
    #[serde(skip_serializing_if = "Option::is_none")]
    complete_from: Option<i64>,
}

/// Values by name, for the few names calls have (tools, providers, models): the names are
/// shared, so a lookup is mostly a pointer comparison, without hashing per call.
struct Groups<T>(Vec<(Arc<str>, T)>);

impl<T> Default for Groups<T> {
    fn default() -> Self {
        Groups(Vec::new())
    }
}

impl<T> Groups<T> {
    fn of(&mut self, name: &Arc<str>, new: impl FnOnce() -> T) -> &mut T {
        let i = match self
            .0
            .iter()
            .position(|(n, _)| Arc::ptr_eq(n, name) || n == name)
        {
            Some(i) => i,
            None => {
                self.0.push((name.clone(), new()));
                self.0.len() - 1
            }
        };
        &mut self.0[i].1
    }
}

/// The figures of `span` ending with the bucket that holds `now_ms`.
fn summarize(w: &Window, span: Span, now_ms: i64, recent: usize) -> Activity {
    let width = span.bucket_ms();
    let n = span.buckets();
    let end = now_ms - now_ms.rem_euclid(width) + width;
    let start = end - width * n as i64;
    let empty = || (0..n).map(|_| (0u64, Vec::new())).collect::<Vec<_>>();
    let mut all = empty();
    let (mut total, mut tools, mut providers, mut models) = (
        Acc::default(),
        Groups::<(Vec<(u64, Vec<f64>)>, Acc)>::default(),
        Groups::<Acc>::default(),
        Groups::<Acc>::default(),
    );
    for c in w.calls.iter().filter(|c| c.at_ms >= start && c.at_ms < end) {
        let i = ((c.at_ms - start) / width) as usize;
        let (tool_buckets, tool) = tools.of(&c.tool, || (empty(), Acc::default()));
        for b in [&mut all, tool_buckets] {
            b[i].0 += u64::from(c.error);
            b[i].1.push(c.duration_ms);
        }
        let add = |acc: &mut Acc| {
            acc.add_call(
                c.duration_ms,
                c.error,
                c.tokens_in,
                c.tokens_out,
                c.cost_usd,
            )
        };
        add(&mut total);
        add(tool);
        if let Some(p) = &c.provider {
            add(providers.of(p, Acc::default));
        }
        if let Some(m) = &c.model {
            add(models.of(m, Acc::default));
        }
    }
    let named = |groups: Vec<(Arc<str>, Acc)>| {
        stats::rows(
            groups
                .into_iter()
                .map(|(k, a)| (k.to_string(), a))
                .collect(),
        )
    };
    let (mut tool_series, tool_accs): (Vec<ToolSeries>, Vec<(Arc<str>, Acc)>) = tools
        .0
        .into_iter()
        .map(|(tool, (buckets, acc))| {
            let series = ToolSeries {
                tool: tool.to_string(),
                series: Series::of(buckets),
            };
            (series, (tool, acc))
        })
        .unzip();
    let by_tool = named(tool_accs);
    // The order of the totals: most calls first.
    tool_series.sort_by_key(|t| {
        by_tool
            .iter()
            .position(|r| r.name == t.tool)
            .unwrap_or(usize::MAX)
    });
    Activity {
        window: span.name(),
        bucket_secs: width / 1000,
        buckets: (0..n as i64).map(|i| start + i * width).collect(),
        all: Series::of(all),
        tools: tool_series,
        total: total.row("all".into()),
        by_tool,
        by_provider: named(providers.0),
        by_model: named(models.0),
        recent: w.recent.iter().rev().take(recent).cloned().collect(),
        complete_from: w.complete_from_ms.filter(|t| *t >= start),
    }
}

fn recent_limit(text: Option<&str>) -> Result<usize, ApiError> {
    let Some(text) = text else {
        return Ok(RECENT_DEFAULT);
    };
    match text.parse::<usize>() {
        Ok(n) if (1..=RECENT_KEEP).contains(&n) => Ok(n),
        _ => Err(ApiError::bad_request(format!(
            "recent=`{text}` is not a count from 1 to {RECENT_KEEP}"
        ))),
    }
}

async fn activity(
    State(ctx): State<Ctx>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Activity> {
    let span = Span::parse(query.get("window").map(String::as_str))?;
    let recent = recent_limit(query.get("recent").map(String::as_str))?;
    let live = ctx.state.paths.activity_file();
    let answer = tokio::task::spawn_blocking(move || {
        let mut w = ctx
            .activity
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now_ms = Utc::now().timestamp_millis();
        w.refresh(&live, now_ms);
        summarize(&w, span, now_ms, recent)
    })
    .await
    .map_err(|e| ApiError::internal(format!("reading the activity log failed: {e}")))?;
    Ok(Json(answer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    pub(crate) fn record(time: &str, tool: &str, ms: f64, outcome: &str) -> ActivityRecord {
        ActivityRecord {
            time: time.into(),
            tool: tool.into(),
            session: "s".into(),
            request_id: "1".into(),
            duration_ms: ms,
            outcome: outcome.into(),
            error_kind: None,
            model: (tool == "chat").then(|| "glm-4.6".to_string()),
            provider: (tool == "chat").then(|| "glm".to_string()),
            tokens_in: (tool == "chat").then_some(100),
            tokens_out: (tool == "chat").then_some(10),
            cost_usd: (tool == "chat").then_some(0.001),
            route: None,
            client: None,
            client_version: None,
            principal: Some("local".into()),
            search: None,
        }
    }

    fn lines(records: &[ActivityRecord]) -> String {
        records
            .iter()
            .map(|r| serde_json::to_string(r).unwrap() + "\n")
            .collect()
    }

    fn ms(time: &str) -> i64 {
        epoch_ms(time).unwrap()
    }

    #[test]
    fn buckets_per_minute_and_per_quarter_hour() {
        let mut w = Window::default();
        let now = ms("2026-12-01T10:30:20Z");
        for r in [
            record("2026-12-01T10:30:05Z", "chat", 10.0, "ok"),
            record("2026-12-01T10:30:15Z", "chat", 30.0, "error"),
            record("2026-12-01T10:29:59Z", "version", 1.0, "ok"),
            // More than an hour ago: in the day only.
            record("2026-12-01T09:00:00Z", "chat", 500.0, "ok"),
            // More than a day ago: nowhere but the recent list.
            record("2026-11-30T09:00:00Z", "chat", 900.0, "ok"),
        ] {
            w.push(r, now - DAY_MS);
        }
        let hour = summarize(&w, Span::Hour, now, 10);
        assert_eq!(hour.buckets.len(), 60);
        assert_eq!(*hour.buckets.last().unwrap(), ms("2026-12-01T10:30:00Z"));
        assert_eq!(hour.buckets[0], ms("2026-12-01T09:31:00Z"));
        assert_eq!(hour.all.calls[59], 2);
        assert_eq!(hour.all.errors[59], 1);
        assert_eq!(hour.all.calls[58], 1);
        assert_eq!(hour.all.p50_ms[59], Some(10.0));
        assert_eq!(hour.all.p99_ms[59], Some(30.0));
        assert_eq!(hour.all.p50_ms[0], None);
        assert_eq!(hour.tools[0].tool, "chat");
        assert_eq!(hour.total.calls, 3);
        assert_eq!(hour.by_tool[0].error_rate, 0.5);
        assert_eq!(hour.by_provider[0].name, "glm");
        assert_eq!(hour.by_provider[0].tokens_in, 200);
        assert_eq!(hour.by_model[0].name, "glm-4.6");
        assert_eq!(hour.recent.len(), 5);
        assert_eq!(hour.recent[0].tool, "chat", "newest first");
        assert_eq!(hour.recent[0].time, "2026-11-30T09:00:00Z", "by arrival");

        let day = summarize(&w, Span::Day, now, 2);
        assert_eq!(day.buckets.len(), 96);
        assert_eq!(day.bucket_secs, 900);
        assert_eq!(*day.buckets.last().unwrap(), ms("2026-12-01T10:30:00Z"));
        assert_eq!(day.all.calls[95], 2);
        assert_eq!(day.all.calls[94], 1, "10:29:59 is in the quarter before");
        assert_eq!(day.total.calls, 4);
        assert_eq!(day.by_tool[0].p99_ms, 500.0);
        assert_eq!(day.recent.len(), 2);
    }

    #[test]
    fn reads_appends_and_follows_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("activity.jsonl");
        let rotated = dir.path().join("activity.jsonl.1");
        let now = Utc::now();
        let at = |secs: i64| {
            (now - chrono::Duration::seconds(secs))
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        };
        std::fs::write(&rotated, lines(&[record(&at(300), "version", 1.0, "ok")])).unwrap();
        std::fs::write(&live, lines(&[record(&at(200), "chat", 2.0, "ok")])).unwrap();
        let mut w = Window::default();
        let now_ms = now.timestamp_millis();
        w.refresh(&live, now_ms);
        assert_eq!(w.calls.len(), 2);

        // Appended, with a record half written.
        let mut text = lines(&[record(&at(100), "chat", 3.0, "ok")]);
        let half = lines(&[record(&at(90), "chat", 4.0, "ok")]);
        text.push_str(&half[..20]);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&live)
            .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()))
            .unwrap();
        w.refresh(&live, now_ms);
        assert_eq!(w.calls.len(), 3);

        // The rest of that record lands, then the file rotates and a new one starts.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&live)
            .and_then(|mut f| std::io::Write::write_all(&mut f, &half.as_bytes()[20..]))
            .unwrap();
        std::fs::rename(&rotated, dir.path().join("activity.jsonl.2")).unwrap();
        std::fs::rename(&live, &rotated).unwrap();
        std::fs::write(&live, lines(&[record(&at(10), "health", 5.0, "error")])).unwrap();
        w.refresh(&live, now_ms);
        let durations: Vec<f64> = w.calls.iter().map(|c| c.duration_ms).collect();
        assert_eq!(durations, [1.0, 2.0, 3.0, 4.0, 5.0]);
        assert!(w.calls[4].error);
    }

    #[test]
    fn old_calls_leave_the_window() {
        let mut w = Window::default();
        let now = ms("2026-12-02T12:00:00Z");
        w.push(
            record("2026-12-01T11:00:00Z", "chat", 1.0, "ok"),
            now - 2 * DAY_MS,
        );
        w.push(
            record("2026-12-02T11:00:00Z", "chat", 2.0, "ok"),
            now - 2 * DAY_MS,
        );
        w.forget_before(now - DAY_MS);
        assert_eq!(w.calls.len(), 1);
        assert_eq!(w.recent.len(), 2);
    }

    #[tokio::test]
    async fn the_api_reads_the_log_and_keeps_up_with_it() {
        let app = crate::test_support::App::new();
        let live = app.home().join("logs/activity.jsonl");
        let now = Utc::now();
        let at = |mins: i64| {
            (now - chrono::Duration::minutes(mins))
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        };
        std::fs::write(
            &live,
            lines(&[
                record(&at(30 * 60), "chat", 9.0, "ok"),
                record(&at(120), "chat", 50.0, "ok"),
                record(&at(5), "chat", 20.0, "error"),
                record(&at(1), "version", 1.0, "ok"),
            ]),
        )
        .unwrap();
        let (status, hour) = app.get("/activity?window=hour").await;
        assert_eq!(status, 200, "{hour}");
        assert_eq!(hour["window"], "hour");
        assert_eq!(hour["bucket_secs"], 60);
        assert_eq!(hour["buckets"].as_array().unwrap().len(), 60);
        assert_eq!(hour["total"]["calls"], 2);
        assert_eq!(hour["by_tool"][0]["name"], "chat");
        assert_eq!(hour["by_tool"][0]["error_rate"], 1.0);
        assert_eq!(
            hour["all"]["calls"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_u64)
                .sum::<u64>(),
            2
        );
        assert_eq!(hour["recent"][0]["tool"], "version");
        assert_eq!(hour["recent"].as_array().unwrap().len(), 4);

        let (_, day) = app.get("/activity?window=day&recent=1").await;
        assert_eq!(
            day["total"]["calls"], 3,
            "the call 30 hours ago is out of the day"
        );
        assert_eq!(day["by_provider"][0]["name"], "glm");
        assert_eq!(day["by_provider"][0]["tokens_in"], 200);
        assert_eq!(day["recent"].as_array().unwrap().len(), 1);

        // A call finishing now is in the next answer.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&live)
            .and_then(|mut f| {
                std::io::Write::write_all(
                    &mut f,
                    lines(&[record(&at(0), "health", 3.0, "ok")]).as_bytes(),
                )
            })
            .unwrap();
        let (_, hour) = app.get("/activity").await;
        assert_eq!(hour["total"]["calls"], 3);
        assert_eq!(hour["recent"][0]["tool"], "health");

        for (uri, says) in [
            ("/activity?window=week", "window=hour"),
            ("/activity?recent=0", "from 1 to 500"),
            ("/activity?recent=many", "from 1 to 500"),
        ] {
            let (status, body) = app.get(uri).await;
            assert_eq!(status, 400, "{uri}");
            assert!(
                body["error"].as_str().unwrap().contains(says),
                "{uri}: {body}"
            );
        }
    }

    #[test]
    fn bad_input_is_refused_with_what_to_send() {
        let e = Span::parse(Some("week")).err().unwrap();
        assert!(e.to_string().contains("window=hour"), "{e}");
        assert!(recent_limit(Some("0")).is_err());
        assert!(recent_limit(Some("x")).is_err());
        assert_eq!(recent_limit(None).unwrap(), RECENT_DEFAULT);
    }
}
