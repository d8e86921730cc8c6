//! Validation runs in SQLite: the data directory's `state.sqlite`, next to the conversation
//! threads, its schema version kept per component in `schema_version`.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use exai_core::sqlite_schema::SchemaError;
use rusqlite::{Connection, ToSql, params};

use super::{
    CaseResult, Grade, NewRun, ResultRow, RunRow, Status, Totals, TrackError, TrackingStore, now,
    stored_time, to_i64, to_u64,
};

/// The schema this build writes. Each step in [`MIGRATIONS`] brings the tables one version up.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

pub(super) const COMPONENT: &str = "validation";

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
    Ok(exai_core::sqlite_schema::version(db, COMPONENT)?)
}

fn migrate(db: &mut Connection) -> Result<(), TrackError> {
    exai_core::sqlite_schema::migrate(db, COMPONENT, MIGRATIONS).map_err(|e| match e {
        SchemaError::Sqlite(e) => TrackError::Sqlite(e),
        SchemaError::Newer { found } => TrackError::NewerSchema { found },
    })
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
        self.select_runs(
            "ORDER BY r.id DESC LIMIT ?1",
            i64::try_from(limit).unwrap_or(i64::MAX),
        )
    }

    fn runs_since(&self, since: DateTime<Utc>) -> Result<Vec<RunRow>, TrackError> {
        self.select_runs(
            "WHERE r.started_at >= ?1 ORDER BY r.id DESC",
            stored_time(since),
        )
    }

    fn results_since(&self, since: DateTime<Utc>) -> Result<Vec<ResultRow>, TrackError> {
        let mut stmt = self.db.prepare(
            "SELECT t.run_id, r.started_at, r.provider, t.tool, t.variation, t.status, t.error
             FROM test_results t JOIN test_runs r ON r.id = t.run_id
             WHERE r.started_at >= ?1 ORDER BY t.run_id DESC, t.id",
        )?;
        let rows = stmt.query_map([stored_time(since)], |r| {
            Ok(ResultRow {
                run_id: r.get(0)?,
                started_at: r.get(1)?,
                provider: r.get(2)?,
                tool: r.get(3)?,
                variation: r.get(4)?,
                status: Status::from_stored(&r.get::<_, String>(5)?),
                error: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

impl SqliteTracking {
    /// The runs `tail` (a WHERE/ORDER/LIMIT clause with one parameter) selects.
    fn select_runs(&self, tail: &str, param: impl ToSql) -> Result<Vec<RunRow>, TrackError> {
        let mut stmt = self.db.prepare(&format!(
            "SELECT r.id, r.started_at, r.finished_at, r.provider, r.exai_version, r.tools_filter,
                    r.variations_filter, r.watcher_model, r.total, r.passed, r.failed, r.skipped,
                    r.errored, r.pass_rate, r.duration_ms, r.tokens_in, r.tokens_out, r.cost_usd,
                    (SELECT AVG(g.grade) FROM test_grades g JOIN test_results t ON t.id = g.result_id
                      WHERE t.run_id = r.id AND g.grade IS NOT NULL)
             FROM test_runs r {tail}"
        ))?;
        let rows = stmt.query_map([param], |r| {
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
