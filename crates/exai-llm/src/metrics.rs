//! What each provider's client counts: requests by operation and status with their latency,
//! retries, refusals by exai's own concurrency limits, coalesced calls, Kimi context-cache use,
//! tokens and cost. One [`ProviderMetrics`] lives in each provider's client, so recording is a
//! field access and an atomic add; [`encode`] writes them for `GET /metrics`.

use std::time::Instant;

use exai_core::metrics::{Counter, Encoder, FloatCounter, Histogram, Kind};

use crate::error::LlmError;

/// What a request to a provider was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// One chat-completions attempt (each retry is another).
    Chat,
    /// Kimi's file upload, text read-back and delete, as one operation.
    FileExtract,
    /// GLM's standalone web search.
    WebSearch,
}

impl Operation {
    pub const ALL: [Operation; 3] = [
        Operation::Chat,
        Operation::FileExtract,
        Operation::WebSearch,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Chat => "chat",
            Operation::FileExtract => "file_extract",
            Operation::WebSearch => "web_search",
        }
    }
}

/// The `status` label: `ok`, or the [`LlmError::kind`] of the failure. A closed set, so the
/// label's cardinality is bounded whatever a provider answers.
pub const STATUSES: &[&str] = &[
    "ok",
    "rate_limited",
    "server_error",
    "timeout",
    "network",
    "malformed",
    "truncated_stream",
    "auth",
    "bad_request",
    "context_length",
    "cancelled",
    "other",
];

fn status_index(outcome: Result<(), &LlmError>) -> usize {
    let kind = match outcome {
        Ok(()) => return 0,
        Err(e) => e.kind(),
    };
    STATUSES
        .iter()
        .position(|s| *s == kind)
        .unwrap_or(STATUSES.len() - 1)
}

/// Provider request latency: from tens of milliseconds for a cached short answer to the longest
/// workflow deadline.
pub const REQUEST_SECONDS: &[f64] = &[
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

#[derive(Debug)]
struct OperationMetrics {
    by_status: [Counter; STATUSES.len()],
    duration: Histogram,
}

impl OperationMetrics {
    fn new() -> Self {
        Self {
            by_status: std::array::from_fn(|_| Counter::default()),
            duration: Histogram::new(REQUEST_SECONDS),
        }
    }

    fn total(&self) -> u64 {
        self.by_status.iter().map(Counter::get).sum()
    }
}

/// One provider's counters.
#[derive(Debug)]
pub struct ProviderMetrics {
    operations: [OperationMetrics; Operation::ALL.len()],
    /// Attempts repeated after a retryable failure.
    pub retries: Counter,
    /// Calls refused with OVER_CAPACITY by exai's own limits before reaching the provider.
    pub over_capacity: Counter,
    /// Calls answered by an identical call already in flight, without a request of their own.
    pub coalesced: Counter,
    /// Kimi requests that carried a context-cache token for their conversation prefix.
    pub context_cache_hits: Counter,
    /// Kimi requests with a cache key but no token yet.
    pub context_cache_misses: Counter,
    pub tokens_in: Counter,
    pub tokens_out: Counter,
    pub cost_usd: FloatCounter,
    /// The latest failed request (not counting cancellations), for the dashboard.
    last_error: std::sync::Mutex<Option<LastError>>,
}

/// A provider's latest failure: when, its kind (a [`STATUSES`] label) and the error's message
/// (exai's own wording; keys never appear in it).
#[derive(Debug, Clone, serde::Serialize)]
pub struct LastError {
    pub time: String,
    pub kind: String,
    pub message: String,
}

/// One provider's counters at a glance.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProviderSummary {
    pub provider: String,
    /// Requests of every operation, each attempt counted, by their outcome.
    pub requests: u64,
    pub failed: u64,
    pub retries: u64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cost_usd: f64,
    pub last_error: Option<LastError>,
}

impl Default for ProviderMetrics {
    fn default() -> Self {
        Self {
            operations: std::array::from_fn(|_| OperationMetrics::new()),
            retries: Counter::default(),
            over_capacity: Counter::default(),
            coalesced: Counter::default(),
            context_cache_hits: Counter::default(),
            context_cache_misses: Counter::default(),
            tokens_in: Counter::default(),
            tokens_out: Counter::default(),
            cost_usd: FloatCounter::default(),
            last_error: std::sync::Mutex::new(None),
        }
    }
}

