//! The daemon's resources over time: every `ops.sample_interval_secs` it records its resident
//! memory, CPU time, open file descriptors, the host's memory, free disk and the size of each
//! database as one [`Sample`], kept for `ops.resource_history_days`. `exai stats --resources`,
//! `exai health` (memory growth, uptime) and `exai db stats --history` read them back.
//!
//! One store, two backends, as for the other stores: the data directory's `state.sqlite` (next to
//! the threads and validation runs, its version in `schema_version`, component `resources`), or
//! PostgreSQL when `database.url` is set (component `resources` of `exai_schema`), where every
//! daemon on the database writes its own series, told apart by [`instance`]. The backends only
//! read and write rows ([`Backend`], one file each); the retention rule lives here in
//! [`Resources`]; what the samples say (minimum, maximum, trend, growth, uptime) in `series`.

mod postgres;
pub mod probe;
pub mod series;
mod sqlite;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use exai_core::Loaded;
use exai_pg::{LazyError, PgError};
use serde::{Deserialize, Serialize};

pub use postgres::PgResources;
pub use sqlite::SqliteResources;

#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    #[error("resource history: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("resource history: {0}")]
    Postgres(#[from] PgError),
    /// Opening PostgreSQL failed a moment ago; the next attempt comes after a pause.
    #[error("resource history: {0}")]
    Unavailable(String),
    #[error("resource history is unavailable (a previous error poisoned it)")]
    Poisoned,
    #[error(
        "the resource history tables are at schema version {found}, newer than this exai understands; upgrade exai"
    )]
    NewerSchema { found: i64 },
}

exai_pg::from_postgres!(ResourceError);

impl From<LazyError> for ResourceError {
    fn from(e: LazyError) -> Self {
        match e {
            LazyError::Pg(e) => ResourceError::Postgres(e),
            LazyError::Recently(reason) => ResourceError::Unavailable(reason),
            LazyError::Poisoned => ResourceError::Poisoned,
        }
    }
}

/// One reading of a daemon's resources. A value the platform does not offer is `None` (see
/// [`probe`]: on macOS the resident memory and the host's memory are not read).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub time: DateTime<Utc>,
    /// Which daemon: see [`instance`].
    pub instance: String,
    pub pid: u32,
    /// When the sampling process started; a new value means a restart.
    pub process_started_at: DateTime<Utc>,
    /// The sample interval the daemon ran with (uptime counts each sample for this long).
    pub interval_secs: f64,
    pub rss_bytes: Option<u64>,
    /// User and system CPU time since the process started.
    pub cpu_seconds: Option<f64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    pub host_memory_total_bytes: Option<u64>,
    pub host_memory_available_bytes: Option<u64>,
    /// The file system of the data directory.
    pub disk_free_bytes: Option<u64>,
    pub disk_total_bytes: Option<u64>,
    /// Bytes per database: `kb`, `state` (the SQLite files, WAL included), `postgres`.
    pub db_bytes: BTreeMap<String, u64>,
}

impl Sample {
    /// The host's memory in use, in percent of its total.
    pub fn host_memory_used_percent(&self) -> Option<f64> {
        let (total, available) = (
            self.host_memory_total_bytes?,
            self.host_memory_available_bytes?,
        );
        (total > 0).then(|| total.saturating_sub(available) as f64 * 100.0 / total as f64)
    }

    /// The data directory's file system in use, in percent of its size.
    pub fn disk_used_percent(&self) -> Option<f64> {
        let (total, free) = (self.disk_total_bytes?, self.disk_free_bytes?);
        (total > 0).then(|| total.saturating_sub(free) as f64 * 100.0 / total as f64)
    }
}

/// What a backend does: write, read and delete rows.
pub trait Backend: Send + Sync {
    /// `SQLite` or `PostgreSQL`, for messages.
    fn name(&self) -> &'static str;
    fn insert(&self, sample: &Sample) -> Result<(), ResourceError>;
    /// Samples at or after `since`, oldest first; only `instance`'s when given.
    fn samples(
        &self,
        since: DateTime<Utc>,
        instance: Option<&str>,
    ) -> Result<Vec<Sample>, ResourceError>;
    /// Delete the samples older than `before`; returns how many went.
    fn delete_before(&self, before: DateTime<Utc>) -> Result<u64, ResourceError>;
    /// The size of the database the backend lives in, when it is a server's (a SQLite file is
    /// measured as a file).
    fn server_database_bytes(&self) -> Result<Option<u64>, ResourceError>;
}

