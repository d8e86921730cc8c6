//! Background jobs (indexing runs started over MCP): their state, progress and cancellation.
//!
//! A job runs in the daemon that started it and lives in its memory. With PostgreSQL configured
//! (`database.url`), each job is also mirrored into the table `index_jobs`, so every daemon on
//! that database sees it: `job_status` on another daemon reads the row, `cancel_job` there sets
//! `cancel_requested`, which the owner's mirror notices within a second and turns into a local
//! cancel, and a second run on the same source is refused by whichever daemon is asked. The
//! mirror is a thread per job, off the async workers: it writes on state and phase changes, at
//! most once a second for progress, and a heartbeat every few seconds; a running row whose
//! heartbeat is older than [`FRESH`] belongs to a daemon that died and reads as `lost`.
//!
//! A job belongs to the principal that started it (see `http::Principal`): `job_status` and
//! `cancel_job` from another principal answer as for an unknown job, and a source busy with
//! another principal's job is reported without naming that job.
//!
//! A daemon keeps its finished jobs for [`KEEP_FINISHED_FOR`], at most [`KEEP_FINISHED`] of them
//! (a long-running daemon that indexes all day would otherwise grow without end); a restarted
//! daemon forgets them (the table keeps them for a week), and a killed indexing run resumes when
//! started again (the store keeps everything it committed).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use exai_kb::{IndexReport, Progress};
use exai_pg::postgres::{self, types::Json};
use exai_pg::{PgError, Pool};
use serde::{Deserialize, Serialize};

/// How long a finished job stays readable through `job_status` on the daemon that ran it.
pub const KEEP_FINISHED_FOR: Duration = Duration::from_secs(3600);
/// How many finished jobs a daemon keeps at most; the oldest go first.
pub const KEEP_FINISHED: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Running,
    Done,
    Failed,
    Cancelled,
    /// Running in another daemon that stopped reporting (it died or lost the database).
    Lost,
}