impl ProviderMetrics {
    /// Start timing one request; [`RequestTimer::finish`] records it. A timer dropped unfinished
    /// (the caller gave up and dropped the future) records the request as `cancelled`.
    pub fn start(&self, operation: Operation) -> RequestTimer<'_> {
        RequestTimer {
            metrics: self,
            operation,
            started: Instant::now(),
            done: false,
        }
    }

    fn record(&self, operation: Operation, status: usize, started: Instant) {
        let op = &self.operations[operation as usize];
        op.by_status[status].inc();
        op.duration.observe(started.elapsed());
    }

    /// The counters of this provider, named `provider`.
    pub fn summary(&self, provider: &str) -> ProviderSummary {
        let (mut requests, mut ok, mut cancelled) = (0, 0, 0);
        for op in &self.operations {
            requests += op.total();
            ok += op.by_status[0].get();
            cancelled += op.by_status[status_index(Err(&LlmError::Cancelled))].get();
        }
        ProviderSummary {
            provider: provider.to_string(),
            requests,
            failed: requests - ok - cancelled,
            retries: self.retries.get(),
            tokens_in: self.tokens_in.get(),
            tokens_out: self.tokens_out.get(),
            cost_usd: self.cost_usd.get(),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        }
    }

    /// Requests of one operation with one status (for tests and reports).
    pub fn requests(&self, operation: Operation, status: &str) -> u64 {
        STATUSES.iter().position(|s| *s == status).map_or(0, |i| {
            self.operations[operation as usize].by_status[i].get()
        })
    }
}

/// A request being timed. See [`ProviderMetrics::start`].
#[derive(Debug)]
pub struct RequestTimer<'a> {
    metrics: &'a ProviderMetrics,
    operation: Operation,
    started: Instant,
    done: bool,
}

impl RequestTimer<'_> {
    pub fn finish<T>(mut self, result: &Result<T, LlmError>) {
        self.done = true;
        let status = status_index(result.as_ref().map(|_| ()));
        self.metrics.record(self.operation, status, self.started);
        if let Err(e) = result
            && !matches!(e, LlmError::Cancelled)
        {
            *self
                .metrics
                .last_error
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(LastError {
                time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                kind: e.kind().to_string(),
                message: exai_core::text::clip(&e.to_string(), 500).to_string(),
            });
        }
    }
}

impl Drop for RequestTimer<'_> {
    fn drop(&mut self) {
        if !self.done {
            let cancelled = status_index(Err(&LlmError::Cancelled));
            self.metrics.record(self.operation, cancelled, self.started);
        }
    }
}

/// Picks one counter out of a provider's metrics.
type CounterOf = fn(&ProviderMetrics) -> &Counter;

