//! The jobs of one daemon, and of two sharing a database (a fresh one on
//! `EXAI_TEST_DATABASE_URL`; those tests are skipped when it is unset).

use super::postgres::table;
use super::*;
use exai_pg::testing::TestDatabase;
use exai_pg::{Pool, PoolOptions};
use exai_tools::LOCAL_PRINCIPAL as LOCAL;

fn config(url: &str) -> exai_core::config::DatabaseConfig {
    let mut c = exai_core::Config::default().database;
    c.url = exai_core::config::Secret::new(url.to_string());
    c
}

/// Jobs of a daemon named `owner` on the database at `url`.
fn daemon(url: &str, owner: &str) -> Jobs {
    Jobs::sharing(Arc::new(postgres::PgJobs::new(config(url), owner.into())))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Stand-in for the indexer: reports progress until cancelled.
fn work(job: Arc<Job>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        job.progress(&Progress::Discovered {
            files: 1000,
            skipped: 0,
        });
        let mut done = 0;
        while !job.cancel.load(Ordering::SeqCst) && done < 100_000 {
            done += 1;
            job.progress(&Progress::Files {
                done,
                total: 100_000,
                chunks: done * 2,
            });
            std::thread::sleep(Duration::from_millis(5));
        }
        job.finish(Err(exai_kb::KbError::Cancelled));
    })
}

#[test]
fn without_postgres_jobs_stay_in_memory() {
    runtime().block_on(async {
        let jobs = Jobs::new(&exai_core::Config::default().database);
        let job = jobs
            .start_exclusive("index", "docs", vec!["/d".into()], LOCAL)
            .await
            .unwrap();
        assert!(job.status().owner.is_none());
        let busy = jobs
            .start_exclusive("index", "docs", vec![], LOCAL)
            .await
            .err()
            .unwrap();
        assert!(busy.to_string().contains("already being indexed"), "{busy}");
        assert!(jobs.running_for("docs").await.is_some());
        assert!(jobs.running_for("other").await.is_none());
        // Another principal: the job does not exist for them, and cancelling it does nothing;
        // the busy source is refused without naming the job.
        let id = job.status().job_id;
        assert!(jobs.status(&id, "mallory").await.unwrap().is_none());
        assert!(
            jobs.cancel(&id, Duration::ZERO, "mallory")
                .await
                .unwrap()
                .is_none()
        );
        assert!(!job.cancel.load(Ordering::SeqCst));
        assert!(jobs.ids("mallory").is_empty());
        assert_eq!(jobs.ids(LOCAL), std::slice::from_ref(&id));
        let theirs = jobs
            .start_exclusive("index", "docs", vec![], "mallory")
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(
            theirs.contains("another client's job") && !theirs.contains(&id),
            "{theirs}"
        );
        let worker = work(job.clone());
        let s = jobs
            .cancel(&id, Duration::from_secs(5), LOCAL)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(s.state, JobState::Cancelled);
        worker.join().unwrap();
        assert!(jobs.status("job-nope", LOCAL).await.unwrap().is_none());
        assert!(
            jobs.cancel("job-nope", Duration::ZERO, LOCAL)
                .await
                .unwrap()
                .is_none()
        );
    });
}

/// Finished jobs leave after an hour or beyond the cap, oldest first; running ones stay.
#[test]
fn finished_jobs_are_pruned() {
    let jobs = Jobs::new(&exai_core::Config::default().database);
    let running = jobs.start("index", "busy", vec![]);
    let mut done = Vec::new();
    for i in 0..KEEP_FINISHED + 5 {
        let job = jobs.start("index", &format!("s{i}"), vec![]);
        job.finish(Err(exai_kb::KbError::Cancelled));
        done.push(job.status().job_id);
    }
    jobs.start("index", "last", vec![]);
    // The cap: the five oldest finished jobs went, the running one and the newest stayed.
    assert_eq!(jobs.held(), KEEP_FINISHED + 2);
    assert!(jobs.get(&done[0], LOCAL).is_none());
    assert!(jobs.get(&done[KEEP_FINISHED + 4], LOCAL).is_some());
    assert!(jobs.get(&running.status().job_id, LOCAL).is_some());
    // The age: an hour later every finished job is gone.
    let mut m = jobs.jobs.lock().unwrap();
    prune(&mut m, Instant::now() + KEEP_FINISHED_FOR);
    assert_eq!(m.len(), 2);
    drop(m);
    assert!(jobs.running_here("busy").is_some());
    assert!(jobs.running_here("s1").is_none());
}

