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
//! The jobs themselves live here, in memory; sharing them is a store behind [`SharedJobs`], with
//! one backend, PostgreSQL (`postgres.rs`), which owns the SQL and the table's rules of freshness.
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
use serde::{Deserialize, Serialize};

mod postgres;
#[cfg(test)]
mod tests;

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
                Progress::Fetching {
                    fetched, queued, ..
                } => {
                    s.files_done = *fetched;
                    s.files_total = fetched + queued;
                    Some("fetching")
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
    /// The other daemons' view of the jobs (PostgreSQL), when configured.
    shared: Option<Arc<dyn SharedJobs>>,
}

impl Jobs {
    /// Jobs of this daemon, mirrored into PostgreSQL when `database.url` is set. No I/O here:
    /// the database is reached on first use, off the async workers.
    pub fn new(database: &exai_core::config::DatabaseConfig) -> Jobs {
        Jobs {
            jobs: Mutex::default(),
            shared: database.postgres_url().is_some().then(|| {
                Arc::new(postgres::PgJobs::new(database.clone(), owner_name()))
                    as Arc<dyn SharedJobs>
            }),
        }
    }

    /// Jobs of a daemon sharing them through `shared`.
    #[cfg(test)]
    fn sharing(shared: Arc<dyn SharedJobs>) -> Jobs {
        Jobs {
            jobs: Mutex::default(),
            shared: Some(shared),
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
            owner: self.shared.as_ref().map(|s| s.owner().to_string()),
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

    /// Ask every job of this daemon still running to stop: the daemon is exiting. Each ends at
    /// its next check with its committed work kept (a re-run resumes); without this the
    /// process would wait for the blocking work of every job (a background embedding with
    /// candle takes minutes) before it could exit.
    pub fn cancel_running(&self) -> usize {
        let Ok(jobs) = self.jobs.lock() else {
            return 0;
        };
        let mut cancelled = 0;
        for job in jobs.values().filter(|j| !j.is_finished()) {
            job.cancel.store(true, std::sync::atomic::Ordering::SeqCst);
            cancelled += 1;
        }
        cancelled
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
        let claimed = tokio::task::spawn_blocking(move || shared.claim(&row))
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

    /// Whether other daemons share their jobs with this one (PostgreSQL).
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
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
            && let Ok(Ok(more)) =
                tokio::task::spawn_blocking(move || shared.recent_ids(&asker, 20)).await
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
        match tokio::task::spawn_blocking(move || shared.running_for(&source)).await {
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
        tokio::task::spawn_blocking(move || shared.get(&id, &principal))
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
            move || shared.request_cancel(&id, &principal)
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
            status = tokio::task::spawn_blocking(move || shared.get(&id, &principal))
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

/// `host:pid` of this process, as the table's `owner`.
fn owner_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", std::process::id())
}

/// Where a daemon shares its jobs with the other daemons on one database, so that any of them
/// sees a job, refuses a second run on its source and passes on a cancel. Blocking: call it off
/// the async workers. Errors are the reason, ready to show.
trait SharedJobs: Send + Sync {
    /// This daemon's name among them (`host:pid`).
    fn owner(&self) -> &str;

    /// Atomically across daemons: record `status` unless a fresh job runs on its source, which
    /// is returned instead (stale ones are marked lost on the way).
    fn claim(&self, status: &JobStatus) -> Result<Option<JobStatus>, String>;

    /// The mirror's report of its job: its record created first when `create`; `status` written
    /// when `write` (which also proves the owner alive), else only the cancel request read.
    fn report(&self, status: &JobStatus, create: bool, write: bool) -> Result<Verdict, String>;

    /// A running job on `source` that reported in the last [`FRESH`].
    fn running_for(&self, source: &str) -> Result<Option<JobStatus>, String>;

    /// `principal`'s job `id`.
    fn get(&self, id: &str, principal: &str) -> Result<Option<JobStatus>, String>;

    /// `principal`'s newest job ids.
    fn recent_ids(&self, principal: &str, limit: i64) -> Result<Vec<String>, String>;

    /// Ask `principal`'s running job to stop; its status (`None`: no such job of theirs).
    fn request_cancel(&self, id: &str, principal: &str) -> Result<Option<JobStatus>, String>;
}

/// What the owner should do after a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Continue,
    CancelRequested,
    /// The job was marked lost by another daemon, which may be running the source now.
    TakenOver,
}

/// The progress counters, shared as one value.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
struct Counters {
    files_done: usize,
    files_total: usize,
    chunks: usize,
    embedded: usize,
    embed_total: usize,
}

impl Counters {
    fn of(s: &JobStatus) -> Counters {
        Counters {
            files_done: s.files_done,
            files_total: s.files_total,
            chunks: s.chunks,
            embedded: s.embedded,
            embed_total: s.embed_total,
        }
    }
}

/// What a report records, to skip reports that would change nothing.
#[derive(Debug, Clone, PartialEq)]
struct Snapshot {
    state: JobState,
    phase: String,
    counters: Counters,
    error: Option<String>,
}

impl Snapshot {
    fn of(s: &JobStatus) -> Snapshot {
        Snapshot {
            state: s.state,
            phase: s.phase.clone(),
            counters: Counters::of(s),
            error: s.error.clone(),
        }
    }
}

/// Mirror `job` into the table until it finishes, on a thread of its own. `claimed`: the row
/// exists already.
fn mirror(shared: Arc<dyn SharedJobs>, job: Arc<Job>, claimed: bool) {
    let spawned = std::thread::Builder::new()
        .name("exai-job-mirror".into())
        .spawn(move || mirror_loop(shared.as_ref(), &job, claimed));
    if let Err(e) = spawned {
        tracing::warn!("cannot mirror the index job into PostgreSQL: {e}");
    }
}

fn mirror_loop(shared: &dyn SharedJobs, job: &Job, mut inserted: bool) {
    let id = job.status().job_id;
    let mut written: Option<Snapshot> = None;
    let mut last_write: Option<Instant> = None;
    let mut failing_since: Option<Instant> = None;
    loop {
        let status = job.status();
        let finished = status.state != JobState::Running;
        let snapshot = Snapshot::of(&status);
        let due = written.as_ref() != Some(&snapshot)
            || last_write.is_none_or(|t| t.elapsed() >= HEARTBEAT);
        match shared.report(&status, !inserted, due) {
            Ok(verdict) => {
                inserted = true;
                failing_since = None;
                if due {
                    written = Some(snapshot);
                    last_write = Some(Instant::now());
                }
                if finished {
                    return;
                }
                match verdict {
                    Verdict::Continue => {}
                    Verdict::CancelRequested => {
                        if !job.cancel.swap(true, Ordering::SeqCst) {
                            tracing::info!(job = %id, "index job cancelled from another daemon");
                        }
                    }
                    Verdict::TakenOver => {
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
