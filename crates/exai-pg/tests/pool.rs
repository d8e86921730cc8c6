//! The pool and migrations against a real PostgreSQL (see exai_pg::testing).

use std::time::Duration;

use exai_pg::testing::TestDatabase;
use exai_pg::{Pool, PoolOptions};

#[test]
fn pool_migrations_and_vector() {
    let Some(db) = TestDatabase::create("pool") else {
        return;
    };
    let pool = Pool::open(
        &db.url,
        PoolOptions {
            max_size: 2,
            acquire_timeout: Duration::from_millis(300),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(!pool.target().contains("***") || db.url.contains(':'));
    let mut a = pool.get().unwrap();
    let version = exai_pg::ensure_vector(&mut a, pool.target()).unwrap();
    assert!(version.starts_with("0."), "{version}");
    // Migrations: each step once, version recorded, newer schema refused.
    let steps = ["CREATE TABLE t1 (x INT)", "ALTER TABLE t1 ADD COLUMN y INT"];
    assert_eq!(exai_pg::migrate(&mut a, "demo", &steps[..1]).unwrap(), 0);
    assert_eq!(exai_pg::migrate(&mut a, "demo", &steps).unwrap(), 1);
    assert_eq!(exai_pg::migrate(&mut a, "demo", &steps).unwrap(), 2);
    assert_eq!(exai_pg::schema_version(&mut *a, "demo").unwrap(), 2);
    let err = exai_pg::migrate(&mut a, "demo", &steps[..1]).unwrap_err();
    assert!(
        err.to_string().contains("newer than this exai knows"),
        "{err}"
    );
    // statement_timeout applies to every connection.
    let t: String = a.query_one("SHOW statement_timeout", &[]).unwrap().get(0);
    assert_eq!(t, "30s");
    // Two connections at most: the third waits, then says so.
    let _b = pool.get().unwrap();
    let err = pool.get().err().unwrap().to_string();
    assert!(
        err.contains("all 2 connections") && err.contains("busy"),
        "{err}"
    );
    drop(a);
    let mut c = pool.get().unwrap();
    assert_eq!(c.query_one("SELECT 1", &[]).unwrap().get::<_, i32>(0), 1);
    // A connection the server kills is replaced, not handed out again.
    let pid: i32 = c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    drop(c);
    let mut killer = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    killer
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .unwrap();
    let mut d = pool.get().unwrap();
    let first = d.query_one("SELECT pg_backend_pid()", &[]);
    // The stale connection fails once at most and is then dropped by the pool.
    let mut d = match first {
        Ok(_) => d,
        Err(e) => {
            assert!(exai_pg::PgError::from(e).is_connection());
            drop(d);
            pool.get().unwrap()
        }
    };
    let pid2: i32 = d.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    assert_ne!(pid, pid2);
}

#[test]
fn unreachable_server_is_a_clear_error_after_retries() {
    // A port nothing listens on: refused at once, retried with backoff for start_retry.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let url = format!("postgres://exai:topsecret@127.0.0.1:{port}/exai");
    let started = std::time::Instant::now();
    let err = Pool::open(
        &url,
        PoolOptions {
            start_retry: Duration::from_millis(900),
            ..Default::default()
        },
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("cannot connect to PostgreSQL at postgres://exai:***@127.0.0.1"),
        "{msg}"
    );
    assert!(!msg.contains("topsecret"), "{msg}");
    assert!(msg.contains("attempt(s)"), "{msg}");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "retried with backoff"
    );
}
