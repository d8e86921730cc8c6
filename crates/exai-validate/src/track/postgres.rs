//! Validation runs in PostgreSQL (tables in `exai_pg::schema::TRACKING`), one history for every
//! daemon and operator on the database.

use std::sync::Arc;
use std::time::Duration;

use exai_pg::Pool;
use exai_pg::postgres;
use exai_pg::schema::TRACKING;

use chrono::{DateTime, Utc};

use super::{
    CaseResult, Grade, NewRun, ResultRow, RunRow, Status, Totals, TrackError, TrackingStore,
    stored_time, to_i64, to_u64,
};

/// The PostgreSQL backend. The client blocks, and the validation run calls the store from async
/// code, so inside a runtime each call runs on a short-lived thread of its own (the caller
/// waits, as it would on SQLite).
pub struct PgTracking {
    pool: Arc<Pool>,
}

/// Run `f` where a blocking PostgreSQL client may run: here, or on a scoped thread when this
/// thread drives async tasks (the client would panic starting its runtime inside another).
pub(super) fn off_runtime<T: Send>(
    f: impl FnOnce() -> Result<T, TrackError> + Send,
) -> Result<T, TrackError> {
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

impl PgTracking {
    /// Create or migrate the tracking tables on `pool`.
    pub fn open(pool: Arc<Pool>) -> Result<PgTracking, TrackError> {
        off_runtime(|| {
            let mut conn = pool.get()?;
            TRACKING.migrate(&mut conn, pool.target())?;
            Ok(())
        })?;
        Ok(PgTracking { pool })
    }

    /// The schema version the database is at.
    pub fn schema_version(&self) -> Result<i64, TrackError> {
        self.with(|c| Ok(TRACKING.version(c)?))
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
        self.select_runs("ORDER BY r.id DESC LIMIT $1", limit)
    }

    fn runs_since(&self, since: DateTime<Utc>) -> Result<Vec<RunRow>, TrackError> {
        self.select_runs("WHERE r.started_at >= $1 ORDER BY r.id DESC", since)
    }

    fn results_since(&self, since: DateTime<Utc>) -> Result<Vec<ResultRow>, TrackError> {
        self.with(|c| {
            let rows = c.query(
                "SELECT t.run_id, r.started_at, r.provider, t.tool, t.variation, t.status, t.error
                 FROM test_results t JOIN test_runs r ON r.id = t.run_id
                 WHERE r.started_at >= $1 ORDER BY t.run_id DESC, t.id",
                &[&since],
            )?;
            Ok(rows
                .iter()
                .map(|r| ResultRow {
                    run_id: r.get(0),
                    started_at: stored_time(r.get(1)),
                    provider: r.get(2),
                    tool: r.get(3),
                    variation: r.get(4),
                    status: Status::from_stored(r.get(5)),
                    error: r.get(6),
                })
                .collect())
        })
    }
}

impl PgTracking {
    /// The runs `tail` (a WHERE/ORDER/LIMIT clause with one parameter) selects.
    fn select_runs<P: postgres::types::ToSql + Sync + Send>(
        &self,
        tail: &str,
        param: P,
    ) -> Result<Vec<RunRow>, TrackError> {
        let sql = format!(
            "SELECT r.id, r.started_at, r.finished_at, r.provider, r.exai_version, r.tools_filter,
                    r.variations_filter, r.watcher_model, r.total, r.passed, r.failed, r.skipped,
                    r.errored, r.pass_rate, r.duration_ms, r.tokens_in, r.tokens_out, r.cost_usd,
                    (SELECT AVG(g.grade)::float8 FROM test_grades g JOIN test_results t ON t.id = g.result_id
                      WHERE t.run_id = r.id AND g.grade IS NOT NULL)
             FROM test_runs r {tail}"
        );
        self.with(move |c| {
            let rows = c.query(&sql, &[&param])?;
            Ok(rows
                .iter()
                .map(|r| RunRow {
                    id: r.get(0),
                    started_at: stored_time(r.get(1)),
                    finished_at: r.get::<_, Option<DateTime<Utc>>>(2).map(stored_time),
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
