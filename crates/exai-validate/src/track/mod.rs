//! Where validation runs are recorded: `test_runs` (one row per `exai validate`), `test_results`
//! (one row per tool × variation) and `test_grades` (the watcher's 1–10 grade of a result).
//!
//! Everything goes through [`TrackingStore`], with two backends. The SQLite backend lives in the
//! data directory's `state.sqlite`, next to the conversation threads, so one backup covers both;
//! its schema version is kept per component in `schema_version` rather than in
//! `PRAGMA user_version`, which the file's other users may want. With `database.url` set, the
//! same tables live in PostgreSQL ([`PgTracking`], component `tracking` of `exai_schema`), so
//! every daemon and operator on that database shares one history.

//!
//! The rules and types live here; each backend is a file of its own (`sqlite.rs`,
//! `postgres.rs`), as for the conversation threads.

mod postgres;
mod sqlite;
#[cfg(test)]
mod tests;

use std::time::Duration;

use chrono::{DateTime, Utc};

use exai_core::Loaded;
use exai_pg::PgError;
use serde::Serialize;

pub use postgres::PgTracking;
pub use sqlite::{SCHEMA_VERSION, SqliteTracking};

#[derive(Debug, thiserror::Error)]
pub enum TrackError {
    #[error("validation tracking database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("validation tracking database: {0}")]
    Postgres(#[from] PgError),
    #[error("validation tracking database: {0}")]
    Task(String),
    #[error(
        "the validation tables are at schema version {found}, newer than this exai understands ({SCHEMA_VERSION}); upgrade exai"
    )]
    NewerSchema { found: i64 },
}

/// The outcome of one case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Pass,
    Fail,
    Skip,
    Error,
}

impl Status {
    /// The status a row stores; anything else reads as an error (the schema's CHECK allows no
    /// other value).
    pub fn from_stored(text: &str) -> Status {
        match text {
            "PASS" => Status::Pass,
            "FAIL" => Status::Fail,
            "SKIP" => Status::Skip,
            _ => Status::Error,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
            Status::Error => "ERROR",
        }
    }
}

/// What is known when a run starts.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub started_at: String,
    pub provider: String,
    pub tools_filter: Option<String>,
    pub variations_filter: Option<String>,
    pub watcher_model: Option<String>,
}

/// One case's recorded result.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    pub tool: String,
    pub variation: String,
    pub status: Status,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub duration_ms: f64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cost_usd: f64,
    /// Why it failed, errored or was skipped.
    pub error: Option<String>,
    /// The last tool output the case saw (capped), which the watcher grades.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

/// A watcher's grade of one result.
#[derive(Debug, Clone, Serialize)]
pub struct Grade {
    pub watcher_model: String,
    /// 1–10; `None` when the watcher failed or did not answer in the asked format.
    pub grade: Option<u8>,
    pub reasons: String,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cost_usd: f64,
    pub error: Option<String>,
}

/// Counts of a finished run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub total: u64,
    pub passed: u64,
    pub failed: u64,
    pub skipped: u64,
    pub errored: u64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cost_usd: f64,
}

impl Totals {
    pub fn add(&mut self, r: &CaseResult) {
        self.total += 1;
        match r.status {
            Status::Pass => self.passed += 1,
            Status::Fail => self.failed += 1,
            Status::Skip => self.skipped += 1,
            Status::Error => self.errored += 1,
        }
        self.tokens_in += r.tokens_in;
        self.tokens_out += r.tokens_out;
        self.cost_usd += r.cost_usd;
    }

    /// Passed among the cases that ran (skips do not count); `None` when none ran.
    pub fn pass_rate(&self) -> Option<f64> {
        let ran = self.passed + self.failed + self.errored;
        (ran > 0).then(|| self.passed as f64 / ran as f64)
    }
}

/// A run as history shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    pub id: i64,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub provider: String,
    pub exai_version: String,
    pub tools_filter: Option<String>,
    pub variations_filter: Option<String>,
    pub watcher_model: Option<String>,
    pub total: u64,
    pub passed: u64,
    pub failed: u64,
    pub skipped: u64,
    pub errored: u64,
    pub pass_rate: Option<f64>,
    pub duration_ms: Option<f64>,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cost_usd: f64,
    /// Mean of the watcher's grades in this run, if it had a watcher.
    pub mean_grade: Option<f64>,
}

/// One case's result as the weekly review reads it: which run, when, and how it ended.
#[derive(Debug, Clone, Serialize)]
pub struct ResultRow {
    pub run_id: i64,
    /// When its run started (RFC 3339, UTC).
    pub started_at: String,
    pub provider: String,
    pub tool: String,
    pub variation: String,
    pub status: Status,
    pub error: Option<String>,
}

/// The tracking tables, whatever database holds them.
pub trait TrackingStore: Send {
    /// Record a run as started; returns its id.
    fn begin_run(&mut self, run: &NewRun) -> Result<i64, TrackError>;
    /// Record one case's result; returns its id.
    fn add_result(&mut self, run_id: i64, result: &CaseResult) -> Result<i64, TrackError>;
    fn add_grade(&mut self, result_id: i64, grade: &Grade) -> Result<(), TrackError>;
    fn finish_run(
        &mut self,
        run_id: i64,
        totals: &Totals,
        duration: Duration,
    ) -> Result<(), TrackError>;
    /// The newest `limit` runs, newest first.
    fn runs(&self, limit: usize) -> Result<Vec<RunRow>, TrackError>;
    /// The runs started at or after `since`, newest first.
    fn runs_since(&self, since: DateTime<Utc>) -> Result<Vec<RunRow>, TrackError>;
    /// The case results of the runs started at or after `since`, newest run first.
    fn results_since(&self, since: DateTime<Utc>) -> Result<Vec<ResultRow>, TrackError>;
}

exai_pg::from_postgres!(TrackError);

fn now() -> String {
    stored_time(Utc::now())
}

/// Times as both backends hand them out (and SQLite stores them): RFC 3339 in UTC with
/// milliseconds, so that text order is time order.
pub fn stored_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The tracking store of this configuration: PostgreSQL when `database.url` is set (the
/// process's shared pool), else SQLite in the data directory's `state.sqlite`.
pub fn open(loaded: &Loaded) -> Result<Box<dyn TrackingStore>, TrackError> {
    let pool = postgres::off_runtime(|| Ok(exai_pg::from_config(&loaded.config.database)?))?;
    match pool {
        Some(pool) => Ok(Box::new(PgTracking::open(pool)?)),
        None => Ok(Box::new(SqliteTracking::open(
            &loaded.data_dir.join("state.sqlite"),
        )?)),
    }
}

/// Where [`open`] keeps the tables, for messages: the SQLite file or the server (password
/// redacted).
pub fn location(loaded: &Loaded) -> String {
    match loaded.config.database.postgres_url() {
        Some(url) => format!("PostgreSQL at {}", exai_pg::redact(url)),
        None => loaded.data_dir.join("state.sqlite").display().to_string(),
    }
}
