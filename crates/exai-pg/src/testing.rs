//! Throwaway databases for tests, on the server `scripts/test.sh` starts (from the PyPI package
//! pgserver) and names in `EXAI_TEST_DATABASE_URL`. Without that variable a test is skipped,
//! unless `EXAI_REQUIRE_POSTGRES=1` (which the test command sets) makes that a failure.
//!
//! [`both_backends!`](crate::both_backends) runs one store's behaviour tests on SQLite and on
//! PostgreSQL, so every store proves the same contract on both the same way.

use std::sync::atomic::{AtomicU32, Ordering};

/// A database that exists while this value lives.
pub struct TestDatabase {
    admin_url: String,
    name: String,
    /// The URL of the fresh database.
    pub url: String,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The test server's URL, `None` when no server is configured and none is required.
///
/// # Panics
/// When `EXAI_REQUIRE_POSTGRES=1` and `EXAI_TEST_DATABASE_URL` is unset.
#[allow(clippy::panic)]
pub fn server_url() -> Option<String> {
    match std::env::var("EXAI_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("EXAI_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") => panic!(
            "EXAI_REQUIRE_POSTGRES=1 but EXAI_TEST_DATABASE_URL is unset: start one with scripts/postgres.sh start DIR"
        ),
        _ => {
            eprintln!("skipped: no PostgreSQL (set EXAI_TEST_DATABASE_URL; scripts/postgres.sh)");
            None
        }
    }
}

/// Replace the database name at the end of a `postgres://…/name[?query]` URL.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[scheme_end..]
        .find('/')
        .map(|i| scheme_end + i)
        .unwrap_or(base.len());
    let mut out = format!("{}/{name}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// One test per behaviour and backend: `mod sqlite` and `mod postgres`, each with a `#[test]` per
/// name that calls the suite's function of that name with a place to open stores in. The SQLite
/// place is built from a fresh temporary directory (`tempfile::TempDir`, a dev-dependency of the
/// caller), the PostgreSQL one from a fresh [`TestDatabase`]; without a test server the
/// PostgreSQL tests are skipped (see [`server_url`]).
///
/// ```ignore
/// exai_pg::both_backends!(sqlite: SqliteFile, postgres: PgDatabase; records_runs, refuses_newer);
/// ```
#[macro_export]
macro_rules! both_backends {
    (sqlite: $sqlite:path, postgres: $postgres:path; $($name:ident),* $(,)?) => {
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $name() {
                    super::$name(&$sqlite(tempfile::tempdir().unwrap()));
                }
            )*
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $name() {
                    if let Some(db) = $crate::testing::TestDatabase::create(stringify!($name)) {
                        super::$name(&$postgres(db));
                    }
                }
            )*
        }
    };
}

impl TestDatabase {
    /// A new, empty database (pgvector already in it when the server's template has it).
    /// `None` when no test server is configured (see [`server_url`]).
    ///
    /// # Panics
    /// When the server cannot create the database.
    #[allow(clippy::panic)]
    pub fn create(label: &str) -> Option<TestDatabase> {
        let admin_url = server_url()?;
        let name = format!(
            "exai_t_{}_{}_{}_{}",
            label
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .collect::<String>(),
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        )
        .to_lowercase();
        let mut admin = match postgres::Client::connect(&admin_url, postgres::NoTls) {
            Ok(c) => c,
            Err(e) => panic!("cannot reach the test PostgreSQL at {admin_url}: {e}"),
        };
        if let Err(e) = admin.batch_execute(&format!("CREATE DATABASE {name}")) {
            panic!("CREATE DATABASE {name}: {e}");
        }
        let url = with_database(&admin_url, &name);
        Some(TestDatabase {
            admin_url,
            name,
            url,
        })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Ok(mut admin) = postgres::Client::connect(&self.admin_url, postgres::NoTls) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_name_is_replaced() {
        assert_eq!(
            super::with_database("postgres://u@h:5/postgres?sslmode=disable", "x"),
            "postgres://u@h:5/x?sslmode=disable"
        );
        assert_eq!(
            super::with_database("postgres://u@h:5", "x"),
            "postgres://u@h:5/x"
        );
    }
}
