//! `GET /ui/events?topics=…`: the dashboard's live data, pushed by the daemon (Server-Sent
//! Events), one stream per open page with the topics that page shows:
//! - `stats`: calls, failures, calls in flight, connections, sessions, resident memory — once a
//!   second when something changed, else every ten seconds;
//! - `calls`: each finished tool call, as its activity record;
//! - `jobs`: the viewer's index jobs, once a second while one changes (other daemons' jobs,
//!   shared through PostgreSQL, are asked every ten seconds);
//! - `logs`: new entries of the merged log and activity stream;
//! - `validation`: the progress of a validation run started from the dashboard.
//!
//! Each stream is one task that wakes once a second and sends only what changed, so an idle open
//! dashboard costs the daemon next to nothing; it ends when the page goes away or the daemon
//! starts stopping (an open page must not hold a stopping daemon for its grace period).

use std::collections::HashSet;
use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::Extension;
use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use exai_server::events::ServerEvent;
use exai_server::http::Principal;
use futures::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};

use crate::context::Ctx;

const TICK: Duration = Duration::from_secs(1);
/// Unchanged stats are still sent this often (memory and uptime move on their own).
const STATS_AT_LEAST: Duration = Duration::from_secs(10);
/// Log entries sent per tick at most; a burst beyond is summarised as a count.
const LOGS_PER_TICK: usize = 200;
/// Events queued for a page that reads slowly before the stream gives up on it.
const QUEUE: usize = 256;
/// Ticks between two looks at the jobs other daemons share through PostgreSQL (a query each).
const SHARED_JOBS_EVERY: u32 = 10;

pub(crate) const TOPICS: &[&str] = &["stats", "calls", "jobs", "logs", "validation"];

