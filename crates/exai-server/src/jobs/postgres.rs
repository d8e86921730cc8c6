//! Jobs shared through PostgreSQL: the table `index_jobs` (schema in
//! `exai_pg::schema::JOBS`), reached through the process's pool, opened and migrated on first
//! use. Times are the server's, so daemons with skewed clocks agree on freshness: a running row
//! whose heartbeat is older than [`FRESH`] reads as `lost`.

use exai_pg::postgres::{self, types::Json};
use exai_pg::{LazyError, LazyPool, PgError};

use super::{Counters, FRESH, JobState, JobStatus, SharedJobs, Verdict};

/// The job table of one daemon (`owner`).
pub(super) struct PgJobs {
    pool: LazyPool,
    owner: String,
}

impl PgJobs {
    /// No I/O here: the database is reached on first use.
    pub(super) fn new(config: exai_core::config::DatabaseConfig, owner: String) -> PgJobs {
        PgJobs {
            pool: LazyPool::from_config(config, &exai_pg::schema::JOBS),
            owner,
        }
    }

    /// Blocking: run `f` on a pooled connection.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> Result<T, PgError>,
    ) -> Result<T, String> {
        let mut conn = self.pool.get().map_err(|e| match e {
            LazyError::Poisoned => "the job table's pool is poisoned".to_string(),
            other => other.to_string(),
        })?;
        f(&mut conn).map_err(|e| e.to_string())
    }
}

impl SharedJobs for PgJobs {
    fn owner(&self) -> &str {
        &self.owner
    }

    fn claim(&self, status: &JobStatus) -> Result<Option<JobStatus>, String> {
        self.with(|c| table::claim(c, status))
    }

    fn report(&self, status: &JobStatus, create: bool, write: bool) -> Result<Verdict, String> {
        self.with(|c| {
            if create {
                table::insert(c, status)?;
            }
            if write {
                table::update(c, status)
            } else {
                table::cancel_requested(c, &status.job_id)
            }
        })
    }

    fn running_for(&self, source: &str) -> Result<Option<JobStatus>, String> {
        self.with(|c| table::running_for(c, source))
    }

    fn get(&self, id: &str, principal: &str) -> Result<Option<JobStatus>, String> {
        self.with(|c| table::get(c, id, principal))
    }

    fn recent_ids(&self, principal: &str, limit: i64) -> Result<Vec<String>, String> {
        self.with(|c| table::recent_ids(c, principal, limit))
    }

    fn request_cancel(&self, id: &str, principal: &str) -> Result<Option<JobStatus>, String> {
        self.with(|c| table::request_cancel(c, id, principal))
    }
}

/// The `index_jobs` table, one statement or transaction per function.
pub(super) mod table {
    use super::*;

    pub(crate) use crate::jobs::Verdict;

    /// Finished jobs are kept this long.
    const KEEP: &str = "7 days";

