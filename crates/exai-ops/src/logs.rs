//! `exai logs`: the rotating log (`logs/exai.log`, `.1` … older) and the activity log
//! (`logs/activity.jsonl`, one record per tool call) read as one time-ordered stream, filtered
//! by level, pattern, time and tool, optionally followed as it grows; pruning of old files; and
//! archiving: rotated files compressed into `logs/archives/`, kept for a number of days.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use exai_core::activity::ActivityRecord;
use exai_core::paths::DataPaths;
use regex::Regex;
use serde::Serialize;

pub mod archive;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl Level {
    /// The level as the log writes it (`ERROR`, `WARN`, …).
    pub fn parse(word: &str) -> Option<Level> {
        match word {
            "ERROR" => Some(Level::Error),
            "WARN" => Some(Level::Warn),
            "INFO" => Some(Level::Info),
            "DEBUG" => Some(Level::Debug),
            "TRACE" => Some(Level::Trace),
            _ => None,
        }
    }
}

/// Which file an entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Log,
    Activity,
}

#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub time: Option<DateTime<Utc>>,
    pub level: Level,
    pub origin: Origin,
    /// The tool, for activity records and log lines that name one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// The log line (with its continuation lines), or a one-line summary of the record.
    pub text: String,
    /// The activity record itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<ActivityRecord>,
}

/// What to show.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Show entries at this level or more severe (`--errors`: Error, `--warnings`: Warn).
    pub max_level: Option<Level>,
    pub grep: Option<Regex>,
    pub since: Option<DateTime<Utc>>,
    pub tool: Option<String>,
    /// Only the log or only the activity records.
    pub origin: Option<Origin>,
}

impl Filter {
    pub fn matches(&self, e: &Entry) -> bool {
        if self.max_level.is_some_and(|max| e.level > max) {
            return false;
        }
        if self.origin.is_some_and(|o| o != e.origin) {
            return false;
        }
        if let Some(since) = self.since
            && e.time.is_some_and(|t| t < since)
        {
            return false;
        }
        if let Some(tool) = &self.tool
            && e.tool.as_deref() != Some(tool.as_str())
        {
            return false;
        }
        if let Some(re) = &self.grep
            && !re.is_match(&e.text)
        {
            return false;
        }
        true
    }
}

/// The longest duration accepted: windows reach back from now, and a date that far back (or
/// twice as far, for a comparison window) still exists.
const MAX_DURATION_DAYS: u64 = 36_500;

/// `30s`, `15m`, `1h`, `7d`, `2w` (a bare number is seconds), at most 100 years.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a duration; use e.g. 30s, 15m, 1h, 7d, 2w"))?;
    let secs = match unit.trim() {
        "" | "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{text}`; use s, m, h, d or w"
            ));
        }
    };
    let secs = n.saturating_mul(secs);
    if secs > MAX_DURATION_DAYS * 86_400 {
        return Err(format!(
            "`{text}` is longer than {MAX_DURATION_DAYS} days (100 years)"
        ));
    }
    Ok(Duration::from_secs(secs))
}

/// `path`, then its rotated files, oldest first. Rotation numbers are contiguous (`.1` newest),
/// so the first gap ends the set.
pub fn rotated_set(path: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = (1..)
        .map(|n| {
            let mut name = path.as_os_str().to_owned();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        })
        .take_while(|p| p.exists())
        .collect();
    out.reverse();
    if path.exists() {
        out.push(path.to_path_buf());
    }
    out
}

fn tool_in_line(line: &str) -> Option<String> {
    let at = line.find("tool=")? + 5;
    let rest = line[at..].trim_start_matches('"');
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .unwrap_or(rest.len());
    (end > 0).then(|| rest[..end].to_string())
}

/// One line of the text log: `TIME LEVEL message…`; `None` for a continuation line.
fn parse_log_line(line: &str) -> Option<Entry> {
    let mut words = line.split_whitespace();
    let time = DateTime::parse_from_rfc3339(words.next()?)
        .ok()?
        .with_timezone(&Utc);
    let level = Level::parse(words.next()?)?;
    Some(Entry {
        time: Some(time),
        level,
        origin: Origin::Log,
        tool: tool_in_line(line),
        text: line.to_string(),
        record: None,
    })
}

