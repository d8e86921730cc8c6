//! Conversation threads, so a `continuation_id` survives restarts and is shared by every session
//! of a daemon — or, with PostgreSQL (`database.url`), by every daemon on that database. A thread
//! expires `ttl` after its last turn (each write refreshes it), holds at most `max_turns` turns,
//! and may continue a parent thread (chains up to 20 deep).
//!
//! Every thread belongs to the principal that created it (`owner`): the HTTP daemon's named
//! tokens make principals, and everything else — stdio, a daemon without tokens, the unnamed
//! `server.auth_token` — is [`LOCAL_PRINCIPAL`]. A thread of another owner reads as one that does
//! not exist, for every call: continuing, listing, parents of a new thread.
//!
//! Two backends with one behaviour: SQLite (`state.sqlite` in the data directory; a mutex and an
//! immediate transaction serialise writers) and PostgreSQL (a writer locks the thread's row with
//! `SELECT … FOR UPDATE`, so two daemons writing to one thread at once cannot exceed its turns;
//! a reader sees one snapshot). Both are blocking: call them off the async workers.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use exai_pg::postgres::{self, IsolationLevel};
use exai_pg::{PgError, Pool};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

/// Parents followed when rebuilding a conversation.
pub const MAX_CHAIN: usize = 20;

/// The principal of a user without named tokens: stdio, a daemon without tokens, and the bearer
/// token `server.auth_token`. Threads written before principals existed belong to it.
pub const LOCAL_PRINCIPAL: &str = "local";

#[derive(Debug, thiserror::Error)]
pub enum ThreadError {
    #[error(
        "conversation `{0}` does not exist; start a new one without continuation_id (list_threads shows recent ones)"
    )]
    NotFound(String),
    #[error(
        "conversation `{id}` expired {minutes} min ago (threads live {ttl_hours} h after their last turn); start a new one without continuation_id"
    )]
    Expired {
        id: String,
        minutes: i64,
        ttl_hours: f64,
    },
    #[error(
        "conversation `{id}` has reached its {max} turns; start a new one or raise threads.max_turns"
    )]
    Full { id: String, max: u64 },
    #[error("conversation store: {0}")]
    Store(#[from] rusqlite::Error),
    #[error("conversation store: {0}")]
    Postgres(#[from] PgError),
    #[error("conversation store is unavailable (a previous error poisoned it)")]
    Poisoned,
    #[error(
        "the conversation tables are at schema version {found}, newer than this exai understands ({SQLITE_SCHEMA}); upgrade exai"
    )]
    NewerSchema { found: i64 },
    /// Opening the database failed a moment ago; the next attempt comes after a pause.
    #[error("{0}")]
    Unavailable(String),
}

impl From<postgres::Error> for ThreadError {
    fn from(e: postgres::Error) -> Self {
        ThreadError::Postgres(PgError::from(e))
    }
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Turn {
    /// `user` or `assistant`.
    pub role: String,
    pub content: String,
    /// Files the turn referred to (paths as given).
    pub files: Vec<String>,
    pub tool: String,
    pub model: Option<String>,
    pub time: i64,
}

/// A thread as `list_threads` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThreadSummary {
    pub continuation_id: String,
    pub parent_id: Option<String>,
    pub tool: String,
    pub title: String,
    pub turns: u64,
    pub created_at: String,
    pub updated_at: String,
    pub expires_at: String,
}

/// A thread that [`ThreadsOf::record`] creates.
#[derive(Debug, Clone)]
pub struct NewThread {
    pub parent: Option<String>,
    pub tool: String,
    pub title: String,
}

impl NewThread {
    /// The thread a call writes to: the given continuation, or a new thread (with a fresh id)
    /// titled after the call.
    pub fn or_continue(
        given: Option<String>,
        tool: &str,
        title: &str,
    ) -> (String, Option<NewThread>) {
        match given {
            Some(id) => (id, None),
            None => {
                let new = NewThread {
                    parent: None,
                    tool: tool.to_string(),
                    title: title.chars().take(80).collect(),
                };
                (ThreadStore::new_id(), Some(new))
            }
        }
    }
}

/// A turn to write.
#[derive(Debug, Clone, Copy)]
pub struct NewTurn<'a> {
    pub role: &'a str,
    pub content: &'a str,
    pub files: &'a [String],
    pub tool: &'a str,
    pub model: Option<&'a str>,
}

pub struct ThreadStore {
    backend: Backend,
    ttl: Duration,
    max_turns: u64,
}

enum Backend {
    Sqlite(Mutex<Connection>),
    Postgres(PgSource),
}

impl Drop for ThreadStore {
    /// The last handle on a pool closes its connections, which blocks: not on an async worker.
    fn drop(&mut self) {
        if let Backend::Postgres(PgSource::Ready(pool)) = &self.backend
            && Arc::strong_count(pool) == 1
            && tokio::runtime::Handle::try_current().is_ok()
        {
            let pool = Arc::clone(pool);
            std::thread::spawn(move || drop(pool));
        }
    }
}

/// The PostgreSQL pool, given or opened (and migrated) on first use.
enum PgSource {
    Ready(Arc<Pool>),
    Lazy {
        config: exai_core::config::DatabaseConfig,
        state: Mutex<LazyPool>,
    },
}

#[derive(Default)]
struct LazyPool {
    pool: Option<Arc<Pool>>,
    /// The last failure to open, repeated to callers for a moment instead of waiting again.
    failed: Option<(Instant, String)>,
}

/// How long a failure to open the database is reported as is before the next attempt.
const REOPEN_AFTER: Duration = Duration::from_secs(5);

