//! The daemon's resource sampling: every `ops.sample_interval_secs` one sample of its memory,
//! CPU time, open files, free disk and database sizes goes into the resource history
//! (`exai_ops::resources`, in `state.sqlite` or PostgreSQL), and the newest stays in memory for
//! `/metrics`. A history that cannot be written (PostgreSQL down, a newer schema) is logged once
//! per distinct reason and retried at the next sample; the daemon serves on regardless.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use exai_core::metrics::{Encoder, Kind};
use exai_ops::resources::{Resources, Sample, probe};

use crate::state::AppState;

/// The newest sample, for `/metrics`.
#[derive(Debug, Default)]
pub struct Latest(Mutex<Option<Sample>>);

impl Latest {
    fn set(&self, sample: Sample) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(sample);
        }
    }

    pub fn get(&self) -> Option<Sample> {
        self.0.lock().ok().and_then(|s| s.clone())
    }
}

/// Sample until the process ends.
pub async fn run(state: Arc<AppState>) {
    let interval = Duration::from_secs_f64(state.loaded.config.ops.sample_interval_secs);
    let instance = exai_ops::resources::instance(&state.loaded);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut store: Option<Arc<Resources>> = None;
    let mut last_problem: Option<String> = None;
    loop {
        ticker.tick().await;
        let task_state = state.clone();
        let task_instance = instance.clone();
        let task_store = store.clone();
        let done = tokio::task::spawn_blocking(move || {
            sample_once(&task_state, &task_instance, interval, task_store)
        })
        .await;
        let (opened, outcome) = match done {
            Ok(v) => v,
            Err(e) => (None, Err(format!("sampling task failed: {e}"))),
        };
        if opened.is_some() {
            store = opened;
        }
        match outcome {
            Ok(sample) => {
                if last_problem.take().is_some() {
                    tracing::info!("resource history is written again");
                }
                state.metrics.resources.set(sample);
            }
            Err(problem) => {
                if last_problem.as_deref() != Some(problem.as_str()) {
                    tracing::warn!("cannot record resource samples: {problem}");
                }
                last_problem = Some(problem);
            }
        }
    }
}

/// One sample written (blocking). Returns the store when it was opened now, and the sample or
/// why it was not recorded (it is kept for `/metrics` all the same when only writing failed).
fn sample_once(
    state: &AppState,
    instance: &str,
    interval: Duration,
    store: Option<Arc<Resources>>,
) -> (Option<Arc<Resources>>, Result<Sample, String>) {
    let (store, opened) = match store {
        Some(s) => (s, None),
        None => match Resources::open(&state.loaded) {
            Ok(s) => {
                let s = Arc::new(s);
                (s.clone(), Some(s))
            }
            Err(e) => {
                let mut sample = exai_ops::resources::sample_now(
                    &state.loaded,
                    instance,
                    state.started_at,
                    interval,
                );
                sample.db_bytes.remove("postgres");
                state.metrics.resources.set(sample);
                return (None, Err(e.to_string()));
            }
        },
    };
    let mut sample =
        exai_ops::resources::sample_now(&state.loaded, instance, state.started_at, interval);
    match store.server_database_bytes() {
        Ok(Some(bytes)) => {
            sample.db_bytes.insert("postgres".into(), bytes);
        }
        Ok(None) => {}
        Err(e) => return (opened, Err(e.to_string())),
    }
    let written = store.record(&sample).map_err(|e| e.to_string());
    if written.is_err() {
        state.metrics.resources.set(sample.clone());
    }
    (opened, written.map(|()| sample))
}

/// The process families (Prometheus' standard names) read now, and the database sizes and free
/// disk of the newest sample (measured now while there is none yet).
pub fn encode(state: &AppState, enc: &mut Encoder) {
    let process = probe::this_process();
    let gauge = |enc: &mut Encoder, name: &str, kind: Kind, help: &str, v: Option<f64>| {
        if let Some(v) = v {
            enc.family(name, kind, help);
            enc.sample(&[], v);
        }
    };
    gauge(
        enc,
        "process_resident_memory_bytes",
        Kind::Gauge,
        "Resident memory size in bytes.",
        process.rss_bytes.map(|v| v as f64),
    );
    gauge(
        enc,
        "process_cpu_seconds_total",
        Kind::Counter,
        "Total user and system CPU time spent in seconds.",
        process.cpu_seconds,
    );
    gauge(
        enc,
        "process_open_fds",
        Kind::Gauge,
        "Number of open file descriptors.",
        process.open_fds.map(|v| v as f64),
    );
    gauge(
        enc,
        "process_max_fds",
        Kind::Gauge,
        "Maximum number of open file descriptors.",
        process.max_fds.map(|v| v as f64),
    );
    gauge(
        enc,
        "process_start_time_seconds",
        Kind::Gauge,
        "Start time of the process since unix epoch in seconds.",
        Some(state.started_at.timestamp_millis() as f64 / 1000.0),
    );
    let (db_bytes, disk_free) = match state.metrics.resources.get() {
        Some(s) => (s.db_bytes, s.disk_free_bytes),
        None => (
            exai_ops::resources::database_file_bytes(&state.loaded),
            probe::disk(&state.loaded.data_dir).map(|d| d.free_bytes),
        ),
    };
    enc.family(
        "exai_db_size_bytes",
        Kind::Gauge,
        "Size of each database: the SQLite files with their WAL (kb, state), PostgreSQL's database (postgres), as of the last resource sample.",
    );
    for (db, bytes) in &db_bytes {
        enc.sample(&[("db", db.as_str())], *bytes);
    }
    gauge(
        enc,
        "exai_disk_free_bytes",
        Kind::Gauge,
        "Bytes available on the data directory's file system, as of the last resource sample.",
        disk_free.map(|v| v as f64),
    );
}
