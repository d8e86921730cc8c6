//! Background jobs (indexing runs started over MCP): their state, progress and cancellation.
//! Kept in memory: a restarted daemon forgets finished jobs, and a killed indexing run resumes
//! when started again (the store keeps everything it committed).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use exai_kb::{IndexReport, Progress};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Running,
    Done,
    Failed,
    Cancelled,
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
    pub report: Option<IndexReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub struct Job {
    status: Mutex<JobStatus>,
    started: std::time::Instant,
    pub cancel: AtomicBool,
    done: tokio::sync::Notify,
}

impl Job {
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
            match p {
                Progress::Discovered { files, .. } => {
                    s.phase = "reading files".into();
                    s.files_total = *files;
                }
                Progress::Files {
                    done,
                    total,
                    chunks,
                } => {
                    s.files_done = *done;
                    s.files_total = *total;
                    s.chunks = *chunks;
                }
                Progress::Embedding { done, total } => {
                    s.phase = "embedding".into();
                    s.embedded = *done;
                    s.embed_total = *total;
                }
            }
        }
    }

    pub fn finish(&self, result: Result<IndexReport, exai_kb::KbError>) {
        if let Ok(mut s) = self.status.lock() {
            match result {
                Ok(report) => {
                    s.state = JobState::Done;
                    s.phase = "done".into();
                    s.report = Some(report);
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
        }
        self.done.notify_waiters();
    }

    pub fn is_finished(&self) -> bool {
        self.status().state != JobState::Running
    }

    /// Wait until the job finishes or `limit` passes; true when finished.
    pub async fn wait(&self, limit: std::time::Duration) -> bool {
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
}

#[derive(Default)]
pub struct Jobs {
    jobs: Mutex<HashMap<String, Arc<Job>>>,
}

impl Jobs {
    pub fn start(&self, kind: &str, source: &str, paths: Vec<String>) -> Arc<Job> {
        let id = format!("job-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let job = Arc::new(Job {
            status: Mutex::new(JobStatus {
                job_id: id.clone(),
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
            }),
            started: std::time::Instant::now(),
            cancel: AtomicBool::new(false),
            done: tokio::sync::Notify::new(),
        });
        if let Ok(mut m) = self.jobs.lock() {
            m.insert(id, job.clone());
        }
        job
    }

    pub fn get(&self, id: &str) -> Option<Arc<Job>> {
        self.jobs.lock().ok().and_then(|m| m.get(id).cloned())
    }

    pub fn ids(&self) -> Vec<String> {
        self.jobs
            .lock()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// A running job for this source, if any (two runs on one source would fight).
    pub fn running_for(&self, source: &str) -> Option<Arc<Job>> {
        self.jobs.lock().ok().and_then(|m| {
            m.values()
                .find(|j| !j.is_finished() && j.status().source == source)
                .cloned()
        })
    }

    pub fn cancel(&self, id: &str) -> Option<Arc<Job>> {
        let job = self.get(id)?;
        job.cancel.store(true, Ordering::SeqCst);
        Some(job)
    }
}
