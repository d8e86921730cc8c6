//! Gateway overhead of the AI tools: an MCP `chat` call through exai to the mock provider, against
//! the same chat request sent to the mock directly, and a trivial MCP tool (`version`) for the
//! protocol's own share. Transports (`--transport`, any of): `http` (`exai daemon` as a child
//! process, the rmcp client, one session per worker), `http-pooled` (the same with the rmcp
//! client on a reqwest client that keeps idle connections, as `exai shim` uses it; the SDK's
//! default client keeps none, so `http` opens a TCP connection per call), `stdio` (`exai serve` as a child process,
//! the rmcp client on its pipes, as Claude Code runs it) and `http-inproc` (exai's HTTP server in
//! this process). The mock runs in this process; paths are measured side by side, interleaved in
//! rounds, at each concurrency.
//!
//! ```text
//! cargo run --release -p exai-server --example gateway_overhead -- \
//!     [--calls 2000] [--concurrency 1,50] [--transport http,stdio] [--exai target/release/exai] \
//!     [--provider-ms L [--open]]
//! ```
//! Prints one JSON object per concurrency: p50/p99 in ms of each path, the CPU time each call
//! costs (this process and the children, user + system), and the overheads.
//!
//! `--provider-ms L` makes the mock take L ms before it answers (`[[mock:slow=L]]`, on the direct
//! request and on exai's alike), as a real provider does. `--open` replaces the closed loop (each
//! worker sends its next call when the last one returned) by an open one, as gateways are usually
//! measured: calls arrive at a fixed rate of c·1000/L per second whether or not earlier ones have
//! returned, so that c calls are in flight on average (Little's law); needs `--provider-ms`.
//!
//! `--only direct|chat|version` runs `--calls` calls of one path at concurrency 1 after `--warm`
//! calls and nothing else (over the first `--transport` named, by default `http-inproc`), for an
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
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
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
fn child_cpu(pids: &[u32]) -> f64 {
    pids.iter().map(|&pid| one_child_cpu(pid)).sum()
}

fn one_child_cpu(pid: u32) -> f64 {
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

/// `calls` calls by `concurrency` workers, each call timed; the CPU this process and the servers spent.
async fn run<F, Fut>(calls: usize, concurrency: usize, children: &[u32], out: &mut Sample, make: F)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static + Clone,
    Fut: std::future::Future<Output = ()> + Send,
{
    let per = calls / concurrency;
    let cpu0 = own_cpu() + child_cpu(children);
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
    out.cpu_s += own_cpu() + child_cpu(children) - cpu0;
}

/// `calls` calls arriving at `rate` per second (an open loop: a call starts on schedule whether
/// or not earlier ones have returned), each timed from the moment it is sent; the CPU this
/// process and the servers spent. Returns the rate achieved (calls over the time the arrivals took).
async fn run_open<F, Fut>(
    calls: usize,
    rate: f64,
    children: &[u32],
    out: &mut Sample,
    make: F,
) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static + Clone,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let cpu0 = own_cpu() + child_cpu(children);
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(calls);
    for i in 0..calls {
        ticks.tick().await;
        let call = make(i);
        // Timed from the spawn, so a wait for a busy runtime counts, a late timer tick does not.
        let t = Instant::now();
        tasks.push(tokio::spawn(async move {
            call.await;
            t.elapsed().as_secs_f64() * 1000.0
        }));
    }
    let arrivals = start.elapsed().as_secs_f64();
    for t in tasks {
        out.ms.push(t.await.unwrap());
    }
    out.cpu_s += own_cpu() + child_cpu(children) - cpu0;
    (calls.saturating_sub(1)) as f64 / arrivals.max(1e-9)
}

/// How calls are offered: a closed loop of `c` workers, or an open loop at a fixed rate.
#[derive(Clone, Copy)]
enum Load {
    Closed(usize),
    Open(f64),
}

/// Runs `calls` calls under `load`; returns the arrival rate achieved in an open loop.
async fn drive<F, Fut>(
    load: Load,
    calls: usize,
    children: &[u32],
    out: &mut Sample,
    make: F,
) -> Option<f64>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static + Clone,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    match load {
        Load::Closed(c) => {
            run(calls, c, children, out, make).await;
            None
        }
        Load::Open(rate) => Some(run_open(calls, rate, children, out, make).await),
    }
}

/// The mock's answer latency in ms (`--provider-ms`), 0 for none; set once before any call.
static PROVIDER_MS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