/// Write the provider families. `providers` are `(id, metrics)` of the configured providers,
/// sorted; empty before the AI tools are first used (the families are still declared).
/// `in_flight` is the provider calls running now.
pub fn encode(enc: &mut Encoder, providers: &[(&str, &ProviderMetrics)], in_flight: usize) {
    enc.family(
        "exai_provider_requests_total",
        Kind::Counter,
        "Requests sent to AI providers, by provider, operation (chat, file_extract, web_search) and status (ok or the error kind; rate_limited is HTTP 429). Each retry is a request.",
    );
    for (provider, m) in providers {
        for op in Operation::ALL {
            let counts = &m.operations[op as usize].by_status;
            for (status, count) in STATUSES.iter().zip(counts) {
                // Chat ok is always shown, so rates start from zero; the rest once they happen.
                let shown = op == Operation::Chat && *status == "ok";
                if shown || count.get() > 0 {
                    enc.sample(
                        &[
                            ("provider", provider),
                            ("operation", op.as_str()),
                            ("status", status),
                        ],
                        count.get(),
                    );
                }
            }
        }
    }
    enc.family(
        "exai_provider_request_duration_seconds",
        Kind::Histogram,
        "Latency of requests to AI providers, by provider and operation.",
    );
    for (provider, m) in providers {
        for op in Operation::ALL {
            let metrics = &m.operations[op as usize];
            if op == Operation::Chat || metrics.total() > 0 {
                enc.histogram(
                    &[("provider", provider), ("operation", op.as_str())],
                    &metrics.duration,
                );
            }
        }
    }
    let counters: [(&str, &str, CounterOf); 5] = [
        (
            "exai_provider_retries_total",
            "Provider requests repeated after a retryable failure (429, 5xx, network, malformed or cut answers).",
            |m| &m.retries,
        ),
        (
            "exai_provider_over_capacity_total",
            "Calls refused with OVER_CAPACITY by exai's own concurrency limits before reaching the provider.",
            |m| &m.over_capacity,
        ),
        (
            "exai_provider_coalesced_calls_total",
            "Calls that shared the answer of an identical call already in flight instead of sending their own request.",
            |m| &m.coalesced,
        ),
        (
            "exai_provider_context_cache_hits_total",
            "Kimi requests that reused a context-cache token for their conversation prefix.",
            |m| &m.context_cache_hits,
        ),
        (
            "exai_provider_context_cache_misses_total",
            "Kimi requests for a conversation prefix without a context-cache token yet.",
            |m| &m.context_cache_misses,
        ),
    ];
    for (name, help, counter) in counters {
        enc.family(name, Kind::Counter, help);
        for (provider, m) in providers {
            enc.sample(&[("provider", provider)], counter(m).get());
        }
    }
    enc.family(
        "exai_provider_tokens_total",
        Kind::Counter,
        "Tokens billed by AI providers, by provider and direction (in: prompt, out: completion); estimated when a provider reports no usage.",
    );
    for (provider, m) in providers {
        enc.sample(
            &[("provider", provider), ("direction", "in")],
            m.tokens_in.get(),
        );
        enc.sample(
            &[("provider", provider), ("direction", "out")],
            m.tokens_out.get(),
        );
    }
    enc.family(
        "exai_provider_cost_usd_total",
        Kind::Counter,
        "Cost of AI provider calls in US dollars, from the model registry's prices.",
    );
    for (provider, m) in providers {
        enc.sample(&[("provider", provider)], m.cost_usd.get());
    }
    enc.family(
        "exai_provider_requests_in_flight",
        Kind::Gauge,
        "Provider calls running now, each holding a concurrency slot through its retries.",
    );
    enc.sample(&[], in_flight);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_summary_counts_failures_and_keeps_the_latest() {
        let m = ProviderMetrics::default();
        m.start(Operation::Chat).finish(&Ok::<(), LlmError>(()));
        m.start(Operation::Chat)
            .finish(&Err::<(), _>(LlmError::Server {
                provider: "glm".into(),
                status: 503,
                message: "overloaded".into(),
            }));
        // A caller giving up is not the provider's failure.
        drop(m.start(Operation::Chat));
        let s = m.summary("glm");
        assert_eq!((s.requests, s.failed), (3, 1));
        let last = s.last_error.expect("the 503 is kept");
        assert_eq!(last.kind, "server_error");
        assert!(last.message.contains("503"), "{}", last.message);
    }

    #[test]
    fn every_error_kind_a_request_can_end_in_has_its_status() {
        let p = || "glm".to_string();
        let errors = [
            LlmError::RateLimited {
                provider: p(),
                retry_after: None,
                message: String::new(),
            },
            LlmError::Server {
                provider: p(),
                status: 503,
                message: String::new(),
            },
            LlmError::Timeout {
                provider: p(),
                limit: Duration::from_secs(1),
            },
            LlmError::Network {
                provider: p(),
                message: String::new(),
            },
            LlmError::Malformed {
                provider: p(),
                message: String::new(),
            },
            LlmError::TruncatedStream { provider: p() },
            LlmError::Auth {
                provider: p(),
                status: 401,
                variables: String::new(),
            },
            LlmError::BadRequest {
                provider: p(),
                status: 404,
                message: String::new(),
            },
            LlmError::ContextLength {
                provider: p(),
                message: String::new(),
            },
            LlmError::Cancelled,
        ];
        for e in &errors {
            assert_eq!(STATUSES[status_index(Err(e))], e.kind());
        }
        assert_eq!(status_index(Ok(())), 0);
        assert_eq!(
            STATUSES[status_index(Err(&LlmError::NoProvider))],
            "other",
            "kinds that never come from a request fall into the bounded rest"
        );
    }

    #[test]
    fn timers_record_results_and_drops() {
        let m = ProviderMetrics::default();
        m.start(Operation::Chat).finish(&Ok::<(), LlmError>(()));
        m.start(Operation::Chat)
            .finish(&Err::<(), _>(LlmError::RateLimited {
                provider: "kimi".into(),
                retry_after: None,
                message: String::new(),
            }));
        drop(m.start(Operation::WebSearch));
        assert_eq!(m.requests(Operation::Chat, "ok"), 1);
        assert_eq!(m.requests(Operation::Chat, "rate_limited"), 1);
        assert_eq!(m.requests(Operation::WebSearch, "cancelled"), 1);
        assert_eq!(m.operations[Operation::Chat as usize].duration.count(), 2);
    }

    #[test]
    fn encoding_shows_chat_always_and_the_rest_once_seen() {
        let kimi = ProviderMetrics::default();
        let glm = ProviderMetrics::default();
        glm.start(Operation::WebSearch)
            .finish(&Ok::<(), LlmError>(()));
        glm.tokens_in.add(12);
        glm.cost_usd.add(0.5);
        let mut enc = Encoder::new();
        encode(&mut enc, &[("glm", &glm), ("kimi", &kimi)], 2);
        let text = enc.finish();
        for line in [
            "exai_provider_requests_total{provider=\"kimi\",operation=\"chat\",status=\"ok\"} 0",
            "exai_provider_requests_total{provider=\"glm\",operation=\"web_search\",status=\"ok\"} 1",
            "exai_provider_request_duration_seconds_count{provider=\"glm\",operation=\"web_search\"} 1",
            "exai_provider_tokens_total{provider=\"glm\",direction=\"in\"} 12",
            "exai_provider_cost_usd_total{provider=\"glm\"} 0.5",
            "exai_provider_requests_in_flight 2",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        assert!(!text.contains("provider=\"kimi\",operation=\"web_search\""));
        let mut empty = Encoder::new();
        encode(&mut empty, &[], 0);
        assert!(
            empty
                .finish()
                .contains("# TYPE exai_provider_requests_total counter\n")
        );
    }
}