/// The `threads` component's schema steps (see [`exai_pg::migrate`]).
const PG_MIGRATIONS: &[&str] = &[
    // 1: threads and their turns.
    "CREATE TABLE threads (
        id TEXT PRIMARY KEY,
        parent_id TEXT,
        tool TEXT NOT NULL,
        title TEXT NOT NULL,
        turns BIGINT NOT NULL DEFAULT 0,
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL
    );
    CREATE INDEX threads_updated ON threads (updated_at DESC);
    CREATE INDEX threads_expires ON threads (expires_at);
    CREATE TABLE thread_turns (
        thread_id TEXT NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
        idx BIGINT NOT NULL,
        role TEXT NOT NULL,
        content TEXT NOT NULL,
        files JSONB NOT NULL,
        tool TEXT NOT NULL,
        model TEXT,
        created_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (thread_id, idx)
    );",
    // 2: owners. Threads from before principals belong to the local user.
    "ALTER TABLE threads ADD COLUMN owner TEXT NOT NULL DEFAULT 'local';
    CREATE INDEX threads_owner_updated ON threads (owner, updated_at DESC);",
];

/// The SQLite schema this build writes; each step of [`SQLITE_MIGRATIONS`] brings it one up. The
/// version is kept per component in `schema_version` (shared with the validation tracking tables
/// in the same file), not in `PRAGMA user_version`.
const SQLITE_SCHEMA: i64 = 2;

const SQLITE_COMPONENT: &str = "threads";

const SQLITE_MIGRATIONS: &[&str] = &[
    // 1: threads and their turns. `IF NOT EXISTS`: files written before the schema was versioned
    // have these tables already.
    "CREATE TABLE IF NOT EXISTS threads (
        id TEXT PRIMARY KEY,
        parent_id TEXT,
        tool TEXT NOT NULL,
        title TEXT NOT NULL,
        turns INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS threads_updated ON threads(updated_at);
    CREATE TABLE IF NOT EXISTS thread_turns (
        thread_id TEXT NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        role TEXT NOT NULL,
        content TEXT NOT NULL,
        files TEXT NOT NULL,
        tool TEXT NOT NULL,
        model TEXT,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (thread_id, idx)
    );",
    // 2: owners. Threads from before principals belong to the local user.
    "ALTER TABLE threads ADD COLUMN owner TEXT NOT NULL DEFAULT 'local';
    CREATE INDEX threads_owner_updated ON threads(owner, updated_at);",
];

/// Bring the file's thread tables to [`SQLITE_SCHEMA`] in one immediate transaction, so two
/// processes opening it at once migrate it once.
fn sqlite_migrate(db: &mut Connection) -> Result<(), ThreadError> {
    db.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (
            component TEXT PRIMARY KEY,
            version INTEGER NOT NULL
        );",
    )?;
    let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let found: i64 = tx
        .query_row(
            "SELECT version FROM schema_version WHERE component = ?1",
            [SQLITE_COMPONENT],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0);
    if found > SQLITE_SCHEMA {
        return Err(ThreadError::NewerSchema { found });
    }
    for (step, sql) in (1..).zip(SQLITE_MIGRATIONS) {
        if step > found {
            tx.execute_batch(sql)?;
        }
    }
    tx.execute(
        "INSERT INTO schema_version (component, version) VALUES (?1, ?2)
         ON CONFLICT(component) DO UPDATE SET version = excluded.version",
        params![SQLITE_COMPONENT, SQLITE_SCHEMA],
    )?;
    tx.commit()?;
    Ok(())
}

fn now() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

type Time = chrono::DateTime<chrono::Utc>;

fn time_text(t: Time) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl ThreadStore {
    /// The SQLite store in the file at `path` (created when missing).
    pub fn open(path: &Path, ttl: Duration, max_turns: u64) -> Result<ThreadStore, ThreadError> {
        // Conversations are private: the file (and SQLite's -wal and -shm, which take its mode)
        // is created 0600. A failure here surfaces as SQLite's own when it opens the file.
        let _ = exai_core::private::prepare_sqlite(path);
        let mut db = Connection::open(path)?;
        db.busy_timeout(Duration::from_secs(5))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        db.pragma_update(None, "foreign_keys", "ON")?;
        sqlite_migrate(&mut db)?;
        Ok(ThreadStore {
            backend: Backend::Sqlite(Mutex::new(db)),
            ttl,
            max_turns,
        })
    }

    /// The PostgreSQL store on `pool`, its tables created or migrated now (blocking).
    pub fn open_postgres(
        pool: Arc<Pool>,
        ttl: Duration,
        max_turns: u64,
    ) -> Result<ThreadStore, ThreadError> {
        let mut conn = pool.get()?;
        exai_pg::migrate(&mut conn, "threads", PG_MIGRATIONS)?;
        drop(conn);
        Ok(ThreadStore {
            backend: Backend::Postgres(PgSource::Ready(pool)),
            ttl,
            max_turns,
        })
    }

    /// The PostgreSQL store of `database.*`, connected and migrated on first use rather than
    /// now: constructing it does no I/O (so it may happen on an async worker), and a database
    /// that is down at start is tried again by later calls, which fail with the reason meanwhile.
    pub fn postgres_from_config(
        config: exai_core::config::DatabaseConfig,
        ttl: Duration,
        max_turns: u64,
    ) -> ThreadStore {
        ThreadStore {
            backend: Backend::Postgres(PgSource::Lazy {
                config,
                state: Mutex::new(LazyPool::default()),
            }),
            ttl,
            max_turns,
        }
    }

    /// Which database holds the threads, for logs and errors.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "SQLite",
            Backend::Postgres(_) => "PostgreSQL",
        }
    }

    fn ttl_ms(&self) -> i64 {
        i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX)
    }

    fn expired(&self, id: &str, overdue_ms: i64) -> ThreadError {
        ThreadError::Expired {
            id: id.to_string(),
            minutes: overdue_ms / 60_000,
            ttl_hours: self.ttl.as_secs_f64() / 3600.0,
        }
    }

    /// A fresh thread id; the thread exists once [`ThreadsOf::record`] writes its first turns.
    pub fn new_id() -> String {
        uuid::Uuid::new_v4().to_string()
    }

    /// The threads of `owner`: every read and write goes through this view, so a thread of
    /// another principal is never found.
    pub fn of<'a>(&'a self, owner: &'a str) -> ThreadsOf<'a> {
        ThreadsOf { store: self, owner }
    }
    /// Delete expired threads (their turns go with them); returns how many.
    pub fn purge_expired(&self) -> Result<usize, ThreadError> {
        match &self.backend {
            Backend::Sqlite(db) => sqlite(db, |db| {
                Ok(db.execute("DELETE FROM threads WHERE expires_at < ?1", [now()])?)
            }),
            Backend::Postgres(pg) => {
                let mut conn = pg.conn()?;
                let n = conn.execute("DELETE FROM threads WHERE expires_at < now()", &[])?;
                Ok(usize::try_from(n).unwrap_or(usize::MAX))
            }
        }
    }
}

