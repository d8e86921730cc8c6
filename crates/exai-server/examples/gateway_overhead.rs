//! Gateway overhead of the AI tools: an MCP `chat` call through exai to the mock provider, against
//! the same chat request sent to the mock directly, and a trivial MCP tool (`version`) for the
//! protocol's own share. Two transports: Streamable HTTP (exai's server in this process, the rmcp
//! client, one session per worker) and stdio (`exai serve` as a child process, the rmcp client on
//! its pipes, as Claude Code runs it). The mock runs in this process; paths are measured side by
//! side, interleaved in rounds, at each concurrency.
//!
//! ```text
//! cargo run --release -p exai-server --example gateway_overhead -- \
//!     [--calls 2000] [--concurrency 1,50] [--transport http,stdio] [--exai target/release/exai]
//! ```
//! Prints one JSON object per concurrency: p50/p99 in ms of each path, the CPU time each call
//! costs (this process and the child, user + system), and the overheads.
//!
//! `--only direct|chat|version` runs `--calls` calls of one path at concurrency 1 after `--warm`
//! calls and nothing else (over stdio when `--transport` is just `stdio`, else over HTTP), for an
//! instruction profiler: the per-call cost is the difference between two runs with different
//! `--calls`. `--exai` may name a wrapper script that runs `exai` under the profiler.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use exai_core::activity::ActivityLog;
use exai_core::config::Inputs;
use exai_llm::mock::MockServer;
use exai_server::{AppState, Transport};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::{Value, json};

type Client = Arc<RunningService<rmcp::RoleClient, ()>>;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// CPU time (user + system) of this process so far, in seconds.
fn own_cpu() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    let u = getrusage(UsageWho::RUSAGE_SELF).unwrap();
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    secs(u.user_time()) + secs(u.system_time())
}

