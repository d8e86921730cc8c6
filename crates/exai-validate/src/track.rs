//! Where validation runs are recorded: `test_runs` (one row per `exai validate`), `test_results`
//! (one row per tool × variation) and `test_grades` (the watcher's 1–10 grade of a result).
//!
//! Everything goes through [`TrackingStore`], with two backends. The SQLite backend lives in the
//! data directory's `state.sqlite`, next to the conversation threads, so one backup covers both;
//! its schema version is kept per component in `schema_version` rather than in
//! `PRAGMA user_version`, which the file's other users may want. With `database.url` set, the
//! same tables live in PostgreSQL ([`PgTracking`], component `tracking` of `exai_schema`), so
//! every daemon and operator on that database shares one history.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use exai_core::Loaded;
use exai_pg::postgres;
use exai_pg::{PgError, Pool};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

/// The schema this build writes. Each step in [`MIGRATIONS`] brings the tables one version up.
pub const SCHEMA_VERSION: i64 = 1;

const COMPONENT: &str = "validation";

const MIGRATIONS: &[&str] = &[
    // 1: runs, results and grades.
    "CREATE TABLE test_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        provider TEXT NOT NULL,
        exai_version TEXT NOT NULL,
        tools_filter TEXT,
        variations_filter TEXT,
        watcher_model TEXT,
        total INTEGER NOT NULL DEFAULT 0,
        passed INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        skipped INTEGER NOT NULL DEFAULT 0,
        errored INTEGER NOT NULL DEFAULT 0,
        pass_rate REAL,
        duration_ms REAL,
        tokens_in INTEGER NOT NULL DEFAULT 0,
        tokens_out INTEGER NOT NULL DEFAULT 0,
        cost_usd REAL NOT NULL DEFAULT 0
    );
    CREATE INDEX test_runs_started ON test_runs(started_at);
    CREATE TABLE test_results (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id INTEGER NOT NULL REFERENCES test_runs(id) ON DELETE CASCADE,
        tool TEXT NOT NULL,
        variation TEXT NOT NULL,
        provider TEXT,
        model TEXT,
        status TEXT NOT NULL CHECK (status IN ('PASS', 'FAIL', 'SKIP', 'ERROR')),
        duration_ms REAL NOT NULL,
        tokens_in INTEGER NOT NULL DEFAULT 0,
        tokens_out INTEGER NOT NULL DEFAULT 0,
        cost_usd REAL NOT NULL DEFAULT 0,
        error TEXT,
        output TEXT,
        created_at TEXT NOT NULL
    );
    CREATE INDEX test_results_run ON test_results(run_id);
    CREATE INDEX test_results_tool ON test_results(tool, variation);
    CREATE TABLE test_grades (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        result_id INTEGER NOT NULL REFERENCES test_results(id) ON DELETE CASCADE,
        watcher_model TEXT NOT NULL,
        grade INTEGER CHECK (grade BETWEEN 1 AND 10),
        reasons TEXT NOT NULL,
        tokens_in INTEGER NOT NULL DEFAULT 0,
        tokens_out INTEGER NOT NULL DEFAULT 0,
        cost_usd REAL NOT NULL DEFAULT 0,
        error TEXT,
        graded_at TEXT NOT NULL
    );
    CREATE INDEX test_grades_result ON test_grades(result_id);",
];

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
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The SQLite backend.
pub struct SqliteTracking {
    db: Connection,
}

impl SqliteTracking {
    /// Open (creating or migrating) the tracking tables in the SQLite file at `path`.
    pub fn open(path: &Path) -> Result<SqliteTracking, TrackError> {
        // Created 0600 like every database exai keeps; a failure surfaces as SQLite's own.
        let _ = exai_core::private::prepare_sqlite(path);
        let mut db = Connection::open(path)?;
        db.busy_timeout(Duration::from_secs(5))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&mut db)?;
        Ok(SqliteTracking { db })
    }

    /// The schema version the file is at (for `db` tooling and tests).
    pub fn schema_version(&self) -> Result<i64, TrackError> {
        version(&self.db)
    }
}

