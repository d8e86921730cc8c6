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
//! The rules live here, once: who may see a thread, when it has expired, that a write fits in
//! the turns left or writes nothing, how long titles are. The two backends ([`Backend`], one file
//! each) only read and write rows: SQLite (`state.sqlite` in the data directory; a mutex and an
//! immediate transaction serialise writers) and PostgreSQL (a writer locks the thread's row with
//! `SELECT … FOR UPDATE`, so two daemons writing to one thread at once cannot exceed its turns;
//! a reader sees one snapshot). Both are blocking: call them off the async workers.

mod postgres;
mod sqlite;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use exai_pg::{LazyError, PgError, Pool};
use serde::Serialize;

use sqlite::SCHEMA as SQLITE_SCHEMA;

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

exai_pg::from_postgres!(ThreadError);

impl From<LazyError> for ThreadError {
    fn from(e: LazyError) -> Self {
        match e {
            LazyError::Pg(e) => ThreadError::Postgres(e),
            LazyError::Recently(reason) => ThreadError::Unavailable(reason),
            LazyError::Poisoned => ThreadError::Poisoned,
        }
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
    /// What the model call that wrote an assistant turn used; `None` for a user's turn, a turn
    /// no single call answered, and turns written before exai recorded it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<TurnUsage>,
}

/// The tokens and cost of the model call that answered a turn.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TurnUsage {
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// USD, from the model registry's prices.
    pub cost_usd: f64,
}

impl TurnUsage {
    /// The columns it is stored in, all `NULL` for a turn without usage.
    fn columns(usage: Option<TurnUsage>) -> (Option<i64>, Option<i64>, Option<f64>) {
        match usage {
            Some(u) => (
                Some(to_i64(u.tokens_in)),
                Some(to_i64(u.tokens_out)),
                Some(u.cost_usd),
            ),
            None => (None, None, None),
        }
    }

    /// Read back from its columns: present when the token counts are.
    fn from_columns(
        tokens_in: Option<i64>,
        tokens_out: Option<i64>,
        cost: Option<f64>,
    ) -> Option<TurnUsage> {
        Some(TurnUsage {
            tokens_in: to_u64(tokens_in?),
            tokens_out: to_u64(tokens_out?),
            cost_usd: cost.unwrap_or(0.0),
        })
    }
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
    pub usage: Option<TurnUsage>,
}

/// What a backend knows of a thread, for the rules above it to judge.
#[derive(Debug, Clone, Copy)]
struct Standing {
    /// Turns written.
    turns: u64,
    /// How long ago it expired, by the backend's clock, in milliseconds; `None` while live.
    overdue_ms: Option<i64>,
}

/// Where threads are kept. A backend reads and writes rows; the rules are [`ThreadStore`]'s.
trait Backend: Send + Sync {
    /// `SQLite` or `PostgreSQL`, for logs and errors.
    fn name(&self) -> &'static str;

    /// Whether other daemons read these threads (a shared server): then a turn is written before
    /// its answer goes out, since the next call of the conversation may reach another daemon.
    fn shared(&self) -> bool {
        false
    }

    /// `owner`'s thread `id`, if it exists (expired or not).
    fn standing(&self, owner: &str, id: &str) -> Result<Option<Standing>, ThreadError>;

    /// Run `write` in one transaction, committed when it returns `Ok`, else rolled back.
    fn write(
        &self,
        write: &mut dyn FnMut(&mut dyn Writer) -> Result<u64, ThreadError>,
    ) -> Result<u64, ThreadError>;

    /// Under one lock or in one snapshot: `judge` the thread's standing (an error ends the
    /// read), then the turns of the thread and its ancestors (at most [`MAX_CHAIN`] threads,
    /// all `owner`'s), oldest first. Returns the turns and what `judge` returned.
    fn resume(
        &self,
        owner: &str,
        id: &str,
        judge: &dyn Fn(Option<Standing>) -> Result<u64, ThreadError>,
    ) -> Result<(Vec<Turn>, u64), ThreadError>;

    /// `owner`'s live threads (of `tool`, if given), most recently used first.
    fn list(
        &self,
        owner: &str,
        limit: i64,
        tool: Option<&str>,
    ) -> Result<Vec<ThreadSummary>, ThreadError>;

    /// Delete expired threads and their turns; how many.
    fn purge_expired(&self) -> Result<usize, ThreadError>;
}

/// One write transaction of a [`Backend`]. Times are the backend's: the transaction's start.
trait Writer {
    /// `owner`'s thread `id`; `lock` keeps other writers of it waiting until this transaction
    /// ends.
    fn standing(
        &mut self,
        owner: &str,
        id: &str,
        lock: bool,
    ) -> Result<Option<Standing>, ThreadError>;

    /// A new thread of `owner` with no turns, expiring `ttl` from now.
    fn create(
        &mut self,
        owner: &str,
        id: &str,
        new: &NewThread,
        title: &str,
        ttl: Duration,
    ) -> Result<(), ThreadError>;

