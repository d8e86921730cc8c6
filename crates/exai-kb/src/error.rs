//! Errors of the knowledge base. Each says what went wrong and what to do about it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum KbError {
    #[error("database {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("the database {} is locked by another writer (an `exai index` already running?); retry when it has finished", path.display())]
    Locked { path: PathBuf },
    #[error("the database {} is corrupt or not an exai database ({reason}); restore a backup or move it aside and re-index", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "the database was written by a newer exai (schema {found}, this build knows {known}); upgrade exai"
    )]
    SchemaTooNew { found: i64, known: i64 },
    #[error(
        "the index holds vectors of `{stored}` but the embedder is `{configured}`; run `exai index --reembed` to rebuild the vectors with the configured model (or configure `{stored}` again)"
    )]
    ModelMismatch { stored: String, configured: String },
    #[error("unknown {kind} `{value}`{}; valid: {}", hint.as_ref().map(|h| format!(" (did you mean `{h}`?)")).unwrap_or_default(), if valid.is_empty() { "none indexed yet".to_string() } else { valid.join(", ") })]
    UnknownValue {
        kind: &'static str,
        value: String,
        hint: Option<String>,
        valid: Vec<String>,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("embedding failed: {0}")]
    Embed(String),
    #[error("cancelled")]
    Cancelled,
    #[error(transparent)]
    Postgres(#[from] exai_pg::PgError),
}

pub type Result<T> = std::result::Result<T, KbError>;

exai_pg::from_postgres!(KbError);
