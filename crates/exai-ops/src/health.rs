//! `exai health`: the daily check in one command. Each check is ok, warn or fail; the exit code
//! is 0 when all are ok, 1 with warnings, 2 with a failure (cron-friendly).

use std::path::Path;
use std::time::{Duration, Instant};

use exai_core::Loaded;
use exai_core::paths::DataPaths;
use serde::Serialize;

use crate::db;
use crate::logs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    pub fn exit_code(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Warn => 1,
            Status::Fail => 2,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub detail: String,
    /// Numbers behind the detail, for scripts.
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub data: serde_json::Value,
}

pub(crate) fn check(name: &str, status: Status, detail: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        status,
        detail: detail.into(),
        data: serde_json::Value::Null,
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub status: Status,
    pub time: String,
    pub data_dir: String,
    pub version: String,
    pub checks: Vec<Check>,
}

impl Report {
    /// Add a check made outside [`run`]; the overall status follows.
    pub fn add(&mut self, check: Check) {
        self.status = self.status.max(check.status);
        self.checks.push(check);
    }
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Total bytes of the files under `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

/// Resident memory of a process, from /proc.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// `GET {base}/health` of a daemon as JSON, if it answers.
pub async fn fetch_health(base: &str, token: Option<&str>) -> Result<serde_json::Value, String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())?;
    let mut req = client.get(format!("{base}/health"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| format!("{base}/health: {e}"))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("{base}/health answered {status}"));
    }
    resp.json().await.map_err(|e| e.to_string())
}

async fn daemon_checks(loaded: &Loaded, out: &mut Vec<Check>) {
    let pid_file = DataPaths::new(loaded.data_dir.clone()).pid_file();
    let stale = exai_core::pidfile::read_pid(&pid_file).ok().flatten();
    let record = match exai_core::pidfile::running(&pid_file) {
        Ok(Some(r)) => r,
        Ok(None) => {
            let note = match stale {
                Some(old) => format!(" (removed a stale pid file of pid {})", old.pid),
                None => String::new(),
            };
            out.push(check(
                "daemon",
                Status::Warn,
                format!(
                    "not running{note}; `exai daemon start` starts the shared daemon (stdio clients run their own server)"
                ),
            ));
            return;
        }
        Err(e) => {
            out.push(check("daemon", Status::Fail, e.to_string()));
            return;
        }
    };
    let auth = &loaded.config.server.auth_token;
    let token = auth.is_set().then(|| auth.expose().to_string());
    let base = exai_core::pidfile::base_url(&record.listen);
    let asked = Instant::now();
    match fetch_health(&base, token.as_deref()).await {
        Ok(h) => {
            let latency_ms = asked.elapsed().as_secs_f64() * 1000.0;
            let status = h["status"].as_str().unwrap_or("?").to_string();
            let slow = latency_ms > crate::monitor::HEALTH_SLOW_MS;
            let mut c = check(
                "daemon",
                if status == "ok" && !slow {
                    Status::Ok
                } else {
                    Status::Warn
                },
                format!(
                    "pid {} on {}, /health {status} in {latency_ms:.0} ms{}, version {}, up {:.0} s, {} call(s) in flight",
                    record.pid,
                    record.listen,
                    if slow {
                        " (slow: the daemon is overloaded or stalled)"
                    } else {
                        ""
                    },
                    h["version"].as_str().unwrap_or("?"),
                    h["uptime_secs"].as_f64().unwrap_or(0.0),
                    h["inflight_calls"]
                ),
            );
            let more = refusal_and_reload_checks(&h);
            c.data = serde_json::json!({ "pid": record.pid, "listen": record.listen, "health_latency_ms": latency_ms, "health": h });
            out.push(c);
            out.extend(more);
        }
        Err(e) => out.push(check(
            "daemon",
            Status::Fail,
            format!(
                "pid {} is alive but {base}/health does not answer: {e}; `exai daemon restart`",
                record.pid
            ),
        )),
    }
    out.extend(crate::monitor::memory_check(loaded, rss_bytes(record.pid)));
    out.push(crate::monitor::memory_trend_check(loaded));
}

/// From a daemon's `/health`: the requests it refused (by reason, since its start) and how its
/// latest configuration reload went.
fn refusal_and_reload_checks(health: &serde_json::Value) -> Vec<Check> {
    let mut out = Vec::new();
    if let Some(refused) = health["http"]["refused"].as_object() {
        let counts: Vec<(&String, u64)> = refused
            .iter()
            .filter_map(|(reason, n)| Some((reason, n.as_u64()?)))
            .collect();
        let total: u64 = counts.iter().map(|(_, n)| n).sum();
        let detail = if total == 0 {
            "no request refused since the daemon started".to_string()
        } else {
            let by: Vec<String> = counts
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(reason, n)| format!("{reason} {n}"))
                .collect();
            format!(
                "{total} request(s) refused since the daemon started ({}); the log names each client address",
                by.join(", ")
            )
        };
        let mut c = check("http_refused", Status::Ok, detail);
        c.data = serde_json::json!({ "total": total, "by_reason": refused });
        out.push(c);
    }
    let reload = &health["last_reload"];
    if reload.is_object() {
        let at = reload["at"].as_str().unwrap_or("?");
        let restart: Vec<&str> = reload["restart_needed"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        let mut c = if reload["accepted"] != true {
            check(
                "config_reload",
                Status::Warn,
                format!(
                    "the reload at {at} was refused, the daemon runs its previous configuration: {}",
                    reload["error"].as_str().unwrap_or("?")
                ),
            )
        } else if !restart.is_empty() {
            check(
                "config_reload",
                Status::Warn,
                format!(
                    "reloaded at {at}; changed settings wait for `exai daemon restart`: {}",
                    restart.join(", ")
                ),
            )
        } else {
            check("config_reload", Status::Ok, format!("reloaded at {at}"))
        };
        c.data = reload.clone();
        out.push(c);
    }
    out
}

fn config_check(loaded: &Loaded) -> Check {
    // A configuration or timeout hierarchy that does not validate never loads: the command
    // exits 2 naming the key before any check runs.
    let t = &loaded.timeouts;
    check(
        "config",
        Status::Ok,
        format!(
            "{}; timeouts valid: tool {} s < daemon {} s < shim {} s < client {} s",
            loaded.file.as_ref().map_or_else(
                || "no config file (defaults)".into(),
                |p| p.display().to_string()
            ),
            t.workflow_tool,
            t.daemon,
            t.shim,
            t.client,
        ),
    )
}

async fn provider_checks(loaded: &Loaded, live: bool, out: &mut Vec<Check>) {
    let env = |name: &str| std::env::var(name).ok();
    let gateway = exai_llm::Gateway::from_config(&loaded.config, &env);
    let mut configured: Vec<String> = gateway.configured().into_iter().collect();
    configured.sort();
    if configured.is_empty() {
        out.push(check(
            "providers",
            Status::Warn,
            "none configured: the AI tools answer with an error; set KIMI_API_KEY, GLM_API_KEY, OPENAI_API_KEY or OPENROUTER_API_KEY, or add providers.custom",
        ));
        return;
    }
    let mut c = check(
        "providers",
        Status::Ok,
        format!(
            "{} (default model {})",
            configured.join(", "),
            loaded.config.providers.default_model
        ),
    );
    c.data = serde_json::json!({ "configured": configured });
    out.push(c);
    if !live {
        return;
    }
    for id in configured {
        // The cheapest model of the provider answers a one-word prompt.
        let model = gateway
            .registry()
            .all()
            .filter(|m| m.provider == id)
            .min_by(|a, b| (a.price_in + a.price_out).total_cmp(&(b.price_in + b.price_out)))
            .map(|m| m.name.clone());
        let Some(model) = model else {
            out.push(check(
                &format!("provider_{id}"),
                Status::Warn,
                "configured, but no model of this provider is in the registry (providers.models)",
            ));
            continue;
        };
        let started = Instant::now();
        let call = exai_llm::Call {
            model: model.clone(),
            category: exai_llm::Category::Fast,
            messages: vec![exai_llm::Message::user("Reply with the single word: ok")],
            temperature: Some(0.0),
            max_tokens: Some(5),
            thinking: false,
            web_search: false,
            session: "health".into(),
            deadline: Instant::now() + Duration::from_secs(30),
            progress: None,
            cancel: Default::default(),
            cache_key: None,
        };
        let result = gateway.complete(call).await;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        out.push(match result {
            // Another provider answering means this one failed: the gateway fell back.
            Ok(done) if done.provider != id => check(
                &format!("provider_{id}"),
                Status::Fail,
                format!(
                    "{model}: {}",
                    done.fallbacks
                        .first()
                        .map_or("did not answer".to_string(), |f| f.error.clone())
                ),
            ),
            Ok(done) => {
                let mut c = check(
                    &format!("provider_{id}"),
                    Status::Ok,
                    format!("{model} answered in {ms:.0} ms"),
                );
                c.data = serde_json::json!({ "model": model, "ms": ms, "tokens_in": done.usage.prompt_tokens, "tokens_out": done.usage.completion_tokens });
                c
            }
            Err(e) => check(
                &format!("provider_{id}"),
                Status::Fail,
                format!("{model}: {e}"),
            ),
        });
    }
}

fn database_checks(loaded: &Loaded, out: &mut Vec<Check>) {
    let dbs = db::databases(loaded);
    if dbs.is_empty() {
        out.push(check(
            "databases",
            Status::Ok,
            "none yet (created on first use)",
        ));
    }
    for file in dbs {
        let v = db::verify_file(&file, false);
        let status = if !v.problems.is_empty() {
            Status::Fail
        } else if !v.warnings.is_empty() {
            Status::Warn
        } else {
            Status::Ok
        };
        let mut detail = format!("{} ({})", v.path, human_bytes(v.bytes));
        if let Some(kb) = &v.kb {
            detail.push_str(&format!(
                ", {} documents, {} chunks, {} vectors",
                kb.documents, kb.chunks, kb.vectors
            ));
            if let Some(m) = &kb.embed_model {
                let how = exai_kb::SqliteStore::open_readonly(&file.path)
                    .and_then(|s| exai_kb::index_embedding(&s.into()))
                    .ok()
                    .flatten()
                    .map(|e| e.describe())
                    .unwrap_or_default();
                detail.push_str(&format!(", vectors {how} ({m})"));
            }
        }
        for p in v.problems.iter().chain(&v.warnings) {
            detail.push_str("; ");
            detail.push_str(p);
        }
        if status == Status::Fail {
            detail.push_str(
                "; `exai db verify` for details, `exai db restore` to go back to a backup",
            );
        }
        let mut c = check(&format!("db_{}", v.name), status, detail);
        c.data = serde_json::to_value(&v).unwrap_or_default();
        out.push(c);
    }
}

/// With `database.url` set: the server (one connection attempt, no start-up retries, so a
/// server that is down fails at once), pgvector, connections, each component's schema, and the
/// knowledge base there.
fn postgres_checks(loaded: &Loaded, out: &mut Vec<Check>) {
    let Some(url) = crate::pg::configured(loaded) else {
        return;
    };
    let (pool, server) = match reach_postgres(url, &loaded.config.database) {
        Ok(reached) => reached,
        Err(failed) => {
            out.push(failed);
            return;
        }
    };
    let known = exai_kb::PgStore::known_schema_version();
    let kb_schema = server.kb_schema();
    out.push(postgres_server_check(&pool, &server, known));
    if kb_schema == 0 {
        out.push(check(
            "kb_postgres",
            Status::Ok,
            "no knowledge base in PostgreSQL yet (`exai index PATH --source NAME` or `exai db copy` creates it)",
        ));
    }
    if kb_schema == 0 || kb_schema > known {
        return;
    }
    out.push(kb_postgres_check(&pool));
}

/// The pool and what the server says of itself, or the failing `postgres` check.
fn reach_postgres(
    url: &str,
    database: &exai_core::config::DatabaseConfig,
) -> Result<(std::sync::Arc<exai_pg::Pool>, crate::pg::Server), Check> {
    let pool = match crate::pg::connect(url, database) {
        Ok(p) => p,
        Err(e) => {
            let mut c = check(
                "postgres",
                Status::Fail,
                format!(
                    "{e}; the knowledge base, threads, tracking and index jobs live there (database.url): start the server or fix the URL"
                ),
            );
            c.data = serde_json::json!({ "backend": "postgres", "target": exai_pg::redact(url) });
            return Err(c);
        }
    };
    match crate::pg::server(&pool, database) {
        Ok(server) => Ok((pool, server)),
        Err(e) => Err(check(
            "postgres",
            Status::Fail,
            e.at(pool.target()).to_string(),
        )),
    }
}

/// The server's check: pgvector where the knowledge base needs it, and a kb schema this build
/// can use.
fn postgres_server_check(
    pool: &std::sync::Arc<exai_pg::Pool>,
    server: &crate::pg::Server,
    known: i64,
) -> Check {
    let kb_schema = server.kb_schema();
    let (status, note) = match (&server.pgvector, &server.pgvector_available) {
        (Some(_), _) => (Status::Ok, String::new()),
        (None, Some(_)) if kb_schema == 0 => (Status::Ok, String::new()),
        (None, Some(_)) => (
            Status::Fail,
            "; pgvector is not installed in this database: run `CREATE EXTENSION vector;`".into(),
        ),
        (None, None) => (
            Status::Fail,
            "; the server does not offer pgvector, which the knowledge base needs (https://github.com/pgvector/pgvector#installation)".into(),
        ),
    };
    let (status, note) = if kb_schema > known {
        (
            Status::Fail,
            format!(
                "{note}; kb schema {kb_schema} is newer than this build knows ({known}): upgrade exai"
            ),
        )
    } else if kb_schema > 0 && kb_schema < known {
        (
            status.max(Status::Warn),
            format!("{note}; kb schema {kb_schema}, this build writes {known}: `exai db migrate`"),
        )
    } else {
        (status, note)
    };
    let mut c = check(
        "postgres",
        status,
        format!(
            "backend postgres: {}; schema {}{note}",
            server.describe(),
            server.describe_components()
        ),
    );
    c.data = serde_json::json!({ "backend": "postgres", "server": server, "pool_open": pool.open_connections() });
    c
}

/// The knowledge base in PostgreSQL: its size, and whether its vectors are searchable (the
/// HNSW index valid, every chunk embedded).
fn kb_postgres_check(pool: &std::sync::Arc<exai_pg::Pool>) -> Check {
    let s = match exai_kb::PgStore::attach(pool).and_then(|s| s.stats()) {
        Ok(s) => s,
        Err(e) => return check("kb_postgres", Status::Fail, e.to_string()),
    };
    let mut status = Status::Ok;
    let mut detail = format!(
        "{} sources, {} documents, {} chunks, {} vectors ({})",
        s.sources,
        s.documents,
        s.chunks,
        s.vectors,
        human_bytes(s.bytes)
    );
    match &s.embed_model {
        Some(model) => {
            detail.push_str(&format!("; model {model}"));
            match s.hnsw_valid {
                Some(true) => detail.push_str(&format!(
                    "; HNSW index valid ({})",
                    human_bytes(s.hnsw_bytes.unwrap_or(0))
                )),
                Some(false) => {
                    status = Status::Fail;
                    detail.push_str("; HNSW index INVALID: `REINDEX INDEX kb_embeddings_hnsw;`");
                }
                None => {
                    status = Status::Fail;
                    detail.push_str("; HNSW index missing: the next `exai index` run builds it");
                }
            }
            if s.chunks_without_vectors > 0 {
                status = status.max(Status::Warn);
                detail.push_str(&format!(
                    "; {} chunk(s) without vectors (`exai index` embeds them)",
                    s.chunks_without_vectors
                ));
            }
        }
        None => detail.push_str("; no vectors yet (keyword search only)"),
    }
    if status == Status::Fail {
        detail.push_str("; `exai db verify` for details");
    }
    let mut c = check("kb_postgres", status, detail);
    c.data = serde_json::to_value(&s).unwrap_or_default();
    c
}

fn embedding_check(loaded: &Loaded) -> Check {
    use exai_embed::Backend;
    let settings = exai_embed::EmbedSettings::from_config(loaded);
    let e = &loaded.config.embed;
    match settings.backend {
        Backend::None => check(
            "embedding",
            Status::Ok,
            "off (embed.backend = none): keyword search only",
        ),
        Backend::Remote => check(
            "embedding",
            Status::Ok,
            format!("remote: {} at {}", e.remote_model, e.remote_url),
        ),
        backend => {
            let onnx = (backend != Backend::Candle).then(|| exai_embed::plan_onnx(&settings));
            match onnx {
                Some(Ok((runtime, model))) => check(
                    "embedding",
                    Status::Ok,
                    format!(
                        "onnx {} ({}; runtime {})",
                        settings.precision,
                        model.graph.display(),
                        runtime.display()
                    ),
                ),
                Some(Err(why)) if backend == Backend::Onnx => check(
                    "embedding",
                    Status::Fail,
                    format!("embed.backend = onnx but {why}"),
                ),
                other => {
                    let why = match other {
                        Some(Err(why)) => format!(" (ONNX Runtime not used: {why})"),
                        _ => String::new(),
                    };
                    match exai_embed::locate_local_model(&settings) {
                        Ok(dir) => check(
                            "embedding",
                            Status::Ok,
                            format!("candle fp32 ({}){why}", dir.display()),
                        ),
                        Err(err) => check(
                            "embedding",
                            Status::Warn,
                            format!(
                                "no local model: semantic search is off until one is installed (scripts/install-model.sh, or downloaded from the hub on first use): {err}"
                            ),
                        ),
                    }
                }
            }
        }
    }
}

fn disk_checks(loaded: &Loaded, out: &mut Vec<Check>) {
    let paths = DataPaths::new(loaded.data_dir.clone());
    let total = dir_bytes(&loaded.data_dir);
    let logs = dir_bytes(&paths.logs());
    let dbs: u64 = db::databases(loaded)
        .iter()
        .map(|d| db::file_bytes(&d.path))
        .sum();
    let backups = dir_bytes(&db::backup_root(loaded, None));
    let mut c = check(
        "sizes",
        Status::Ok,
        format!(
            "data dir {}: databases {}, logs {}, backups {}",
            human_bytes(total),
            human_bytes(dbs),
            human_bytes(logs),
            human_bytes(backups)
        ),
    );
    c.data = serde_json::json!({ "data_dir_bytes": total, "database_bytes": dbs, "log_bytes": logs, "backup_bytes": backups });
    out.push(c);
    let probe = if loaded.data_dir.exists() {
        loaded.data_dir.clone()
    } else {
        std::path::PathBuf::from("/")
    };
    match nix::sys::statvfs::statvfs(&probe) {
        Ok(s) => {
            let free = s.blocks_available().saturating_mul(s.fragment_size());
            let size = s.blocks().saturating_mul(s.fragment_size());
            let disk = crate::resources::probe::Disk {
                free_bytes: free,
                total_bytes: size,
            };
            let (status, detail) = crate::monitor::disk_status(loaded, &disk);
            let mut c = check("disk", status, detail);
            c.data = serde_json::json!({ "free_bytes": free, "size_bytes": size, "used_percent": disk.used_percent(), "warn_percent": loaded.config.ops.disk_warn_percent });
            out.push(c);
        }
        Err(e) => out.push(check(
            "disk",
            Status::Warn,
            format!("cannot stat the file system: {e}"),
        )),
    }
}

fn log_check(loaded: &Loaded) -> Check {
    let paths = DataPaths::new(loaded.data_dir.clone());
    let since = chrono::Utc::now() - chrono::Duration::hours(24);
    let c = logs::counts_since(&paths, since);
    let status = if c.errors > 0 || c.failed_calls > 0 || c.rate_limited > 0 {
        Status::Warn
    } else {
        Status::Ok
    };
    let mut out = check(
        "logs_24h",
        status,
        format!(
            "{} error(s), {} warning(s), {} rate limit(s) (429); {} tool call(s), {} failed{}",
            c.errors,
            c.warnings,
            c.rate_limited,
            c.calls,
            c.failed_calls,
            if status == Status::Warn {
                "; `exai logs --errors --since 24h`"
            } else {
                ""
            }
        ),
    );
    out.data = serde_json::to_value(&c).unwrap_or_default();
    out
}

/// Run every check. `live` also sends one tiny request to each configured provider.
pub async fn run(loaded: &Loaded, live: bool) -> Report {
    let mut checks = Vec::new();
    daemon_checks(loaded, &mut checks).await;
    checks.push(config_check(loaded));
    provider_checks(loaded, live, &mut checks).await;
    database_checks(loaded, &mut checks);
    // The blocking PostgreSQL client runs its own runtime: never on an async worker.
    let mut pg_checks = Vec::new();
    std::thread::scope(|scope| {
        let _ = scope
            .spawn(|| postgres_checks(loaded, &mut pg_checks))
            .join();
    });
    checks.extend(pg_checks);
    checks.push(embedding_check(loaded));
    disk_checks(loaded, &mut checks);
    checks.push(log_check(loaded));
    Report {
        status: checks.iter().map(|c| c.status).max().unwrap_or(Status::Ok),
        time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        data_dir: loaded.data_dir.display().to_string(),
        version: exai_core::VERSION.into(),
        checks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_well() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn worst_status_wins() {
        assert!(Status::Fail > Status::Warn && Status::Warn > Status::Ok);
        assert_eq!(Status::Warn.exit_code(), 1);
    }

    #[test]
    fn refusals_and_reloads_from_health() {
        let quiet = serde_json::json!({ "http": { "refused": { "token": 0, "origin": 0 } } });
        let checks = refusal_and_reload_checks(&quiet);
        assert_eq!(checks.len(), 1);
        assert!(checks[0].detail.starts_with("no request refused"));
        let busy = serde_json::json!({
            "http": { "refused": { "token": 3, "origin": 0, "body_too_large": 1 } },
            "last_reload": { "at": "2026-12-06T10:00:00Z", "accepted": false, "error": "bad key" },
        });
        let checks = refusal_and_reload_checks(&busy);
        assert_eq!(checks[0].data["total"], 4);
        assert!(
            checks[0].detail.contains("token 3") && checks[0].detail.contains("body_too_large 1")
        );
        assert!(!checks[0].detail.contains("origin"));
        assert_eq!(checks[1].status, Status::Warn);
        assert!(checks[1].detail.contains("refused") && checks[1].detail.contains("bad key"));
        let pending = serde_json::json!({ "last_reload": {
            "at": "t", "accepted": true, "restart_needed": ["server.listen"] } });
        let checks = refusal_and_reload_checks(&pending);
        assert_eq!(checks[0].status, Status::Warn);
        assert!(checks[0].detail.contains("server.listen"));
        // Over stdio, or from an older daemon: nothing to say.
        assert!(refusal_and_reload_checks(&serde_json::json!({})).is_empty());
    }
}
