//! Where a knowledge base lives, and how connections to it are opened: the one place that
//! turns a backend's name into a [`Store`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::Result;
use crate::store::{PgStore, SqliteStore, Store};

/// Where a knowledge base lives.
#[derive(Debug, Clone)]
pub enum Location {
    /// One SQLite file (the embedded default); vectors are searched in memory.
    Sqlite(PathBuf),
    /// PostgreSQL with pgvector, shared by several daemons; vectors are searched in the server.
    Postgres(Arc<exai_pg::Pool>),
}

impl Location {
    /// The file path, or the server URL with its password redacted.
    pub fn describe(&self) -> String {
        match self {
            Location::Sqlite(p) => p.display().to_string(),
            Location::Postgres(pool) => pool.target().to_string(),
        }
    }

    /// `sqlite` or `postgres`, for reports.
    pub fn backend(&self) -> &'static str {
        match self {
            Location::Sqlite(_) => "sqlite",
            Location::Postgres(_) => "postgres",
        }
    }

    /// A new connection (creating and migrating the schema if needed).
    pub fn open_store(&self) -> Result<Store> {
        Ok(match self {
            Location::Sqlite(p) => SqliteStore::open(p)?.into(),
            Location::Postgres(pool) => PgStore::open(pool)?.into(),
        })
    }

    /// Another connection, once [`Location::open_store`] has created and migrated the schema.
    pub fn connect(&self) -> Result<Store> {
        Ok(match self {
            Location::Sqlite(p) => SqliteStore::open(p)?.into(),
            Location::Postgres(pool) => PgStore::attach(pool)?.into(),
        })
    }

    /// The file beside which indexes derived from the data are saved (the ANN graph of the
    /// in-memory vector index); `None` where the database keeps its own.
    pub fn derived_files(&self) -> Option<&Path> {
        match self {
            Location::Sqlite(p) => Some(p),
            Location::Postgres(_) => None,
        }
    }
}