/// The table by itself: claim, refuse a second claim, progress, cancel request, lost rows.
#[test]
fn table_claims_updates_and_loses_jobs() {
    let Some(db) = TestDatabase::create("jobstable") else {
        return;
    };
    let pool = Pool::open(&db.url, PoolOptions::default()).unwrap();
    let mut c = pool.get().unwrap();
    exai_pg::schema::JOBS
        .migrate(&mut c, pool.target())
        .unwrap();
    let a = daemon(&db.url, "host-a:1");
    let mut first = a.new_status("index", "docs", vec!["/srv/docs".into()], LOCAL);
    assert_eq!(
        table::claim(&mut c, &first).unwrap().map(|s| s.job_id),
        None
    );
    let second = a.new_status("index", "docs", vec![], LOCAL);
    let busy = table::claim(&mut c, &second).unwrap().unwrap();
    assert_eq!(busy.job_id, first.job_id);
    assert_eq!(busy.owner.as_deref(), Some("host-a:1"));
    assert_eq!(busy.paths, ["/srv/docs"]);
    // Another source is free.
    let other = a.new_status("index", "api", vec![], LOCAL);
    assert!(table::claim(&mut c, &other).unwrap().is_none());
    // Progress is recorded; a cancel request comes back on the next write.
    first.files_done = 7;
    first.files_total = 9;
    first.phase = "reading files".into();
    assert_eq!(
        table::update(&mut c, &first).unwrap(),
        table::Verdict::Continue
    );
    let read = table::get(&mut c, &first.job_id, LOCAL).unwrap().unwrap();
    assert_eq!((read.files_done, read.files_total), (7, 9));
    assert_eq!(
        (read.state, read.phase.as_str()),
        (JobState::Running, "reading files")
    );
    let asked = table::request_cancel(&mut c, &first.job_id, LOCAL)
        .unwrap()
        .unwrap();
    assert_eq!(asked.state, JobState::Running);
    assert_eq!(
        table::cancel_requested(&mut c, &first.job_id).unwrap(),
        table::Verdict::CancelRequested
    );
    first.state = JobState::Cancelled;
    first.report = Some(serde_json::json!({ "files_seen": 9 }));
    assert_eq!(
        table::update(&mut c, &first).unwrap(),
        table::Verdict::CancelRequested
    );
    let read = table::get(&mut c, &first.job_id, LOCAL).unwrap().unwrap();
    assert_eq!(read.state, JobState::Cancelled);
    assert_eq!(read.report, first.report);
    assert!(table::running_for(&mut c, "docs").unwrap().is_none());
    // An owner that stopped reporting: its running job reads as lost and no longer blocks;
    // the next claim marks it lost, and the owner, if it comes back, learns it was taken.
    let ghost = daemon(&db.url, "host-b:2").new_status("index", "docs", vec![], LOCAL);
    assert!(table::claim(&mut c, &ghost).unwrap().is_none());
    c.execute(
        "UPDATE index_jobs SET updated_at = now() - interval '31 seconds' WHERE job_id = $1",
        &[&ghost.job_id],
    )
    .unwrap();
    let lost = table::get(&mut c, &ghost.job_id, LOCAL).unwrap().unwrap();
    assert_eq!(lost.state, JobState::Lost);
    assert!(lost.phase.starts_with("lost"), "{}", lost.phase);
    assert!(table::running_for(&mut c, "docs").unwrap().is_none());
    let next = a.new_status("index", "docs", vec![], LOCAL);
    assert!(table::claim(&mut c, &next).unwrap().is_none());
    let state: String = c
        .query_one(
            "SELECT state FROM index_jobs WHERE job_id = $1",
            &[&ghost.job_id],
        )
        .unwrap()
        .get(0);
    assert_eq!(state, "lost");
    assert_eq!(
        table::update(&mut c, &ghost).unwrap(),
        table::Verdict::TakenOver
    );
    // Stored: first, other, ghost, next (the refused claim wrote nothing).
    assert_eq!(table::recent_ids(&mut c, LOCAL, 10).unwrap().len(), 4);
    drop(c);
}

