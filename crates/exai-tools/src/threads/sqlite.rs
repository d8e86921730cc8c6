//! Threads in SQLite: `state.sqlite` in the data directory, shared with the validation tracking
//! tables. The mutex serialises this process's callers; an immediate transaction serialises
//! writers of other processes on the same file. Times are milliseconds since the epoch, by this
//! machine's clock.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use exai_core::sqlite_schema::SchemaError;
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::{
    Backend, MAX_CHAIN, NewThread, NewTurn, Standing, ThreadError, ThreadSummary, Turn, TurnUsage,
    Writer,
};

/// The SQLite schema this build writes; each step of [`MIGRATIONS`] brings it one up (see
/// `exai_core::sqlite_schema`).
pub(super) const SCHEMA: i64 = MIGRATIONS.len() as i64;

const COMPONENT: &str = "threads";

const MIGRATIONS: &[&str] = &[
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
    // 3: what the model call that answered a turn used.
    "ALTER TABLE thread_turns ADD COLUMN tokens_in INTEGER;
    ALTER TABLE thread_turns ADD COLUMN tokens_out INTEGER;
    ALTER TABLE thread_turns ADD COLUMN cost_usd REAL;",
];

/// Bring the file's thread tables to [`SCHEMA`].
fn migrate(db: &mut Connection) -> Result<(), ThreadError> {
    exai_core::sqlite_schema::migrate(db, COMPONENT, MIGRATIONS).map_err(|e| match e {
        SchemaError::Sqlite(e) => ThreadError::Store(e),
        SchemaError::Newer { found } => ThreadError::NewerSchema { found },
    })
}

pub(super) fn now() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub(super) struct SqliteThreads {
    db: Mutex<Connection>,
}

impl SqliteThreads {
    /// The file at `path` (created when missing), migrated.
    pub(super) fn open(path: &Path) -> Result<SqliteThreads, ThreadError> {
        // Conversations are private: the file (and SQLite's -wal and -shm, which take its mode)
        // is created 0600. A failure here surfaces as SQLite's own when it opens the file.
        let _ = exai_core::private::prepare_sqlite(path);
        let mut db = Connection::open(path)?;
        db.busy_timeout(Duration::from_secs(5))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        db.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&mut db)?;
        Ok(SqliteThreads { db: Mutex::new(db) })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, ThreadError>,
    ) -> Result<T, ThreadError> {
        let mut guard = self.db.lock().map_err(|_| ThreadError::Poisoned)?;
        f(&mut guard)
    }
}