    fn started(s: &JobStatus) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339(&s.started_at)
            .map(|t| t.with_timezone(&chrono::Utc))
            .unwrap_or_else(|_| chrono::Utc::now())
    }

    pub fn insert(c: &mut impl postgres::GenericClient, s: &JobStatus) -> Result<(), PgError> {
        c.execute(
            "INSERT INTO index_jobs (job_id, kind, source, path, state, phase, progress, report,
                                     error, owner, started_at, updated_at, principal)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, now(), $12)
             ON CONFLICT (job_id) DO NOTHING",
            &[
                &s.job_id,
                &s.kind,
                &s.source,
                &s.paths.join("\n"),
                &s.state.as_str(),
                &s.phase,
                &Json(Counters::of(s)),
                &s.report,
                &s.error,
                &s.owner.clone().unwrap_or_default(),
                &started(s),
                &s.principal,
            ],
        )?;
        Ok(())
    }

    /// Atomically across daemons: mark `status.source`'s stale running jobs lost, and record
    /// `status` unless a fresh one runs — which is returned instead.
    pub fn claim(
        c: &mut postgres::Client,
        status: &JobStatus,
    ) -> Result<Option<JobStatus>, PgError> {
        let mut tx = c.transaction()?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('exai index_jobs'), hashtext($1))",
            &[&status.source],
        )?;
        tx.execute(
            &format!(
                "DELETE FROM index_jobs WHERE state <> 'running' AND updated_at < now() - interval '{KEEP}'"
            ),
            &[],
        )?;
        tx.execute(
            "UPDATE index_jobs SET state = 'lost',
                 phase = 'lost: its daemon stopped reporting; what it committed stays'
             WHERE source = $1 AND state = 'running'
               AND updated_at < now() - make_interval(secs => $2)",
            &[&status.source, &FRESH.as_secs_f64()],
        )?;
        if let Some(busy) = running_in(&mut tx, &status.source)? {
            tx.commit()?;
            return Ok(Some(busy));
        }
        insert(&mut tx, status)?;
        tx.commit()?;
        Ok(None)
    }

    /// The columns [`row_status`] reads; `stale`: no report for [`FRESH`].
    fn columns() -> String {
        format!(
            "job_id, kind, source, path, state, phase, progress, report, error, owner, started_at,
             updated_at < now() - make_interval(secs => {}) AS stale,
             extract(epoch FROM (CASE WHEN state = 'running' THEN now() ELSE updated_at END)
                                - started_at)::float8,
             principal",
            FRESH.as_secs_f64()
        )
    }

    fn row_status(r: &postgres::Row) -> JobStatus {
        let state = JobState::parse(r.get::<_, &str>(4));
        let stale: bool = r.get(11);
        let lost = state == JobState::Running && stale;
        let counters = r
            .try_get::<_, Json<Counters>>(6)
            .map(|c| c.0)
            .unwrap_or_default();
        let path: String = r.get(3);
        let started: chrono::DateTime<chrono::Utc> = r.get(10);
        let seconds: f64 = r.get(12);
        JobStatus {
            job_id: r.get(0),
            kind: r.get(1),
            source: r.get(2),
            paths: path
                .split('\n')
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect(),
            state: if lost { JobState::Lost } else { state },
            phase: if lost {
                format!(
                    "lost: its daemon has not reported for over {} s (last: {})",
                    FRESH.as_secs(),
                    r.get::<_, &str>(5)
                )
            } else {
                r.get(5)
            },
            files_done: counters.files_done,
            files_total: counters.files_total,
            chunks: counters.chunks,
            embedded: counters.embedded,
            embed_total: counters.embed_total,
            started_at: started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            seconds: (seconds * 10.0).round() / 10.0,
            report: r.get(7),
            error: r.get(8),
            owner: Some(r.get(9)),
            principal: r.get(13),
        }
    }

    /// A running job of `source` that reported in the last [`FRESH`].
    fn running_in(
        c: &mut impl postgres::GenericClient,
        source: &str,
    ) -> Result<Option<JobStatus>, PgError> {
        Ok(c.query_opt(
            &format!(
                "SELECT {} FROM index_jobs
                 WHERE source = $1 AND state = 'running'
                   AND updated_at >= now() - make_interval(secs => $2)
                 ORDER BY started_at LIMIT 1",
                columns()
            ),
            &[&source, &FRESH.as_secs_f64()],
        )?
        .as_ref()
        .map(row_status))
    }

    pub fn running_for(
        c: &mut postgres::Client,
        source: &str,
    ) -> Result<Option<JobStatus>, PgError> {
        running_in(c, source)
    }

    /// `principal`'s job `id`.
    pub fn get(
        c: &mut postgres::Client,
        id: &str,
        principal: &str,
    ) -> Result<Option<JobStatus>, PgError> {
        Ok(c.query_opt(
            &format!(
                "SELECT {} FROM index_jobs WHERE job_id = $1 AND principal = $2",
                columns()
            ),
            &[&id, &principal],
        )?
        .as_ref()
        .map(row_status))
    }

    pub fn recent_ids(
        c: &mut postgres::Client,
        principal: &str,
        limit: i64,
    ) -> Result<Vec<String>, PgError> {
        Ok(c.query(
            "SELECT job_id FROM index_jobs WHERE principal = $1 ORDER BY updated_at DESC LIMIT $2",
            &[&principal, &limit],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect())
    }

    /// Record the job's state and progress (and that its owner is alive).
    pub fn update(c: &mut postgres::Client, s: &JobStatus) -> Result<Verdict, PgError> {
        let row = c.query_opt(
            "UPDATE index_jobs SET state = $2, phase = $3, progress = $4, report = $5, error = $6,
                 updated_at = now()
             WHERE job_id = $1 AND state <> 'lost'
             RETURNING cancel_requested",
            &[
                &s.job_id,
                &s.state.as_str(),
                &s.phase,
                &Json(Counters::of(s)),
                &s.report,
                &s.error,
            ],
        )?;
        Ok(verdict(row))
    }

    /// Whether someone asked the job to stop (without writing).
    pub fn cancel_requested(c: &mut postgres::Client, id: &str) -> Result<Verdict, PgError> {
        let row = c.query_opt(
            "SELECT cancel_requested FROM index_jobs WHERE job_id = $1 AND state <> 'lost'",
            &[&id],
        )?;
        Ok(verdict(row))
    }

    fn verdict(row: Option<postgres::Row>) -> Verdict {
        match row {
            None => Verdict::TakenOver,
            Some(r) if r.get::<_, bool>(0) => Verdict::CancelRequested,
            Some(_) => Verdict::Continue,
        }
    }

    /// Ask `principal`'s running job to stop; its status (`None`: no such job of theirs).
    pub fn request_cancel(
        c: &mut postgres::Client,
        id: &str,
        principal: &str,
    ) -> Result<Option<JobStatus>, PgError> {
        c.execute(
            "UPDATE index_jobs SET cancel_requested = true
             WHERE job_id = $1 AND principal = $2 AND state = 'running'",
            &[&id, &principal],
        )?;
        get(c, id, principal)
    }
}
