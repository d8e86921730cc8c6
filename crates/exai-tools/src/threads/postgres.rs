//! Threads in PostgreSQL, shared by every daemon on the database (tables in
//! `exai_pg::schema::THREADS`). Times are the server's (`now()`, the transaction's start), so
//! daemons with skewed clocks agree on expiry.

use std::sync::Arc;
use std::time::Duration;

use exai_pg::postgres::{self, GenericClient, IsolationLevel};
use exai_pg::{LazyPool, Pool};

use super::{
    Backend, MAX_CHAIN, NewThread, NewTurn, Standing, ThreadError, ThreadSummary, Turn, TurnUsage,
    Writer, to_i64, to_u64,
};

type Time = chrono::DateTime<chrono::Utc>;

fn time_text(t: Time) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub(super) struct PgThreads {
    pool: LazyPool,
}

impl PgThreads {
    /// On `pool`, its tables created or migrated now (blocking).
    pub(super) fn open(pool: Arc<Pool>) -> Result<PgThreads, ThreadError> {
        let mut conn = pool.get()?;
        exai_pg::schema::THREADS.migrate(&mut conn, pool.target())?;
        drop(conn);
        Ok(PgThreads {
            pool: LazyPool::ready(pool),
        })
    }

    /// On the pool of `database.*`, opened and migrated on first use.
    pub(super) fn from_config(config: exai_core::config::DatabaseConfig) -> PgThreads {
        PgThreads {
            pool: LazyPool::from_config(config, &exai_pg::schema::THREADS),
        }
    }

    fn conn(&self) -> Result<exai_pg::Conn, ThreadError> {
        let pool = self.pool.pool().map_err(|e| {
            let fresh = matches!(e, exai_pg::LazyError::Pg(_));
            let e = ThreadError::from(e);
            if fresh {
                tracing::warn!("conversation threads in PostgreSQL are unavailable: {e}");
            }
            e
        })?;
        Ok(pool.get()?)
    }
}

/// The thread's standing; `lock` takes its row for the rest of the transaction.
fn standing(
    db: &mut impl GenericClient,
    owner: &str,
    id: &str,
    lock: bool,
) -> Result<Option<Standing>, ThreadError> {
    let sql = if lock {
        "SELECT turns, expires_at, now() FROM threads WHERE id = $1 AND owner = $2 FOR UPDATE"
    } else {
        "SELECT turns, expires_at, now() FROM threads WHERE id = $1 AND owner = $2"
    };
    Ok(db.query_opt(sql, &[&id, &owner])?.map(|row| {
        let (turns, expires, at): (i64, Time, Time) = (row.get(0), row.get(1), row.get(2));
        Standing {
            turns: to_u64(turns),
            overdue_ms: (expires < at).then(|| (at - expires).num_milliseconds()),
        }
    }))
}

impl Backend for PgThreads {
    fn name(&self) -> &'static str {
        "PostgreSQL"
    }

    fn shared(&self) -> bool {
        true
    }

    fn standing(&self, owner: &str, id: &str) -> Result<Option<Standing>, ThreadError> {
        standing(&mut *self.conn()?, owner, id, false)
    }

    fn write(
        &self,
        write: &mut dyn FnMut(&mut dyn Writer) -> Result<u64, ThreadError>,
    ) -> Result<u64, ThreadError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        let left = write(&mut PgWriter { tx: &mut tx })?;
        tx.commit()?;
        Ok(left)
    }

    fn resume(
        &self,
        owner: &str,
        id: &str,
        judge: &dyn Fn(Option<Standing>) -> Result<u64, ThreadError>,
    ) -> Result<(Vec<Turn>, u64), ThreadError> {
        let mut conn = self.conn()?;
        // One snapshot for the check, the count and the turns of the whole chain.
        let mut tx = conn
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?;
        let judged = judge(standing(&mut tx, owner, id, false)?)?;
        let rows = tx.query(
            &format!(
                "WITH RECURSIVE chain (id, parent_id, depth, seen) AS (
                     SELECT id, parent_id, 0, ARRAY[id] FROM threads WHERE id = $1 AND owner = $2
                     UNION ALL
                     SELECT t.id, t.parent_id, c.depth + 1, c.seen || t.id
                     FROM chain c JOIN threads t ON t.id = c.parent_id
                     WHERE t.owner = $2 AND c.depth + 1 < {MAX_CHAIN} AND NOT t.id = ANY (c.seen)
                 )
                 SELECT tt.role, tt.content, tt.files, tt.tool, tt.model, tt.created_at,
                        tt.tokens_in, tt.tokens_out, tt.cost_usd
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
                    usage: TurnUsage::from_columns(r.get(6), r.get(7), r.get(8)),
                }
            })
            .collect();
        Ok((turns, judged))
    }

    fn list(
        &self,
        owner: &str,
        limit: i64,
        tool: Option<&str>,
    ) -> Result<Vec<ThreadSummary>, ThreadError> {
        let rows = self.conn()?.query(
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

    fn purge_expired(&self) -> Result<usize, ThreadError> {
        let n = self
            .conn()?
            .execute("DELETE FROM threads WHERE expires_at < now()", &[])?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}

struct PgWriter<'a, 'c> {
    tx: &'a mut postgres::Transaction<'c>,
}

impl Writer for PgWriter<'_, '_> {
    fn standing(
        &mut self,
        owner: &str,
        id: &str,
        lock: bool,
    ) -> Result<Option<Standing>, ThreadError> {
        standing(self.tx, owner, id, lock)
    }

    fn create(
        &mut self,
        owner: &str,
        id: &str,
        new: &NewThread,
        title: &str,
        ttl: Duration,
    ) -> Result<(), ThreadError> {
        self.tx.execute(
            "INSERT INTO threads (id, parent_id, tool, title, turns, created_at, updated_at, expires_at, owner)
             VALUES ($1, $2, $3, $4, 0, now(), now(), now() + make_interval(secs => $5), $6)",
            &[&id, &new.parent, &new.tool, &title, &ttl.as_secs_f64(), &owner],
        )?;
        Ok(())
    }

    fn add_turns(
        &mut self,
        id: &str,
        first: u64,
        turns: &[NewTurn<'_>],
    ) -> Result<(), ThreadError> {
        if turns.is_empty() {
            return Ok(());
        }
        let insert = self.tx.prepare(
            "INSERT INTO thread_turns (thread_id, idx, role, content, files, tool, model, created_at,
                 tokens_in, tokens_out, cost_usd)
             VALUES ($1, $2, $3, $4, $5, $6, $7, now(), $8, $9, $10)",
        )?;
        for (i, turn) in turns.iter().enumerate() {
            let idx = to_i64(first + i as u64);
            let files = postgres::types::Json(turn.files);
            let (tokens_in, tokens_out, cost) = TurnUsage::columns(turn.usage);
            self.tx.execute(
                &insert,
                &[
                    &id,
                    &idx,
                    &turn.role,
                    &turn.content,
                    &files,
                    &turn.tool,
                    &turn.model,
                    &tokens_in,
                    &tokens_out,
                    &cost,
                ],
            )?;
        }
        Ok(())
    }

    fn touch(&mut self, id: &str, added: u64, ttl: Duration) -> Result<(), ThreadError> {
        self.tx.execute(
            "UPDATE threads SET turns = turns + $2, updated_at = now(),
                 expires_at = now() + make_interval(secs => $3)
             WHERE id = $1",
            &[&id, &to_i64(added), &ttl.as_secs_f64()],
        )?;
        Ok(())
    }
}