#[derive(Deserialize)]
pub(crate) struct Params {
    #[serde(default)]
    topics: String,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Stats {
    pub calls: u64,
    pub failed: u64,
    pub inflight: usize,
    pub connections: u64,
    pub sessions: u64,
    pub rss_bytes: Option<u64>,
    pub uptime_secs: u64,
    /// Each configured provider's counters (empty until the AI tools first run).
    pub providers: Vec<exai_llm::metrics::ProviderSummary>,
}

impl Stats {
    /// What changing is worth a push (memory and uptime move on their own).
    fn key(&self) -> (u64, u64, usize, u64, u64, u64) {
        let requests = self.providers.iter().map(|p| p.requests).sum();
        (
            self.calls,
            self.failed,
            self.inflight,
            self.connections,
            self.sessions,
            requests,
        )
    }
}

pub(crate) fn stats(ctx: &Ctx) -> Stats {
    let state = &ctx.state;
    let (calls, failed) = state.metrics.totals();
    Stats {
        calls,
        failed,
        inflight: state.inflight(),
        connections: state.metrics.transport.connections_open.get(),
        sessions: state.metrics.transport.sessions_open.get(),
        rss_bytes: exai_ops::health::rss_bytes(std::process::id()),
        uptime_secs: state.started.elapsed().as_secs(),
        providers: state
            .ai_started()
            .map(|ai| ai.gateway.provider_summaries())
            .unwrap_or_default(),
    }
}

pub(crate) async fn stream(
    State(ctx): State<Ctx>,
    Extension(principal): Extension<Principal>,
    Query(params): Query<Params>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let topics: HashSet<&'static str> = params
        .topics
        .split(',')
        .filter_map(|t| TOPICS.iter().find(|k| **k == t.trim()).copied())
        .collect();
    let (tx, rx) = mpsc::channel::<Event>(QUEUE);
    let calls = topics
        .contains("calls")
        .then(|| ctx.state.events.subscribe());
    let validation = topics
        .contains("validation")
        .then(|| ctx.validation.subscribe());
    tokio::spawn(pump(ctx, principal, topics, calls, validation, tx));
    let events = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|event| (Ok(event), rx))
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

fn event(kind: &str, data: &impl Serialize) -> Option<Event> {
    Event::default().event(kind).json_data(data).ok()
}

/// Feed one page's stream until it goes away or the daemon stops.
async fn pump(
    ctx: Ctx,
    principal: Principal,
    topics: HashSet<&'static str>,
    mut calls: Option<broadcast::Receiver<ServerEvent>>,
    mut validation: Option<broadcast::Receiver<serde_json::Value>>,
    tx: mpsc::Sender<Event>,
) {
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_stats: Option<(Stats, Instant)> = None;
    let mut last_jobs = String::new();
    // Other daemons' jobs (PostgreSQL), asked every SHARED_JOBS_EVERY ticks, not every second.
    let mut others: Vec<serde_json::Value> = Vec::new();
    let mut ticks: u32 = 0;
    let mut follower = topics
        .contains("logs")
        .then(|| exai_ops::logs::Follower::new(&ctx.state.paths));
    loop {
        let next_call = async {
            match calls.as_mut() {
                Some(rx) => Some(rx.recv().await),
                None => std::future::pending().await,
            }
        };
        let next_validation = async {
            match validation.as_mut() {
                Some(rx) => Some(rx.recv().await),
                None => std::future::pending().await,
            }
        };
        let out = tokio::select! {
            () = tx.closed() => return,
            received = next_call => match received {
                Some(Ok(ServerEvent::Call(record))) => event("call", &*record),
                Some(Err(broadcast::error::RecvError::Lagged(missed))) => {
                    event("lagged", &serde_json::json!({ "missed": missed }))
                }
                Some(Err(broadcast::error::RecvError::Closed)) | None => return,
            },
            received = next_validation => match received {
                Some(Ok(progress)) => event("validation", &progress),
                Some(Err(broadcast::error::RecvError::Lagged(missed))) => {
                    event("lagged", &serde_json::json!({ "missed": missed }))
                }
                Some(Err(broadcast::error::RecvError::Closed)) | None => return,
            },
            _ = ticker.tick() => {
                if ctx.state.is_draining() {
                    return;
                }
                let mut batch = Vec::new();
                if topics.contains("stats") {
                    let now = stats(&ctx);
                    let due = last_stats.as_ref().is_none_or(|(before, at)| {
                        at.elapsed() >= STATS_AT_LEAST || before.key() != now.key()
                    });
                    if due {
                        batch.extend(event("stats", &now));
                        last_stats = Some((now, Instant::now()));
                    }
                }
                if topics.contains("jobs") {
                    let mut jobs = local_jobs(&ctx, &principal);
                    if ctx.state.knowledge.jobs.is_shared() {
                        if ticks.is_multiple_of(SHARED_JOBS_EVERY) {
                            others = crate::events::jobs(&ctx, &principal).await;
                        }
                        let here: HashSet<String> =
                            jobs.iter().filter_map(|j| j["job_id"].as_str().map(String::from)).collect();
                        jobs.extend(others.iter().filter(|j| {
                            j["job_id"].as_str().is_some_and(|id| !here.contains(id))
                        }).cloned());
                    }
                    ticks = ticks.wrapping_add(1);
                    // A finished job's age grows on its own: not a change worth sending.
                    let running = jobs.iter().any(|j| j["state"] == "running");
                    let key: Vec<_> = jobs
                        .iter()
                        .map(|j| (&j["job_id"], &j["state"], &j["phase"], &j["files_done"], &j["embedded"]))
                        .collect();
                    let text = serde_json::to_string(&key).unwrap_or_default();
                    if running || text != last_jobs {
                        batch.extend(event("jobs", &jobs));
                        last_jobs = text;
                    }
                }
                if let Some(f) = follower.as_mut() {
                    // A few small reads of local files: not worth a blocking thread.
                    let mut entries = f.poll();
                    let more = entries.len().saturating_sub(LOGS_PER_TICK);
                    let entries = entries.split_off(more);
                    if more > 0 {
                        batch.extend(event("lagged", &serde_json::json!({ "missed": more })));
                    }
                    batch.extend(entries.iter().filter_map(|e| event("log", e)));
                }
                for e in batch {
                    if tx.send(e).await.is_err() {
                        return;
                    }
                }
                continue;
            }
        };
        if let Some(e) = out
            && tx.send(e).await.is_err()
        {
            return;
        }
    }
}

/// The viewer's jobs of this daemon, from memory.
fn local_jobs(ctx: &Ctx, principal: &Principal) -> Vec<serde_json::Value> {
    let jobs = &ctx.state.knowledge.jobs;
    jobs.ids(principal.name())
        .iter()
        .filter_map(|id| jobs.get(id, principal.name()))
        .filter_map(|job| serde_json::to_value(job.status()).ok())
        .collect()
}

/// The viewer's index jobs, this daemon's and (with PostgreSQL) the others' recent ones.
pub(crate) async fn jobs(ctx: &Ctx, principal: &Principal) -> Vec<serde_json::Value> {
    let jobs = &ctx.state.knowledge.jobs;
    let mut out = Vec::new();
    for id in jobs.known_ids(principal.name()).await {
        if let Ok(Some(status)) = jobs.status(&id, principal.name()).await {
            out.extend(serde_json::to_value(&status).ok());
        }
    }
    out
}
