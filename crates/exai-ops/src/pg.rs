//! PostgreSQL, when `database.url` is set: the server and its pgvector, the schema version of
//! each component that keeps tables there (knowledge base, conversation threads, validation
//! tracking, index jobs), and the knowledge base's own checks and counts. Every command connects
//! once, without the daemon's start-up retries, so a server that does not answer is reported at
//! once; the URL is only ever shown with its password redacted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use exai_core::Loaded;
use exai_core::config::DatabaseConfig;
use exai_kb::PgStore;
use exai_kb::store::{PgStats, PgVerifyReport};
use exai_pg::{PgError, Pool, PoolOptions};
use serde::Serialize;

use crate::db::{DbError, Migration};

pub use exai_pg::redact;

use exai_pg::schema::Component;

/// How long one connection attempt of an operations command may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The configured PostgreSQL URL, if any.
pub fn configured(loaded: &Loaded) -> Option<&str> {
    loaded.config.database.postgres_url()
}

/// A small pool for one command, connected once now: no start-up retries, so a server that is
/// down fails at once (with the redacted URL and the reason).
pub fn connect(url: &str, database: &DatabaseConfig) -> Result<Arc<Pool>, PgError> {
    let options = PoolOptions {
        max_size: 2,
        statement_timeout: Duration::ZERO,
        connect_timeout: CONNECT_TIMEOUT,
        start_retry: Duration::ZERO,
        ..PoolOptions::from_config(database)
    };
    let pool = Pool::new(url, options)?;
    drop(pool.get()?);
    Ok(pool)
}

/// The server as exai sees it.
#[derive(Debug, Clone, Serialize)]
pub struct Server {
    /// The URL, password redacted.
    pub target: String,
    pub server_version: String,
    /// pgvector installed in this database.
    pub pgvector: Option<String>,
    /// pgvector offered by the server (`CREATE EXTENSION vector` would work).
    pub pgvector_available: Option<String>,
    /// Connections to this database now (all clients), and the server's limit.
    pub connections: u64,
    pub max_connections: u64,
    /// Connections each exai process may open (`database.pool_size`).
    pub pool_size: u64,
    /// Schema version per component (0: its tables do not exist yet).
    pub components: BTreeMap<String, i64>,
}

impl Server {
    /// e.g. `PostgreSQL 16.2, pgvector 0.6.2, 3 connection(s) to this database (server max 100, pool 8 per exai process)`.
    pub fn describe(&self) -> String {
        let vector = match (&self.pgvector, &self.pgvector_available) {
            (Some(v), _) => format!("pgvector {v}"),
            (None, Some(v)) => format!("pgvector {v} available (created on first use)"),
            (None, None) => "NO pgvector".into(),
        };
        format!(
            "PostgreSQL {} at {}, {vector}, {} connection(s) to this database (server max {}, pool {} per exai process)",
            self.server_version,
            self.target,
            self.connections,
            self.max_connections,
            self.pool_size
        )
    }