/// [`ThreadStore`] seen by one principal (see [`ThreadStore::of`]).
#[derive(Clone, Copy)]
pub struct ThreadsOf<'a> {
    store: &'a ThreadStore,
    owner: &'a str,
}

impl ThreadsOf<'_> {
    /// A new, empty thread; `parent` (if any) must exist, be live and be this owner's.
    pub fn create(
        &self,
        tool: &str,
        title: &str,
        parent: Option<&str>,
    ) -> Result<String, ThreadError> {
        let id = ThreadStore::new_id();
        let new = NewThread {
            parent: parent.map(str::to_string),
            tool: tool.to_string(),
            title: title.to_string(),
        };
        self.record(&id, Some(&new), &[])?;
        Ok(id)
    }

    /// Fails unless the thread exists, is this owner's and has not expired.
    pub fn check_live(&self, id: &str) -> Result<(), ThreadError> {
        let (store, owner) = (self.store, self.owner);
        match &store.backend {
            Backend::Sqlite(db) => sqlite(db, |db| store.live(db, owner, id)),
            Backend::Postgres(pg) => {
                let mut conn = pg.conn()?;
                store.pg_live(&mut *conn, owner, id, false).map(|_| ())
            }
        }
    }

    /// Append one turn and refresh the thread's expiry.
    pub fn add_turn(
        &self,
        id: &str,
        role: &str,
        content: &str,
        files: &[String],
        tool: &str,
        model: Option<&str>,
    ) -> Result<(), ThreadError> {
        let turn = NewTurn {
            role,
            content,
            files,
            tool,
            model,
        };
        self.record(id, None, &[turn]).map(|_| ())
    }

    /// Write turns in one transaction: create the thread (owned by this principal) first when
    /// `new` is given (its parent must be live and this owner's), else the thread must be live
    /// and this owner's; all turns fit or none is written. Refreshes the expiry and returns the
    /// turns left.
    pub fn record(
        &self,
        id: &str,
        new: Option<&NewThread>,
        turns: &[NewTurn<'_>],
    ) -> Result<u64, ThreadError> {
        let (store, owner) = (self.store, self.owner);
        match &store.backend {
            Backend::Sqlite(db) => sqlite(db, |db| store.sqlite_record(db, owner, id, new, turns)),
            Backend::Postgres(pg) => {
                let mut conn = pg.conn()?;
                store.pg_record(&mut conn, owner, id, new, turns)
            }
        }
    }

    /// Turns left before the thread is full.
    pub fn remaining_turns(&self, id: &str) -> Result<u64, ThreadError> {
        let (store, owner) = (self.store, self.owner);
        match &store.backend {
            Backend::Sqlite(db) => sqlite(db, |db| store.remaining(db, owner, id)),
            Backend::Postgres(pg) => {
                let mut conn = pg.conn()?;
                let turns: i64 = conn
                    .query_opt(
                        "SELECT turns FROM threads WHERE id = $1 AND owner = $2",
                        &[&id, &owner],
                    )?
                    .ok_or_else(|| ThreadError::NotFound(id.to_string()))?
                    .get(0);
                Ok(store.max_turns.saturating_sub(to_u64(turns)))
            }
        }
    }

    /// Every turn of the thread and its ancestors, oldest first.
    pub fn history(&self, id: &str) -> Result<Vec<Turn>, ThreadError> {
        self.resume(id).map(|(turns, _)| turns)
    }

    /// What a continuing turn starts from, read consistently (under one lock, or in one
    /// snapshot): the thread must be live and this owner's; its history (ancestors included,
    /// oldest first) and the turns it has left.
    pub fn resume(&self, id: &str) -> Result<(Vec<Turn>, u64), ThreadError> {
        let (store, owner) = (self.store, self.owner);
        match &store.backend {
            Backend::Sqlite(db) => sqlite(db, |db| store.sqlite_resume(db, owner, id)),
            Backend::Postgres(pg) => {
                let mut conn = pg.conn()?;
                store.pg_resume(&mut conn, owner, id)
            }
        }
    }

    /// This owner's live threads, most recently used first.
    pub fn list(
        &self,
        limit: usize,
        tool: Option<&str>,
    ) -> Result<Vec<ThreadSummary>, ThreadError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let owner = self.owner;
        match &self.store.backend {
            Backend::Sqlite(db) => sqlite(db, |db| sqlite_list(db, owner, limit, tool)),
            Backend::Postgres(pg) => {
                let mut conn = pg.conn()?;
                let rows = conn.query(
                    "SELECT id, parent_id, tool, title, turns, created_at, updated_at, expires_at
                     FROM threads
                     WHERE owner = $1 AND expires_at >= now() AND ($2::text IS NULL OR tool = $2)
                     ORDER BY updated_at DESC LIMIT $3",
                    &[&owner, &tool, &limit],
                )?;
                Ok(rows
                    .iter()
                    .map(|r| ThreadSummary {
                        continuation_id: r.get(0),
                        parent_id: r.get(1),
                        tool: r.get(2),
                        title: r.get(3),
                        turns: to_u64(r.get(4)),
                        created_at: time_text(r.get(5)),
                        updated_at: time_text(r.get(6)),
                        expires_at: time_text(r.get(7)),
                    })
                    .collect())
            }
        }
    }
}