fn activity_entry(record: ActivityRecord) -> Entry {
    let level = match record.outcome.as_str() {
        "ok" => Level::Info,
        "cancelled" => Level::Warn,
        _ => Level::Error,
    };
    let mut text = format!(
        "{} {} {} in {:.1} ms",
        record.tool, record.outcome, record.session, record.duration_ms
    );
    for (name, value) in [
        ("kind", &record.error_kind),
        ("model", &record.model),
        ("provider", &record.provider),
    ] {
        if let Some(v) = value {
            text.push_str(&format!(" {name}={v}"));
        }
    }
    if let (Some(i), Some(o)) = (record.tokens_in, record.tokens_out) {
        text.push_str(&format!(" tokens={i}/{o}"));
    }
    if let Some(c) = record.cost_usd {
        text.push_str(&format!(" cost=${c:.6}"));
    }
    Entry {
        time: DateTime::parse_from_rfc3339(&record.time)
            .ok()
            .map(|t| t.with_timezone(&Utc)),
        level,
        origin: Origin::Activity,
        tool: Some(record.tool.clone()),
        text,
        record: Some(record),
    }
}

/// Parse text from the log file; continuation lines join the entry before them.
fn push_log_text(out: &mut Vec<Entry>, text: &str) {
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        match parse_log_line(line) {
            Some(e) => out.push(e),
            None => match out.last_mut() {
                Some(last) if last.origin == Origin::Log => {
                    last.text.push('\n');
                    last.text.push_str(line);
                }
                _ => out.push(Entry {
                    time: None,
                    level: Level::Info,
                    origin: Origin::Log,
                    tool: None,
                    text: line.to_string(),
                    record: None,
                }),
            },
        }
    }
}

fn push_activity_text(out: &mut Vec<Entry>, text: &str) {
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Ok(record) = serde_json::from_str::<ActivityRecord>(line) {
            out.push(activity_entry(record));
        }
    }
}

/// Every entry of both logs (rotated files included), in time order.
pub fn read_all(paths: &DataPaths) -> Vec<Entry> {
    time_ordered(read_live_and_rotated(paths, None))
}

/// Both logs' files, oldest first; with `since`, only those written to at or after it (a file
/// last written before `since` holds nothing from then on), so a look at the last hour does not
/// read weeks of rotated files.
fn read_live_and_rotated(paths: &DataPaths, since: Option<DateTime<Utc>>) -> Vec<Entry> {
    let recent = |file: &PathBuf| {
        let Some(since) = since else {
            return true;
        };
        std::fs::metadata(file)
            .and_then(|m| m.modified())
            .map_or(true, |t| DateTime::<Utc>::from(t) >= since)
    };
    let mut out = Vec::new();
    for file in rotated_set(&paths.log_file()).into_iter().filter(recent) {
        if let Ok(text) = std::fs::read_to_string(&file) {
            push_log_text(&mut out, &text);
        }
    }
    for file in rotated_set(&paths.activity_file())
        .into_iter()
        .filter(recent)
    {
        if let Ok(text) = std::fs::read_to_string(&file) {
            push_activity_text(&mut out, &text);
        }
    }
    out
}

/// Sort by time. Stable: lines without a time keep their place after the entry before them.
fn time_ordered(out: Vec<Entry>) -> Vec<Entry> {
    let mut last = None;
    let mut keyed: Vec<(Option<DateTime<Utc>>, usize, Entry)> = out
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            if e.time.is_some() {
                last = e.time;
            }
            (last, i, e)
        })
        .collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    keyed.into_iter().map(|(_, _, e)| e).collect()
}

/// The activity records of every activity file, oldest first.
pub fn activity_records(paths: &DataPaths) -> Vec<ActivityRecord> {
    let mut out = Vec::new();
    for file in rotated_set(&paths.activity_file()) {
        if let Ok(text) = std::fs::read_to_string(&file) {
            out.extend(
                text.lines()
                    .filter_map(|l| serde_json::from_str::<ActivityRecord>(l).ok()),
            );
        }
    }
    out
}

/// [`collect`] over the archives in `logs/archives/` too; also returns the archives that could
/// not be read.
pub fn collect_with_archives(paths: &DataPaths, filter: &Filter) -> (Vec<Entry>, Vec<String>) {
    let (mut all, problems) = archive::read_archives(paths);
    all.extend(read_live_and_rotated(paths, filter.since));
    let entries = time_ordered(all)
        .into_iter()
        .filter(|e| filter.matches(e))
        .collect();
    (entries, problems)
}

pub fn collect(paths: &DataPaths, filter: &Filter) -> Vec<Entry> {
    time_ordered(read_live_and_rotated(paths, filter.since))
        .into_iter()
        .filter(|e| filter.matches(e))
        .collect()
}

/// Counts over a window, for the health check.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Counts {
    pub errors: u64,
    pub warnings: u64,
    /// Provider rate limits (HTTP 429) seen in the log and the activity records.
    pub rate_limited: u64,
    pub calls: u64,
    pub failed_calls: u64,
}

