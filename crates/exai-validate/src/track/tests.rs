//! One suite, two backends: SQLite and PostgreSQL (a fresh database on
//! `EXAI_TEST_DATABASE_URL`; skipped when that is unset).

use super::sqlite::COMPONENT;
use super::*;
use exai_pg::Pool;
use exai_pg::PoolOptions;
use exai_pg::schema::TRACKING;
use exai_pg::testing::TestDatabase;
use rusqlite::Connection;

/// Where a test's tables live; `open` is a (re)start on them.
trait Place {
    fn try_open(&self) -> Result<Box<dyn TrackingStore>, TrackError>;
    fn open(&self) -> Box<dyn TrackingStore> {
        self.try_open().unwrap()
    }
    fn version(&self) -> i64;
    /// Pretend a newer exai migrated the tables.
    fn bump_version(&self);
}

struct SqliteFile(tempfile::TempDir);

impl SqliteFile {
    fn path(&self) -> std::path::PathBuf {
        self.0.path().join("state.sqlite")
    }
}

impl Place for SqliteFile {
    fn try_open(&self) -> Result<Box<dyn TrackingStore>, TrackError> {
        Ok(Box::new(SqliteTracking::open(&self.path())?))
    }
    fn version(&self) -> i64 {
        SqliteTracking::open(&self.path())
            .unwrap()
            .schema_version()
            .unwrap()
    }
    fn bump_version(&self) {
        let db = Connection::open(self.path()).unwrap();
        db.execute(
            "UPDATE schema_version SET version = 99 WHERE component = ?1",
            [COMPONENT],
        )
        .unwrap();
    }
}

struct PgDatabase(TestDatabase);

impl PgDatabase {
    fn tracking(&self) -> Result<PgTracking, TrackError> {
        PgTracking::open(Pool::open(&self.0.url, PoolOptions::default()).unwrap())
    }
}

impl Place for PgDatabase {
    fn try_open(&self) -> Result<Box<dyn TrackingStore>, TrackError> {
        Ok(Box::new(self.tracking()?))
    }
    fn version(&self) -> i64 {
        self.tracking().unwrap().schema_version().unwrap()
    }
    fn bump_version(&self) {
        let mut c =
            exai_pg::postgres::Client::connect(&self.0.url, exai_pg::postgres::NoTls).unwrap();
        c.execute(
            "UPDATE exai_schema SET version = 99 WHERE component = $1",
            &[&TRACKING.name],
        )
        .unwrap();
    }
}

exai_pg::both_backends!(
    sqlite: SqliteFile,
    postgres: PgDatabase;
    records_runs_results_and_grades,
    reads_a_window_of_runs_and_their_results,
    refuses_a_newer_schema,
    works_from_async_code
);

fn result(status: Status) -> CaseResult {
    CaseResult {
        tool: "chat".into(),
        variation: "basic".into(),
        status,
        provider: Some("glm".into()),
        model: Some("glm-4.6".into()),
        duration_ms: 3.5,
        tokens_in: 10,
        tokens_out: 5,
        cost_usd: 0.001,
        error: None,
        output: Some("answer".into()),
    }
}

fn records_runs_results_and_grades(place: &dyn Place) {
    let mut store = place.open();
    assert_eq!(place.version(), SCHEMA_VERSION);
    let started_at = now();
    let run = store
        .begin_run(&NewRun {
            started_at: started_at.clone(),
            provider: "mock".into(),
            tools_filter: Some("chat".into()),
            variations_filter: None,
            watcher_model: Some("glm-4.6".into()),
        })
        .unwrap();
    let mut totals = Totals::default();
    let mut passes = 0;
    for status in [Status::Pass, Status::Pass, Status::Fail, Status::Skip] {
        let mut r = result(status);
        if status == Status::Fail {
            r.error = Some("said nothing useful".into());
        }
        let id = store.add_result(run, &r).unwrap();
        totals.add(&r);
        if status == Status::Pass {
            passes += 1;
            store
                .add_grade(
                    id,
                    &Grade {
                        watcher_model: "glm-4.6".into(),
                        grade: Some(if passes == 1 { 6 } else { 8 }),
                        reasons: "clear".into(),
                        tokens_in: 1,
                        tokens_out: 1,
                        cost_usd: 0.0,
                        error: None,
                    },
                )
                .unwrap();
        }
    }
    // A run still going shows without a finish.
    assert_eq!(store.runs(10).unwrap()[0].finished_at, None);
    store
        .finish_run(run, &totals, Duration::from_millis(1500))
        .unwrap();
    let runs = store.runs(10).unwrap();
    assert_eq!(runs.len(), 1);
    let r = &runs[0];
    assert_eq!(r.id, run);
    assert_eq!(r.started_at, started_at);
    assert!(r.finished_at.as_deref().is_some_and(|f| *f >= *started_at));
    assert_eq!(
        (r.provider.as_str(), r.exai_version.as_str()),
        ("mock", exai_core::VERSION)
    );
    assert_eq!(r.tools_filter.as_deref(), Some("chat"));
    assert_eq!(r.watcher_model.as_deref(), Some("glm-4.6"));
    assert_eq!((r.total, r.passed, r.failed, r.skipped), (4, 2, 1, 1));
    assert!((r.pass_rate.unwrap() - 2.0 / 3.0).abs() < 1e-9);
    assert_eq!(r.duration_ms, Some(1500.0));
    assert_eq!(r.mean_grade, Some(7.0));
    assert_eq!((r.tokens_in, r.tokens_out), (40, 20));
    assert!((r.cost_usd - 0.004).abs() < 1e-9);
    // A second run is newest first; `limit` holds.
    let second = store
        .begin_run(&NewRun {
            started_at: now(),
            provider: "live".into(),
            tools_filter: None,
            variations_filter: Some("basic".into()),
            watcher_model: None,
        })
        .unwrap();
    assert!(second > run);
    let runs = store.runs(1).unwrap();
    assert_eq!(
        (runs.len(), runs[0].id, runs[0].mean_grade),
        (1, second, None)
    );
    // Reopening migrates nothing and keeps the data.
    drop(store);
    let store = place.open();
    assert_eq!(store.runs(10).unwrap().len(), 2);
    assert_eq!(place.version(), SCHEMA_VERSION);
}

