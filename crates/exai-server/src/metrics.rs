//! The daemon's metrics: tool calls by tool and outcome with their latency, knowledge-base search
//! latency, and, at scrape time, the index size, calls in flight, uptime, build and the AI
//! providers' counters. Served as Prometheus text at `GET /metrics`.
//!
//! Every tool of the registry has its slots from the start (calls to names outside it share one
//! `other` slot), so recording a call is a short scan of static names and three atomic adds.

use std::sync::Arc;
use std::time::Duration;

use exai_core::metrics::{Counter, Encoder, Gauge, Histogram, Kind};
use exai_kb::Mode;

use crate::registry::{self, TOOLS};
use crate::state::AppState;

/// How a tool call ended: the activity log's `outcome` and the metrics' label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Error,
    Timeout,
    Cancelled,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [
        Outcome::Ok,
        Outcome::Error,
        Outcome::Timeout,
        Outcome::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Timeout => "timeout",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// Tool latency: a millisecond for `version`, up to the longest workflow deadline.
pub const TOOL_SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0, 600.0,
];

/// Search latency, with bounds at the search targets of ARCHITECTURE §5 (10 and 30 ms) and at
/// the earlier ones (15, 40, 50 ms), so old dashboards keep their lines.
pub const SEARCH_SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5,
];

const OTHER_TOOL: &str = "other";

#[derive(Debug)]
struct ToolMetrics {
    calls: [Counter; Outcome::ALL.len()],
    duration: Histogram,
}

impl ToolMetrics {
    fn total(&self) -> u64 {
        self.calls.iter().map(Counter::get).sum()
    }
}

const MODES: [Mode; 3] = [Mode::Hybrid, Mode::Keyword, Mode::Semantic];

/// Counters recorded by the tool-call wrapper and the search tool; shared by every session.
#[derive(Debug)]
pub struct ServerMetrics {
    /// One per registry tool, in registry order, then `other`.
    tools: Box<[ToolMetrics]>,
    /// By [`MODES`] order.
    searches: [Histogram; MODES.len()],
    /// The HTTP listener's connections and MCP sessions (zero over stdio).
    pub transport: Arc<TransportMetrics>,
    /// The daemon's newest resource sample.
    pub resources: crate::sampler::Latest,
}

/// Why the daemon refused an HTTP request: the `reason` label of `exai_http_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 403: `Host` not allowed.
    Host,
    /// 403: `Origin` not allowed.
    Origin,
    /// 401: bearer token missing or wrong.
    Token,
    /// 413: body over `server.max_body_bytes`.
    BodyTooLarge,
    /// 408: body not received within `server.header_read_timeout_secs`.
    BodyTimeout,
    /// 503: every MCP session slot taken (`server.max_sessions`).
    SessionsFull,
}

impl Refusal {
    pub const ALL: [Refusal; 6] = [
        Refusal::Host,
        Refusal::Origin,
        Refusal::Token,
        Refusal::BodyTooLarge,
        Refusal::BodyTimeout,
        Refusal::SessionsFull,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Host => "host",
            Refusal::Origin => "origin",
            Refusal::Token => "token",
            Refusal::BodyTooLarge => "body_too_large",
            Refusal::BodyTimeout => "body_timeout",
            Refusal::SessionsFull => "sessions_full",
        }
    }
}

/// What the HTTP listener and the session manager count, against their caps
/// (`server.max_connections`, `server.max_sessions`).
#[derive(Debug, Default)]
pub struct TransportMetrics {
    /// Refused requests, by [`Refusal::ALL`] order.
    refused: [Counter; Refusal::ALL.len()],
    pub connections_open: Gauge,
    pub connections_max: Gauge,
    /// Connections accepted since the start: against the requests served, how often clients
    /// keep theirs.
    pub connections_accepted: Counter,
    /// Connections that arrived at the cap and waited for a slot.
    pub connections_waited: Counter,
    /// Idle connections closed to make room at the cap.
    pub connections_evicted: Counter,
    pub sessions_open: Gauge,
    pub sessions_max: Gauge,
    /// `initialize` requests refused because every session slot was taken.
    pub sessions_refused: Counter,
    /// Sessions closed after `server.session_idle_secs` without a request.
    pub sessions_expired: Counter,
}

