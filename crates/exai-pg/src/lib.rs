//! PostgreSQL plumbing shared by exai's stores (knowledge base, conversation threads,
//! validation runs, index jobs): the connection URL with libpq's `sslmode` semantics and its
//! password redacted for display, a small blocking connection pool that drops dead connections
//! and reconnects, start-up retries with backoff, a pool opened on first use that remembers a
//! failure for a moment, every component's schema and the versioned migrations that several
//! daemons may run at once, `From` conversions for store errors, and the two-backend test
//! harness.

mod error;
mod lazy;
mod migrate;
mod pool;
mod url;

pub mod schema;
pub mod testing;

pub use error::{PgError, Result};
pub use lazy::{LazyError, LazyPool, OpenError, REOPEN_AFTER, Reopening};
pub use migrate::{ensure_vector, migrate, schema_version};
pub use pool::{Conn, Pool, PoolOptions, from_config, shared};
pub use schema::Component;
pub use url::{DatabaseUrl, SslMode, is_postgres_url, redact};

/// Re-exported so stores use the same client version.
pub use postgres;
