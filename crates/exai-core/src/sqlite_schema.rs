//! Versioned migrations of the tables several components keep in one SQLite file
//! (`state.sqlite`: conversation threads, validation runs). Each component's version is a row of
//! `schema_version`, not `PRAGMA user_version`, which the file's other users may want; the steps
//! run in one immediate transaction, so two processes opening the file at once migrate it once.

use rusqlite::{Connection, OptionalExtension, params};

/// Why the tables could not be brought to this build's schema.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// A newer exai migrated them further than this build knows.
    #[error("schema version {found} is newer than this exai knows")]
    Newer { found: i64 },
}

/// The version `component` is at (0: never migrated).
pub fn version(db: &Connection, component: &str) -> Result<i64, rusqlite::Error> {
    let exists: bool = db.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version')",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(0);
    }
    Ok(db
        .query_row(
            "SELECT version FROM schema_version WHERE component = ?1",
            [component],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0))
}

/// Bring `component` to `steps.len()`: step `i` (1-based) runs when the stored version is
/// below `i`.
pub fn migrate(db: &mut Connection, component: &str, steps: &[&str]) -> Result<(), SchemaError> {
    db.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (
            component TEXT PRIMARY KEY,
            version INTEGER NOT NULL
        );",
    )?;
    let known = i64::try_from(steps.len()).unwrap_or(i64::MAX);
    let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let found = version(&tx, component)?;
    if found > known {
        return Err(SchemaError::Newer { found });
    }
    for (step, sql) in (1..).zip(steps) {
        if step > found {
            tx.execute_batch(sql)?;
        }
    }
    tx.execute(
        "INSERT INTO schema_version (component, version) VALUES (?1, ?2)
         ON CONFLICT(component) DO UPDATE SET version = excluded.version",
        params![component, known],
    )?;
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn steps_run_once_per_component_and_a_newer_schema_is_refused() {
        let mut db = Connection::open_in_memory().unwrap();
        assert_eq!(version(&db, "a").unwrap(), 0);
        migrate(&mut db, "a", &["CREATE TABLE a1 (x)"]).unwrap();
        migrate(
            &mut db,
            "b",
            &["CREATE TABLE b1 (x)", "CREATE TABLE b2 (x)"],
        )
        .unwrap();
        // The first step is not run again (it would fail: the table exists).
        migrate(
            &mut db,
            "a",
            &["CREATE TABLE a1 (x)", "CREATE TABLE a2 (x)"],
        )
        .unwrap();
        assert_eq!(
            (version(&db, "a").unwrap(), version(&db, "b").unwrap()),
            (2, 2)
        );
        let newer = migrate(&mut db, "b", &["CREATE TABLE b1 (x)"]).unwrap_err();
        assert!(matches!(newer, SchemaError::Newer { found: 2 }), "{newer}");
    }
}