pub fn counts_since(paths: &DataPaths, since: DateTime<Utc>) -> Counts {
    let rate = Regex::new(r"\b429\b|[Rr]ate.limit").ok();
    let mut c = Counts::default();
    for e in read_all(paths) {
        if e.time.is_some_and(|t| t < since) {
            continue;
        }
        match e.origin {
            Origin::Log => {
                match e.level {
                    Level::Error => c.errors += 1,
                    Level::Warn => c.warnings += 1,
                    _ => {}
                }
                if rate.as_ref().is_some_and(|r| r.is_match(&e.text)) {
                    c.rate_limited += 1;
                }
            }
            Origin::Activity => {
                c.calls += 1;
                if let Some(r) = &e.record {
                    if r.outcome != "ok" && r.outcome != "cancelled" {
                        c.failed_calls += 1;
                    }
                    if r.error_kind.as_deref() == Some("rate_limited") {
                        c.rate_limited += 1;
                    }
                }
            }
        }
    }
    c
}

/// Follows the logs: each `poll` returns what was appended since the last one, across
/// rotations (a file that shrank or changed identity is read from its start).
pub struct Follower {
    files: Vec<(PathBuf, Origin)>,
    offsets: HashMap<PathBuf, (u64, u64)>,
}

fn identity(meta: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    meta.ino()
}

impl Follower {
    /// Start at the current ends of the files.
    pub fn new(paths: &DataPaths) -> Follower {
        let files = vec![
            (paths.log_file(), Origin::Log),
            (paths.activity_file(), Origin::Activity),
        ];
        let mut offsets = HashMap::new();
        for (f, _) in &files {
            if let Ok(m) = std::fs::metadata(f) {
                offsets.insert(f.clone(), (identity(&m), m.len()));
            }
        }
        Follower { files, offsets }
    }

    pub fn poll(&mut self) -> Vec<Entry> {
        let mut out = Vec::new();
        for (path, origin) in &self.files {
            let Ok(meta) = std::fs::metadata(path) else {
                continue;
            };
            let (id, len) = (identity(&meta), meta.len());
            let start = match self.offsets.get(path) {
                Some(&(old_id, off)) if old_id == id && off <= len => off,
                _ => 0,
            };
            if start == len {
                self.offsets.insert(path.clone(), (id, len));
                continue;
            }
            let Ok(mut file) = std::fs::File::open(path) else {
                continue;
            };
            if file.seek(SeekFrom::Start(start)).is_err() {
                continue;
            }
            // Only whole lines: a record being written is picked up by the next poll.
            let mut reader = BufReader::new(file);
            let mut consumed = start;
            let mut text = String::new();
            let mut line = String::new();
            while let Ok(n) = reader.read_line(&mut line) {
                if n == 0 || !line.ends_with('\n') {
                    break;
                }
                consumed += n as u64;
                text.push_str(&line);
                line.clear();
            }
            self.offsets.insert(path.clone(), (id, consumed));
            match origin {
                Origin::Log => push_log_text(&mut out, &text),
                Origin::Activity => push_activity_text(&mut out, &text),
            }
        }
        out
    }
}