fn version(db: &Connection) -> Result<i64, TrackError> {
    Ok(db
        .query_row(
            "SELECT version FROM schema_version WHERE component = ?1",
            [COMPONENT],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0))
}

fn migrate(db: &mut Connection) -> Result<(), TrackError> {
    db.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (
            component TEXT PRIMARY KEY,
            version INTEGER NOT NULL
        );",
    )?;
    let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let found = version(&tx)?;
    if found > SCHEMA_VERSION {
        return Err(TrackError::NewerSchema { found });
    }
    for (i, step) in MIGRATIONS.iter().enumerate() {
        let target = i64::try_from(i + 1).unwrap_or(i64::MAX);
        if target > found {
            tx.execute_batch(step)?;
        }
    }
    tx.execute(
        "INSERT INTO schema_version (component, version) VALUES (?1, ?2)
         ON CONFLICT(component) DO UPDATE SET version = excluded.version",
        params![COMPONENT, SCHEMA_VERSION],
    )?;
    tx.commit()?;
    Ok(())
}

impl TrackingStore for SqliteTracking {
    fn begin_run(&mut self, run: &NewRun) -> Result<i64, TrackError> {
        self.db.execute(
            "INSERT INTO test_runs (started_at, provider, exai_version, tools_filter, variations_filter, watcher_model)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                run.started_at,
                run.provider,
                exai_core::VERSION,
                run.tools_filter,
                run.variations_filter,
                run.watcher_model
            ],
        )?;
        Ok(self.db.last_insert_rowid())
    }

    fn add_result(&mut self, run_id: i64, r: &CaseResult) -> Result<i64, TrackError> {
        self.db.execute(
            "INSERT INTO test_results (run_id, tool, variation, provider, model, status, duration_ms,
                                       tokens_in, tokens_out, cost_usd, error, output, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            params![
                run_id,
                r.tool,
                r.variation,
                r.provider,
                r.model,
                r.status.as_str(),
                r.duration_ms,
                to_i64(r.tokens_in),
                to_i64(r.tokens_out),
                r.cost_usd,
                r.error,
                r.output,
                now()
            ],
        )?;
        Ok(self.db.last_insert_rowid())
    }

    fn add_grade(&mut self, result_id: i64, g: &Grade) -> Result<(), TrackError> {
        self.db.execute(
            "INSERT INTO test_grades (result_id, watcher_model, grade, reasons, tokens_in, tokens_out, cost_usd, error, graded_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                result_id,
                g.watcher_model,
                g.grade,
                g.reasons,
                to_i64(g.tokens_in),
                to_i64(g.tokens_out),
                g.cost_usd,
                g.error,
                now()
            ],
        )?;
        Ok(())
    }

    fn finish_run(
        &mut self,
        run_id: i64,
        t: &Totals,
        duration: Duration,
    ) -> Result<(), TrackError> {
        self.db.execute(
            "UPDATE test_runs SET finished_at = ?2, total = ?3, passed = ?4, failed = ?5, skipped = ?6,
                errored = ?7, pass_rate = ?8, duration_ms = ?9, tokens_in = ?10, tokens_out = ?11, cost_usd = ?12
             WHERE id = ?1",
            params![
                run_id,
                now(),
                to_i64(t.total),
                to_i64(t.passed),
                to_i64(t.failed),
                to_i64(t.skipped),
                to_i64(t.errored),
                t.pass_rate(),
                duration.as_secs_f64() * 1000.0,
                to_i64(t.tokens_in),
                to_i64(t.tokens_out),
                t.cost_usd
            ],
        )?;
        Ok(())
    }

    fn runs(&self, limit: usize) -> Result<Vec<RunRow>, TrackError> {
        let mut stmt = self.db.prepare(
            "SELECT r.id, r.started_at, r.finished_at, r.provider, r.exai_version, r.tools_filter,
                    r.variations_filter, r.watcher_model, r.total, r.passed, r.failed, r.skipped,
                    r.errored, r.pass_rate, r.duration_ms, r.tokens_in, r.tokens_out, r.cost_usd,
                    (SELECT AVG(g.grade) FROM test_grades g JOIN test_results t ON t.id = g.result_id
                      WHERE t.run_id = r.id AND g.grade IS NOT NULL)
             FROM test_runs r ORDER BY r.id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
            Ok(RunRow {
                id: r.get(0)?,
                started_at: r.get(1)?,
                finished_at: r.get(2)?,
                provider: r.get(3)?,
                exai_version: r.get(4)?,
                tools_filter: r.get(5)?,
                variations_filter: r.get(6)?,
                watcher_model: r.get(7)?,
                total: to_u64(r.get(8)?),
                passed: to_u64(r.get(9)?),
                failed: to_u64(r.get(10)?),
                skipped: to_u64(r.get(11)?),
                errored: to_u64(r.get(12)?),
                pass_rate: r.get(13)?,
                duration_ms: r.get(14)?,
                tokens_in: to_u64(r.get(15)?),
                tokens_out: to_u64(r.get(16)?),
                cost_usd: r.get(17)?,
                mean_grade: r.get(18)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

impl From<postgres::Error> for TrackError {
    fn from(e: postgres::Error) -> Self {
        TrackError::Postgres(PgError::from(e))
    }
}

/// The `tracking` component's schema steps (see [`exai_pg::migrate`]): the SQLite tables with
/// PostgreSQL types, times as TIMESTAMPTZ.
const PG_MIGRATIONS: &[&str] = &[
    // 1: runs, results and grades.
    "CREATE TABLE test_runs (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        started_at TIMESTAMPTZ NOT NULL,
        finished_at TIMESTAMPTZ,
        provider TEXT NOT NULL,
        exai_version TEXT NOT NULL,
        tools_filter TEXT,
        variations_filter TEXT,
        watcher_model TEXT,
        total BIGINT NOT NULL DEFAULT 0,
        passed BIGINT NOT NULL DEFAULT 0,
        failed BIGINT NOT NULL DEFAULT 0,
        skipped BIGINT NOT NULL DEFAULT 0,
        errored BIGINT NOT NULL DEFAULT 0,
        pass_rate DOUBLE PRECISION,
        duration_ms DOUBLE PRECISION,
        tokens_in BIGINT NOT NULL DEFAULT 0,
        tokens_out BIGINT NOT NULL DEFAULT 0,
        cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0
    );
    CREATE INDEX test_runs_started ON test_runs (started_at);
    CREATE TABLE test_results (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        run_id BIGINT NOT NULL REFERENCES test_runs (id) ON DELETE CASCADE,
        tool TEXT NOT NULL,
        variation TEXT NOT NULL,
        provider TEXT,
        model TEXT,
        status TEXT NOT NULL CHECK (status IN ('PASS', 'FAIL', 'SKIP', 'ERROR')),
        duration_ms DOUBLE PRECISION NOT NULL,
        tokens_in BIGINT NOT NULL DEFAULT 0,
        tokens_out BIGINT NOT NULL DEFAULT 0,
        cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
        error TEXT,
        output TEXT,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    CREATE INDEX test_results_run ON test_results (run_id);
    CREATE INDEX test_results_tool ON test_results (tool, variation);
    CREATE TABLE test_grades (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        result_id BIGINT NOT NULL REFERENCES test_results (id) ON DELETE CASCADE,
        watcher_model TEXT NOT NULL,
        grade INTEGER CHECK (grade BETWEEN 1 AND 10),
        reasons TEXT NOT NULL,
        tokens_in BIGINT NOT NULL DEFAULT 0,
        tokens_out BIGINT NOT NULL DEFAULT 0,
        cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
        error TEXT,
        graded_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    CREATE INDEX test_grades_result ON test_grades (result_id);",
];

const PG_COMPONENT: &str = "tracking";

/// The PostgreSQL backend. The client blocks, and the validation run calls the store from async
/// code, so inside a runtime each call runs on a short-lived thread of its own (the caller
/// waits, as it would on SQLite).
pub struct PgTracking {
    pool: Arc<Pool>,
}

impl Drop for PgTracking {
    /// The last handle on a pool closes its connections, which blocks: not on an async worker.
    fn drop(&mut self) {
        if Arc::strong_count(&self.pool) == 1 && tokio::runtime::Handle::try_current().is_ok() {
            let pool = Arc::clone(&self.pool);
            std::thread::spawn(move || drop(pool));
        }
    }
}

/// Run `f` where a blocking PostgreSQL client may run: here, or on a scoped thread when this
/// thread drives async tasks (the client would panic starting its runtime inside another).
fn off_runtime<T: Send>(f: impl FnOnce() -> Result<T, TrackError> + Send) -> Result<T, TrackError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|scope| {
        scope
            .spawn(f)
            .join()
            .map_err(|_| TrackError::Task("the database call panicked".into()))?
    })
}

fn pg_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl PgTracking {
    /// Create or migrate the tracking tables on `pool`.
    pub fn open(pool: Arc<Pool>) -> Result<PgTracking, TrackError> {
        off_runtime(|| {
            let mut conn = pool.get()?;
            exai_pg::migrate(&mut conn, PG_COMPONENT, PG_MIGRATIONS)?;
            Ok(())
        })?;
        Ok(PgTracking { pool })
    }

    /// The schema version the database is at.
    pub fn schema_version(&self) -> Result<i64, TrackError> {
        self.with(|c| Ok(exai_pg::schema_version(c, PG_COMPONENT)?))
    }

    /// Where the tables are (password redacted).
    pub fn target(&self) -> &str {
        self.pool.target()
    }

    fn with<T: Send>(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> Result<T, TrackError> + Send,
    ) -> Result<T, TrackError> {
        off_runtime(|| {
            let mut conn = self.pool.get()?;
            f(&mut conn)
        })
    }
}

impl TrackingStore for PgTracking {
    fn begin_run(&mut self, run: &NewRun) -> Result<i64, TrackError> {
        self.with(|c| {
            let row = c.query_one(
                "INSERT INTO test_runs (started_at, provider, exai_version, tools_filter, variations_filter, watcher_model)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                &[
                    &chrono::DateTime::parse_from_rfc3339(&run.started_at)
                        .map(|t| t.with_timezone(&chrono::Utc))
                        .unwrap_or_else(|_| chrono::Utc::now()),
                    &run.provider,
                    &exai_core::VERSION,
                    &run.tools_filter,
                    &run.variations_filter,
                    &run.watcher_model,
                ],
            )?;
            Ok(row.get(0))
        })
    }

    fn add_result(&mut self, run_id: i64, r: &CaseResult) -> Result<i64, TrackError> {
        self.with(|c| {
            let row = c.query_one(
                "INSERT INTO test_results (run_id, tool, variation, provider, model, status, duration_ms,
                                           tokens_in, tokens_out, cost_usd, error, output)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
                &[
                    &run_id,
                    &r.tool,
                    &r.variation,
                    &r.provider,
                    &r.model,
                    &r.status.as_str(),
                    &r.duration_ms,
                    &to_i64(r.tokens_in),
                    &to_i64(r.tokens_out),
                    &r.cost_usd,
                    &r.error,
                    &r.output,
                ],
            )?;
            Ok(row.get(0))
        })
    }

    fn add_grade(&mut self, result_id: i64, g: &Grade) -> Result<(), TrackError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO test_grades (result_id, watcher_model, grade, reasons, tokens_in, tokens_out, cost_usd, error)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    &result_id,
                    &g.watcher_model,
                    &g.grade.map(i32::from),
                    &g.reasons,
                    &to_i64(g.tokens_in),
                    &to_i64(g.tokens_out),
                    &g.cost_usd,
                    &g.error,
                ],
            )?;
            Ok(())
        })
    }

    fn finish_run(
        &mut self,
        run_id: i64,
        t: &Totals,
        duration: Duration,
    ) -> Result<(), TrackError> {
        self.with(|c| {
            c.execute(
                "UPDATE test_runs SET finished_at = now(), total = $2, passed = $3, failed = $4, skipped = $5,
                    errored = $6, pass_rate = $7, duration_ms = $8, tokens_in = $9, tokens_out = $10, cost_usd = $11
                 WHERE id = $1",
                &[
                    &run_id,
                    &to_i64(t.total),
                    &to_i64(t.passed),
                    &to_i64(t.failed),
                    &to_i64(t.skipped),
                    &to_i64(t.errored),
                    &t.pass_rate(),
                    &(duration.as_secs_f64() * 1000.0),
                    &to_i64(t.tokens_in),
                    &to_i64(t.tokens_out),
                    &t.cost_usd,
                ],
            )?;
            Ok(())
        })
    }

    fn runs(&self, limit: usize) -> Result<Vec<RunRow>, TrackError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(|c| {
            let rows = c.query(
                "SELECT r.id, r.started_at, r.finished_at, r.provider, r.exai_version, r.tools_filter,
                        r.variations_filter, r.watcher_model, r.total, r.passed, r.failed, r.skipped,
                        r.errored, r.pass_rate, r.duration_ms, r.tokens_in, r.tokens_out, r.cost_usd,
                        (SELECT AVG(g.grade)::float8 FROM test_grades g JOIN test_results t ON t.id = g.result_id
                          WHERE t.run_id = r.id AND g.grade IS NOT NULL)
                 FROM test_runs r ORDER BY r.id DESC LIMIT $1",
                &[&limit],
            )?;
            Ok(rows
                .iter()
                .map(|r| RunRow {
                    id: r.get(0),
                    started_at: pg_time(r.get(1)),
                    finished_at: r.get::<_, Option<chrono::DateTime<chrono::Utc>>>(2).map(pg_time),
                    provider: r.get(3),
                    exai_version: r.get(4),
                    tools_filter: r.get(5),
                    variations_filter: r.get(6),
                    watcher_model: r.get(7),
                    total: to_u64(r.get(8)),
                    passed: to_u64(r.get(9)),
                    failed: to_u64(r.get(10)),
                    skipped: to_u64(r.get(11)),
                    errored: to_u64(r.get(12)),
                    pass_rate: r.get(13),
                    duration_ms: r.get(14),
                    tokens_in: to_u64(r.get(15)),
                    tokens_out: to_u64(r.get(16)),
                    cost_usd: r.get(17),
                    mean_grade: r.get(18),
                })
                .collect())
        })
    }
}

