//! Resource samples in PostgreSQL (tables in `exai_pg::schema::RESOURCES`): every daemon on the
//! database writes its own series. The client blocks; the daemon calls it on a blocking thread.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use exai_pg::postgres::Row;
use exai_pg::{LazyPool, Pool};

use super::{Backend, ResourceError, Sample, to_i64, to_u64};

/// The PostgreSQL backend.
pub struct PgResources {
    pool: LazyPool,
}

impl PgResources {
    /// On `pool`, its tables created or migrated now.
    pub fn open(pool: Arc<Pool>) -> Result<PgResources, ResourceError> {
        let mut conn = pool.get()?;
        exai_pg::schema::RESOURCES.migrate(&mut conn, pool.target())?;
        drop(conn);
        Ok(PgResources {
            pool: LazyPool::ready(pool),
        })
    }

    /// On the pool of `database.*`, opened and migrated on first use.
    pub fn from_config(config: exai_core::config::DatabaseConfig) -> PgResources {
        PgResources {
            pool: LazyPool::from_config(config, &exai_pg::schema::RESOURCES),
        }
    }

    fn conn(&self) -> Result<exai_pg::Conn, ResourceError> {
        Ok(self.pool.pool()?.get()?)
    }
}

fn sample(r: &Row) -> Sample {
    let opt = |i: usize| r.get::<_, Option<i64>>(i).map(to_u64);
    let db_bytes: serde_json::Value = r.get(13);
    Sample {
        time: r.get(0),
        instance: r.get(1),
        pid: u32::try_from(r.get::<_, i64>(2)).unwrap_or(0),
        process_started_at: r.get(3),
        interval_secs: r.get(4),
        rss_bytes: opt(5),
        cpu_seconds: r.get(6),
        open_fds: opt(7),
        max_fds: opt(8),
        host_memory_total_bytes: opt(9),
        host_memory_available_bytes: opt(10),
        disk_free_bytes: opt(11),
        disk_total_bytes: opt(12),
        db_bytes: serde_json::from_value::<BTreeMap<String, u64>>(db_bytes).unwrap_or_default(),
    }
}

impl Backend for PgResources {
    fn name(&self) -> &'static str {
        "PostgreSQL"
    }

    fn insert(&self, s: &Sample) -> Result<(), ResourceError> {
        let db_bytes = serde_json::to_value(&s.db_bytes).unwrap_or_default();
        self.conn()?.execute(
            "INSERT INTO resource_samples (time, instance, pid, process_started_at, interval_secs,
                rss_bytes, cpu_seconds, open_fds, max_fds, host_memory_total_bytes,
                host_memory_available_bytes, disk_free_bytes, disk_total_bytes, db_bytes)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            &[
                &s.time,
                &s.instance,
                &i64::from(s.pid),
                &s.process_started_at,
                &s.interval_secs,
                &s.rss_bytes.map(to_i64),
                &s.cpu_seconds,
                &s.open_fds.map(to_i64),
                &s.max_fds.map(to_i64),
                &s.host_memory_total_bytes.map(to_i64),
                &s.host_memory_available_bytes.map(to_i64),
                &s.disk_free_bytes.map(to_i64),
                &s.disk_total_bytes.map(to_i64),
                &db_bytes,
            ],
        )?;
        Ok(())
    }

    fn samples(
        &self,
        since: DateTime<Utc>,
        instance: Option<&str>,
    ) -> Result<Vec<Sample>, ResourceError> {
        let rows = self.conn()?.query(
            "SELECT time, instance, pid, process_started_at, interval_secs, rss_bytes,
                    cpu_seconds, open_fds, max_fds, host_memory_total_bytes,
                    host_memory_available_bytes, disk_free_bytes, disk_total_bytes, db_bytes
             FROM resource_samples
             WHERE time >= $1 AND ($2::text IS NULL OR instance = $2)
             ORDER BY time, id",
            &[&since, &instance],
        )?;
        Ok(rows.iter().map(sample).collect())
    }

    fn delete_before(&self, before: DateTime<Utc>) -> Result<u64, ResourceError> {
        Ok(self
            .conn()?
            .execute("DELETE FROM resource_samples WHERE time < $1", &[&before])?)
    }

    fn server_database_bytes(&self) -> Result<Option<u64>, ResourceError> {
        let row = self
            .conn()?
            .query_one("SELECT pg_database_size(current_database())", &[])?;
        Ok(Some(to_u64(row.get(0))))
    }
}