impl TransportMetrics {
    pub fn count_refusal(&self, reason: Refusal) {
        self.refused[reason as usize].inc();
    }

    /// Refused requests by reason, every reason listed.
    pub fn refusals(&self) -> impl Iterator<Item = (Refusal, u64)> + '_ {
        Refusal::ALL
            .into_iter()
            .map(|r| (r, self.refused[r as usize].get()))
    }

    fn encode(&self, enc: &mut Encoder) {
        enc.family(
            "exai_http_refused_total",
            Kind::Counter,
            "HTTP requests refused, by reason (host, origin, token, body_too_large, body_timeout, sessions_full).",
        );
        for (reason, count) in self.refusals() {
            enc.sample(&[("reason", reason.as_str())], count);
        }
        let families: [(&str, Kind, &str, u64); 9] = [
            (
                "exai_http_connections_open",
                Kind::Gauge,
                "HTTP connections open now.",
                self.connections_open.get(),
            ),
            (
                "exai_http_connections_max",
                Kind::Gauge,
                "The connection cap (server.max_connections).",
                self.connections_max.get(),
            ),
            (
                "exai_http_connections_accepted_total",
                Kind::Counter,
                "HTTP connections accepted.",
                self.connections_accepted.get(),
            ),
            (
                "exai_http_connections_waited_total",
                Kind::Counter,
                "Connections that arrived at the cap and waited for a slot.",
                self.connections_waited.get(),
            ),
            (
                "exai_http_connections_evicted_total",
                Kind::Counter,
                "Idle connections closed to make room at the cap.",
                self.connections_evicted.get(),
            ),
            (
                "exai_mcp_sessions_open",
                Kind::Gauge,
                "MCP sessions open now.",
                self.sessions_open.get(),
            ),
            (
                "exai_mcp_sessions_max",
                Kind::Gauge,
                "The session cap (server.max_sessions).",
                self.sessions_max.get(),
            ),
            (
                "exai_mcp_sessions_refused_total",
                Kind::Counter,
                "initialize requests refused with OVER_CAPACITY because every session was taken.",
                self.sessions_refused.get(),
            ),
            (
                "exai_mcp_sessions_expired_total",
                Kind::Counter,
                "Sessions closed after server.session_idle_secs without a request.",
                self.sessions_expired.get(),
            ),
        ];
        for (name, kind, help, value) in families {
            enc.family(name, kind, help);
            enc.sample(&[], value);
        }
    }
}

impl Default for ServerMetrics {
    fn default() -> Self {
        Self {
            tools: (0..=TOOLS.len())
                .map(|_| ToolMetrics {
                    calls: std::array::from_fn(|_| Counter::default()),
                    duration: Histogram::new(TOOL_SECONDS),
                })
                .collect(),
            searches: std::array::from_fn(|_| Histogram::new(SEARCH_SECONDS)),
            transport: Arc::default(),
            resources: crate::sampler::Latest::default(),
        }
    }
}

impl ServerMetrics {
    /// Count a finished tool call.
    pub fn record_call(&self, tool: &str, outcome: Outcome, elapsed: Duration) {
        let slot = TOOLS
            .iter()
            .position(|t| t.name == tool)
            .unwrap_or(TOOLS.len());
        if let Some(m) = self.tools.get(slot) {
            m.calls[outcome as usize].inc();
            m.duration.observe(elapsed);
        }
    }

    /// Time one successful knowledge-base search.
    pub fn record_search(&self, mode: Mode, elapsed: Duration) {
        let i = MODES.iter().position(|m| *m == mode).unwrap_or(0);
        self.searches[i].observe(elapsed);
    }

    /// Calls of every tool so far, and how many did not end `ok` (cancellations excluded: the
    /// caller gave up).
    pub fn totals(&self) -> (u64, u64) {
        let mut calls = 0;
        let mut failed = 0;
        for m in &self.tools {
            for outcome in Outcome::ALL {
                let n = m.calls[outcome as usize].get();
                calls += n;
                if matches!(outcome, Outcome::Error | Outcome::Timeout) {
                    failed += n;
                }
            }
        }
        (calls, failed)
    }