/// CPU time (user + system) of a running child, in seconds, from /proc (clock ticks of 10 ms:
/// summed over hundreds of calls per round, the error stays under a few percent).
fn child_cpu(pid: Option<u32>) -> f64 {
    let Some(pid) = pid else { return 0.0 };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Latencies and CPU of one path.
#[derive(Default)]
struct Sample {
    ms: Vec<f64>,
    cpu_s: f64,
}

impl Sample {
    fn json(&self) -> Value {
        let mut v = self.ms.clone();
        v.sort_by(f64::total_cmp);
        json!({
            "p50": round(percentile(&v, 0.5)),
            "p99": round(percentile(&v, 0.99)),
            "cpu_us_per_call": (self.cpu_s / self.ms.len() as f64 * 1e6).round(),
        })
    }
    fn p(&self, q: f64) -> f64 {
        let mut v = self.ms.clone();
        v.sort_by(f64::total_cmp);
        percentile(&v, q)
    }
    fn cpu_us(&self) -> f64 {
        self.cpu_s / self.ms.len() as f64 * 1e6
    }
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// `calls` calls by `concurrency` workers, each call timed; the CPU both processes spent.
async fn run<F, Fut>(
    calls: usize,
    concurrency: usize,
    child: Option<u32>,
    out: &mut Sample,
    make: F,
) where
    F: Fn(usize) -> Fut + Send + Sync + 'static + Clone,
    Fut: std::future::Future<Output = ()> + Send,
{
    let per = calls / concurrency;
    let cpu0 = own_cpu() + child_cpu(child);
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
    for t in tasks {
        out.ms.extend(t.await.unwrap());
    }
    out.cpu_s += own_cpu() + child_cpu(child) - cpu0;
}

fn prompt(i: usize) -> String {
    format!("question number {i} about ownership and borrowing")
}

/// The chat request exai sends for `chat`, sent to the mock directly. The MCP client asks for
/// progress (rmcp sends a progress token with every request), so exai streams from the provider:
/// this request streams too.
async fn direct_call(http: &reqwest::Client, url: &str, i: usize) {
    let body = json!({
        "model": "glm-4.6",
        "messages": [{"role": "system", "content": exai_tools::prompts::system("chat")},
                     {"role": "user", "content": prompt(i)}],
        "stream": true,
    });
    let r = http
        .post(url)
        .bearer_auth("k")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let _ = r.bytes().await.unwrap();
}

async fn tool_call(client: &Client, name: &str, i: usize) {
    let mut params = CallToolRequestParams::new(name.to_string());
    if name == "chat" {
        let args = json!({ "prompt": prompt(i), "model": "glm-4.6" });
        params = params.with_arguments(args.as_object().unwrap().clone());
    }
    let r = client.call_tool(params).await.unwrap();
    assert_ne!(r.is_error, Some(true), "{r:?}");
}

/// Provider settings shared by the in-process server and the child: GLM at the mock, limits out
/// of the way of a benchmark.
fn provider_env(home: &std::path::Path, mock_url: &str) -> Vec<(String, String)> {
    [
        ("EXAI_HOME", home.display().to_string()),
        ("GLM_API_KEY", "k".into()),
        ("GLM_API_URL", mock_url.into()),
        ("EXAI_PROVIDERS_MAX_CONCURRENT", "1000".into()),
        ("EXAI_PROVIDERS_MAX_CONCURRENT_PER_PROVIDER", "1000".into()),
        ("EXAI_PROVIDERS_MAX_CONCURRENT_PER_SESSION", "1000".into()),
        ("EXAI_THREADS_MAX_TURNS", "1000".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// One transport under test: its sessions (one per worker over HTTP; the one stdio session is
/// shared by all workers, as one agent's parallel calls would be) and the child's pid.
struct Via {
    name: &'static str,
    clients: Vec<Client>,
    child: Option<u32>,
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
    let transports = value("--transport").unwrap_or_else(|| "http,stdio".into());
    let only = value("--only");
    let exai_bin = value("--exai").map(PathBuf::from).unwrap_or_else(|| {
        // target/release/examples/gateway_overhead → target/release/exai
        let exe = std::env::current_exe().unwrap();
        exe.parent().unwrap().parent().unwrap().join("exai")
    });

    let mock = MockServer::start(Some("k".into())).await.unwrap();
    let base = std::env::temp_dir().join(format!("exai-overhead-{}", std::process::id()));
    let home = base.join("http");
    std::fs::create_dir_all(&home).unwrap();
    let inputs = Inputs {
        env: provider_env(&home, &mock.url),
        ..Inputs::default()
    };
    let loaded = exai_core::config::load(&inputs).unwrap();
    // The activity log a daemon writes, one line per call.
    let paths = exai_core::paths::DataPaths::new(&home);
    let activity = ActivityLog::open(&paths.activity_file(), 10 << 20, 2).unwrap();
    let state = AppState::new(loaded, Transport::Http, Some(activity));
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

    // The stdio server: `exai serve` with its own data directory, logging as it would for a user.
    let mut child_proc = None;
    let mut stdio_client: Option<Client> = None;
    if transports.contains("stdio") && (only.is_none() || transports == "stdio") {
        let home = base.join("stdio");
        std::fs::create_dir_all(&home).unwrap();
        let mut cmd = tokio::process::Command::new(&exai_bin);
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(provider_env(&home, &mock.url))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", exai_bin.display()));
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        stdio_client = Some(Arc::new(().serve((stdout, stdin)).await.unwrap()));
        child_proc = Some(child);
    }
    if let Some(kind) = only {
        let client: Client = match &stdio_client {
            Some(c) => c.clone(),
            None => Arc::new(
                ().serve(StreamableHttpClientTransport::from_uri(mcp_url.clone()))
                    .await
                    .unwrap(),
            ),
        };
        let warm: usize = value("--warm").map_or(20, |v| v.parse().unwrap());
        for i in 0..warm + calls {
            match kind.as_str() {
                "direct" => direct_call(&http, &direct_url, i).await,
                name => tool_call(&client, name, i).await,
            }
        }
        drop((client, stdio_client));
        if let Some(mut child) = child_proc {
            let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
        }
        let _ = std::fs::remove_dir_all(&base);
        return;
    }

    let child_pid = child_proc.as_ref().and_then(tokio::process::Child::id);

    for &concurrency in &levels {
        let mut vias = Vec::new();
        if transports.contains("http") {
            // One MCP session per worker, as separate agents would have.
            let mut clients = Vec::new();
            for _ in 0..concurrency {
                let client =
                    ().serve(StreamableHttpClientTransport::from_uri(mcp_url.clone()))
                        .await
                        .unwrap();
                clients.push(Arc::new(client));
            }
            vias.push(Via {
                name: "http",
                clients,
                child: None,
            });
        }
        if let Some(client) = &stdio_client {
            vias.push(Via {
                name: "stdio",
                clients: vec![client.clone()],
                child: child_pid,
            });
        }
        let direct = {
            let (http, url) = (http.clone(), direct_url.clone());
            move |i: usize| {
                let (http, url) = (http.clone(), url.clone());
                async move { direct_call(&http, &url, i).await }
            }
        };
        let tool = |name: &'static str, clients: Vec<Client>| {
            move |i: usize| {
                let c = clients[i % clients.len()].clone();
                async move { tool_call(&c, name, i).await }
            }
        };
        // Warm up every path.
        let warm = calls.min(200);
        run(
            warm,
            concurrency,
            None,
            &mut Sample::default(),
            direct.clone(),
        )
        .await;
        for via in &vias {
            for name in ["chat", "version"] {
                let f = tool(name, via.clients.clone());
                run(warm, concurrency, via.child, &mut Sample::default(), f).await;
            }
        }
        // Interleave rounds so drift hits every path alike.
        let rounds = 4;
        let mut d = Sample::default();
        let mut per_via: Vec<(Sample, Sample)> = vias.iter().map(|_| Default::default()).collect();
        for _ in 0..rounds {
            let n = calls / rounds;
            run(n, concurrency, child_pid, &mut d, direct.clone()).await;
            for (via, (c, v)) in vias.iter().zip(per_via.iter_mut()) {
                run(
                    n,
                    concurrency,
                    child_pid,
                    c,
                    tool("chat", via.clients.clone()),
                )
                .await;
                run(
                    n,
                    concurrency,
                    child_pid,
                    v,
                    tool("version", via.clients.clone()),
                )
                .await;
            }
        }
        let mut report = json!({
            "concurrency": concurrency,
            "calls": calls,
            "load_average": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
            "direct_ms": d.json(),
        });
        for (via, (c, v)) in vias.iter().zip(&per_via) {
            report[via.name] = json!({
                "mcp_chat_ms": c.json(),
                "mcp_version_ms": v.json(),
                "overhead_ms": { "p50": round(c.p(0.5) - d.p(0.5)), "p99": round(c.p(0.99) - d.p(0.99)) },
                "overhead_beyond_mcp_roundtrip_ms": {
                    "p50": round(c.p(0.5) - d.p(0.5) - v.p(0.5)),
                    "p99": round(c.p(0.99) - d.p(0.99) - v.p(0.99)),
                },
                "cpu_us_per_call": {
                    "chat_minus_direct": (c.cpu_us() - d.cpu_us()).round(),
                    "chat_minus_direct_minus_version": (c.cpu_us() - d.cpu_us() - v.cpu_us()).round(),
                },
            });
        }
        println!("{report}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(stdio_client);
    if let Some(mut child) = child_proc {
        let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
        let _ = child.kill().await;
    }
    let _ = std::fs::remove_dir_all(&base);
}