fn sqlite<T>(
    db: &Mutex<Connection>,
    f: impl FnOnce(&mut Connection) -> Result<T, ThreadError>,
) -> Result<T, ThreadError> {
    let mut guard = db.lock().map_err(|_| ThreadError::Poisoned)?;
    f(&mut guard)
}

/// SQLite: the mutex serialises this process's callers; an immediate transaction serialises
/// writers of other processes on the same file.
impl ThreadStore {
    fn live(&self, db: &Connection, owner: &str, id: &str) -> Result<(), ThreadError> {
        let row: Option<i64> = db
            .prepare_cached("SELECT expires_at FROM threads WHERE id = ?1 AND owner = ?2")?
            .query_row([id, owner], |r| r.get(0))
            .optional()?;
        match row {
            None => Err(ThreadError::NotFound(id.to_string())),
            Some(expires) if expires < now() => Err(self.expired(id, now() - expires)),
            Some(_) => Ok(()),
        }
    }

    fn remaining(&self, db: &Connection, owner: &str, id: &str) -> Result<u64, ThreadError> {
        let turns: Option<u64> = db
            .prepare_cached("SELECT turns FROM threads WHERE id = ?1 AND owner = ?2")?
            .query_row([id, owner], |r| r.get(0))
            .optional()?;
        let turns = turns.ok_or_else(|| ThreadError::NotFound(id.to_string()))?;
        Ok(self.max_turns.saturating_sub(turns))
    }