/// Remove rotated log and activity files last written before `older_than` ago. The live files
/// stay (a running daemon writes to them; they rotate by size).
pub fn prune(paths: &DataPaths, older_than: Duration) -> std::io::Result<Vec<(PathBuf, u64)>> {
    let cutoff = SystemTime::now()
        .checked_sub(older_than)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut removed = Vec::new();
    for live in [paths.log_file(), paths.activity_file()] {
        for file in rotated_set(&live) {
            if file == live {
                continue;
            }
            let meta = std::fs::metadata(&file)?;
            if meta.modified()? < cutoff {
                std::fs::remove_file(&file)?;
                removed.push((file, meta.len()));
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(time: &str, tool: &str, outcome: &str, kind: Option<&str>) -> String {
        let r = ActivityRecord {
            time: time.into(),
            tool: tool.into(),
            session: "stdio".into(),
            request_id: "1".into(),
            duration_ms: 12.5,
            outcome: outcome.into(),
            error_kind: kind.map(str::to_string),
            model: None,
            provider: None,
            tokens_in: None,
            tokens_out: None,
            cost_usd: None,
            route: None,
            client: None,
            client_version: None,
            principal: None,
            search: None,
        };
        serde_json::to_string(&r).unwrap() + "\n"
    }

    fn setup() -> (tempfile::TempDir, DataPaths) {
        let dir = tempfile::tempdir().unwrap();
        let paths = DataPaths::new(dir.path());
        std::fs::create_dir_all(paths.logs()).unwrap();
        (dir, paths)
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604_800));
        assert!(parse_duration("1y").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("36500d").is_ok());
        assert!(
            parse_duration("99999999999d")
                .unwrap_err()
                .contains("longer than 36500 days")
        );
    }

    #[test]
    fn merges_filters_and_counts() {
        let (_dir, paths) = setup();
        let log_1 = "2026-12-01T10:00:00.000000Z  INFO exai: started\n\
                     2026-12-01T10:00:05.000000Z ERROR exai: provider failed tool=chat\n  caused by: 429 Too Many Requests\n";
        let log = "2026-12-01T11:00:00.000000Z  WARN exai: slow search tool=search_docs\n";
        std::fs::write(paths.log_file(), log).unwrap();
        let mut rotated = paths.log_file().into_os_string();
        rotated.push(".1");
        std::fs::write(&rotated, log_1).unwrap();
        let activity = record(
            "2026-12-01T10:00:06Z",
            "chat",
            "error",
            Some("rate_limited"),
        ) + &record("2026-12-01T10:30:00Z", "version", "ok", None)
            + "not json\n";
        std::fs::write(paths.activity_file(), activity).unwrap();

        let all = collect(&paths, &Filter::default());
        let texts: Vec<&str> = all.iter().map(|e| e.text.lines().next().unwrap()).collect();
        assert_eq!(all.len(), 5, "{texts:?}");
        assert!(texts[0].ends_with("started"));
        assert!(
            all[1].text.contains("caused by: 429"),
            "continuation joined"
        );
        assert_eq!(all[2].origin, Origin::Activity);
        assert!(texts[4].contains("slow search"));

        let errors = Filter {
            max_level: Some(Level::Error),
            ..Filter::default()
        };
        assert_eq!(collect(&paths, &errors).len(), 2);
        let chat = Filter {
            tool: Some("chat".into()),
            ..Filter::default()
        };
        assert_eq!(collect(&paths, &chat).len(), 2);
        let grep = Filter {
            grep: Some(Regex::new("slow").unwrap()),
            ..Filter::default()
        };
        assert_eq!(collect(&paths, &grep).len(), 1);
        let since = Filter {
            since: Some("2026-12-01T10:20:00Z".parse().unwrap()),
            ..Filter::default()
        };
        assert_eq!(collect(&paths, &since).len(), 2);

        let c = counts_since(&paths, "2026-12-01T00:00:00Z".parse().unwrap());
        assert_eq!(
            c,
            Counts {
                errors: 1,
                warnings: 1,
                rate_limited: 2,
                calls: 2,
                failed_calls: 1
            }
        );
    }

    #[test]
    fn a_window_skips_files_last_written_before_it() {
        let (_dir, paths) = setup();
        let now = Utc::now();
        let stamp = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let mut rotated = paths.log_file().into_os_string();
        rotated.push(".1");
        // Its line claims a recent time, but the file was last written two days ago: only
        // reading it could show the line.
        std::fs::write(&rotated, format!("{}  INFO rotated\n", stamp(now))).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&rotated)
            .and_then(|f| f.set_modified(SystemTime::now() - Duration::from_secs(2 * 86_400)))
            .unwrap();
        std::fs::write(paths.log_file(), format!("{}  INFO live\n", stamp(now))).unwrap();
        let hour = Filter {
            since: Some(now - chrono::Duration::hours(1)),
            ..Filter::default()
        };
        let texts: Vec<String> = collect(&paths, &hour).into_iter().map(|e| e.text).collect();
        assert_eq!(texts.len(), 1, "{texts:?}");
        assert!(texts[0].ends_with("live"));
        assert_eq!(collect(&paths, &Filter::default()).len(), 2);
    }

    #[test]
    fn follows_appends_and_rotation() {
        let (_dir, paths) = setup();
        std::fs::write(paths.log_file(), "2026-12-01T10:00:00Z  INFO old\n").unwrap();
        let mut f = Follower::new(&paths);
        assert!(f.poll().is_empty());
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(paths.log_file())
            .unwrap();
        file.write_all(b"2026-12-01T10:00:01Z  WARN new\n2026-12-01T10:00:02Z  INFO part")
            .unwrap();
        let got = f.poll();
        assert_eq!(got.len(), 1);
        assert!(got[0].text.ends_with("new"));
        file.write_all(b"ial\n").unwrap();
        assert!(f.poll()[0].text.ends_with("partial"));
        // Rotation: the file is replaced by a new, shorter one.
        let mut rotated = paths.log_file().into_os_string();
        rotated.push(".1");
        std::fs::rename(paths.log_file(), &rotated).unwrap();
        std::fs::write(paths.log_file(), "2026-12-01T10:00:03Z ERROR fresh\n").unwrap();
        let got = f.poll();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].level, Level::Error);
    }
}