    /// Calls of one tool with one outcome (for tests and reports).
    pub fn calls(&self, tool: &str, outcome: Outcome) -> u64 {
        let slot = TOOLS
            .iter()
            .position(|t| t.name == tool)
            .unwrap_or(TOOLS.len());
        self.tools
            .get(slot)
            .map_or(0, |m| m.calls[outcome as usize].get())
    }

    /// Tool families. Call counts for every enabled tool (so rates start from zero) and for any
    /// other with calls (a tool switched off, or `other` for unknown names); latency histograms,
    /// twenty lines each, for the tools called so far.
    fn encode_tools(&self, enc: &mut Encoder, config: &exai_core::Config) {
        let names = TOOLS.iter().map(|t| t.name).chain([OTHER_TOOL]);
        let shown: Vec<(&str, &ToolMetrics)> = names
            .zip(self.tools.iter())
            .filter(|(name, m)| {
                m.total() > 0 || registry::spec(name).is_some_and(|s| registry::enabled(s, config))
            })
            .collect();
        enc.family(
            "exai_tool_calls_total",
            Kind::Counter,
            "MCP tool calls by tool and outcome (ok, error, timeout, cancelled).",
        );
        for (tool, m) in &shown {
            for outcome in Outcome::ALL {
                enc.sample(
                    &[("tool", tool), ("outcome", outcome.as_str())],
                    m.calls[outcome as usize].get(),
                );
            }
        }
        enc.family(
            "exai_tool_call_duration_seconds",
            Kind::Histogram,
            "MCP tool call latency by tool, from the request to the answer, every outcome.",
        );
        for (tool, m) in &shown {
            if m.total() > 0 {
                enc.histogram(&[("tool", tool)], &m.duration);
            }
        }
    }

    fn encode_search(&self, enc: &mut Encoder) {
        enc.family(
            "exai_kb_search_duration_seconds",
            Kind::Histogram,
            "Knowledge-base search latency (search_docs, including query embedding) by the mode that ran.",
        );
        for (mode, h) in MODES.iter().zip(&self.searches) {
            enc.histogram(&[("mode", mode.as_str())], h);
        }
    }
}

/// Documents and chunks in the knowledge base: from the open one, else read from its file
/// (without loading the embedding model), else `None` when it cannot be read.
async fn index_size(state: &Arc<AppState>) -> Option<(u64, u64)> {
    let kb = if state.knowledge.is_open() {
        state.knowledge.get().await.ok()
    } else {
        None
    };
    let state = state.clone();
    let counted = tokio::task::spawn_blocking(move || match kb {
        Some(kb) => kb.with_reader(|s| s.totals()).map(Some),
        // Not opened yet: read the file if it is one; a server is not connected to from a
        // scrape (the first use opens it).
        None => state.knowledge.peek_totals(),
    })
    .await;
    match counted {
        Ok(Ok(size)) => size,
        Ok(Err(e)) => {
            tracing::debug!("metrics: cannot count the knowledge base: {e}");
            None
        }
        Err(e) => {
            tracing::debug!("metrics: counting task failed: {e}");
            None
        }
    }
}