    fn sqlite_record(
        &self,
        db: &mut Connection,
        owner: &str,
        id: &str,
        new: Option<&NewThread>,
        turns: &[NewTurn<'_>],
    ) -> Result<u64, ThreadError> {
        let max = self.max_turns;
        let ttl = self.ttl_ms();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let t = now();
        if let Some(new) = new {
            if let Some(p) = &new.parent {
                self.live(&tx, owner, p)?;
            }
            let title: String = new.title.chars().take(120).collect();
            tx.prepare_cached(
                "INSERT INTO threads (id, parent_id, tool, title, turns, created_at, updated_at, expires_at, owner)
                 VALUES (?1, ?2, ?3, ?4, 0, ?5, ?5, ?6, ?7)",
            )?
            .execute(params![id, new.parent, new.tool, title, t, t.saturating_add(ttl), owner])?;
        } else {
            self.live(&tx, owner, id)?;
        }
        let used: u64 = tx
            .prepare_cached("SELECT turns FROM threads WHERE id = ?1")?
            .query_row([id], |r| r.get(0))?;
        let adding = turns.len() as u64;
        if used + adding > max {
            return Err(ThreadError::Full {
                id: id.to_string(),
                max,
            });
        }
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO thread_turns (thread_id, idx, role, content, files, tool, model, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for (i, turn) in turns.iter().enumerate() {
                let files = serde_json::to_string(turn.files).unwrap_or_else(|_| "[]".into());
                insert.execute(params![
                    id,
                    used + i as u64,
                    turn.role,
                    turn.content,
                    files,
                    turn.tool,
                    turn.model,
                    t
                ])?;
            }
        }
        tx.prepare_cached(
            "UPDATE threads SET turns = turns + ?2, updated_at = ?3, expires_at = ?4 WHERE id = ?1",
        )?
        .execute(params![id, adding, t, t.saturating_add(ttl)])?;
        tx.commit()?;
        Ok(max.saturating_sub(used + adding))
    }

    fn sqlite_resume(
        &self,
        db: &Connection,
        owner: &str,
        id: &str,
    ) -> Result<(Vec<Turn>, u64), ThreadError> {
        self.live(db, owner, id)?;
        let remaining = self.remaining(db, owner, id)?;
        let mut chain = vec![id.to_string()];
        let mut current = id.to_string();
        while chain.len() < MAX_CHAIN {
            // A parent is always its child's owner's; the condition keeps it so whatever the rows say.
            let parent: Option<String> = db
                .prepare_cached("SELECT parent_id FROM threads WHERE id = ?1 AND owner = ?2")?
                .query_row([current.as_str(), owner], |r| r.get(0))
                .optional()?
                .flatten();
            match parent {
                Some(p) if !chain.contains(&p) => {
                    chain.push(p.clone());
                    current = p;
                }
                _ => break,
            }
        }
        let mut turns = Vec::new();
        let mut stmt = db.prepare_cached(
            "SELECT role, content, files, tool, model, created_at FROM thread_turns
             WHERE thread_id = ?1 ORDER BY idx",
        )?;
        for thread in chain.iter().rev() {
            let rows = stmt.query_map([thread], |r| {
                let files: String = r.get(2)?;
                Ok(Turn {
                    role: r.get(0)?,
                    content: r.get(1)?,
                    files: serde_json::from_str(&files).unwrap_or_default(),
                    tool: r.get(3)?,
                    model: r.get(4)?,
                    time: r.get(5)?,
                })
            })?;
            for row in rows {
                turns.push(row?);
            }
        }
        Ok((turns, remaining))
    }
}

fn sqlite_list(
    db: &Connection,
    owner: &str,
    limit: i64,
    tool: Option<&str>,
) -> Result<Vec<ThreadSummary>, ThreadError> {
    let mut stmt = db.prepare(
        "SELECT id, parent_id, tool, title, turns, created_at, updated_at, expires_at FROM threads
         WHERE owner = ?1 AND expires_at >= ?2 AND (?3 IS NULL OR tool = ?3)
         ORDER BY updated_at DESC LIMIT ?4",
    )?;
    let rows = stmt.query_map(params![owner, now(), tool, limit], |r| {
        Ok(ThreadSummary {
            continuation_id: r.get(0)?,
            parent_id: r.get(1)?,
            tool: r.get(2)?,
            title: r.get(3)?,
            turns: r.get(4)?,
            created_at: rfc3339(r.get(5)?),
            updated_at: rfc3339(r.get(6)?),
            expires_at: rfc3339(r.get(7)?),
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

impl PgSource {
    fn conn(&self) -> Result<exai_pg::Conn, ThreadError> {
        let pool = match self {
            PgSource::Ready(pool) => pool.clone(),
            PgSource::Lazy { config, state } => {
                // Held while opening, so concurrent first calls open the pool once.
                let mut state = state.lock().map_err(|_| ThreadError::Poisoned)?;
                match (&state.pool, &state.failed) {
                    (Some(pool), _) => pool.clone(),
                    (None, Some((at, reason))) if at.elapsed() < REOPEN_AFTER => {
                        return Err(ThreadError::Unavailable(reason.clone()));
                    }
                    (None, _) => match open_lazy(config) {
                        Ok(pool) => {
                            state.failed = None;
                            state.pool = Some(pool.clone());
                            pool
                        }
                        Err(e) => {
                            tracing::warn!(
                                "conversation threads in PostgreSQL are unavailable: {e}"
                            );
                            state.failed = Some((Instant::now(), e.to_string()));
                            return Err(e);
                        }
                    },
                }
            }
        };
        Ok(pool.get()?)
    }
}

fn open_lazy(config: &exai_core::config::DatabaseConfig) -> Result<Arc<Pool>, ThreadError> {
    let pool = exai_pg::from_config(config)?.ok_or_else(|| {
        ThreadError::Postgres(PgError::Url {
            url: String::new(),
            reason: "database.url is empty".into(),
        })
    })?;
    let mut conn = pool.get()?;
    exai_pg::migrate(&mut conn, "threads", PG_MIGRATIONS)?;
    Ok(pool)
}

/// PostgreSQL: times are the server's (`now()`, the transaction's start), so daemons with
/// skewed clocks agree on expiry.
impl ThreadStore {
    /// The thread's turns, if it is live; `lock` takes its row for the rest of the transaction.
    fn pg_live(
        &self,
        db: &mut impl postgres::GenericClient,
        owner: &str,
        id: &str,
        lock: bool,
    ) -> Result<u64, ThreadError> {
        let sql = if lock {
            "SELECT turns, expires_at, now() FROM threads WHERE id = $1 AND owner = $2 FOR UPDATE"
        } else {
            "SELECT turns, expires_at, now() FROM threads WHERE id = $1 AND owner = $2"
        };
        let row = db
            .query_opt(sql, &[&id, &owner])?
            .ok_or_else(|| ThreadError::NotFound(id.to_string()))?;
        let (turns, expires, at): (i64, Time, Time) = (row.get(0), row.get(1), row.get(2));
        if expires < at {
            return Err(self.expired(id, (at - expires).num_milliseconds()));
        }
        Ok(to_u64(turns))
    }

    fn pg_record(
        &self,
        db: &mut postgres::Client,
        owner: &str,
        id: &str,
        new: Option<&NewThread>,
        turns: &[NewTurn<'_>],
    ) -> Result<u64, ThreadError> {
        let max = self.max_turns;
        let ttl = self.ttl.as_secs_f64();
        let mut tx = db.transaction()?;
        let used = match new {
            Some(new) => {
                if let Some(p) = &new.parent {
                    self.pg_live(&mut tx, owner, p, false)?;
                }
                let title: String = new.title.chars().take(120).collect();
                tx.execute(
                    "INSERT INTO threads (id, parent_id, tool, title, turns, created_at, updated_at, expires_at, owner)
                     VALUES ($1, $2, $3, $4, 0, now(), now(), now() + make_interval(secs => $5), $6)",
                    &[&id, &new.parent, &new.tool, &title, &ttl, &owner],
                )?;
                0
            }
            // The row lock makes a second writer (any daemon) wait here, then count our turns.
            None => self.pg_live(&mut tx, owner, id, true)?,
        };
        let adding = turns.len() as u64;
        if used + adding > max {
            return Err(ThreadError::Full {
                id: id.to_string(),
                max,
            });
        }
        if !turns.is_empty() {
            let insert = tx.prepare(
                "INSERT INTO thread_turns (thread_id, idx, role, content, files, tool, model, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, now())",
            )?;
            for (i, turn) in turns.iter().enumerate() {
                let idx = to_i64(used + i as u64);
                let files = postgres::types::Json(turn.files);
                tx.execute(
                    &insert,
                    &[
                        &id,
                        &idx,
                        &turn.role,
                        &turn.content,
                        &files,
                        &turn.tool,
                        &turn.model,
                    ],
                )?;
            }
        }
        tx.execute(
            "UPDATE threads SET turns = turns + $2, updated_at = now(),
                 expires_at = now() + make_interval(secs => $3)
             WHERE id = $1",
            &[&id, &to_i64(adding), &ttl],
        )?;
        tx.commit()?;
        Ok(max.saturating_sub(used + adding))
    }

    fn pg_resume(
        &self,
        db: &mut postgres::Client,
        owner: &str,
        id: &str,
    ) -> Result<(Vec<Turn>, u64), ThreadError> {
        // One snapshot for the check, the count and the turns of the whole chain.
        let mut tx = db
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?;
        let used = self.pg_live(&mut tx, owner, id, false)?;
        let rows = tx.query(
            &format!(
                "WITH RECURSIVE chain (id, parent_id, depth, seen) AS (
                     SELECT id, parent_id, 0, ARRAY[id] FROM threads WHERE id = $1 AND owner = $2
                     UNION ALL
                     SELECT t.id, t.parent_id, c.depth + 1, c.seen || t.id
                     FROM chain c JOIN threads t ON t.id = c.parent_id
                     WHERE t.owner = $2 AND c.depth + 1 < {MAX_CHAIN} AND NOT t.id = ANY (c.seen)
                 )
                 SELECT tt.role, tt.content, tt.files, tt.tool, tt.model, tt.created_at
                 FROM chain c JOIN thread_turns tt ON tt.thread_id = c.id
                 ORDER BY c.depth DESC, tt.idx"
            ),
            &[&id, &owner],
        )?;
        tx.commit()?;
        let turns = rows
            .iter()
            .map(|r| {
                let files = r
                    .try_get::<_, postgres::types::Json<Vec<String>>>(2)
                    .map(|f| f.0)
                    .unwrap_or_default();
                let at: Time = r.get(5);
                Turn {
                    role: r.get(0),
                    content: r.get(1),
                    files,
                    tool: r.get(3),
                    model: r.get(4),
                    time: at.timestamp_millis(),
                }
            })
            .collect();
        Ok((turns, self.max_turns.saturating_sub(used)))
    }
}

/// One suite, two backends: every behaviour test runs against SQLite and against PostgreSQL
/// (a fresh database on `EXAI_TEST_DATABASE_URL`; skipped when that is unset).
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use exai_pg::PoolOptions;
    use exai_pg::testing::TestDatabase;

    /// Where a test's stores live; `open` is a (re)start of a daemon on it.
    trait Place {
        fn open(&self, ttl: Duration, max: u64) -> ThreadStore;
    }

    struct SqliteFile(tempfile::TempDir);

    impl Place for SqliteFile {
        fn open(&self, ttl: Duration, max: u64) -> ThreadStore {
            ThreadStore::open(&self.0.path().join("state.sqlite"), ttl, max).unwrap()
        }
    }

    struct PgDatabase(TestDatabase);

    impl Place for PgDatabase {
        /// A new pool each time: another daemon, or this one restarted.
        fn open(&self, ttl: Duration, max: u64) -> ThreadStore {
            let pool = Pool::open(&self.0.url, PoolOptions::default()).unwrap();
            ThreadStore::open_postgres(pool, ttl, max).unwrap()
        }
    }

    macro_rules! both_backends {
        ($($name:ident),* $(,)?) => {
            mod sqlite {
                $(
                    #[test]
                    fn $name() {
                        super::$name(&super::SqliteFile(tempfile::tempdir().unwrap()));
                    }
                )*
            }
            mod postgres {
                $(
                    #[test]
                    fn $name() {
                        if let Some(db) = super::TestDatabase::create(stringify!($name)) {
                            super::$name(&super::PgDatabase(db));
                        }
                    }
                )*
            }
        };
    }

    both_backends!(
        threads_persist_chain_and_fill_up,
        record_writes_all_turns_or_none,
        parent_chains_stop_at_max_chain,
        threads_expire,
        concurrent_writers_never_exceed_max_turns,
        a_thread_continues_on_another_store,
        other_owners_threads_do_not_exist,
    );

    fn threads_persist_chain_and_fill_up(place: &dyn Place) {
        let id = {
            let store = place.open(Duration::from_secs(3600), 3);
            let s = store.of(LOCAL_PRINCIPAL);
            let id = s.create("chat", "first question", None).unwrap();
            s.add_turn(&id, "user", "q1", &["a.rs".into()], "chat", None)
                .unwrap();
            s.add_turn(&id, "assistant", "a1", &[], "chat", Some("glm-4.6"))
                .unwrap();
            id
        };
        // A new store on the same database: a restart.
        let store = place.open(Duration::from_secs(3600), 3);
        let s = store.of(LOCAL_PRINCIPAL);
        assert_eq!(s.history(&id).unwrap().len(), 2);
        assert_eq!(s.remaining_turns(&id).unwrap(), 1);
        s.add_turn(&id, "user", "q2", &[], "chat", None).unwrap();
        let full = s
            .add_turn(&id, "assistant", "a2", &[], "chat", None)
            .unwrap_err();
        assert!(full.to_string().contains("3 turns"), "{full}");
        let child = s.create("chat", "follow-up", Some(&id)).unwrap();
        s.add_turn(&child, "user", "q3", &[], "chat", None).unwrap();
        let h = s.history(&child).unwrap();
        assert_eq!(
            h.iter().map(|t| t.content.as_str()).collect::<Vec<_>>(),
            ["q1", "a1", "q2", "q3"]
        );
        assert_eq!(h[0].files, ["a.rs"]);
        assert_eq!(h[1].model.as_deref(), Some("glm-4.6"));
        assert!(h[0].time > 0 && h[0].time <= h[3].time);
        let listed = s.list(10, None).unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].continuation_id, child);
        assert_eq!(listed[0].parent_id.as_deref(), Some(id.as_str()));
        assert_eq!(listed[1].turns, 3);
        assert!(listed[0].expires_at > listed[0].updated_at);
        assert_eq!(s.list(10, Some("codereview")).unwrap().len(), 0);
        assert_eq!(s.list(1, Some("chat")).unwrap().len(), 1);
        assert!(matches!(s.history("nope"), Err(ThreadError::NotFound(_))));
        assert!(matches!(
            s.remaining_turns("nope"),
            Err(ThreadError::NotFound(_))
        ));
    }

    /// Parent chains stop at MAX_CHAIN threads.
    fn parent_chains_stop_at_max_chain(place: &dyn Place) {
        let store = place.open(Duration::from_secs(3600), 100);
        let s = store.of(LOCAL_PRINCIPAL);
        let mut parent: Option<String> = None;
        for i in 0..MAX_CHAIN + 5 {
            let id = s.create("chat", "link", parent.as_deref()).unwrap();
            s.add_turn(&id, "user", &format!("t{i}"), &[], "chat", None)
                .unwrap();
            parent = Some(id);
        }
        let h = s.history(parent.as_deref().unwrap()).unwrap();
        assert_eq!(h.len(), MAX_CHAIN);
        assert_eq!(h[0].content, "t5");
        assert_eq!(h[MAX_CHAIN - 1].content, format!("t{}", MAX_CHAIN + 4));
    }

    fn record_writes_all_turns_or_none(place: &dyn Place) {
        let store = place.open(Duration::from_secs(3600), 3);
        let s = store.of(LOCAL_PRINCIPAL);
        let turn = |role, content| NewTurn {
            role,
            content,
            files: &[],
            tool: "chat",
            model: None,
        };
        let new = NewThread {
            parent: None,
            tool: "chat".into(),
            title: "t".into(),
        };
        let id = ThreadStore::new_id();
        // Nothing exists until the first record.
        assert!(matches!(s.check_live(&id), Err(ThreadError::NotFound(_))));
        let left = s
            .record(
                &id,
                Some(&new),
                &[turn("user", "q1"), turn("assistant", "a1")],
            )
            .unwrap();
        assert_eq!(left, 1);
        s.check_live(&id).unwrap();
        // Two turns do not fit in the one left: neither is written.
        let full = s
            .record(&id, None, &[turn("user", "q2"), turn("assistant", "a2")])
            .unwrap_err();
        assert!(matches!(full, ThreadError::Full { .. }), "{full}");
        assert_eq!(s.resume(&id).unwrap(), (s.history(&id).unwrap(), 1));
        assert_eq!(s.history(&id).unwrap().len(), 2);
        // A child of a missing parent is not created at all.
        let orphan = ThreadStore::new_id();
        let child = NewThread {
            parent: Some("gone".into()),
            ..new
        };
        assert!(matches!(
            s.record(&orphan, Some(&child), &[turn("user", "q")]),
            Err(ThreadError::NotFound(_))
        ));
        assert!(matches!(
            s.check_live(&orphan),
            Err(ThreadError::NotFound(_))
        ));
        // A new thread whose first turns do not fit is not created either.
        let big = ThreadStore::new_id();
        let too_many = [
            turn("user", "1"),
            turn("user", "2"),
            turn("user", "3"),
            turn("user", "4"),
        ];
        let fresh = NewThread {
            parent: None,
            tool: "chat".into(),
            title: "big".into(),
        };
        assert!(matches!(
            s.record(&big, Some(&fresh), &too_many),
            Err(ThreadError::Full { .. })
        ));
        assert!(matches!(s.check_live(&big), Err(ThreadError::NotFound(_))));
    }

    fn threads_expire(place: &dyn Place) {
        let store = place.open(Duration::from_millis(1), 10);
        let s = store.of(LOCAL_PRINCIPAL);
        let id = s.create("chat", "t", None).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert!(matches!(
            s.add_turn(&id, "user", "x", &[], "chat", None),
            Err(ThreadError::Expired { .. })
        ));
        assert!(matches!(s.resume(&id), Err(ThreadError::Expired { .. })));
        assert!(matches!(
            s.create("chat", "child", Some(&id)),
            Err(ThreadError::Expired { .. })
        ));
        assert_eq!(s.list(10, None).unwrap().len(), 0);
        assert_eq!(store.purge_expired().unwrap(), 1);
        assert!(matches!(s.check_live(&id), Err(ThreadError::NotFound(_))));
        // A write refreshes the expiry.
        let store = place.open(Duration::from_millis(1500), 10);
        let s = store.of(LOCAL_PRINCIPAL);
        let id = s.create("chat", "t", None).unwrap();
        std::thread::sleep(Duration::from_millis(1000));
        s.add_turn(&id, "user", "x", &[], "chat", None).unwrap();
        std::thread::sleep(Duration::from_millis(1000));
        s.check_live(&id).unwrap();
    }

    /// Two daemons (two stores) writing to one thread at once: exactly `max` turns land, with
    /// distinct positions; the rest are refused as full.
    fn concurrent_writers_never_exceed_max_turns(place: &dyn Place) {
        let max = 6;
        let stores = [
            Arc::new(place.open(Duration::from_secs(3600), max)),
            Arc::new(place.open(Duration::from_secs(3600), max)),
        ];
        let id = stores[0]
            .of(LOCAL_PRINCIPAL)
            .create("chat", "race", None)
            .unwrap();
        let writers: Vec<_> = (0..8)
            .map(|i| {
                let store = stores[i % 2].clone();
                let id = id.clone();
                std::thread::spawn(move || {
                    let mut ok = 0;
                    let mut full = 0;
                    for j in 0..3 {
                        match store.of(LOCAL_PRINCIPAL).add_turn(
                            &id,
                            "user",
                            &format!("{i}.{j}"),
                            &[],
                            "chat",
                            None,
                        ) {
                            Ok(()) => ok += 1,
                            Err(ThreadError::Full { .. }) => full += 1,
                            Err(e) => panic!("writer {i}: {e}"),
                        }
                    }
                    (ok, full)
                })
            })
            .collect();
        let (ok, full) = writers
            .into_iter()
            .map(|w| w.join().unwrap())
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        assert_eq!((ok, full), (max, 24 - max));
        let (turns, left) = stores[1].of(LOCAL_PRINCIPAL).resume(&id).unwrap();
        assert_eq!((turns.len() as u64, left), (max, 0));
        let mut seen: Vec<_> = turns.iter().map(|t| t.content.clone()).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len() as u64, max);
    }

    /// A thread started on one daemon continues on another sharing the database.
    fn a_thread_continues_on_another_store(place: &dyn Place) {
        let (a, b) = (
            place.open(Duration::from_secs(3600), 10),
            place.open(Duration::from_secs(3600), 10),
        );
        let (a, b) = (a.of("alice"), b.of("alice"));
        let new = NewThread {
            parent: None,
            tool: "chat".into(),
            title: "started on A".into(),
        };
        let id = ThreadStore::new_id();
        let user = NewTurn {
            role: "user",
            content: "hello from A",
            files: &[],
            tool: "chat",
            model: None,
        };
        a.record(&id, Some(&new), &[user]).unwrap();
        let listed = b.list(10, None).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].continuation_id, id);
        assert_eq!(listed[0].title, "started on A");
        let (history, left) = b.resume(&id).unwrap();
        assert_eq!((history.len(), left), (1, 9));
        b.add_turn(&id, "assistant", "hello from B", &[], "chat", Some("m"))
            .unwrap();
        let h = a.history(&id).unwrap();
        assert_eq!(
            h.iter().map(|t| t.content.as_str()).collect::<Vec<_>>(),
            ["hello from A", "hello from B"]
        );
        assert_eq!(a.remaining_turns(&id).unwrap(), 8);
    }

