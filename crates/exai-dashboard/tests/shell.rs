#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The dashboard's shell without a browser: the page and its assets (CSP, ETag revalidation),
//! the API's answers to what does not exist, the overview, and the live stream ending when the
//! daemon starts stopping. (The guard in front of it is exai-server's, tested there and in the
//! browser tests.)

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use exai_server::http::Principal;
use exai_server::{AppState, Transport};
use tower::ServiceExt;

fn state() -> (tempfile::TempDir, Arc<AppState>) {
    let home = tempfile::tempdir().unwrap();
    let loaded = exai_core::config::load(&exai_core::config::Inputs {
        env: vec![
            ("EXAI_HOME".into(), home.path().display().to_string()),
            ("EXAI_EMBED_BACKEND".into(), "none".into()),
        ],
        ..Default::default()
    })
    .unwrap();
    (home, AppState::new(loaded, Transport::Http, None))
}

fn app(state: &Arc<AppState>) -> axum::Router {
    // The guard names the principal on every dashboard request it lets through.
    exai_dashboard::router(state.clone()).layer(axum::Extension(Principal::local()))
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

async fn body(response: axum::response::Response) -> String {
    String::from_utf8(
        axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap()
}

#[tokio::test]
async fn the_page_is_served_with_a_strict_policy_and_revalidated_by_etag() {
    let (_home, state) = state();
    let page = app(&state).oneshot(get("/")).await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"));
    let etag = page.headers()[header::ETAG].to_str().unwrap().to_string();
    let html = body(page).await;
    assert!(html.contains("/ui/assets/pages/overview.js?v="), "{html}");

    let again = app(&state)
        .oneshot(
            Request::get("/")
                .header(header::IF_NONE_MATCH, &etag)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);

    let script = app(&state).oneshot(get("/ui/assets/app.js")).await.unwrap();
    assert_eq!(script.status(), StatusCode::OK);
    assert!(
        script.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert_eq!(script.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    for missing in [
        "/ui/assets/nope.js",
        "/ui/assets/../Cargo.toml",
        "/ui/assets/%2e%2e/lib.rs",
    ] {
        let r = app(&state).oneshot(get(missing)).await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{missing}");
    }
}

#[tokio::test]
async fn an_unknown_api_path_gets_a_json_answer() {
    let (_home, state) = state();
    let r = app(&state)
        .oneshot(get("/ui/api/no/such/thing"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let v: serde_json::Value = serde_json::from_str(&body(r).await).unwrap();
    assert_eq!(v["status"], 404);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("no such dashboard API")
    );
}

#[tokio::test]
async fn the_overview_has_the_health_checks_and_the_daemon() {
    let (_home, state) = state();
    let r = app(&state).oneshot(get("/ui/api/overview")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body(r).await).unwrap();
    assert_eq!(v["health"]["version"], exai_core::VERSION);
    let names: Vec<&str> = v["checks"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for name in ["daemon", "config", "databases", "disk"] {
        assert!(names.contains(&name), "{names:?}");
    }
    assert!(v["thresholds"]["disk_warn_percent"].as_f64().unwrap() > 0.0);
    assert_eq!(v["stats"]["calls"], 0);
    // No key is set here, and none could appear: the providers are counters only.
    assert_eq!(v["ai_started"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_stream_sends_stats_and_ends_when_the_daemon_stops() {
    let (_home, state) = state();
    let r = app(&state)
        .oneshot(get("/ui/events?topics=stats,nonsense"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let stopping = state.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        stopping.start_draining();
    });
    // The whole body arrives only because the stream ends once the daemon drains.
    let text = tokio::time::timeout(Duration::from_secs(10), body(r))
        .await
        .expect("the stream must end when the daemon stops");
    assert!(text.contains("event: stats"), "{text}");
    let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
    let stats: serde_json::Value = serde_json::from_str(data).unwrap();
    assert_eq!(stats["calls"], 0);
    assert!(stats["rss_bytes"].as_u64().unwrap() > 0);
}