impl JobState {
    fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Lost => "lost",
        }
    }

    fn parse(s: &str) -> JobState {
        match s {
            "running" => JobState::Running,
            "done" => JobState::Done,
            "failed" => JobState::Failed,
            "cancelled" => JobState::Cancelled,
            _ => JobState::Lost,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct JobStatus {
    pub job_id: String,
    pub kind: String,
    pub source: String,
    pub paths: Vec<String>,
    pub state: JobState,
    pub phase: String,
    pub files_done: usize,
    pub files_total: usize,
    pub chunks: usize,
    pub embedded: usize,
    pub embed_total: usize,
    pub started_at: String,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The daemon running the job (`host:pid`), when jobs are shared through PostgreSQL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The principal that started the job; only it sees and cancels the job.
    #[serde(skip)]
    pub principal: String,
}

pub struct Job {
    status: Mutex<JobStatus>,
    /// Who started it (as in the status, but never changing, so read without the lock).
    principal: String,
    /// Signalled on phase and state changes, for the mirror.
    changed: Condvar,
    started: Instant,
    /// When it finished, for pruning.
    finished: std::sync::OnceLock<Instant>,
    pub cancel: AtomicBool,
    done: tokio::sync::Notify,
}

impl Job {
    fn new(status: JobStatus) -> Job {
        Job {
            principal: status.principal.clone(),
            status: Mutex::new(status),
            changed: Condvar::new(),
            started: Instant::now(),
            finished: std::sync::OnceLock::new(),
            cancel: AtomicBool::new(false),
            done: tokio::sync::Notify::new(),
        }
    }

    pub fn status(&self) -> JobStatus {
        let mut s = self
            .status
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        s.seconds = (self.started.elapsed().as_secs_f64() * 10.0).round() / 10.0;
        s
    }

    pub fn progress(&self, p: &Progress) {
        if let Ok(mut s) = self.status.lock() {
            let phase = match p {
                Progress::Discovered { files, .. } => {
                    s.files_total = *files;
                    Some("reading files")
                }
                Progress::Files {
                    done,
                    total,
                    chunks,
                } => {
                    s.files_done = *done;
                    s.files_total = *total;
                    s.chunks = *chunks;
                    None
                }
                Progress::Embedding { done, total } => {
                    s.embedded = *done;
                    s.embed_total = *total;
                    Some("embedding")
                }
            };
            if let Some(phase) = phase
                && s.phase != phase
            {
                s.phase = phase.into();
                self.changed.notify_all();
            }
        }
    }

    pub fn finish(&self, result: Result<IndexReport, exai_kb::KbError>) {
        if let Ok(mut s) = self.status.lock() {
            match result {
                Ok(report) => {
                    s.state = JobState::Done;
                    s.phase = "done".into();
                    s.report = serde_json::to_value(report).ok();
                }
                Err(exai_kb::KbError::Cancelled) => {
                    s.state = JobState::Cancelled;
                    s.phase =
                        "cancelled; what was committed stays, and running it again resumes".into();
                }
                Err(e) => {
                    s.state = JobState::Failed;
                    s.phase = "failed".into();
                    s.error = Some(e.to_string());
                }
            }
            self.changed.notify_all();
        }
        let _ = self.finished.set(Instant::now());
        self.done.notify_waiters();
    }

    fn principal(&self) -> &str {
        &self.principal
    }

    pub fn is_finished(&self) -> bool {
        self.read(|s| s.state != JobState::Running)
    }

    /// Look at the status under its lock, without copying it.
    fn read<T>(&self, f: impl FnOnce(&JobStatus) -> T) -> T {
        match self.status.lock() {
            Ok(s) => f(&s),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    /// Running on `source`.
    fn runs_on(&self, source: &str) -> bool {
        self.read(|s| s.state == JobState::Running && s.source == source)
    }

    /// Wait until the job finishes or `limit` passes; true when finished.
    pub async fn wait(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.done.notified();
            if self.is_finished() {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.is_finished();
            }
        }
    }

    /// Blocking: wait up to `limit` for a phase or state change.
    fn wait_change(&self, limit: Duration) {
        if let Ok(guard) = self.status.lock() {
            let _ = self.changed.wait_timeout(guard, limit);
        }
    }
}

/// Why a job could not start.
#[derive(Debug)]
pub enum StartError {
    /// A job for that source is running (here or in another daemon), started by the asker.
    Busy(Box<JobStatus>),
    /// A job for that source is running, started by another principal: neither its id nor its
    /// daemon is told.
    BusyElsewhere { source: String },
    /// The shared job table could not be reached.
    Store(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Busy(s) => match &s.owner {
                Some(owner) => write!(
                    f,
                    "source `{}` is already being indexed by {} (in the daemon {owner}); poll job_status or cancel_job",
                    s.source, s.job_id
                ),
                None => write!(
                    f,
                    "source `{}` is already being indexed by {}; poll job_status or cancel_job",
                    s.source, s.job_id
                ),
            },
            StartError::BusyElsewhere { source } => write!(
                f,
                "source `{source}` is being indexed by another client's job; try again once it has finished"
            ),
            StartError::Store(e) => write!(f, "cannot record the job: {e}"),
        }
    }
}

impl StartError {
    /// The refusal for `principal` because `running` holds the source.
    pub fn busy(running: JobStatus, principal: &str) -> StartError {
        if running.principal == principal {
            StartError::Busy(Box::new(running))
        } else {
            StartError::BusyElsewhere {
                source: running.source,
            }
        }
    }
}

#[derive(Default)]
pub struct Jobs {
    jobs: Mutex<HashMap<String, Arc<Job>>>,
    /// The job table in PostgreSQL, when configured.
    shared: Option<Arc<Shared>>,
}

impl Jobs {
    /// Jobs of this daemon, mirrored into PostgreSQL when `database.url` is set. No I/O here:
    /// the database is reached on first use, off the async workers.
    pub fn new(database: &exai_core::config::DatabaseConfig) -> Jobs {
        Jobs {
            jobs: Mutex::default(),
            shared: database
                .postgres_url()
                .is_some()
                .then(|| Arc::new(Shared::new(database.clone(), owner_name()))),
        }
    }

    fn new_status(
        &self,
        kind: &str,
        source: &str,
        paths: Vec<String>,
        principal: &str,
    ) -> JobStatus {
        JobStatus {
            job_id: format!("job-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
            kind: kind.into(),
            source: source.into(),
            paths,
            state: JobState::Running,
            phase: "starting".into(),
            files_done: 0,
            files_total: 0,
            chunks: 0,
            embedded: 0,
            embed_total: 0,
            started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            seconds: 0.0,
            report: None,
            error: None,
            owner: self.shared.as_ref().map(|s| s.owner.clone()),
            principal: principal.into(),
        }
    }

    fn register(&self, status: JobStatus, claimed: bool) -> Arc<Job> {
        let id = status.job_id.clone();
        let job = Arc::new(Job::new(status));
        if let Ok(mut m) = self.jobs.lock() {
            prune(&mut m, Instant::now());
            m.insert(id, job.clone());
        }
        if let Some(shared) = &self.shared {
            mirror(shared.clone(), job.clone(), claimed);
        }
        job
    }

    /// Start a job without checking for others on its source (the daemon's background
    /// embedding, which belongs to the local principal).
    pub fn start(&self, kind: &str, source: &str, paths: Vec<String>) -> Arc<Job> {
        let status = self.new_status(kind, source, paths, exai_tools::LOCAL_PRINCIPAL);
        self.register(status, false)
    }

    /// Start `principal`'s job unless one is running for `source` here or, with PostgreSQL, in
    /// any daemon on the database (checked and recorded atomically there).
    pub async fn start_exclusive(
        &self,
        kind: &str,
        source: &str,
        paths: Vec<String>,
        principal: &str,
    ) -> Result<Arc<Job>, StartError> {
        if let Some(running) = self.running_here(source) {
            return Err(StartError::busy(running.status(), principal));
        }
        let status = self.new_status(kind, source, paths, principal);
        let Some(shared) = &self.shared else {
            return Ok(self.register(status, false));
        };
        let shared = shared.clone();
        let row = status.clone();
        let claimed = tokio::task::spawn_blocking(move || shared.with(|c| table::claim(c, &row)))
            .await
            .map_err(|e| StartError::Store(format!("job table task failed: {e}")))?
            .map_err(StartError::Store)?;
        if let Some(busy) = claimed {
            return Err(StartError::busy(busy, principal));
        }
        Ok(self.register(status, true))
    }

    /// `principal`'s job of this daemon.
    pub fn get(&self, id: &str, principal: &str) -> Option<Arc<Job>> {
        self.jobs
            .lock()
            .ok()
            .and_then(|m| m.get(id).cloned())
            .filter(|job| job.principal() == principal)
    }

    /// `principal`'s jobs of this daemon.
    pub fn ids(&self, principal: &str) -> Vec<String> {
        self.jobs
            .lock()
            .map(|m| {
                m.iter()
                    .filter(|(_, job)| job.principal() == principal)
                    .map(|(id, _)| id.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `principal`'s job ids worth naming when one is unknown: this daemon's, and with
    /// PostgreSQL the newest in the table.
    pub async fn known_ids(&self, principal: &str) -> Vec<String> {
        let mut ids = self.ids(principal);
        let asker = principal.to_string();
        if let Some(shared) = self.shared.clone()
            && let Ok(Ok(more)) = tokio::task::spawn_blocking(move || {
                shared.with(|c| table::recent_ids(c, &asker, 20))
            })
            .await
        {
            for id in more {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
        ids
    }

    fn running_here(&self, source: &str) -> Option<Arc<Job>> {
        self.jobs
            .lock()
            .ok()
            .and_then(|m| m.values().find(|j| j.runs_on(source)).cloned())
    }

    /// How many jobs this daemon holds (running and finished), for its metrics.
    pub fn held(&self) -> usize {
        self.jobs.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// A running job for this source, if any (two runs on one source would fight): one of this
    /// daemon's, or with PostgreSQL another daemon's that reported in the last [`FRESH`].
    pub async fn running_for(&self, source: &str) -> Option<JobStatus> {
        if let Some(job) = self.running_here(source) {
            return Some(job.status());
        }
        let shared = self.shared.clone()?;
        let source = source.to_string();
        match tokio::task::spawn_blocking(move || shared.with(|c| table::running_for(c, &source)))
            .await
        {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                tracing::warn!("cannot check other daemons' index jobs: {e}");
                None
            }
            Err(_) => None,
        }
    }

    /// The status of `principal`'s job, of this daemon or, with PostgreSQL, of any daemon's;
    /// `None` for a job of another principal as for one that does not exist.
    pub async fn status(&self, id: &str, principal: &str) -> Result<Option<JobStatus>, String> {
        if let Some(job) = self.get(id, principal) {
            return Ok(Some(job.status()));
        }
        let Some(shared) = self.shared.clone() else {
            return Ok(None);
        };
        let (id, principal) = (id.to_string(), principal.to_string());
        tokio::task::spawn_blocking(move || shared.with(|c| table::get(c, &id, &principal)))
            .await
            .map_err(|e| format!("job table task failed: {e}"))?
    }

    /// Cancel `principal`'s job and wait up to `limit` for it to stop; its status after, `None`
    /// when no daemon knows it (or it is another principal's, which is left running). A job of
    /// another daemon is asked through the table; its owner notices within about a second.
    pub async fn cancel(
        &self,
        id: &str,
        limit: Duration,
        principal: &str,
    ) -> Result<Option<JobStatus>, String> {
        if let Some(job) = self.get(id, principal) {
            job.cancel.store(true, Ordering::SeqCst);
            job.wait(limit).await;
            return Ok(Some(job.status()));
        }
        let Some(shared) = self.shared.clone() else {
            return Ok(None);
        };
        let deadline = tokio::time::Instant::now() + limit;
        let ask = {
            let shared = shared.clone();
            let (id, principal) = (id.to_string(), principal.to_string());
            move || shared.with(|c| table::request_cancel(c, &id, &principal))
        };
        let mut status = tokio::task::spawn_blocking(ask)
            .await
            .map_err(|e| format!("job table task failed: {e}"))??;
        while let Some(s) = &status {
            if s.state != JobState::Running || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            let shared = shared.clone();
            let (id, principal) = (id.to_string(), principal.to_string());
            status = tokio::task::spawn_blocking(move || {
                shared.with(|c| table::get(c, &id, &principal))
            })
            .await
            .map_err(|e| format!("job table task failed: {e}"))??;
        }
        Ok(status)
    }
}

/// A running job whose owner has not written for this long is considered lost.
pub const FRESH: Duration = Duration::from_secs(30);
/// How often the mirror looks at its job (cancel requests, progress).
const TICK: Duration = Duration::from_secs(1);
/// How often the mirror writes when nothing changed, so the row stays fresh.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// How long the mirror keeps trying to record the end of its job while the database is away.
const FINAL_WRITE_FOR: Duration = Duration::from_secs(30);

/// `host:pid` of this process, as the table's `owner`.
/// Drop finished jobs older than [`KEEP_FINISHED_FOR`], then the oldest beyond [`KEEP_FINISHED`].
fn prune(jobs: &mut HashMap<String, Arc<Job>>, now: Instant) {
    jobs.retain(|_, job| {
        job.finished
            .get()
            .is_none_or(|at| now.saturating_duration_since(*at) < KEEP_FINISHED_FOR)
    });
    let mut finished: Vec<(Instant, String)> = jobs
        .iter()
        .filter_map(|(id, job)| job.finished.get().map(|at| (*at, id.clone())))
        .collect();
    if finished.len() > KEEP_FINISHED {
        finished.sort_unstable();
        for (_, id) in &finished[..finished.len() - KEEP_FINISHED] {
            jobs.remove(id);
        }
    }
}

fn owner_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", std::process::id())
}

/// The job table's connection: opened (and migrated) on first use, retried after a pause when
/// that fails.
struct Shared {
    config: exai_core::config::DatabaseConfig,
    owner: String,
    pool: Mutex<PoolSlot>,
}

/// The pool once open; else the last failure to open it and when.
#[derive(Default)]
struct PoolSlot {
    pool: Option<Arc<Pool>>,
    failed: Option<(Instant, String)>,
}

const REOPEN_AFTER: Duration = Duration::from_secs(5);

impl Shared {
    fn new(config: exai_core::config::DatabaseConfig, owner: String) -> Shared {
        Shared {
            config,
            owner,
            pool: Mutex::default(),
        }
    }

    fn pool(&self) -> Result<Arc<Pool>, String> {
        let mut slot = self
            .pool
            .lock()
            .map_err(|_| "the job table's pool is poisoned".to_string())?;
        if let Some(pool) = &slot.pool {
            return Ok(pool.clone());
        }
        if let Some((at, reason)) = &slot.failed
            && at.elapsed() < REOPEN_AFTER
        {
            return Err(reason.clone());
        }
        let opened = exai_pg::from_config(&self.config).and_then(|pool| {
            let pool = pool.ok_or_else(|| PgError::Url {
                url: String::new(),
                reason: "database.url is empty".into(),
            })?;
            let mut conn = pool.get()?;
            exai_pg::migrate(&mut conn, "jobs", table::MIGRATIONS)?;
            Ok(pool)
        });
        match opened {
            Ok(pool) => {
                slot.pool = Some(pool.clone());
                slot.failed = None;
                Ok(pool)
            }
            Err(e) => {
                let reason = e.to_string();
                slot.failed = Some((Instant::now(), reason.clone()));
                Err(reason)
            }
        }
    }

    /// Blocking: run `f` on a pooled connection.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> Result<T, PgError>,
    ) -> Result<T, String> {
        let pool = self.pool()?;
        let mut conn = pool.get().map_err(|e| e.to_string())?;
        f(&mut conn).map_err(|e| e.to_string())
    }
}

/// Mirror `job` into the table until it finishes, on a thread of its own. `claimed`: the row
/// exists already.
fn mirror(shared: Arc<Shared>, job: Arc<Job>, claimed: bool) {
    let spawned = std::thread::Builder::new()
        .name("exai-job-mirror".into())
        .spawn(move || mirror_loop(&shared, &job, claimed));
    if let Err(e) = spawned {
        tracing::warn!("cannot mirror the index job into PostgreSQL: {e}");
    }
}

fn mirror_loop(shared: &Shared, job: &Job, mut inserted: bool) {
    let id = job.status().job_id;
    let mut written: Option<table::Snapshot> = None;
    let mut last_write: Option<Instant> = None;
    let mut failing_since: Option<Instant> = None;
    loop {
        let status = job.status();
        let finished = status.state != JobState::Running;
        let snapshot = table::Snapshot::of(&status);
        let due = written.as_ref() != Some(&snapshot)
            || last_write.is_none_or(|t| t.elapsed() >= HEARTBEAT);
        let result = shared.with(|c| {
            if !inserted {
                table::insert(c, &status)?;
                inserted = true;
            }
            if due {
                table::update(c, &status)
            } else {
                table::cancel_requested(c, &id)
            }
        });
        match result {
            Ok(verdict) => {
                failing_since = None;
                if due {
                    written = Some(snapshot);
                    last_write = Some(Instant::now());
                }
                if finished {
                    return;
                }
                match verdict {
                    table::Verdict::Continue => {}
                    table::Verdict::CancelRequested => {
                        if !job.cancel.swap(true, Ordering::SeqCst) {
                            tracing::info!(job = %id, "index job cancelled from another daemon");
                        }
                    }
                    table::Verdict::TakenOver => {
                        if !job.cancel.swap(true, Ordering::SeqCst) {
                            tracing::warn!(
                                job = %id,
                                "index job stopped: another daemon took it for lost (no heartbeat for {} s)",
                                FRESH.as_secs()
                            );
                        }
                    }
                }
            }
            Err(e) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() < TICK * 2 {
                    tracing::warn!(job = %id, "cannot update the index job in PostgreSQL: {e}");
                }
                if finished && since.elapsed() >= FINAL_WRITE_FOR {
                    tracing::warn!(job = %id, "gave up recording the index job's end: {e}");
                    return;
                }
            }
        }
        if finished {
            std::thread::sleep(TICK);
        } else {
            job.wait_change(TICK);
        }
    }
}

/// The `index_jobs` table. Times are the server's, so daemons with skewed clocks agree on
/// freshness.
mod table {
    use super::*;

    pub const MIGRATIONS: &[&str] = &[
        "CREATE TABLE index_jobs (
            job_id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            source TEXT NOT NULL,
            path TEXT NOT NULL,
            state TEXT NOT NULL
                CHECK (state IN ('running', 'done', 'failed', 'cancelled', 'lost')),
            phase TEXT NOT NULL,
            progress JSONB NOT NULL DEFAULT '{}',
            report JSONB,
            error TEXT,
            owner TEXT NOT NULL,
            cancel_requested BOOLEAN NOT NULL DEFAULT false,
            started_at TIMESTAMPTZ NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        CREATE INDEX index_jobs_running ON index_jobs (source) WHERE state = 'running';
        CREATE INDEX index_jobs_updated ON index_jobs (updated_at DESC);",
        // 2: the principal that started the job; earlier jobs are the local user's.
        "ALTER TABLE index_jobs ADD COLUMN principal TEXT NOT NULL DEFAULT 'local';",
    ];

    /// Finished jobs are kept this long.
    const KEEP: &str = "7 days";

    /// The progress counters, stored as one JSONB value.
    #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
    pub struct Counters {
        pub files_done: usize,
        pub files_total: usize,
        pub chunks: usize,
        pub embedded: usize,
        pub embed_total: usize,
    }

    /// What a write records, to skip writes that would change nothing.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Snapshot {
        state: JobState,
        phase: String,
        counters: Counters,
        error: Option<String>,
    }

    impl Snapshot {
        pub fn of(s: &JobStatus) -> Snapshot {
            Snapshot {
                state: s.state,
                phase: s.phase.clone(),
                counters: counters(s),
                error: s.error.clone(),
            }
        }
    }

    fn counters(s: &JobStatus) -> Counters {
        Counters {
            files_done: s.files_done,
            files_total: s.files_total,
            chunks: s.chunks,
            embedded: s.embedded,
            embed_total: s.embed_total,
        }
    }

    /// What the owner should do after a write.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Verdict {
        Continue,
        CancelRequested,
        /// The row was marked lost by another daemon, which may be running the source now.
        TakenOver,
    }

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
                &Json(counters(s)),
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
                &Json(counters(s)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use exai_pg::PoolOptions;
    use exai_pg::testing::TestDatabase;
    use exai_tools::LOCAL_PRINCIPAL as LOCAL;

    fn config(url: &str) -> exai_core::config::DatabaseConfig {
        let mut c = exai_core::Config::default().database;
        c.url = exai_core::config::Secret::new(url.to_string());
        c
    }

    /// Jobs of a daemon named `owner` on the database at `url`.
    fn daemon(url: &str, owner: &str) -> Jobs {
        Jobs {
            jobs: Mutex::default(),
            shared: Some(Arc::new(Shared::new(config(url), owner.into()))),
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    /// Stand-in for the indexer: reports progress until cancelled.
    fn work(job: Arc<Job>) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            job.progress(&Progress::Discovered {
                files: 1000,
                skipped: 0,
            });
            let mut done = 0;
            while !job.cancel.load(Ordering::SeqCst) && done < 100_000 {
                done += 1;
                job.progress(&Progress::Files {
                    done,
                    total: 100_000,
                    chunks: done * 2,
                });
                std::thread::sleep(Duration::from_millis(5));
            }
            job.finish(Err(exai_kb::KbError::Cancelled));
        })
    }

    #[test]
    fn without_postgres_jobs_stay_in_memory() {
        runtime().block_on(async {
            let jobs = Jobs::new(&exai_core::Config::default().database);
            let job = jobs
                .start_exclusive("index", "docs", vec!["/d".into()], LOCAL)
                .await
                .unwrap();
            assert!(job.status().owner.is_none());
            let busy = jobs
                .start_exclusive("index", "docs", vec![], LOCAL)
                .await
                .err()
                .unwrap();
            assert!(busy.to_string().contains("already being indexed"), "{busy}");
            assert!(jobs.running_for("docs").await.is_some());
            assert!(jobs.running_for("other").await.is_none());
            // Another principal: the job does not exist for them, and cancelling it does nothing;
            // the busy source is refused without naming the job.
            let id = job.status().job_id;
            assert!(jobs.status(&id, "mallory").await.unwrap().is_none());
            assert!(
                jobs.cancel(&id, Duration::ZERO, "mallory")
                    .await
                    .unwrap()
                    .is_none()
            );
            assert!(!job.cancel.load(Ordering::SeqCst));
            assert!(jobs.ids("mallory").is_empty());
            assert_eq!(jobs.ids(LOCAL), std::slice::from_ref(&id));
            let theirs = jobs
                .start_exclusive("index", "docs", vec![], "mallory")
                .await
                .err()
                .unwrap()
                .to_string();
            assert!(
                theirs.contains("another client's job") && !theirs.contains(&id),
                "{theirs}"
            );
            let worker = work(job.clone());
            let s = jobs
                .cancel(&id, Duration::from_secs(5), LOCAL)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(s.state, JobState::Cancelled);
            worker.join().unwrap();
            assert!(jobs.status("job-nope", LOCAL).await.unwrap().is_none());
            assert!(
                jobs.cancel("job-nope", Duration::ZERO, LOCAL)
                    .await
                    .unwrap()
                    .is_none()
            );
        });
    }

    /// Finished jobs leave after an hour or beyond the cap, oldest first; running ones stay.
    #[test]
    fn finished_jobs_are_pruned() {
        let jobs = Jobs::new(&exai_core::Config::default().database);
        let running = jobs.start("index", "busy", vec![]);
        let mut done = Vec::new();
        for i in 0..KEEP_FINISHED + 5 {
            let job = jobs.start("index", &format!("s{i}"), vec![]);
            job.finish(Err(exai_kb::KbError::Cancelled));
            done.push(job.status().job_id);
        }
        jobs.start("index", "last", vec![]);
        // The cap: the five oldest finished jobs went, the running one and the newest stayed.
        assert_eq!(jobs.held(), KEEP_FINISHED + 2);
        assert!(jobs.get(&done[0], LOCAL).is_none());
        assert!(jobs.get(&done[KEEP_FINISHED + 4], LOCAL).is_some());
        assert!(jobs.get(&running.status().job_id, LOCAL).is_some());
        // The age: an hour later every finished job is gone.
        let mut m = jobs.jobs.lock().unwrap();
        prune(&mut m, Instant::now() + KEEP_FINISHED_FOR);
        assert_eq!(m.len(), 2);
        drop(m);
        assert!(jobs.running_here("busy").is_some());
        assert!(jobs.running_here("s1").is_none());
    }

    /// The table by itself: claim, refuse a second claim, progress, cancel request, lost rows.
    #[test]
    fn table_claims_updates_and_loses_jobs() {
        let Some(db) = TestDatabase::create("jobstable") else {
            return;
        };
        let pool = Pool::open(&db.url, PoolOptions::default()).unwrap();
        let mut c = pool.get().unwrap();
        exai_pg::migrate(&mut c, "jobs", table::MIGRATIONS).unwrap();
        let a = daemon(&db.url, "host-a:1");
        let mut first = a.new_status("index", "docs", vec!["/srv/docs".into()], LOCAL);
        assert_eq!(
            table::claim(&mut c, &first).unwrap().map(|s| s.job_id),
            None
        );
        let second = a.new_status("index", "docs", vec![], LOCAL);
        let busy = table::claim(&mut c, &second).unwrap().unwrap();
        assert_eq!(busy.job_id, first.job_id);
        assert_eq!(busy.owner.as_deref(), Some("host-a:1"));
        assert_eq!(busy.paths, ["/srv/docs"]);
        // Another source is free.
        let other = a.new_status("index", "api", vec![], LOCAL);
        assert!(table::claim(&mut c, &other).unwrap().is_none());
        // Progress is recorded; a cancel request comes back on the next write.
        first.files_done = 7;
        first.files_total = 9;
        first.phase = "reading files".into();
        assert_eq!(
            table::update(&mut c, &first).unwrap(),
            table::Verdict::Continue
        );
        let read = table::get(&mut c, &first.job_id, LOCAL).unwrap().unwrap();
        assert_eq!((read.files_done, read.files_total), (7, 9));
        assert_eq!(
            (read.state, read.phase.as_str()),
            (JobState::Running, "reading files")
        );
        let asked = table::request_cancel(&mut c, &first.job_id, LOCAL)
            .unwrap()
            .unwrap();
        assert_eq!(asked.state, JobState::Running);
        assert_eq!(
            table::cancel_requested(&mut c, &first.job_id).unwrap(),
            table::Verdict::CancelRequested
        );
        first.state = JobState::Cancelled;
        first.report = Some(serde_json::json!({ "files_seen": 9 }));
        assert_eq!(
            table::update(&mut c, &first).unwrap(),
            table::Verdict::CancelRequested
        );
        let read = table::get(&mut c, &first.job_id, LOCAL).unwrap().unwrap();
        assert_eq!(read.state, JobState::Cancelled);
        assert_eq!(read.report, first.report);
        assert!(table::running_for(&mut c, "docs").unwrap().is_none());
        // An owner that stopped reporting: its running job reads as lost and no longer blocks;
        // the next claim marks it lost, and the owner, if it comes back, learns it was taken.
        let ghost = daemon(&db.url, "host-b:2").new_status("index", "docs", vec![], LOCAL);
        assert!(table::claim(&mut c, &ghost).unwrap().is_none());
        c.execute(
            "UPDATE index_jobs SET updated_at = now() - interval '31 seconds' WHERE job_id = $1",
            &[&ghost.job_id],
        )
        .unwrap();
        let lost = table::get(&mut c, &ghost.job_id, LOCAL).unwrap().unwrap();
        assert_eq!(lost.state, JobState::Lost);
        assert!(lost.phase.starts_with("lost"), "{}", lost.phase);
        assert!(table::running_for(&mut c, "docs").unwrap().is_none());
        let next = a.new_status("index", "docs", vec![], LOCAL);
        assert!(table::claim(&mut c, &next).unwrap().is_none());
        let state: String = c
            .query_one(
                "SELECT state FROM index_jobs WHERE job_id = $1",
                &[&ghost.job_id],
            )
            .unwrap()
            .get(0);
        assert_eq!(state, "lost");
        assert_eq!(
            table::update(&mut c, &ghost).unwrap(),
            table::Verdict::TakenOver
        );
        // Stored: first, other, ghost, next (the refused claim wrote nothing).
        assert_eq!(table::recent_ids(&mut c, LOCAL, 10).unwrap().len(), 4);
        drop(c);
    }

    /// Two daemons on one database: B sees A's job and its progress, refuses the same source,
    /// and cancels it; A's indexer stops within about a second, as on a local cancel.
    #[test]
    fn another_daemon_sees_refuses_and_cancels_a_job() {
        let Some(db) = TestDatabase::create("jobsshared") else {
            return;
        };
        let rt = runtime();
        rt.block_on(async {
            let a = daemon(&db.url, "host-a:1");
            let b = daemon(&db.url, "host-b:2");
            let job = a
                .start_exclusive("index", "docs", vec!["/srv/docs".into()], LOCAL)
                .await
                .unwrap();
            let id = job.status().job_id;
            let worker = work(job.clone());
            let busy = b
                .start_exclusive("index", "docs", vec![], LOCAL)
                .await
                .err()
                .unwrap();
            assert!(
                matches!(&busy, StartError::Busy(s) if s.job_id == id),
                "{busy}"
            );
            assert!(busy.to_string().contains("host-a:1"), "{busy}");
            assert_eq!(
                b.running_for("docs").await.map(|s| s.job_id),
                Some(id.clone())
            );
            // Progress reaches the table within about a second, never per file.
            let mut seen = None;
            for _ in 0..40 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let s = b.status(&id, LOCAL).await.unwrap().unwrap();
                if s.files_done > 0 && s.phase == "reading files" {
                    seen = Some(s);
                    break;
                }
            }
            let seen = seen.expect("progress reached the table");
            assert_eq!(
                (seen.state, seen.owner.as_deref()),
                (JobState::Running, Some("host-a:1"))
            );
            assert!(b.known_ids(LOCAL).await.contains(&id));
            // Through the table too, another principal neither sees nor cancels the job.
            assert!(b.status(&id, "mallory").await.unwrap().is_none());
            assert!(!b.known_ids("mallory").await.contains(&id));
            assert!(
                b.cancel(&id, Duration::ZERO, "mallory")
                    .await
                    .unwrap()
                    .is_none()
            );
            tokio::time::sleep(TICK * 2).await;
            assert!(!job.cancel.load(Ordering::SeqCst));
            // Cancel from B: A's job stops as on a local cancel, and B sees the end.
            let asked = Instant::now();
            let s = b
                .cancel(&id, Duration::from_secs(10), LOCAL)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(s.state, JobState::Cancelled, "{s:?}");
            assert!(
                asked.elapsed() < Duration::from_secs(4),
                "{:?}",
                asked.elapsed()
            );
            assert!(job.cancel.load(Ordering::SeqCst));
            worker.join().unwrap();
            assert_eq!(job.status().state, JobState::Cancelled);
            // The source is free again, for either daemon.
            assert!(b.running_for("docs").await.is_none());
            let again = b
                .start_exclusive("index", "docs", vec![], LOCAL)
                .await
                .unwrap();
            again.finish(Ok(IndexReport::default()));
            let mut done = None;
            for _ in 0..40 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let s = a
                    .status(&again.status().job_id, LOCAL)
                    .await
                    .unwrap()
                    .unwrap();
                if s.state == JobState::Done {
                    done = Some(s);
                    break;
                }
            }
            assert!(done.is_some_and(|s| s.report.is_some()));
            assert!(b.status("job-nope", LOCAL).await.unwrap().is_none());
            assert!(
                b.cancel("job-nope", Duration::ZERO, LOCAL)
                    .await
                    .unwrap()
                    .is_none()
            );
        });
        drop(rt);
    }

    /// A database that cannot be reached: starting a job says so (the name, not the password).
    #[test]
    fn unreachable_database_is_a_clear_refusal() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let mut cfg = config(&format!("postgres://exai:topsecret@127.0.0.1:{port}/exai"));
        cfg.connect_retry_secs = 0.2;
        let jobs = Jobs::new(&cfg);
        runtime().block_on(async {
            let e = jobs
                .start_exclusive("index", "docs", vec![], LOCAL)
                .await
                .err()
                .unwrap()
                .to_string();
            assert!(
                e.contains("cannot record the job") && e.contains("127.0.0.1"),
                "{e}"
            );
            assert!(!e.contains("topsecret"), "{e}");
            assert!(jobs.ids(LOCAL).is_empty());
        });
    }
}
