//! PostgreSQL plumbing shared by exai's stores (knowledge base, conversation threads,
//! validation runs): the connection URL with libpq's `sslmode` semantics and its password
//! redacted for display, a small blocking connection pool that drops dead connections and
//! reconnects, start-up retries with backoff, and versioned migrations that several daemons
//! may run at once.

mod error;
mod migrate;
mod pool;
mod url;

pub mod testing;

pub use error::{PgError, Result};
pub use migrate::{ensure_vector, migrate, schema_version};
pub use pool::{Conn, Pool, PoolOptions, from_config, shared};
pub use url::{DatabaseUrl, SslMode, is_postgres_url, redact};

/// Re-exported so stores use the same client version.
pub use postgres;
