//! The knowledge-base API over a real knowledge base in a temporary data directory: a tiny
//! Markdown corpus indexed through `POST /kb/sources`, searched, read, refreshed and removed,
//! and the refusals of bad input, each a 400 with a message that says what to give instead.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::{Extension, Router};
use exai_server::http::Principal;
use exai_server::{AppState, Transport};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::context::Dashboard;

const LOCAL: &str = exai_tools::LOCAL_PRINCIPAL;

/// A daemon's state over a fresh data directory, keyword search only, reading files only under
/// `corpus` (kept apart: the data directory itself is never readable by tools).
pub(crate) struct Fixture {
    pub(crate) state: Arc<AppState>,
    pub(crate) corpus: tempfile::TempDir,
    _home: tempfile::TempDir,
}

impl Fixture {
    pub(crate) fn new() -> Fixture {
        let home = dir("exai-home");
        let corpus = dir("exai-corpus");
        let vars = [
            ("EXAI_HOME", home.path().display().to_string()),
            ("EXAI_EMBED_BACKEND", "none".to_string()),
            (
                "EXAI_TOOLS_ALLOWED_ROOTS",
                corpus.path().display().to_string(),
            ),
        ];
        let loaded = exai_core::config::load(&exai_core::config::Inputs {
            env: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            ..Default::default()
        })
        .unwrap();
        Fixture {
            state: AppState::new(loaded, Transport::Http, None),
            corpus,
            _home: home,
        }
    }

    /// The page APIs as `principal` sees them (the guard names the principal in the daemon).
    pub(crate) fn app(&self, principal: Principal) -> Router {
        let ctx = Arc::new(Dashboard::new(self.state.clone()));
        Router::new()
            .nest("/kb", super::routes())
            .nest("/conversations", crate::conversations::routes())
            .with_state(ctx)
            .layer(Extension(principal))
    }
}

/// A temporary directory not named like a dot-file (those are never indexed).
fn dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(prefix).tempdir().unwrap()
}

