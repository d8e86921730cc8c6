//! Conversation threads in SQLite, so a `continuation_id` survives restarts and is shared by every
//! session of a daemon. A thread expires `ttl` after its last turn (each write refreshes it), holds
//! at most `max_turns` turns, and may continue a parent thread (chains up to 20 deep).

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

/// Parents followed when rebuilding a conversation.
pub const MAX_CHAIN: usize = 20;

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
    #[error("conversation store is unavailable (a previous error poisoned it)")]
    Poisoned,
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

/// A thread that [`ThreadStore::record`] creates.
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
    db: Mutex<Connection>,
    ttl: Duration,
    max_turns: u64,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

impl ThreadStore {
    pub fn open(path: &Path, ttl: Duration, max_turns: u64) -> Result<ThreadStore, ThreadError> {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let db = Connection::open(path)?;
        db.busy_timeout(Duration::from_secs(5))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        db.pragma_update(None, "foreign_keys", "ON")?;
        db.execute_batch(
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
        )?;
        Ok(ThreadStore {
            db: Mutex::new(db),
            ttl,
            max_turns,
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, ThreadError>,
    ) -> Result<T, ThreadError> {
        let mut guard = self.db.lock().map_err(|_| ThreadError::Poisoned)?;
        f(&mut guard)
    }

    fn ttl_ms(&self) -> i64 {
        i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX)
    }

    /// A fresh thread id; the thread exists once [`ThreadStore::record`] writes its first turns.
    pub fn new_id() -> String {
        uuid::Uuid::new_v4().to_string()
    }

    /// A new, empty thread; `parent` (if any) must exist and be live.
    pub fn create(
        &self,
        tool: &str,
        title: &str,
        parent: Option<&str>,
    ) -> Result<String, ThreadError> {
        let id = Self::new_id();
        let new = NewThread {
            parent: parent.map(str::to_string),
            tool: tool.to_string(),
            title: title.to_string(),
        };
        self.record(&id, Some(&new), &[])?;
        Ok(id)
    }

    /// Fails unless the thread exists and has not expired.
    pub fn check_live(&self, id: &str) -> Result<(), ThreadError> {
        self.with(|db| self.live(db, id))
    }

    fn live(&self, db: &Connection, id: &str) -> Result<(), ThreadError> {
        let row: Option<i64> = db
            .query_row("SELECT expires_at FROM threads WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?;
        match row {
            None => Err(ThreadError::NotFound(id.to_string())),
            Some(expires) if expires < now() => Err(ThreadError::Expired {
                id: id.to_string(),
                minutes: (now() - expires) / 60_000,
                ttl_hours: self.ttl.as_secs_f64() / 3600.0,
            }),
            Some(_) => Ok(()),
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

    /// Write turns in one transaction: create the thread first when `new` is given (its parent
    /// must be live), else the thread must be live; all turns fit or none is written. Refreshes
    /// the expiry and returns the turns left.
    pub fn record(
        &self,
        id: &str,
        new: Option<&NewThread>,
        turns: &[NewTurn<'_>],
    ) -> Result<u64, ThreadError> {
        let max = self.max_turns;
        let ttl = self.ttl_ms();
        self.with(|db| {
            let tx = db.transaction()?;
            let t = now();
            if let Some(new) = new {
                if let Some(p) = &new.parent {
                    self.live(&tx, p)?;
                }
                let title: String = new.title.chars().take(120).collect();
                tx.execute(
                    "INSERT INTO threads (id, parent_id, tool, title, turns, created_at, updated_at, expires_at)
                     VALUES (?1, ?2, ?3, ?4, 0, ?5, ?5, ?6)",
                    params![id, new.parent, new.tool, title, t, t + ttl],
                )?;
            } else {
                self.live(&tx, id)?;
            }
            let used: u64 =
                tx.query_row("SELECT turns FROM threads WHERE id = ?1", [id], |r| r.get(0))?;
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
            tx.execute(
                "UPDATE threads SET turns = turns + ?2, updated_at = ?3, expires_at = ?4 WHERE id = ?1",
                params![id, adding, t, t + ttl],
            )?;
            tx.commit()?;
            Ok(max.saturating_sub(used + adding))
        })
    }

    /// Turns left before the thread is full.
    pub fn remaining_turns(&self, id: &str) -> Result<u64, ThreadError> {
        self.with(|db| self.remaining(db, id))
    }

    fn remaining(&self, db: &Connection, id: &str) -> Result<u64, ThreadError> {
        let turns: u64 = db.query_row("SELECT turns FROM threads WHERE id = ?1", [id], |r| {
            r.get(0)
        })?;
        Ok(self.max_turns.saturating_sub(turns))
    }

    /// Every turn of the thread and its ancestors, oldest first.
    pub fn history(&self, id: &str) -> Result<Vec<Turn>, ThreadError> {
        self.resume(id).map(|(turns, _)| turns)
    }

    /// What a continuing turn starts from, read under one lock: the thread must be live; its
    /// history (ancestors included, oldest first) and the turns it has left.
    pub fn resume(&self, id: &str) -> Result<(Vec<Turn>, u64), ThreadError> {
        self.with(|db| {
            self.live(db, id)?;
            let remaining = self.remaining(db, id)?;
            let mut chain = vec![id.to_string()];
            let mut current = id.to_string();
            while chain.len() < MAX_CHAIN {
                let parent: Option<String> = db
                    .query_row(
                        "SELECT parent_id FROM threads WHERE id = ?1",
                        [&current],
                        |r| r.get(0),
                    )
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
        })
    }

    /// Live threads, most recently used first.
    pub fn list(
        &self,
        limit: usize,
        tool: Option<&str>,
    ) -> Result<Vec<ThreadSummary>, ThreadError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(|db| {
            let mut stmt = db.prepare(
                "SELECT id, parent_id, tool, title, turns, created_at, updated_at, expires_at FROM threads
                 WHERE expires_at >= ?1 AND (?2 IS NULL OR tool = ?2)
                 ORDER BY updated_at DESC LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![now(), tool, limit], |r| {
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

    /// Delete expired threads; returns how many.
    pub fn purge_expired(&self) -> Result<usize, ThreadError> {
        self.with(|db| Ok(db.execute("DELETE FROM threads WHERE expires_at < ?1", [now()])?))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn store(dir: &Path, ttl: Duration, max: u64) -> ThreadStore {
        ThreadStore::open(&dir.join("state.sqlite"), ttl, max).unwrap()
    }

    #[test]
    fn threads_persist_chain_and_fill_up() {
        let dir = tempfile::tempdir().unwrap();
        let id = {
            let s = store(dir.path(), Duration::from_secs(3600), 3);
            let id = s.create("chat", "first question", None).unwrap();
            s.add_turn(&id, "user", "q1", &["a.rs".into()], "chat", None)
                .unwrap();
            s.add_turn(&id, "assistant", "a1", &[], "chat", Some("glm-4.6"))
                .unwrap();
            id
        };
        // A new store on the same file: a restart.
        let s = store(dir.path(), Duration::from_secs(3600), 3);
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
        let listed = s.list(10, None).unwrap();
        assert_eq!(listed[0].continuation_id, child);
        assert_eq!(s.list(10, Some("codereview")).unwrap().len(), 0);
        assert!(matches!(s.history("nope"), Err(ThreadError::NotFound(_))));
    }

    #[test]
    fn record_writes_all_turns_or_none() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), Duration::from_secs(3600), 3);
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
    }

    #[test]
    fn threads_expire() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), Duration::from_millis(1), 10);
        let id = s.create("chat", "t", None).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert!(matches!(
            s.add_turn(&id, "user", "x", &[], "chat", None),
            Err(ThreadError::Expired { .. })
        ));
        assert_eq!(s.list(10, None).unwrap().len(), 0);
        assert_eq!(s.purge_expired().unwrap(), 1);
    }
}
