//! Errors that say what to do: which server, which setting, which command.

/// A PostgreSQL failure, with the server named (password redacted).
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("invalid database URL {url}: {reason}")]
    Url { url: String, reason: String },
    #[error(
        "cannot connect to PostgreSQL at {target} after {attempts} attempt(s) over {waited_ms} ms: {reason}"
    )]
    Connect {
        target: String,
        attempts: u32,
        waited_ms: u64,
        reason: String,
    },
    #[error(
        "all {max} connections to PostgreSQL at {target} are busy (waited {waited_ms} ms); raise database.pool_size or retry"
    )]
    PoolExhausted {
        target: String,
        max: usize,
        waited_ms: u64,
    },
    #[error(
        "lost the connection to PostgreSQL at {target} ({reason}); this call failed, and exai reconnects on the next one once the server answers"
    )]
    Lost { target: String, reason: String },
    #[error("the pgvector extension is missing in PostgreSQL at {target}: {reason}")]
    NoVector { target: String, reason: String },
    #[error(
        "the {component} schema in PostgreSQL is at version {found}, newer than this exai knows ({known}); upgrade exai"
    )]
    SchemaTooNew {
        component: String,
        found: i64,
        known: i64,
    },
    #[error("PostgreSQL: {}", describe(.0))]
    Query(#[from] postgres::Error),
}

pub type Result<T> = std::result::Result<T, PgError>;

/// `From<postgres::Error>` for a store's error type that already converts from [`PgError`], so
/// its PostgreSQL code writes `?` on the client's calls: `exai_pg::from_postgres!(KbError);`.
#[macro_export]
macro_rules! from_postgres {
    ($error:ty) => {
        impl From<$crate::postgres::Error> for $error {
            fn from(e: $crate::postgres::Error) -> Self {
                <$error>::from($crate::PgError::from(e))
            }
        }
    };
}

impl PgError {
    /// Whether the connection itself failed (server gone, network), as opposed to a bad
    /// statement: the caller may retry once the server is back.
    pub fn is_connection(&self) -> bool {
        match self {
            PgError::Connect { .. } | PgError::PoolExhausted { .. } | PgError::Lost { .. } => true,
            PgError::Query(e) => match e.as_db_error() {
                // Class 08: connection exception; 57P01..03: shutdown, crash, cannot connect now.
                Some(db) => {
                    let code = db.code().code();
                    code.starts_with("08") || code.starts_with("57P")
                }
                None => {
                    e.is_closed()
                        || std::error::Error::source(e)
                            .is_some_and(|c| c.downcast_ref::<std::io::Error>().is_some())
                }
            },
            _ => false,
        }
    }

    /// A query error on a connection that died becomes [`PgError::Lost`], naming the server.
    pub fn at(self, target: &str) -> PgError {
        if !matches!(self, PgError::Query(_)) || !self.is_connection() {
            return self;
        }
        let reason = match &self {
            PgError::Query(e) => describe(e),
            other => other.to_string(),
        };
        PgError::Lost {
            target: target.to_string(),
            reason,
        }
    }
}

/// The server's own message with detail and hint, or the client's reason.
pub fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        );
        if let Some(d) = db.detail() {
            s.push_str(&format!("; {d}"));
        }
        if let Some(h) = db.hint() {
            s.push_str(&format!("; hint: {h}"));
        }
        return s;
    }
    if e.is_closed() {
        return "the connection to the server was lost".into();
    }
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(&format!(": {c}"));
        }
        source = cause.source();
    }
    s
}