fn standing(db: &Connection, owner: &str, id: &str) -> Result<Option<Standing>, ThreadError> {
    let row: Option<(u64, i64)> = db
        .prepare_cached("SELECT turns, expires_at FROM threads WHERE id = ?1 AND owner = ?2")?
        .query_row([id, owner], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let at = now();
    Ok(row.map(|(turns, expires)| Standing {
        turns,
        overdue_ms: (expires < at).then(|| at - expires),
    }))
}

/// The threads from `id` up its parents, `id` first.
fn chain(db: &Connection, owner: &str, id: &str) -> Result<Vec<String>, ThreadError> {
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
    Ok(chain)
}

impl Backend for SqliteThreads {
    fn name(&self) -> &'static str {
        "SQLite"
    }

    fn standing(&self, owner: &str, id: &str) -> Result<Option<Standing>, ThreadError> {
        self.with(|db| standing(db, owner, id))
    }

    fn write(
        &self,
        write: &mut dyn FnMut(&mut dyn Writer) -> Result<u64, ThreadError>,
    ) -> Result<u64, ThreadError> {
        self.with(|db| {
            let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let mut writer = SqliteWriter { tx: &tx, at: now() };
            let left = write(&mut writer)?;
            tx.commit()?;
            Ok(left)
        })
    }

    fn resume(
        &self,
        owner: &str,
        id: &str,
        judge: &dyn Fn(Option<Standing>) -> Result<u64, ThreadError>,
    ) -> Result<(Vec<Turn>, u64), ThreadError> {
        self.with(|db| {
            let judged = judge(standing(db, owner, id)?)?;
            let mut turns = Vec::new();
            let mut stmt = db.prepare_cached(
                "SELECT role, content, files, tool, model, created_at, tokens_in, tokens_out, cost_usd
                 FROM thread_turns WHERE thread_id = ?1 ORDER BY idx",
            )?;
            for thread in chain(db, owner, id)?.iter().rev() {
                let rows = stmt.query_map([thread], |r| {
                    let files: String = r.get(2)?;
                    Ok(Turn {
                        role: r.get(0)?,
                        content: r.get(1)?,
                        files: serde_json::from_str(&files).unwrap_or_default(),
                        tool: r.get(3)?,
                        model: r.get(4)?,
                        time: r.get(5)?,
                        usage: TurnUsage::from_columns(r.get(6)?, r.get(7)?, r.get(8)?),
                    })
                })?;
                for row in rows {
                    turns.push(row?);
                }
            }
            Ok((turns, judged))
        })
    }

    fn list(
        &self,
        owner: &str,
        limit: i64,
        tool: Option<&str>,
    ) -> Result<Vec<ThreadSummary>, ThreadError> {
        self.with(|db| {
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
        })
    }

    fn purge_expired(&self) -> Result<usize, ThreadError> {
        self.with(|db| Ok(db.execute("DELETE FROM threads WHERE expires_at < ?1", [now()])?))
    }
}

/// An immediate transaction; `at` is its time.
struct SqliteWriter<'a> {
    tx: &'a Transaction<'a>,
    at: i64,
}

impl Writer for SqliteWriter<'_> {
    /// The immediate transaction already keeps every other writer out.
    fn standing(
        &mut self,
        owner: &str,
        id: &str,
        _lock: bool,
    ) -> Result<Option<Standing>, ThreadError> {
        standing(self.tx, owner, id)
    }

    fn create(
        &mut self,
        owner: &str,
        id: &str,
        new: &NewThread,
        title: &str,
        ttl: Duration,
    ) -> Result<(), ThreadError> {
        let t = self.at;
        self.tx
            .prepare_cached(
                "INSERT INTO threads (id, parent_id, tool, title, turns, created_at, updated_at, expires_at, owner)
                 VALUES (?1, ?2, ?3, ?4, 0, ?5, ?5, ?6, ?7)",
            )?
            .execute(params![
                id,
                new.parent,
                new.tool,
                title,
                t,
                t.saturating_add(millis(ttl)),
                owner
            ])?;
        Ok(())
    }

    fn add_turns(
        &mut self,
        id: &str,
        first: u64,
        turns: &[NewTurn<'_>],
    ) -> Result<(), ThreadError> {
        let mut insert = self.tx.prepare_cached(
            "INSERT INTO thread_turns (thread_id, idx, role, content, files, tool, model, created_at,
                 tokens_in, tokens_out, cost_usd)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?;
        for (i, turn) in turns.iter().enumerate() {
            let files = serde_json::to_string(turn.files).unwrap_or_else(|_| "[]".into());
            let (tokens_in, tokens_out, cost) = TurnUsage::columns(turn.usage);
            insert.execute(params![
                id,
                first + i as u64,
                turn.role,
                turn.content,
                files,
                turn.tool,
                turn.model,
                self.at,
                tokens_in,
                tokens_out,
                cost
            ])?;
        }
        Ok(())
    }

    fn touch(&mut self, id: &str, added: u64, ttl: Duration) -> Result<(), ThreadError> {
        let t = self.at;
        self.tx
            .prepare_cached(
                "UPDATE threads SET turns = turns + ?2, updated_at = ?3, expires_at = ?4 WHERE id = ?1",
            )?
            .execute(params![id, added, t, t.saturating_add(millis(ttl))])?;
        Ok(())
    }
}
