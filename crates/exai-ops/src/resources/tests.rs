//! One suite, two backends: SQLite and PostgreSQL (a fresh database on
//! `EXAI_TEST_DATABASE_URL`; skipped when that is unset).

use std::collections::BTreeMap;

use super::sqlite::COMPONENT;
use super::*;
use exai_pg::PoolOptions;
use exai_pg::schema::RESOURCES;
use exai_pg::testing::TestDatabase;

/// Where a test's samples live; `open` is a (re)start on them.
trait Place {
    fn try_open(&self) -> Result<Box<dyn Backend>, ResourceError>;
    fn open(&self) -> Resources {
        Resources::new(self.try_open().unwrap(), 30)
    }
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
    fn try_open(&self) -> Result<Box<dyn Backend>, ResourceError> {
        Ok(Box::new(SqliteResources::open(&self.path())?))
    }
    fn bump_version(&self) {
        let db = rusqlite::Connection::open(self.path()).unwrap();
        db.execute(
            "UPDATE schema_version SET version = 99 WHERE component = ?1",
            [COMPONENT],
        )
        .unwrap();
    }
}

struct PgDatabase(TestDatabase);

impl Place for PgDatabase {
    fn try_open(&self) -> Result<Box<dyn Backend>, ResourceError> {
        let pool = exai_pg::Pool::open(&self.0.url, PoolOptions::default()).unwrap();
        Ok(Box::new(PgResources::open(pool)?))
    }
    fn bump_version(&self) {
        let mut c =
            exai_pg::postgres::Client::connect(&self.0.url, exai_pg::postgres::NoTls).unwrap();
        c.execute(
            "UPDATE exai_schema SET version = 99 WHERE component = $1",
            &[&RESOURCES.name],
        )
        .unwrap();
    }
}

exai_pg::both_backends!(
    sqlite: SqliteFile,
    postgres: PgDatabase;
    samples_round_trip_in_time_order_per_instance,
    retention_removes_old_samples_when_recording,
    a_newer_schema_is_refused,
);

fn at(secs: i64) -> DateTime<Utc> {
    // Whole milliseconds: both backends keep at least that.
    "2026-12-01T00:00:00.250Z".parse::<DateTime<Utc>>().unwrap() + chrono::Duration::seconds(secs)
}

fn sample(instance: &str, secs: i64) -> Sample {
    Sample {
        time: at(secs),
        instance: instance.into(),
        pid: 4242,
        process_started_at: at(-5),
        interval_secs: 60.0,
        rss_bytes: Some(20 << 20),
        cpu_seconds: Some(1.25),
        open_fds: Some(17),
        max_fds: None,
        host_memory_total_bytes: Some(8 << 30),
        host_memory_available_bytes: Some(6 << 30),
        disk_free_bytes: Some(100 << 30),
        disk_total_bytes: Some(200 << 30),
        db_bytes: BTreeMap::from([("kb".to_string(), 1 << 20), ("state".to_string(), 8192)]),
    }
}

fn samples_round_trip_in_time_order_per_instance(place: &dyn Place) {
    let store = place.open();
    // Written out of order, on two daemons.
    for (instance, secs) in [("a", 120), ("b", 60), ("a", 0), ("a", 60)] {
        store.record(&sample(instance, secs)).unwrap();
    }
    let mut odd = sample("a", 180);
    odd.rss_bytes = None;
    odd.db_bytes.clear();
    store.record(&odd).unwrap();

    let a = store.samples(at(0), Some("a")).unwrap();
    let times: Vec<_> = a.iter().map(|s| s.time).collect();
    assert_eq!(times, vec![at(0), at(60), at(120), at(180)]);
    assert_eq!(a[0], sample("a", 0), "every field comes back as written");
    assert_eq!(a[3], odd);
    assert_eq!(store.samples(at(61), Some("a")).unwrap().len(), 2);
    assert_eq!(store.samples(at(0), None).unwrap().len(), 5);
    assert_eq!(store.samples(at(0), Some("c")).unwrap(), vec![]);
    // A restart sees the same history.
    drop(store);
    assert_eq!(place.open().samples(at(0), Some("b")).unwrap().len(), 1);
}

fn retention_removes_old_samples_when_recording(place: &dyn Place) {
    let day = 86_400;
    let backend = place.try_open().unwrap();
    backend.insert(&sample("a", -3 * day)).unwrap();
    backend.insert(&sample("b", -2 * day)).unwrap();
    backend.insert(&sample("b", -day + 60)).unwrap();
    let store = Resources::new(place.try_open().unwrap(), 1);
    // The first record removes what is more than a day older than it, of every daemon...
    store.record(&sample("a", 0)).unwrap();
    assert_eq!(store.samples(at(-4 * day), None).unwrap().len(), 2);
    // ...and the next ones within the hour do not look again.
    backend.insert(&sample("a", -3 * day)).unwrap();
    store.record(&sample("a", 60)).unwrap();
    assert_eq!(store.samples(at(-4 * day), None).unwrap().len(), 4);
    // A backend deletes what is strictly older than asked.
    assert_eq!(backend.delete_before(at(-day + 60)).unwrap(), 1);
    assert_eq!(store.samples(at(-4 * day), None).unwrap().len(), 3);
}

fn a_newer_schema_is_refused(place: &dyn Place) {
    drop(place.open());
    place.bump_version();
    let err = place.try_open().err().unwrap().to_string();
    assert!(err.contains("upgrade exai"), "{err}");
}