/// The weekly review reads the runs started since a time, and their results, on both backends.
fn reads_a_window_of_runs_and_their_results(place: &dyn Place) {
    let mut store = place.open();
    let day = chrono::Duration::days(1);
    let mut ids = Vec::new();
    for (days_ago, statuses) in [
        (10, [Status::Pass, Status::Pass]),
        (3, [Status::Pass, Status::Fail]),
        (0, [Status::Error, Status::Skip]),
    ] {
        let started = chrono::Utc::now() - day * days_ago;
        let run = store
            .begin_run(&NewRun {
                started_at: stored_time(started),
                provider: "mock".into(),
                tools_filter: None,
                variations_filter: None,
                watcher_model: None,
            })
            .unwrap();
        let mut totals = Totals::default();
        for (i, status) in statuses.into_iter().enumerate() {
            let mut r = result(status);
            r.variation = format!("v{i}");
            r.error = (status != Status::Pass).then(|| format!("{status:?} in run {run}"));
            store.add_result(run, &r).unwrap();
            totals.add(&r);
        }
        store
            .finish_run(run, &totals, Duration::from_millis(10))
            .unwrap();
        ids.push(run);
    }
    let since = chrono::Utc::now() - day * 7;
    let runs = store.runs_since(since).unwrap();
    let run_ids: Vec<i64> = runs.iter().map(|r| r.id).collect();
    assert_eq!(
        run_ids,
        [ids[2], ids[1]],
        "newest first, the old run left out"
    );
    assert_eq!((runs[1].passed, runs[1].failed), (1, 1));
    let results = store.results_since(since).unwrap();
    let seen: Vec<(i64, &str, Status)> = results
        .iter()
        .map(|r| (r.run_id, r.variation.as_str(), r.status))
        .collect();
    assert_eq!(
        seen,
        [
            (ids[2], "v0", Status::Error),
            (ids[2], "v1", Status::Skip),
            (ids[1], "v0", Status::Pass),
            (ids[1], "v1", Status::Fail),
        ]
    );
    assert_eq!(results[0].started_at, runs[0].started_at);
    assert_eq!(
        results[3].error.as_deref(),
        Some(format!("Fail in run {}", ids[1]).as_str())
    );
    assert_eq!(results[0].provider, "mock");
    assert!(
        store
            .runs_since(chrono::Utc::now() + day)
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.results_since(since - day * 30).unwrap().len(), 6);
}

fn refuses_a_newer_schema(place: &dyn Place) {
    drop(place.open());
    place.bump_version();
    let err = place.try_open().err().unwrap().to_string();
    assert!(err.contains("upgrade exai"), "{err}");
}

/// The validation run calls the store from async code: the blocking client must not try to
/// start its runtime inside the caller's.
fn works_from_async_code(place: &dyn Place) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mut store = place.open();
    let runs = runtime.block_on(async move {
        let run = store
            .begin_run(&NewRun {
                started_at: now(),
                provider: "mock".into(),
                tools_filter: None,
                variations_filter: None,
                watcher_model: None,
            })
            .unwrap();
        store.add_result(run, &result(Status::Pass)).unwrap();
        store
            .finish_run(run, &Totals::default(), Duration::from_millis(1))
            .unwrap();
        store.runs(5).unwrap()
    });
    assert_eq!(runs.len(), 1);
}

#[test]
fn pass_rate_ignores_skips() {
    let mut t = Totals::default();
    t.add(&result(Status::Skip));
    assert_eq!(t.pass_rate(), None);
    t.add(&result(Status::Error));
    t.add(&result(Status::Pass));
    assert_eq!(t.pass_rate(), Some(0.5));
}

/// `open` picks PostgreSQL when `database.url` is set, SQLite otherwise; and `location`
/// names the server without its password.
#[test]
fn open_follows_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let mut loaded = exai_core::config::load(&exai_core::config::Inputs {
        env: vec![("EXAI_HOME".into(), dir.path().display().to_string())],
        ..Default::default()
    })
    .unwrap();
    open(&loaded).unwrap();
    assert!(dir.path().join("state.sqlite").exists());
    assert!(location(&loaded).ends_with("state.sqlite"));
    let Some(db) = TestDatabase::create("trackopen") else {
        return;
    };
    loaded.config.database.url = exai_core::config::Secret::new(db.url.clone());
    let mut store = open(&loaded).unwrap();
    store
        .begin_run(&NewRun {
            started_at: now(),
            provider: "mock".into(),
            tools_filter: None,
            variations_filter: None,
            watcher_model: None,
        })
        .unwrap();
    let mut c = exai_pg::postgres::Client::connect(&db.url, exai_pg::postgres::NoTls).unwrap();
    let n: i64 = c
        .query_one("SELECT count(*) FROM test_runs", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    assert!(location(&loaded).starts_with("PostgreSQL at postgres://"));
}