/// The tracking store of this configuration: PostgreSQL when `database.url` is set (the
/// process's shared pool), else SQLite in the data directory's `state.sqlite`.
pub fn open(loaded: &Loaded) -> Result<Box<dyn TrackingStore>, TrackError> {
    let pool = off_runtime(|| Ok(exai_pg::from_config(&loaded.config.database)?))?;
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

/// One suite, two backends: SQLite and PostgreSQL (a fresh database on
/// `EXAI_TEST_DATABASE_URL`; skipped when that is unset).
#[cfg(test)]
mod tests {
    use super::*;
    use exai_pg::PoolOptions;
    use exai_pg::testing::TestDatabase;

    /// Where a test's tables live; `open` is a (re)start on them.
    trait Place {
        fn try_open(&self) -> Result<Box<dyn TrackingStore>, TrackError>;
        fn open(&self) -> Box<dyn TrackingStore> {
            self.try_open().unwrap()
        }
        fn version(&self) -> i64;
        /// Pretend a newer exai migrated the tables.
        fn bump_version(&self);
    }

    struct SqliteFile(tempfile::TempDir);

    impl SqliteFile {
        fn path(&self) -> std::path::PathBuf {
            self.0.path().join("state.sqlite")
        }
    }

    impl Place for SqliteFile {
        fn try_open(&self) -> Result<Box<dyn TrackingStore>, TrackError> {
            Ok(Box::new(SqliteTracking::open(&self.path())?))
        }
        fn version(&self) -> i64 {
            SqliteTracking::open(&self.path())
                .unwrap()
                .schema_version()
                .unwrap()
        }
        fn bump_version(&self) {
            let db = Connection::open(self.path()).unwrap();
            db.execute(
                "UPDATE schema_version SET version = 99 WHERE component = ?1",
                [COMPONENT],
            )
            .unwrap();
        }
    }

    struct PgDatabase(TestDatabase);

    impl PgDatabase {
        fn tracking(&self) -> Result<PgTracking, TrackError> {
            PgTracking::open(Pool::open(&self.0.url, PoolOptions::default()).unwrap())
        }
    }

    impl Place for PgDatabase {
        fn try_open(&self) -> Result<Box<dyn TrackingStore>, TrackError> {
            Ok(Box::new(self.tracking()?))
        }
        fn version(&self) -> i64 {
            self.tracking().unwrap().schema_version().unwrap()
        }
        fn bump_version(&self) {
            let mut c =
                exai_pg::postgres::Client::connect(&self.0.url, exai_pg::postgres::NoTls).unwrap();
            c.execute(
                "UPDATE exai_schema SET version = 99 WHERE component = $1",
                &[&PG_COMPONENT],
            )
            .unwrap();
        }
    }

    macro_rules! both_backends {
        ($($name:ident),* $(,)?) => {
            mod sqlite {
                $(
                    #[test]
                    fn $name() {
                        super::$name(&super::SqliteFile(tempfile::tempdir().unwrap()));
                    }
                )*
            }
            mod postgres {
                $(
                    #[test]
                    fn $name() {
                        if let Some(db) = super::TestDatabase::create(stringify!($name)) {
                            super::$name(&super::PgDatabase(db));
                        }
                    }
                )*
            }
        };
    }

    both_backends!(
        records_runs_results_and_grades,
        refuses_a_newer_schema,
        works_from_async_code
    );

    fn result(status: Status) -> CaseResult {
        CaseResult {
            tool: "chat".into(),
            variation: "basic".into(),
            status,
            provider: Some("glm".into()),
            model: Some("glm-4.6".into()),
            duration_ms: 3.5,
            tokens_in: 10,
            tokens_out: 5,
            cost_usd: 0.001,
            error: None,
            output: Some("answer".into()),
        }
    }

    fn records_runs_results_and_grades(place: &dyn Place) {
        let mut store = place.open();
        assert_eq!(place.version(), SCHEMA_VERSION);
        let started_at = now();
        let run = store
            .begin_run(&NewRun {
                started_at: started_at.clone(),
                provider: "mock".into(),
                tools_filter: Some("chat".into()),
                variations_filter: None,
                watcher_model: Some("glm-4.6".into()),
            })
            .unwrap();
        let mut totals = Totals::default();
        let mut passes = 0;
        for status in [Status::Pass, Status::Pass, Status::Fail, Status::Skip] {
            let mut r = result(status);
            if status == Status::Fail {
                r.error = Some("said nothing useful".into());
            }
            let id = store.add_result(run, &r).unwrap();
            totals.add(&r);
            if status == Status::Pass {
                passes += 1;
                store
                    .add_grade(
                        id,
                        &Grade {
                            watcher_model: "glm-4.6".into(),
                            grade: Some(if passes == 1 { 6 } else { 8 }),
                            reasons: "clear".into(),
                            tokens_in: 1,
                            tokens_out: 1,
                            cost_usd: 0.0,
                            error: None,
                        },
                    )
                    .unwrap();
            }
        }
        // A run still going shows without a finish.
        assert_eq!(store.runs(10).unwrap()[0].finished_at, None);
        store
            .finish_run(run, &totals, Duration::from_millis(1500))
            .unwrap();
        let runs = store.runs(10).unwrap();
        assert_eq!(runs.len(), 1);
        let r = &runs[0];
        assert_eq!(r.id, run);
        assert_eq!(r.started_at, started_at);
        assert!(r.finished_at.as_deref().is_some_and(|f| *f >= *started_at));
        assert_eq!(
            (r.provider.as_str(), r.exai_version.as_str()),
            ("mock", exai_core::VERSION)
        );
        assert_eq!(r.tools_filter.as_deref(), Some("chat"));
        assert_eq!(r.watcher_model.as_deref(), Some("glm-4.6"));
        assert_eq!((r.total, r.passed, r.failed, r.skipped), (4, 2, 1, 1));
        assert!((r.pass_rate.unwrap() - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(r.duration_ms, Some(1500.0));
        assert_eq!(r.mean_grade, Some(7.0));
        assert_eq!((r.tokens_in, r.tokens_out), (40, 20));
        assert!((r.cost_usd - 0.004).abs() < 1e-9);
        // A second run is newest first; `limit` holds.
        let second = store
            .begin_run(&NewRun {
                started_at: now(),
                provider: "live".into(),
                tools_filter: None,
                variations_filter: Some("basic".into()),
                watcher_model: None,
            })
            .unwrap();
        assert!(second > run);
        let runs = store.runs(1).unwrap();
        assert_eq!(
            (runs.len(), runs[0].id, runs[0].mean_grade),
            (1, second, None)
        );
        // Reopening migrates nothing and keeps the data.
        drop(store);
        let store = place.open();
        assert_eq!(store.runs(10).unwrap().len(), 2);
        assert_eq!(place.version(), SCHEMA_VERSION);
    }

    fn refuses_a_newer_schema(place: &dyn Place) {
        drop(place.open());
        place.bump_version();
        let err = place.try_open().err().unwrap().to_string();
        assert!(err.contains("upgrade exai"), "{err}");
    }

    /// The validation run calls the store from async code: the blocking client must not try to
    /// start its runtime inside the caller's.
    fn works_from_async_code(place: &dyn Place) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let mut store = place.open();
        let runs = runtime.block_on(async move {
            let run = store
                .begin_run(&NewRun {
                    started_at: now(),
                    provider: "mock".into(),
                    tools_filter: None,
                    variations_filter: None,
                    watcher_model: None,
                })
                .unwrap();
            store.add_result(run, &result(Status::Pass)).unwrap();
            store
                .finish_run(run, &Totals::default(), Duration::from_millis(1))
                .unwrap();
            store.runs(5).unwrap()
        });
        assert_eq!(runs.len(), 1);
    }

    #[test]
    fn pass_rate_ignores_skips() {
        let mut t = Totals::default();
        t.add(&result(Status::Skip));
        assert_eq!(t.pass_rate(), None);
        t.add(&result(Status::Error));
        t.add(&result(Status::Pass));
        assert_eq!(t.pass_rate(), Some(0.5));
    }

    /// `open` picks PostgreSQL when `database.url` is set, SQLite otherwise; and `location`
    /// names the server without its password.
    #[test]
    fn open_follows_the_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let mut loaded = exai_core::config::load(&exai_core::config::Inputs {
            env: vec![("EXAI_HOME".into(), dir.path().display().to_string())],
            ..Default::default()
        })
        .unwrap();
        open(&loaded).unwrap();
        assert!(dir.path().join("state.sqlite").exists());
        assert!(location(&loaded).ends_with("state.sqlite"));
        let Some(db) = TestDatabase::create("trackopen") else {
            return;
        };
        loaded.config.database.url = exai_core::config::Secret::new(db.url.clone());
        let mut store = open(&loaded).unwrap();
        store
            .begin_run(&NewRun {
                started_at: now(),
                provider: "mock".into(),
                tools_filter: None,
                variations_filter: None,
                watcher_model: None,
            })
            .unwrap();
        let mut c = exai_pg::postgres::Client::connect(&db.url, exai_pg::postgres::NoTls).unwrap();
        let n: i64 = c
            .query_one("SELECT count(*) FROM test_runs", &[])
            .unwrap()
            .get(0);
        assert_eq!(n, 1);
        assert!(location(&loaded).starts_with("PostgreSQL at postgres://"));
    }
}
