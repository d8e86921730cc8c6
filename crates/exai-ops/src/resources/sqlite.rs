//! Resource samples in SQLite: the data directory's `state.sqlite`, component `resources` of
//! its `schema_version`. Times are RFC 3339 UTC text with milliseconds, which sorts as time.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use exai_core::sqlite_schema::SchemaError;
use rusqlite::{Connection, Row, params};

use super::{Backend, ResourceError, Sample, to_i64, to_u64};

pub(super) const COMPONENT: &str = "resources";

const MIGRATIONS: &[&str] = &[
    // 1: one row per sample.
    "CREATE TABLE resource_samples (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        time TEXT NOT NULL,
        instance TEXT NOT NULL,
        pid INTEGER NOT NULL,
        process_started_at TEXT NOT NULL,
        interval_secs REAL NOT NULL,
        rss_bytes INTEGER,
        cpu_seconds REAL,
        open_fds INTEGER,
        max_fds INTEGER,
        host_memory_total_bytes INTEGER,
        host_memory_available_bytes INTEGER,
        disk_free_bytes INTEGER,
        disk_total_bytes INTEGER,
        db_bytes TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX resource_samples_time ON resource_samples(time);
    CREATE INDEX resource_samples_instance_time ON resource_samples(instance, time);",
];

/// The SQLite backend.
pub struct SqliteResources {
    db: Mutex<Connection>,
}

fn text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn time(s: &str) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
        })
}

impl SqliteResources {
    /// The file at `path` (created 0600 when missing), migrated.
    pub fn open(path: &Path) -> Result<SqliteResources, ResourceError> {
        // A failure here surfaces as SQLite's own when it opens the file.
        let _ = exai_core::private::prepare_sqlite(path);
        let mut db = Connection::open(path)?;
        db.busy_timeout(Duration::from_secs(5))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        exai_core::sqlite_schema::migrate(&mut db, COMPONENT, MIGRATIONS).map_err(|e| match e {
            SchemaError::Sqlite(e) => ResourceError::Sqlite(e),
            SchemaError::Newer { found } => ResourceError::NewerSchema { found },
        })?;
        Ok(SqliteResources { db: Mutex::new(db) })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, ResourceError>,
    ) -> Result<T, ResourceError> {
        let db = self.db.lock().map_err(|_| ResourceError::Poisoned)?;
        f(&db)
    }
}

fn sample(r: &Row<'_>) -> rusqlite::Result<Sample> {
    let db_bytes: String = r.get(13)?;
    Ok(Sample {
        time: time(&r.get::<_, String>(0)?)?,
        instance: r.get(1)?,
        pid: u32::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
        process_started_at: time(&r.get::<_, String>(3)?)?,
        interval_secs: r.get(4)?,
        rss_bytes: r.get::<_, Option<i64>>(5)?.map(to_u64),
        cpu_seconds: r.get(6)?,
        open_fds: r.get::<_, Option<i64>>(7)?.map(to_u64),
        max_fds: r.get::<_, Option<i64>>(8)?.map(to_u64),
        host_memory_total_bytes: r.get::<_, Option<i64>>(9)?.map(to_u64),
        host_memory_available_bytes: r.get::<_, Option<i64>>(10)?.map(to_u64),
        disk_free_bytes: r.get::<_, Option<i64>>(11)?.map(to_u64),
        disk_total_bytes: r.get::<_, Option<i64>>(12)?.map(to_u64),
        // Written by this module as a JSON object; anything else reads as no sizes.
        db_bytes: serde_json::from_str(&db_bytes).unwrap_or_default(),
    })
}

impl Backend for SqliteResources {
    fn name(&self) -> &'static str {
        "SQLite"
    }

    fn insert(&self, s: &Sample) -> Result<(), ResourceError> {
        let db_bytes = serde_json::to_string(&s.db_bytes).unwrap_or_else(|_| "{}".into());
        self.with(|db| {
            db.prepare_cached(
                "INSERT INTO resource_samples (time, instance, pid, process_started_at, interval_secs,
                    rss_bytes, cpu_seconds, open_fds, max_fds, host_memory_total_bytes,
                    host_memory_available_bytes, disk_free_bytes, disk_total_bytes, db_bytes)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )?
            .execute(params![
                text(s.time),
                s.instance,
                i64::from(s.pid),
                text(s.process_started_at),
                s.interval_secs,
                s.rss_bytes.map(to_i64),
                s.cpu_seconds,
                s.open_fds.map(to_i64),
                s.max_fds.map(to_i64),
                s.host_memory_total_bytes.map(to_i64),
                s.host_memory_available_bytes.map(to_i64),
                s.disk_free_bytes.map(to_i64),
                s.disk_total_bytes.map(to_i64),
                db_bytes,
            ])?;
            Ok(())
        })
    }

    fn samples(
        &self,
        since: DateTime<Utc>,
        instance: Option<&str>,
    ) -> Result<Vec<Sample>, ResourceError> {
        self.with(|db| {
            let mut stmt = db.prepare_cached(
                "SELECT time, instance, pid, process_started_at, interval_secs, rss_bytes,
                        cpu_seconds, open_fds, max_fds, host_memory_total_bytes,
                        host_memory_available_bytes, disk_free_bytes, disk_total_bytes, db_bytes
                 FROM resource_samples
                 WHERE time >= ?1 AND (?2 IS NULL OR instance = ?2)
                 ORDER BY time, id",
            )?;
            let rows = stmt.query_map(params![text(since), instance], sample)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    fn delete_before(&self, before: DateTime<Utc>) -> Result<u64, ResourceError> {
        self.with(|db| {
            let n = db.execute(
                "DELETE FROM resource_samples WHERE time < ?1",
                [text(before)],
            )?;
            Ok(n as u64)
        })
    }

    fn server_database_bytes(&self) -> Result<Option<u64>, ResourceError> {
        Ok(None)
    }
}