    /// e.g. `kb 1, threads 1, tracking 1, jobs not created yet`.
    pub fn describe_components(&self) -> String {
        exai_pg::schema::ALL
            .iter()
            .filter_map(|c| self.components.get(c.name).map(|v| (c.name, v)))
            .map(|(c, v)| {
                if *v == 0 {
                    format!("{c} not created yet")
                } else {
                    format!("{c} {v}")
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn kb_schema(&self) -> i64 {
        self.components.get("kb").copied().unwrap_or(0)
    }
}

/// Versions, pgvector, connections and component schemas.
pub fn server(pool: &Arc<Pool>, database: &DatabaseConfig) -> Result<Server, PgError> {
    let mut c = pool.get()?;
    let row = c.query_one(
        "SELECT current_setting('server_version'),
                (SELECT extversion FROM pg_extension WHERE extname = 'vector'),
                (SELECT default_version FROM pg_available_extensions WHERE name = 'vector'),
                (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()),
                current_setting('max_connections')::bigint",
        &[],
    )?;
    let mut components = BTreeMap::new();
    for component in exai_pg::schema::ALL {
        components.insert(component.name.to_string(), component.version(&mut *c)?);
    }
    Ok(Server {
        target: pool.target().to_string(),
        server_version: row.get(0),
        pgvector: row.get(1),
        pgvector_available: row.get(2),
        connections: u64::try_from(row.get::<_, i64>(3)).unwrap_or(0),
        max_connections: u64::try_from(row.get::<_, i64>(4)).unwrap_or(0),
        pool_size: database.pool_size,
        components,
    })
}

/// `exai db verify` against PostgreSQL.
#[derive(Debug, Clone, Serialize)]
pub struct PgCheck {
    pub target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<Server>,
    /// The knowledge base's checks, once it exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kb: Option<PgVerifyReport>,
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
}

impl PgCheck {
    /// 0 ok, 1 warnings, 2 problems.
    pub fn status(&self) -> u8 {
        if !self.problems.is_empty() {
            2
        } else if !self.warnings.is_empty() {
            1
        } else {
            0
        }
    }
}

/// Check the database at `url`: it answers, pgvector is there, every component's schema is
/// one this build can use, and the knowledge base passes [`PgStore::verify`]. Reads only; a
/// server that does not answer is a problem, not an error.
pub fn verify(url: &str, database: &DatabaseConfig) -> PgCheck {
    let mut check = PgCheck {
        target: exai_pg::redact(url),
        server: None,
        kb: None,
        problems: Vec::new(),
        warnings: Vec::new(),
    };
    let pool = match connect(url, database) {
        Ok(p) => p,
        Err(e) => {
            check.problems.push(e.to_string());
            return check;
        }
    };
    let server = match server(&pool, database) {
        Ok(s) => s,
        Err(e) => {
            check.problems.push(e.at(pool.target()).to_string());
            return check;
        }
    };
    if server.pgvector.is_none() {
        match &server.pgvector_available {
            Some(_) if server.kb_schema() == 0 => check.warnings.push(
                "pgvector is not installed in this database yet; exai creates it with the knowledge base when the role may (else run `CREATE EXTENSION vector;`)".into(),
            ),
            Some(_) => check.problems.push(
                "pgvector is not installed in this database; run `CREATE EXTENSION vector;` (Supabase: Database → Extensions → vector)".into(),
            ),
            None => check.problems.push(
                "the server does not offer pgvector: the knowledge base cannot live here; install it (https://github.com/pgvector/pgvector#installation; Supabase, Neon, RDS and Cloud SQL ship it)".into(),
            ),
        }
    }
    let known = PgStore::known_schema_version();
    match server.kb_schema() {
        0 => check.warnings.push(
            "no knowledge base in this database yet (`exai index PATH --source NAME` or `exai db copy` creates it)".into(),
        ),
        v if v > known => check.problems.push(format!(
            "kb schema version {v} is newer than this build knows ({known}); upgrade exai"
        )),
        _ => match PgStore::attach(&pool).and_then(|s| s.verify()) {
            Ok(report) => {
                check.problems.extend(report.problems.iter().cloned());
                check.warnings.extend(report.warnings.iter().cloned());
                check.kb = Some(report);
            }
            Err(e) => check.problems.push(e.to_string()),
        },
    }
    check.server = Some(server);
    check
}

/// `exai db stats` against PostgreSQL.
#[derive(Debug, Clone, Serialize)]
pub struct PgStatsReport {
    pub server: Server,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kb: Option<PgStats>,
    /// Rows and bytes (with indexes and TOAST) of exai's tables.
    pub tables: BTreeMap<String, TableSize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TableSize {
    pub rows: u64,
    pub bytes: u64,
}

/// Tables exai keeps in PostgreSQL.
const TABLE_PREFIXES: &str = "^(kb_|threads|thread_|test_|index_jobs|exai_schema)";

pub fn stats(url: &str, database: &DatabaseConfig) -> Result<PgStatsReport, DbError> {
    let pool = connect(url, database)?;
    let server = server(&pool, database).map_err(|e| e.at(pool.target()))?;
    let kb = if server.kb_schema() > 0 {
        Some(PgStore::attach(&pool)?.stats()?)
    } else {
        None
    };
    let mut tables = BTreeMap::new();
    {
        let mut c = pool.get()?;
        let found = c
            .query(
                "SELECT c.relname, quote_ident(c.relname), pg_total_relation_size(c.oid)
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE c.relkind = 'r' AND n.nspname = current_schema() AND c.relname ~ $1
                 ORDER BY c.relname",
                &[&TABLE_PREFIXES],
            )
            .map_err(PgError::from)?;
        for r in found {
            let quoted: String = r.get(1);
            let rows: i64 = c
                .query_one(&format!("SELECT count(*) FROM {quoted}"), &[])
                .map_err(PgError::from)?
                .get(0);
            tables.insert(
                r.get::<_, String>(0),
                TableSize {
                    rows: u64::try_from(rows).unwrap_or(0),
                    bytes: u64::try_from(r.get::<_, i64>(2)).unwrap_or(0),
                },
            );
        }
    }
    Ok(PgStatsReport { server, kb, tables })
}

/// Bring every component's tables (knowledge base, conversation threads, validation tracking,
/// index jobs: `exai_pg::schema::ALL`) to this build's schema; `check` only reports. A database
/// already current is left untouched.
pub fn migrate(
    url: &str,
    database: &DatabaseConfig,
    check: bool,
) -> Result<Vec<Migration>, DbError> {
    let pool = connect(url, database)?;
    let before = server(&pool, database).map_err(|e| e.at(pool.target()))?;
    exai_pg::schema::ALL
        .iter()
        .map(|component| {
            let from = before.components.get(component.name).copied().unwrap_or(0);
            migrate_component(&pool, component, from, check)
        })
        .collect()
}

fn migrate_component(
    pool: &Arc<Pool>,
    component: &Component,
    from: i64,
    check: bool,
) -> Result<Migration, DbError> {
    let to = component.known_version();
    let applied = !check && from < to;
    if applied {
        let mut conn = pool.get()?;
        component
            .migrate(&mut conn, pool.target())
            .map_err(|e| e.at(pool.target()))?;
    }
    Ok(Migration {
        name: component.name.into(),
        backend: "postgres".into(),
        from,
        to,
        applied,
        note: None,
    })
}