/// Send one request; the status and the JSON body.
pub(crate) async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    let body = match body {
        Some(v) => {
            req = req.header("content-type", "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    let res = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), 16 << 20)
        .await
        .unwrap();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, value)
}

async fn get(app: &Router, uri: &str) -> (StatusCode, Value) {
    call(app, Method::GET, uri, None).await
}

fn write_corpus(root: &std::path::Path) {
    std::fs::create_dir_all(root.join("guide")).unwrap();
    std::fs::write(
        root.join("guide/retries.md"),
        "# Retries\n\nThe client retries a failed request with exponential backoff.\n\n\
         ## Backoff\n\nEach attempt waits twice as long as the one before, up to the zephyrine limit.\n",
    )
    .unwrap();
    std::fs::write(
        root.join("install.md"),
        "# Install\n\nRun the installer, then check the version it prints.\n",
    )
    .unwrap();
}

/// Wait for the job to leave `running`; its last status.
async fn finished(app: &Router, job_id: &str) -> Value {
    for _ in 0..600 {
        let (status, jobs) = get(app, "/kb/jobs").await;
        assert_eq!(status, StatusCode::OK, "{jobs}");
        let job = jobs["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["job_id"] == job_id)
            .cloned()
            .unwrap_or_else(|| panic!("job {job_id} not listed: {jobs}"));
        if job["state"] != "running" {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("job {job_id} still running after 30 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_is_indexed_searched_read_refreshed_and_removed() {
    let fx = Fixture::new();
    write_corpus(fx.corpus.path());
    let app = fx.app(Principal::local());

    let (status, job) = call(
        &app,
        Method::POST,
        "/kb/sources",
        Some(json!({ "path": fx.corpus.path().display().to_string(), "source": "handbook", "include": ["*.md", "**/*.md"] })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{job}");
    assert_eq!(job["source"], "handbook");
    let done = finished(&app, job["job_id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["report"]["added"], 2, "{done}");

    let (status, listed) = get(&app, "/kb/sources").await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let sources = listed["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 1, "{listed}");
    let s = &sources[0];
    assert_eq!(s["name"], "handbook");
    assert_eq!(s["documents"], 2);
    assert!(s["chunks"].as_i64().unwrap() >= 2, "{s}");
    assert_eq!(s["vectors_total"], s["chunks"]);
    assert_eq!(s["vectors_done"], 0, "no embedder: no vectors");
    assert_eq!(s["fetched"], false);
    assert!(
        s["origin_text"].as_str().unwrap().starts_with("paths "),
        "{s}"
    );
    assert_eq!(listed["status"]["search_modes"], json!(["keyword"]));
    assert!(
        listed["technologies"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "handbook"),
        "{listed}"
    );

    // A word only the backoff section has, with the filters search_docs takes.
    let (status, found) = get(
        &app,
        "/kb/search?query=zephyrine&mode=keyword&source=handbook&path_prefix=guide/&limit=5&doc_type=text",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{found}");
    let hits = found["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 1, "{found}");
    let hit = &hits[0];
    assert_eq!(hit["path"], "guide/retries.md");
    assert!(
        hit["snippet"].as_str().unwrap().contains("zephyrine"),
        "{hit}"
    );
    assert!(hit["score"].as_f64().unwrap() > 0.0);
    // Every other filter as the form sends it: text, numbers and a flag.
    let (status, grouped) = get(
        &app,
        "/kb/search?query=client&mode=keyword&technology=handbook&min_score=0.01&context=1&group_by_document=true&limit=10",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{grouped}");
    let paths: Vec<&str> = grouped["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        ["guide/retries.md"],
        "one hit per document: {grouped}"
    );
    // The path filter really filters.
    let (_, none) = get(
        &app,
        "/kb/search?query=zephyrine&mode=keyword&path_prefix=install",
    )
    .await;
    assert_eq!(none["hits"], json!([]), "{none}");

    let uri = format!(
        "/kb/document?doc_id={}&chunk_id={}",
        hit["doc_id"], hit["chunk_id"]
    );
    let (status, doc) = get(&app, &uri).await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(doc["document"]["path"], "guide/retries.md");
    assert_eq!(
        (doc["chunks_before"].as_u64(), doc["chunks_after"].as_u64()),
        (Some(0), Some(0))
    );
    let text: String = doc["sections"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["chunks"].as_array().unwrap().iter())
        .map(|c| c["text"].as_str().unwrap().to_string())
        .collect();
    assert!(
        text.contains("exponential backoff") && text.contains("zephyrine"),
        "{doc}"
    );
    // By path within a source, as get_document takes it.
    let (status, by_path) = get(&app, "/kb/document?source=handbook&path=install.md").await;
    assert_eq!(status, StatusCode::OK, "{by_path}");
    assert_eq!(by_path["document"]["title"], "Install");

    // A refresh reads the origin again: the new file comes in.
    std::fs::write(fx.corpus.path().join("faq.md"), "# FAQ\n\nAsk anything.\n").unwrap();
    let (status, job) = call(&app, Method::POST, "/kb/sources/handbook/refresh", None).await;
    assert_eq!(status, StatusCode::OK, "{job}");
    let done = finished(&app, job["job_id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["report"]["added"], 1, "{done}");

    let (status, removed) = call(&app, Method::DELETE, "/kb/sources/handbook", None).await;
    assert_eq!(status, StatusCode::OK, "{removed}");
    assert_eq!(removed["documents_removed"], 3);
    let (_, listed) = get(&app, "/kb/sources").await;
    assert_eq!(listed["sources"], json!([]));
}

/// Each refusal is a 400 whose message names what to give.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_400_that_says_what_to_give() {
    let fx = Fixture::new();
    let app = fx.app(Principal::local());
    let outside = dir("exai-outside");
    let cases: Vec<(Method, String, Option<Value>, &str)> = vec![
        (Method::GET, "/kb/search".into(), None, "query"),
        (
            Method::GET,
            "/kb/search?query=%20".into(),
            None,
            "give `query`",
        ),
        (
            Method::GET,
            "/kb/search?query=x&mode=fuzzy".into(),
            None,
            "mode",
        ),
        (
            Method::GET,
            "/kb/search?query=x&limit=0".into(),
            None,
            "give 1 to 100",
        ),
        (
            Method::GET,
            "/kb/search?query=x&context=9".into(),
            None,
            "0 to 3",
        ),
        (
            Method::GET,
            "/kb/search?query=x&colour=red".into(),
            None,
            "colour",
        ),
        (
            Method::GET,
            "/kb/search?query=x&source=nothing".into(),
            None,
            "nothing",
        ),
        (Method::GET, "/kb/document".into(), None, "give doc_id"),
        (Method::POST, "/kb/sources".into(), Some(json!({})), "path"),
        (
            Method::POST,
            "/kb/sources".into(),
            Some(json!({ "path": " " })),
            "give `path`",
        ),
        (
            Method::POST,
            "/kb/sources".into(),
            Some(json!({ "path": outside.path().display().to_string(), "source": "x" })),
            "allowed",
        ),
        (
            Method::POST,
            "/kb/sources".into(),
            Some(json!({ "path": fx.corpus.path().display().to_string() })),
            "give `source`",
        ),
        (
            Method::POST,
            "/kb/sources/nothing/refresh".into(),
            None,
            "nothing",
        ),
        (
            Method::DELETE,
            "/kb/sources/nothing".into(),
            None,
            "nothing",
        ),
        (
            Method::POST,
            "/kb/jobs/no-such-job/cancel".into(),
            None,
            "unknown job",
        ),
    ];
    for (method, uri, body, says) in cases {
        let (status, answer) = call(&app, method.clone(), &uri, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {uri}: {answer}");
        assert_eq!(answer["status"], 400, "{method} {uri}: {answer}");
        let message = answer["error"].as_str().unwrap_or_default();
        assert!(
            message.contains(says),
            "{method} {uri}: `{message}` should say `{says}`"
        );
    }
    // A body that is not JSON.
    let req = Request::builder()
        .method(Method::POST)
        .uri("/kb/sources")
        .header("content-type", "application/json")
        .body(Body::from("{path:"))
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}

/// Another principal's job is not listed, and cannot be cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_the_principals_own() {
    let fx = Fixture::new();
    write_corpus(fx.corpus.path());
    let app = fx.app(Principal::local());
    let job = fx
        .state
        .knowledge
        .jobs
        .start_exclusive("index", "theirs", Vec::new(), "alice")
        .await
        .unwrap();
    let (_, listed) = get(&app, "/kb/jobs").await;
    assert!(
        listed["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|j| j["job_id"] != job.status().job_id),
        "{listed}"
    );
    let uri = format!("/kb/jobs/{}/cancel", job.status().job_id);
    let (status, _) = call(&app, Method::POST, &uri, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(!job.cancel.load(std::sync::atomic::Ordering::SeqCst));
    job.finish(Ok(exai_kb::IndexReport::default()));
}

/// Cancelling one's own job asks it to stop and answers with its status once it has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_job_is_cancelled() {
    let fx = Fixture::new();
    let app = fx.app(Principal::local());
    let job = fx
        .state
        .knowledge
        .jobs
        .start_exclusive("index", "slow", Vec::new(), LOCAL)
        .await
        .unwrap();
    // Stands in for an indexing run: stops at the first check after the cancel.
    let worker = job.clone();
    tokio::task::spawn_blocking(move || {
        while !worker.cancel.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
        worker.finish(Err(exai_kb::KbError::Cancelled));
    });
    let (_, listed) = get(&app, "/kb/jobs").await;
    assert_eq!(listed["jobs"][0]["state"], "running", "{listed}");
    // The source is busy meanwhile: neither a second run nor a removal.
    let (status, busy) = call(&app, Method::DELETE, "/kb/sources/slow", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{busy}");
    assert!(
        busy["error"].as_str().unwrap().contains("is being indexed"),
        "{busy}"
    );
    let uri = format!("/kb/jobs/{}/cancel", job.status().job_id);
    let (status, cancelled) = call(&app, Method::POST, &uri, None).await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["state"], "cancelled", "{cancelled}");
}

/// A document longer than the page shows comes as a window that holds the chunk asked for.
#[test]
fn a_long_document_is_windowed_around_the_hit() {
    let chunk = |id: i64| exai_kb::ChunkRecord {
        id,
        doc_id: 1,
        position: id,
        section: String::new(),
        text: "x".repeat(100),
        tokens: 25,
        doc_type: exai_kb::DocType::Text,
        title: String::new(),
        source: String::new(),
        path: String::new(),
        uri: None,
        technology: String::new(),
        category: String::new(),
    };
    let chunks: Vec<_> = (0..100).map(chunk).collect();
    assert_eq!(super::window(&chunks, None, 100_000), (0, 100));
    assert_eq!(super::window(&chunks, None, 1_000), (0, 10));
    let (first, last) = super::window(&chunks, Some(60), 1_000);
    assert!(first <= 60 && 60 < last, "{first}..{last}");
    assert_eq!((first, last), (58, 68), "a quarter before, the rest after");
    assert_eq!(super::window(&chunks, Some(99), 1_000), (90, 100));
}