    /// A thread is its owner's alone: another principal can neither list, resume, continue,
    /// check nor branch from it, and is told it does not exist, exactly as for a made-up id.
    fn other_owners_threads_do_not_exist(place: &dyn Place) {
        let store = place.open(Duration::from_secs(3600), 10);
        let (alice, bob) = (store.of("alice"), store.of("bob"));
        let id = alice.create("chat", "alice's question", None).unwrap();
        alice
            .add_turn(&id, "user", "secret plan", &[], "chat", None)
            .unwrap();
        let theirs = |e: Result<_, ThreadError>| match e {
            Err(ThreadError::NotFound(found)) => assert_eq!(found, id),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("bob reached alice's thread"),
        };
        theirs(bob.check_live(&id));
        theirs(bob.resume(&id).map(|_| ()));
        theirs(bob.history(&id).map(|_| ()));
        theirs(bob.remaining_turns(&id).map(|_| ()));
        theirs(bob.add_turn(&id, "user", "hijack", &[], "chat", None));
        theirs(bob.create("chat", "branch", Some(&id)).map(|_| ()));
        assert!(bob.list(10, None).unwrap().is_empty());
        // Bob's own thread is his, and alice's stays untouched.
        let his = bob.create("chat", "bob's", None).unwrap();
        assert_eq!(bob.list(10, None).unwrap()[0].continuation_id, his);
        let listed = alice.list(10, None).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (listed[0].continuation_id.as_str(), listed[0].turns),
            (id.as_str(), 1)
        );
        assert_eq!(alice.history(&id).unwrap()[0].content, "secret plan");
        // Nor can alice reach bob's.
        assert!(matches!(alice.resume(&his), Err(ThreadError::NotFound(_))));
    }

    /// A `state.sqlite` written before owners existed (no schema version, no owner column) is
    /// migrated on open; its threads belong to the local principal.
    #[test]
    fn unversioned_sqlite_threads_become_the_local_users() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        {
            let db = Connection::open(&path).unwrap();
            db.execute_batch(
                "CREATE TABLE threads (id TEXT PRIMARY KEY, parent_id TEXT, tool TEXT NOT NULL,
                     title TEXT NOT NULL, turns INTEGER NOT NULL DEFAULT 0,
                     created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
                     expires_at INTEGER NOT NULL);
                 CREATE TABLE thread_turns (thread_id TEXT NOT NULL REFERENCES threads(id)
                     ON DELETE CASCADE, idx INTEGER NOT NULL, role TEXT NOT NULL,
                     content TEXT NOT NULL, files TEXT NOT NULL, tool TEXT NOT NULL, model TEXT,
                     created_at INTEGER NOT NULL, PRIMARY KEY (thread_id, idx));",
            )
            .unwrap();
            let t = now();
            db.execute(
                "INSERT INTO threads VALUES ('old', NULL, 'chat', 'before owners', 1, ?1, ?1, ?2)",
                params![t, t + 3_600_000],
            )
            .unwrap();
            db.execute(
                "INSERT INTO thread_turns VALUES ('old', 0, 'user', 'hello', '[]', 'chat', NULL, ?1)",
                [t],
            )
            .unwrap();
        }
        let store = ThreadStore::open(&path, Duration::from_secs(3600), 10).unwrap();
        let local = store.of(LOCAL_PRINCIPAL);
        assert_eq!(local.history("old").unwrap()[0].content, "hello");
        assert!(matches!(
            store.of("alice").history("old"),
            Err(ThreadError::NotFound(_))
        ));
        drop(store);
        // Opening again is a no-op; a file from a newer exai is refused with a clear reason.
        ThreadStore::open(&path, Duration::from_secs(3600), 10).unwrap();
        Connection::open(&path)
            .unwrap()
            .execute(
                "UPDATE schema_version SET version = 99 WHERE component = 'threads'",
                [],
            )
            .unwrap();
        let newer = ThreadStore::open(&path, Duration::from_secs(3600), 10)
            .err()
            .unwrap()
            .to_string();
        assert!(newer.contains("schema version 99"), "{newer}");
    }

    /// The lazily opened PostgreSQL store: no I/O until first use, then connected and migrated;
    /// an unreachable database is a clear error that names the server, not its password.
    #[test]
    fn postgres_from_config_opens_on_first_use() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let mut config = exai_core::Config::default().database;
        config.url = exai_core::config::Secret::new(format!(
            "postgres://exai:topsecret@127.0.0.1:{port}/exai"
        ));
        config.connect_retry_secs = 0.3;
        let store = ThreadStore::postgres_from_config(config, Duration::from_secs(60), 5);
        assert_eq!(store.backend_name(), "PostgreSQL");
        let s = store.of(LOCAL_PRINCIPAL);
        let err = s.list(5, None).unwrap_err().to_string();
        assert!(err.contains("cannot connect to PostgreSQL at"), "{err}");
        assert!(
            err.contains("127.0.0.1") && !err.contains("topsecret"),
            "{err}"
        );
        // Asked again at once: the same reason, without waiting again.
        let again = s.list(5, None).unwrap_err().to_string();
        assert!(
            again.contains("cannot connect") && !again.contains("topsecret"),
            "{again}"
        );

        let Some(db) = TestDatabase::create("threadslazy") else {
            return;
        };
        let mut config = exai_core::Config::default().database;
        config.url = exai_core::config::Secret::new(db.url.clone());
        let store = ThreadStore::postgres_from_config(config, Duration::from_secs(60), 5);
        let s = store.of(LOCAL_PRINCIPAL);
        let id = s.create("chat", "lazy", None).unwrap();
        assert_eq!(s.list(5, None).unwrap()[0].continuation_id, id);
    }
}