/// How often the daemon removes samples past the retention: a sample a minute makes an hourly
/// delete remove about 60 rows, and the history stays within the limit to the hour.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The resource history of one configuration. Blocking: call it off the async workers.
pub struct Resources {
    backend: Box<dyn Backend>,
    keep: chrono::Duration,
    last_prune: Mutex<Option<Instant>>,
}

impl Resources {
    pub fn new(backend: Box<dyn Backend>, keep_days: u64) -> Resources {
        Resources {
            backend,
            keep: chrono::Duration::days(i64::try_from(keep_days).unwrap_or(3650)),
            last_prune: Mutex::new(None),
        }
    }

    /// The store of this configuration: PostgreSQL when `database.url` is set (the pool opened
    /// and the tables migrated on first use), else `state.sqlite` in the data directory.
    pub fn open(loaded: &Loaded) -> Result<Resources, ResourceError> {
        let keep = loaded.config.ops.resource_history_days;
        let backend: Box<dyn Backend> = match loaded.config.database.postgres_url() {
            Some(_) => Box::new(PgResources::from_config(loaded.config.database.clone())),
            None => Box::new(SqliteResources::open(&state_path(loaded))?),
        };
        Ok(Resources::new(backend, keep))
    }

    /// For the operator's reports: PostgreSQL connected once now (a server that is down fails
    /// at once, where the daemon's pool keeps retrying), or the SQLite history — `None` while
    /// its file does not exist (nothing recorded), so a report never creates it.
    pub fn open_existing(loaded: &Loaded) -> Result<Option<Resources>, ResourceError> {
        let keep = loaded.config.ops.resource_history_days;
        if let Some(url) = loaded.config.database.postgres_url() {
            let pool = crate::pg::connect(url, &loaded.config.database)?;
            return Ok(Some(Resources::new(
                Box::new(PgResources::open(pool)?),
                keep,
            )));
        }
        if !state_path(loaded).exists() {
            return Ok(None);
        }
        Resources::open(loaded).map(Some)
    }

    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// Write a sample, and remove the samples past the retention once an hour.
    pub fn record(&self, sample: &Sample) -> Result<(), ResourceError> {
        self.backend.insert(sample)?;
        let due = {
            let mut last = self
                .last_prune
                .lock()
                .map_err(|_| ResourceError::Poisoned)?;
            let due = last.is_none_or(|at| at.elapsed() >= PRUNE_EVERY);
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if due {
            let removed = self.backend.delete_before(sample.time - self.keep)?;
            if removed > 0 {
                tracing::debug!(removed, "resource samples past the retention removed");
            }
        }
        Ok(())
    }

    /// Samples at or after `since`, oldest first; only `instance`'s when given.
    pub fn samples(
        &self,
        since: DateTime<Utc>,
        instance: Option<&str>,
    ) -> Result<Vec<Sample>, ResourceError> {
        self.backend.samples(since, instance)
    }

    pub fn server_database_bytes(&self) -> Result<Option<u64>, ResourceError> {
        self.backend.server_database_bytes()
    }
}

fn state_path(loaded: &Loaded) -> std::path::PathBuf {
    loaded.data_dir.join("state.sqlite")
}

/// The name of this configuration's daemon in the history: the host and the data directory (one
/// daemon per data directory; several daemons on one PostgreSQL each have their own).
pub fn instance(loaded: &Loaded) -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", loaded.data_dir.display())
}

/// The database files of this configuration that exist, with their bytes (WAL included).
pub fn database_file_bytes(loaded: &Loaded) -> BTreeMap<String, u64> {
    crate::db::databases(loaded)
        .into_iter()
        .map(|db| {
            let bytes = crate::db::file_bytes(&db.path);
            (db.name, bytes)
        })
        .collect()
}

/// Take a sample of this process now (blocking: it reads `/proc` and stats files).
pub fn sample_now(
    loaded: &Loaded,
    instance: &str,
    process_started_at: DateTime<Utc>,
    interval: Duration,
) -> Sample {
    let process = probe::this_process();
    let host = probe::host_memory();
    let disk = probe::disk(&loaded.data_dir);
    Sample {
        time: Utc::now(),
        instance: instance.to_string(),
        pid: std::process::id(),
        process_started_at,
        interval_secs: interval.as_secs_f64(),
        rss_bytes: process.rss_bytes,
        cpu_seconds: process.cpu_seconds,
        open_fds: process.open_fds,
        max_fds: process.max_fds,
        host_memory_total_bytes: host.map(|h| h.total_bytes),
        host_memory_available_bytes: host.map(|h| h.available_bytes),
        disk_free_bytes: disk.map(|d| d.free_bytes),
        disk_total_bytes: disk.map(|d| d.total_bytes),
        db_bytes: database_file_bytes(loaded),
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}