fn prompt(i: usize) -> String {
    match PROVIDER_MS.get().copied().unwrap_or(0) {
        0 => format!("question number {i} about ownership and borrowing"),
        ms => format!("question number {i} about ownership and borrowing [[mock:slow={ms}]]"),
    }
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

/// What the server processes inherit from the benchmark's environment: `PATH`, and
/// `SERVER_WORKER_THREADS` as their `TOKIO_WORKER_THREADS`, to try another number of async
/// workers in the servers only.
fn passthrough() -> Vec<(String, String)> {
    [
        ("PATH", "PATH"),
        ("SERVER_WORKER_THREADS", "TOKIO_WORKER_THREADS"),
    ]
    .into_iter()
    .filter_map(|(from, to)| std::env::var(from).ok().map(|v| (to.to_string(), v)))
    .collect()
}

/// One transport under test and how to reach it.
struct Via {
    name: &'static str,
    reach: Reach,
}

enum Reach {
    /// An MCP URL: each worker opens its own session, as separate agents would; `pooled`: on a
    /// client that keeps its connections.
    Http { url: String, pooled: bool },
    /// The one stdio session, shared by all workers as one agent's parallel calls would be.
    Stdio(Client),
}

impl Via {
    /// The sessions `workers` workers use (taken in turn).
    async fn sessions(&self, workers: usize) -> Vec<Client> {
        match &self.reach {
            Reach::Stdio(client) => vec![client.clone()],
            Reach::Http { url, pooled } => {
                let mut clients = Vec::new();
                for _ in 0..workers {
                    clients.push(http_session(url, *pooled).await);
                }
                clients
            }
        }
    }
}

/// `exai ARGS` with its own data directory and the mock as its provider, stdin and stdout piped
/// to this process (`piped`) or not, stderr discarded.
fn spawn_server(
    exai_bin: &std::path::Path,
    args: &[&str],
    home: &std::path::Path,
    mock_url: &str,
    piped: bool,
) -> tokio::process::Child {
    let stdio = || {
        if piped {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        }
    };
    tokio::process::Command::new(exai_bin)
        .args(args)
        .env_clear()
        .envs(passthrough())
        .envs(provider_env(home, mock_url))
        .stdin(stdio())
        .stdout(stdio())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", exai_bin.display()))
}

/// `exai daemon` as a child on a free loopback port, with its own data directory; returns the
/// child and its MCP URL once `/ready` answers.
async fn start_daemon(
    exai_bin: &std::path::Path,
    home: &std::path::Path,
    mock_url: &str,
) -> (tokio::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let child = spawn_server(
        exai_bin,
        &["daemon", "--listen", &listen],
        home,
        mock_url,
        false,
    );
    let http = reqwest::Client::new();
    let ready = format!("http://127.0.0.1:{port}/ready");
    for _ in 0..200 {
        if http
            .get(&ready)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return (child, format!("http://127.0.0.1:{port}/mcp"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("exai daemon did not become ready on port {port}");
}

/// An exai server in this process (Streamable HTTP on a loopback port), for an instruction
/// profile of client, server and mock together.
async fn start_in_process(home: &std::path::Path, mock_url: &str) -> String {
    let inputs = Inputs {
        env: provider_env(home, mock_url),
        ..Inputs::default()
    };
    let loaded = exai_core::config::load(&inputs).unwrap();
    // The activity log a daemon writes, one line per call.
    let paths = exai_core::paths::DataPaths::new(home);
    let activity = ActivityLog::open(&paths.activity_file(), 10 << 20, 2).unwrap();
    let state = AppState::new(loaded, Transport::Http, Some(activity));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(exai_server::http::serve(
        state,
        listener,
        std::future::pending(),
    ));
    format!("http://{addr}/mcp")
}

async fn http_session(url: &str, pooled: bool) -> Client {
    let transport = if pooled {
        StreamableHttpClientTransport::with_client(
            reqwest::Client::new(),
            StreamableHttpClientTransportConfig::with_uri(url.to_string()),
        )
    } else {
        StreamableHttpClientTransport::from_uri(url.to_string())
    };
    Arc::new(().serve(transport).await.unwrap())
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
    let provider_ms: u64 = value("--provider-ms").map_or(0, |v| v.parse().unwrap());
    PROVIDER_MS.set(provider_ms).unwrap();
    let open = args.iter().any(|a| a == "--open");
    assert!(
        !open || provider_ms > 0,
        "--open needs --provider-ms: the arrival rate is concurrency / provider latency"
    );
    let exai_bin = value("--exai").map(PathBuf::from).unwrap_or_else(|| {
        // target/release/examples/gateway_overhead → target/release/exai
        let exe = std::env::current_exe().unwrap();
        exe.parent().unwrap().parent().unwrap().join("exai")
    });

    let mock = MockServer::start(Some("k".into())).await.unwrap();
    let base = std::env::temp_dir().join(format!("exai-overhead-{}", std::process::id()));
    let http = reqwest::Client::new();
    let direct_url = format!("{}/chat/completions", mock.url);
    let names: Vec<&str> = transports.split(',').map(str::trim).collect();
    // `--only` profiles one transport, by default the in-process server.
    let names = match (&only, value("--transport")) {
        (Some(_), None) => vec!["http-inproc"],
        (Some(_), Some(_)) => names[..1].to_vec(),
        (None, _) => names,
    };

    let mut children = Vec::new();
    let mut vias = Vec::new();
    for name in names {
        let home = base.join(name);
        std::fs::create_dir_all(&home).unwrap();
        match name {
            // `exai daemon`, as a user runs it for HTTP clients.
            "http" | "http-pooled" => {
                let (child, url) = start_daemon(&exai_bin, &home, &mock.url).await;
                children.push(child);
                let pooled = name == "http-pooled";
                vias.push(Via {
                    name: if pooled { "http_pooled" } else { "http" },
                    reach: Reach::Http { url, pooled },
                });
            }
            "http-inproc" => {
                let url = start_in_process(&home, &mock.url).await;
                vias.push(Via {
                    name: "http_in_process",
                    reach: Reach::Http { url, pooled: false },
                });
            }
            // `exai serve` with its own data directory, logging as it would for a user.
            "stdio" => {
                let mut child = spawn_server(&exai_bin, &["serve"], &home, &mock.url, true);
                let stdin = child.stdin.take().unwrap();
                let stdout = child.stdout.take().unwrap();
                let client: Client = Arc::new(().serve((stdout, stdin)).await.unwrap());
                children.push(child);
                vias.push(Via {
                    name: "stdio",
                    reach: Reach::Stdio(client),
                });
            }
            other => panic!("unknown transport {other}: http, http-pooled, http-inproc or stdio"),
        }
    }
    let pids: Vec<u32> = children
        .iter()
        .filter_map(tokio::process::Child::id)
        .collect();

    if let Some(kind) = only {
        let client = vias[0].sessions(1).await.remove(0);
        let warm: usize = value("--warm").map_or(20, |v| v.parse().unwrap());
        for i in 0..warm + calls {
            match kind.as_str() {
                "direct" => direct_call(&http, &direct_url, i).await,
                name => tool_call(&client, name, i).await,
            }
        }
        drop((client, vias));
        stop(children).await;
        let _ = std::fs::remove_dir_all(&base);
        return;
    }

    for &concurrency in &levels {
        let mut sessions: Vec<Vec<Client>> = Vec::new();
        for via in &vias {
            sessions.push(via.sessions(concurrency).await);
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
        let load = if open {
            Load::Open(concurrency as f64 * 1000.0 / provider_ms as f64)
        } else {
            Load::Closed(concurrency)
        };
        // Warm up every path.
        let warm = calls.min(200);
        drive(load, warm, &pids, &mut Sample::default(), direct.clone()).await;
        for clients in &sessions {
            for name in ["chat", "version"] {
                let f = tool(name, clients.clone());
                drive(load, warm, &pids, &mut Sample::default(), f).await;
            }
        }
        // Interleave rounds so drift hits every path alike.
        let rounds = 4;
        let mut d = Sample::default();
        let mut per_via: Vec<(Sample, Sample)> = vias.iter().map(|_| Default::default()).collect();
        let mut rates = Vec::new();
        for _ in 0..rounds {
            let n = calls / rounds;
            rates.extend(drive(load, n, &pids, &mut d, direct.clone()).await);
            for (clients, (c, v)) in sessions.iter().zip(per_via.iter_mut()) {
                let chat = tool("chat", clients.clone());
                rates.extend(drive(load, n, &pids, c, chat).await);
                let version = tool("version", clients.clone());
                rates.extend(drive(load, n, &pids, v, version).await);
            }
        }
        let mut report = json!({
            "concurrency": concurrency,
            "calls": calls,
            "provider_ms": provider_ms,
            "load": if open { "open loop" } else { "closed loop" },
            "arrivals_per_s": if open { json!({
                "asked": round(concurrency as f64 * 1000.0 / provider_ms as f64),
                "lowest_achieved": round(rates.iter().copied().fold(f64::INFINITY, f64::min)),
            }) } else { Value::Null },
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
    drop(vias);
    stop(children).await;
    let _ = std::fs::remove_dir_all(&base);
}

/// SIGTERM to each server, as an operator stops it; killed if it is not gone within 5 s.
async fn stop(children: Vec<tokio::process::Child>) {
    use nix::sys::signal::{Signal, kill};
    for mut child in children {
        if let Some(pid) = child.id() {
            let _ = kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
        if tokio::time::timeout(Duration::from_secs(5), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }
}