/// The whole exposition.
pub async fn render(state: &Arc<AppState>) -> String {
    let size = index_size(state).await;
    let mut enc = Encoder::new();
    enc.family(
        "exai_build_info",
        Kind::Gauge,
        "Always 1; the labels name the running build.",
    );
    let target = format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS);
    enc.sample(
        &[
            ("version", exai_core::VERSION),
            ("target", &target),
            (
                "profile",
                if cfg!(debug_assertions) {
                    "debug"
                } else {
                    "release"
                },
            ),
            ("transport", state.transport.as_str()),
        ],
        1u64,
    );
    enc.family(
        "exai_start_time_seconds",
        Kind::Gauge,
        "When this process started, in seconds since the Unix epoch.",
    );
    enc.sample(&[], state.started_at.timestamp_millis() as f64 / 1000.0);
    enc.family(
        "exai_uptime_seconds",
        Kind::Gauge,
        "Seconds since this process started.",
    );
    enc.sample(&[], state.started.elapsed().as_secs_f64());
    crate::sampler::encode(state, &mut enc);
    enc.family(
        "exai_tool_calls_in_flight",
        Kind::Gauge,
        "MCP tool calls running now.",
    );
    enc.sample(&[], state.inflight());
    state.metrics.encode_tools(&mut enc, &state.loaded.config);
    state.metrics.encode_search(&mut enc);
    if state.listen.is_some() {
        state.metrics.transport.encode(&mut enc);
    }
    enc.family(
        "exai_kb_documents",
        Kind::Gauge,
        "Documents in the knowledge base.",
    );
    if let Some((documents, _)) = size {
        enc.sample(&[], documents);
    }
    enc.family(
        "exai_kb_chunks",
        Kind::Gauge,
        "Chunks in the knowledge base.",
    );
    if let Some((_, chunks)) = size {
        enc.sample(&[], chunks);
    }
    match state.ai_started() {
        Some(ai) => ai.gateway.encode_metrics(&mut enc),
        None => exai_llm::metrics::encode(&mut enc, &[], 0),
    }
    enc.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_land_in_their_tool_or_other() {
        let m = ServerMetrics::default();
        m.record_call("version", Outcome::Ok, Duration::from_micros(300));
        m.record_call("chat", Outcome::Timeout, Duration::from_secs(90));
        m.record_call("no_such_tool", Outcome::Error, Duration::from_millis(1));
        m.record_call("no such \"tool\"", Outcome::Error, Duration::from_millis(1));
        assert_eq!(m.calls("version", Outcome::Ok), 1);
        assert_eq!(m.calls("chat", Outcome::Timeout), 1);
        assert_eq!(m.calls("anything else", Outcome::Error), 2);

        let config = exai_core::Config::default();
        let mut enc = Encoder::new();
        m.encode_tools(&mut enc, &config);
        let text = enc.finish();
        for line in [
            "exai_tool_calls_total{tool=\"version\",outcome=\"ok\"} 1",
            "exai_tool_calls_total{tool=\"chat\",outcome=\"timeout\"} 1",
            "exai_tool_calls_total{tool=\"other\",outcome=\"error\"} 2",
            "exai_tool_calls_total{tool=\"search_docs\",outcome=\"ok\"} 0",
            "exai_tool_call_duration_seconds_bucket{tool=\"version\",le=\"0.001\"} 1",
            "exai_tool_call_duration_seconds_bucket{tool=\"chat\",le=\"60\"} 0",
            "exai_tool_call_duration_seconds_bucket{tool=\"chat\",le=\"120\"} 1",
            "exai_tool_call_duration_seconds_count{tool=\"other\"} 2",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        // Diagnostics are off by default and `ping` was never called.
        assert!(!text.contains("tool=\"ping\""));
        // Histograms appear with a tool's first call.
        assert!(!text.contains("exai_tool_call_duration_seconds_count{tool=\"search_docs\"}"));
        // Unknown names never become labels.
        assert!(!text.contains("no_such_tool"));
    }

    #[test]
    fn searches_by_mode() {
        let m = ServerMetrics::default();
        m.record_search(Mode::Keyword, Duration::from_millis(3));
        m.record_search(Mode::Hybrid, Duration::from_millis(12));
        let mut enc = Encoder::new();
        m.encode_search(&mut enc);
        let text = enc.finish();
        assert!(
            text.contains(
                "exai_kb_search_duration_seconds_bucket{mode=\"keyword\",le=\"0.005\"} 1\n"
            )
        );
        assert!(
            text.contains(
                "exai_kb_search_duration_seconds_bucket{mode=\"hybrid\",le=\"0.01\"} 0\n"
            )
        );
        assert!(
            text.contains(
                "exai_kb_search_duration_seconds_bucket{mode=\"hybrid\",le=\"0.015\"} 1\n"
            )
        );
        assert!(text.contains("exai_kb_search_duration_seconds_count{mode=\"semantic\"} 0\n"));
    }

    #[test]
    fn refusals_by_reason_start_at_zero() {
        let m = TransportMetrics::default();
        m.count_refusal(Refusal::Token);
        m.count_refusal(Refusal::Token);
        m.count_refusal(Refusal::BodyTooLarge);
        let mut enc = Encoder::new();
        m.encode(&mut enc);
        let text = enc.finish();
        for line in [
            "exai_http_refused_total{reason=\"token\"} 2",
            "exai_http_refused_total{reason=\"body_too_large\"} 1",
            "exai_http_refused_total{reason=\"origin\"} 0",
            "exai_http_refused_total{reason=\"sessions_full\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
    }
}
