//! Versioned migrations. Each component (kb, threads, tracking, jobs: see [`crate::schema`])
//! keeps its own version in `exai_schema`; a transaction-scoped advisory lock makes daemons that
//! start together apply each step once.

use postgres::GenericClient;

use crate::error::{PgError, Result};

const BOOKKEEPING: &str = "CREATE TABLE IF NOT EXISTS exai_schema (
    component TEXT PRIMARY KEY,
    version BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
)";

/// The version `component` is at (0: never migrated).
pub fn schema_version(client: &mut impl GenericClient, component: &str) -> Result<i64> {
    let exists: bool = client
        .query_one("SELECT to_regclass('exai_schema') IS NOT NULL", &[])?
        .get(0);
    if !exists {
        return Ok(0);
    }
    Ok(client
        .query_opt(
            "SELECT version FROM exai_schema WHERE component = $1",
            &[&component],
        )?
        .map(|r| r.get::<_, i64>(0))
        .unwrap_or(0))
}

/// Bring `component` to `steps.len()`: step `i` (1-based) runs when the stored version is
/// below `i`, all in one transaction. Returns the version before.
pub fn migrate(client: &mut postgres::Client, component: &str, steps: &[&str]) -> Result<i64> {
    let known = steps.len() as i64;
    // Fast path: already current, no lock taken.
    let before = schema_version(client, component)?;
    if before == known {
        return Ok(before);
    }
    if before > known {
        return Err(PgError::SchemaTooNew {
            component: component.into(),
            found: before,
            known,
        });
    }
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock(hashtext('exai_schema'))", &[])?;
    tx.batch_execute(BOOKKEEPING)?;
    let current = schema_version(&mut tx, component)?;
    if current > known {
        return Err(PgError::SchemaTooNew {
            component: component.into(),
            found: current,
            known,
        });
    }
    for (i, step) in steps.iter().enumerate().skip(current as usize) {
        tx.batch_execute(step)?;
        tracing::info!(component, version = i + 1, "PostgreSQL schema migrated");
    }
    tx.execute(
        "INSERT INTO exai_schema(component, version) VALUES ($1, $2)
         ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version, updated_at = now()",
        &[&component, &known],
    )?;
    tx.commit()?;
    Ok(current)
}

/// Make sure pgvector is installed in this database, creating it when the role may; else an
/// error that says how to enable it.
pub fn ensure_vector(client: &mut postgres::Client, target: &str) -> Result<String> {
    let installed = |c: &mut postgres::Client| -> Result<Option<String>> {
        Ok(c.query_opt(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'",
            &[],
        )?
        .map(|r| r.get(0)))
    };
    if let Some(v) = installed(client)? {
        return Ok(v);
    }
    let available: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector')",
            &[],
        )?
        .get(0);
    if !available {
        return Err(PgError::NoVector {
            target: target.into(),
            reason: "the server does not have pgvector installed; install it (https://github.com/pgvector/pgvector#installation; Supabase, Neon, RDS and Cloud SQL ship it) and run `CREATE EXTENSION vector;`".into(),
        });
    }
    if let Err(e) = client.batch_execute("CREATE EXTENSION IF NOT EXISTS vector") {
        return Err(PgError::NoVector {
            target: target.into(),
            reason: format!(
                "`CREATE EXTENSION vector` failed ({}); ask the database owner to run it once (Supabase: Database → Extensions → vector)",
                crate::error::describe(&e)
            ),
        });
    }
    installed(client)?.ok_or_else(|| PgError::NoVector {
        target: target.into(),
        reason: "CREATE EXTENSION reported success, but the extension is not listed".into(),
    })
}