/// Two daemons on one database: B sees A's job and its progress, refuses the same source,
/// and cancels it; A's indexer stops within about a second, as on a local cancel.
#[test]
fn another_daemon_sees_refuses_and_cancels_a_job() {
    let Some(db) = TestDatabase::create("jobsshared") else {
        return;
    };
    let rt = runtime();
    rt.block_on(async {
        let a = daemon(&db.url, "host-a:1");
        let b = daemon(&db.url, "host-b:2");
        let job = a
            .start_exclusive("index", "docs", vec!["/srv/docs".into()], LOCAL)
            .await
            .unwrap();
        let id = job.status().job_id;
        let worker = work(job.clone());
        let busy = b
            .start_exclusive("index", "docs", vec![], LOCAL)
            .await
            .err()
            .unwrap();
        assert!(
            matches!(&busy, StartError::Busy(s) if s.job_id == id),
            "{busy}"
        );
        assert!(busy.to_string().contains("host-a:1"), "{busy}");
        assert_eq!(
            b.running_for("docs").await.map(|s| s.job_id),
            Some(id.clone())
        );
        // Progress reaches the table within about a second, never per file.
        let mut seen = None;
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let s = b.status(&id, LOCAL).await.unwrap().unwrap();
            if s.files_done > 0 && s.phase == "reading files" {
                seen = Some(s);
                break;
            }
        }
        let seen = seen.expect("progress reached the table");
        assert_eq!(
            (seen.state, seen.owner.as_deref()),
            (JobState::Running, Some("host-a:1"))
        );
        assert!(b.known_ids(LOCAL).await.contains(&id));
        // Through the table too, another principal neither sees nor cancels the job.
        assert!(b.status(&id, "mallory").await.unwrap().is_none());
        assert!(!b.known_ids("mallory").await.contains(&id));
        assert!(
            b.cancel(&id, Duration::ZERO, "mallory")
                .await
                .unwrap()
                .is_none()
        );
        tokio::time::sleep(TICK * 2).await;
        assert!(!job.cancel.load(Ordering::SeqCst));
        // Cancel from B: A's job stops as on a local cancel, and B sees the end.
        let asked = Instant::now();
        let s = b
            .cancel(&id, Duration::from_secs(10), LOCAL)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(s.state, JobState::Cancelled, "{s:?}");
        assert!(
            asked.elapsed() < Duration::from_secs(4),
            "{:?}",
            asked.elapsed()
        );
        assert!(job.cancel.load(Ordering::SeqCst));
        worker.join().unwrap();
        assert_eq!(job.status().state, JobState::Cancelled);
        // The source is free again, for either daemon.
        assert!(b.running_for("docs").await.is_none());
        let again = b
            .start_exclusive("index", "docs", vec![], LOCAL)
            .await
            .unwrap();
        again.finish(Ok(IndexReport::default()));
        let mut done = None;
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let s = a
                .status(&again.status().job_id, LOCAL)
                .await
                .unwrap()
                .unwrap();
            if s.state == JobState::Done {
                done = Some(s);
                break;
            }
        }
        assert!(done.is_some_and(|s| s.report.is_some()));
        assert!(b.status("job-nope", LOCAL).await.unwrap().is_none());
        assert!(
            b.cancel("job-nope", Duration::ZERO, LOCAL)
                .await
                .unwrap()
                .is_none()
        );
    });
    drop(rt);
}

/// A database that cannot be reached: starting a job says so (the name, not the password).
#[test]
fn unreachable_database_is_a_clear_refusal() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut cfg = config(&format!("postgres://exai:topsecret@127.0.0.1:{port}/exai"));
    cfg.connect_retry_secs = 0.2;
    let jobs = Jobs::new(&cfg);
    runtime().block_on(async {
        let e = jobs
            .start_exclusive("index", "docs", vec![], LOCAL)
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("cannot record the job") && e.contains("127.0.0.1"),
            "{e}"
        );
        assert!(!e.contains("topsecret"), "{e}");
        assert!(jobs.ids(LOCAL).is_empty());
    });
}

#[test]
fn a_stopping_daemon_cancels_only_what_still_runs() {
    let jobs = Jobs::new(&exai_core::Config::default().database);
    let running = jobs.start("embed", "*", Vec::new());
    let done = jobs.start("index", "docs", Vec::new());
    done.finish(Ok(exai_kb::IndexReport::default()));
    assert_eq!(jobs.cancel_running(), 1);
    assert!(running.cancel.load(std::sync::atomic::Ordering::SeqCst));
    assert!(!done.cancel.load(std::sync::atomic::Ordering::SeqCst));
}