    /// `turns`, at positions from `first` on.
    fn add_turns(&mut self, id: &str, first: u64, turns: &[NewTurn<'_>])
    -> Result<(), ThreadError>;

    /// Count `added` more turns and refresh the expiry to `ttl` from now.
    fn touch(&mut self, id: &str, added: u64, ttl: Duration) -> Result<(), ThreadError>;
}

pub struct ThreadStore {
    backend: Box<dyn Backend>,
    ttl: Duration,
    max_turns: u64,
}

/// Titles are cut to this many characters.
const TITLE_CHARS: usize = 120;

impl ThreadStore {
    /// The SQLite store in the file at `path` (created when missing).
    pub fn open(path: &Path, ttl: Duration, max_turns: u64) -> Result<ThreadStore, ThreadError> {
        Ok(ThreadStore::on(
            sqlite::SqliteThreads::open(path)?,
            ttl,
            max_turns,
        ))
    }

    /// The PostgreSQL store on `pool`, its tables created or migrated now (blocking).
    pub fn open_postgres(
        pool: Arc<Pool>,
        ttl: Duration,
        max_turns: u64,
    ) -> Result<ThreadStore, ThreadError> {
        let backend = postgres::PgThreads::open(pool)?;
        Ok(ThreadStore::on(backend, ttl, max_turns))
    }

    /// The PostgreSQL store of `database.*`, connected and migrated on first use rather than
    /// now: constructing it does no I/O (so it may happen on an async worker), and a database
    /// that is down at start is tried again by later calls, which fail with the reason meanwhile.
    pub fn postgres_from_config(
        config: exai_core::config::DatabaseConfig,
        ttl: Duration,
        max_turns: u64,
    ) -> ThreadStore {
        ThreadStore::on(postgres::PgThreads::from_config(config), ttl, max_turns)
    }

    fn on(backend: impl Backend + 'static, ttl: Duration, max_turns: u64) -> ThreadStore {
        ThreadStore {
            backend: Box::new(backend),
            ttl,
            max_turns,
        }
    }

    /// Which database holds the threads, for logs and errors.
    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// Whether other daemons read these threads, so a turn must be stored before it is answered.
    pub fn shared(&self) -> bool {
        self.backend.shared()
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
        self.backend.purge_expired()
    }

    /// The turns a thread has written, if it exists and is live.
    fn live(&self, id: &str, standing: Option<Standing>) -> Result<u64, ThreadError> {
        match standing {
            None => Err(ThreadError::NotFound(id.to_string())),
            Some(Standing {
                overdue_ms: Some(overdue),
                ..
            }) => Err(ThreadError::Expired {
                id: id.to_string(),
                minutes: overdue / 60_000,
                ttl_hours: self.ttl.as_secs_f64() / 3600.0,
            }),
            Some(Standing { turns, .. }) => Ok(turns),
        }
    }

    /// The write of [`ThreadsOf::record`], inside the backend's transaction.
    fn write(
        &self,
        tx: &mut dyn Writer,
        owner: &str,
        id: &str,
        new: Option<&NewThread>,
        turns: &[NewTurn<'_>],
    ) -> Result<u64, ThreadError> {
        let used = match new {
            Some(new) => {
                if let Some(parent) = &new.parent {
                    self.live(parent, tx.standing(owner, parent, false)?)?;
                }
                let title: String = new.title.chars().take(TITLE_CHARS).collect();
                tx.create(owner, id, new, &title, self.ttl)?;
                0
            }
            // Locked: a second writer (any daemon) waits here, then counts our turns.
            None => self.live(id, tx.standing(owner, id, true)?)?,
        };
        let adding = turns.len() as u64;
        if used + adding > self.max_turns {
            return Err(ThreadError::Full {
                id: id.to_string(),
                max: self.max_turns,
            });
        }
        tx.add_turns(id, used, turns)?;
        tx.touch(id, adding, self.ttl)?;
        Ok(self.max_turns.saturating_sub(used + adding))
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
        let standing = self.store.backend.standing(self.owner, id)?;
        self.store.live(id, standing).map(|_| ())
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
            usage: None,
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
        store
            .backend
            .write(&mut |tx| store.write(tx, owner, id, new, turns))
    }

    /// Turns left before the thread is full (expired or not).
    pub fn remaining_turns(&self, id: &str) -> Result<u64, ThreadError> {
        let standing = self.store.backend.standing(self.owner, id)?;
        let turns = standing
            .ok_or_else(|| ThreadError::NotFound(id.to_string()))?
            .turns;
        Ok(self.store.max_turns.saturating_sub(turns))
    }

    /// Every turn of the thread and its ancestors, oldest first.
    pub fn history(&self, id: &str) -> Result<Vec<Turn>, ThreadError> {
        self.resume(id).map(|(turns, _)| turns)
    }

    /// What a continuing turn starts from, read consistently (under one lock, or in one
    /// snapshot): the thread must be live and this owner's; its history (ancestors included,
    /// oldest first) and the turns it has left.
    pub fn resume(&self, id: &str) -> Result<(Vec<Turn>, u64), ThreadError> {
        let store = self.store;
        let (turns, used) = store
            .backend
            .resume(self.owner, id, &|standing| store.live(id, standing))?;
        Ok((turns, store.max_turns.saturating_sub(used)))
    }

    /// This owner's live threads, most recently used first.
    pub fn list(
        &self,
        limit: usize,
        tool: Option<&str>,
    ) -> Result<Vec<ThreadSummary>, ThreadError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.store.backend.list(self.owner, limit, tool)
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}
