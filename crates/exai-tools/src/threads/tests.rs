//! One suite, two backends: every behaviour test runs against SQLite and against PostgreSQL
//! (a fresh database on `EXAI_TEST_DATABASE_URL`; skipped when that is unset).

#![allow(clippy::unwrap_used)]
use super::sqlite::now;
use super::*;
use exai_pg::PoolOptions;
use exai_pg::testing::TestDatabase;
use rusqlite::{Connection, params};

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

exai_pg::both_backends!(
    sqlite: SqliteFile,
    postgres: PgDatabase;
    threads_persist_chain_and_fill_up,
    record_writes_all_turns_or_none,
    parent_chains_stop_at_max_chain,
    threads_expire,
    concurrent_writers_never_exceed_max_turns,
    a_thread_continues_on_another_store,
    other_owners_threads_do_not_exist,
    a_turns_usage_is_kept,
);

/// The tokens and cost of the call that answered a turn come back with it, after a restart;
/// a turn written without them has none.
fn a_turns_usage_is_kept(place: &dyn Place) {
    let id = ThreadStore::new_id();
    let new = NewThread {
        parent: None,
        tool: "chat".into(),
        title: "priced".into(),
    };
    let usage = TurnUsage {
        tokens_in: 1200,
        tokens_out: 34,
        cost_usd: 0.0125,
    };
    let turns = [
        NewTurn {
            role: "user",
            content: "q",
            files: &[],
            tool: "chat",
            model: None,
            usage: None,
        },
        NewTurn {
            role: "assistant",
            content: "a",
            files: &[],
            tool: "chat",
            model: Some("glm-4.6"),
            usage: Some(usage),
        },
    ];
    place
        .open(Duration::from_secs(3600), 10)
        .of(LOCAL_PRINCIPAL)
        .record(&id, Some(&new), &turns)
        .unwrap();
    let store = place.open(Duration::from_secs(3600), 10);
    let history = store.of(LOCAL_PRINCIPAL).history(&id).unwrap();
    let usages: Vec<_> = history.iter().map(|t| t.usage).collect();
    assert_eq!(usages, vec![None, Some(usage)]);
}

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
        usage: None,
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
        usage: None,
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
    config.url =
        exai_core::config::Secret::new(format!("postgres://exai:topsecret@127.0.0.1:{port}/exai"));
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
