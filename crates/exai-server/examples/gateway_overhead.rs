//! Gateway overhead of the AI tools: an MCP `chat` call through exai (Streamable HTTP, the rmcp
//! client) to the mock provider, against the same chat request sent to the mock directly, and a
//! trivial MCP tool (`version`) for the protocol's own share. Everything runs in this process on
//! loopback, side by side, at each concurrency.
//!
//! ```text
//! cargo run --release -p exai-server --example gateway_overhead -- [--calls 2000] [--concurrency 1,50]
//! ```
//! Prints one JSON object per concurrency: p50/p99 in ms of each path and the overheads.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use exai_core::config::Inputs;
use exai_llm::mock::MockServer;
use exai_server::{AppState, Transport};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::json;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (percentile(&v, 0.5), percentile(&v, 0.99))
}

async fn run<F, Fut>(calls: usize, concurrency: usize, make: F) -> Vec<f64>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static + Clone,
    Fut: std::future::Future<Output = ()> + Send,
{
    let per = calls / concurrency;
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let make = make.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::with_capacity(per);
            for i in 0..per {
                let t = Instant::now();
                make(w * per + i).await;
                out.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let calls: usize = value("--calls").map_or(2000, |v| v.parse().unwrap());
    let levels: Vec<usize> = value("--concurrency")
        .unwrap_or_else(|| "1,50".into())
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();

    let mock = MockServer::start(Some("k".into())).await.unwrap();
    let home = std::env::temp_dir().join(format!("exai-overhead-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    let inputs = Inputs {
        env: vec![
            ("EXAI_HOME".into(), home.display().to_string()),
            ("GLM_API_KEY".into(), "k".into()),
            ("GLM_API_URL".into(), mock.url.clone()),
            ("EXAI_PROVIDERS_MAX_CONCURRENT".into(), "1000".into()),
            (
                "EXAI_PROVIDERS_MAX_CONCURRENT_PER_PROVIDER".into(),
                "1000".into(),
            ),
            (
                "EXAI_PROVIDERS_MAX_CONCURRENT_PER_SESSION".into(),
                "1000".into(),
            ),
            ("EXAI_THREADS_MAX_TURNS".into(), "1000".into()),
        ],
        ..Inputs::default()
    };
    let loaded = exai_core::config::load(&inputs).unwrap();
    let state = AppState::new(loaded, Transport::Http, None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(exai_server::http::serve(
        state,
        listener,
        std::future::pending(),
    ));
    let mcp_url = format!("http://{addr}/mcp");
    let http = reqwest::Client::new();
    let direct_url = format!("{}/chat/completions", mock.url);

    for &concurrency in &levels {
        // One MCP session per worker, as separate agents would have.
        let mut sessions = Vec::new();
        for _ in 0..concurrency {
            let client =
                ().serve(StreamableHttpClientTransport::from_uri(mcp_url.clone()))
                    .await
                    .unwrap();
            sessions.push(Arc::new(client));
        }
        let sessions = Arc::new(sessions);
        let prompt = |i: usize| format!("question number {i} about ownership and borrowing");

        // The MCP client asks for progress (rmcp sends a progress token with every request), so
        // exai streams from the provider: the direct request streams too.
        let direct = {
            let http = http.clone();
            let url = direct_url.clone();
            move |i: usize| {
                let http = http.clone();
                let url = url.clone();
                async move {
                    let body = json!({
                        "model": "glm-4.6",
                        "messages": [{"role": "system", "content": exai_tools::prompts::system("chat")},
                                     {"role": "user", "content": prompt(i)}],
                        "stream": true,
                    });
                    let r = http
                        .post(&url)
                        .bearer_auth("k")
                        .json(&body)
                        .send()
                        .await
                        .unwrap();
                    assert!(r.status().is_success());
                    let _ = r.bytes().await.unwrap();
                }
            }
        };
        let tool =
            |name: &'static str,
             sessions: Arc<Vec<Arc<rmcp::service::RunningService<rmcp::RoleClient, ()>>>>,
             concurrency: usize| {
                move |i: usize| {
                    let s = sessions[i % concurrency].clone();
                    async move {
                        let mut params = CallToolRequestParams::new(name);
                        if name == "chat" {
                            let args = json!({ "prompt": prompt(i), "model": "glm-4.6" });
                            params = params.with_arguments(args.as_object().unwrap().clone());
                        }
                        let r = s.call_tool(params).await.unwrap();
                        assert_ne!(r.is_error, Some(true), "{r:?}");
                    }
                }
            };
        // Warm up every path.
        let warm = calls.min(200);
        run(warm, concurrency, direct.clone()).await;
        run(
            warm,
            concurrency,
            tool("chat", sessions.clone(), concurrency),
        )
        .await;
        run(
            warm,
            concurrency,
            tool("version", sessions.clone(), concurrency),
        )
        .await;
        // Interleave rounds so drift hits every path alike.
        let rounds = 4;
        let (mut d, mut c, mut v) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            d.extend(run(calls / rounds, concurrency, direct.clone()).await);
            c.extend(
                run(
                    calls / rounds,
                    concurrency,
                    tool("chat", sessions.clone(), concurrency),
                )
                .await,
            );
            v.extend(
                run(
                    calls / rounds,
                    concurrency,
                    tool("version", sessions.clone(), concurrency),
                )
                .await,
            );
        }
        let (d50, d99) = summary(d);
        let (c50, c99) = summary(c);
        let (v50, v99) = summary(v);
        println!(
            "{}",
            json!({
                "concurrency": concurrency,
                "calls": calls,
                "direct_ms": { "p50": d50, "p99": d99 },
                "mcp_chat_ms": { "p50": c50, "p99": c99 },
                "mcp_version_ms": { "p50": v50, "p99": v99 },
                "overhead_ms": { "p50": c50 - d50, "p99": c99 - d99 },
                "overhead_beyond_mcp_roundtrip_ms": { "p50": c50 - d50 - v50, "p99": c99 - d99 - v99 },
            })
        );
        for s in sessions.iter() {
            let _ = s.peer().clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = std::fs::remove_dir_all(&home);
}
