//! What every session of one process shares: configuration, the activity log, metrics, start
//! time and the count of calls in flight (graceful shutdown waits for it to reach zero).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use exai_core::Loaded;
use exai_core::activity::ActivityLog;
use exai_core::paths::DataPaths;
use exai_llm::Gateway;
use exai_tools::AiService;
use tokio::sync::Notify;

/// The lazily built AI service.
#[derive(Default)]
struct Ai(std::sync::OnceLock<Arc<AiService>>);

impl std::fmt::Debug for Ai {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "Ai(ready)"
        } else {
            "Ai(lazy)"
        })
    }
}

/// Which transport this process serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Stdio,
    Http,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Stdio => "stdio",
            Transport::Http => "http",
        }
    }
}

#[derive(Debug)]
pub struct AppState {
    pub loaded: Loaded,
    pub paths: DataPaths,
    pub transport: Transport,
    pub started: Instant,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub activity: Option<ActivityLog>,
    pub listen: Option<std::net::SocketAddr>,
    pub knowledge: crate::knowledge::Knowledge,
    pub metrics: crate::metrics::ServerMetrics,
    /// What tools may read (allowed roots, private paths), fixed at start.
    pub access: exai_core::access::PathPolicy,
    ai: Ai,
    calls: Tracker,
    /// HTTP responses still being written (a tool call's answer travels in one).
    pub responses: Tracker,
    draining: AtomicBool,
}

/// Counts work in flight; `wait_idle` resolves when the count is zero.
#[derive(Debug, Default)]
pub struct Tracker {
    count: AtomicUsize,
    idle: Notify,
}

impl Tracker {
    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }

    fn leave(&self) {
        if self.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }
}

impl AppState {
    pub fn new(loaded: Loaded, transport: Transport, activity: Option<ActivityLog>) -> Arc<Self> {
        let paths = DataPaths::new(loaded.data_dir.clone());
        let knowledge = crate::knowledge::Knowledge::new(loaded.clone());
        Arc::new(Self {
            knowledge,
            access: loaded.access(),
            loaded,
            paths,
            transport,
            started: Instant::now(),
            started_at: chrono::Utc::now(),
            activity,
            listen: None,
            metrics: crate::metrics::ServerMetrics::default(),
            ai: Ai::default(),
            calls: Tracker::default(),
            responses: Tracker::default(),
            draining: AtomicBool::new(false),
        })
    }

    pub fn with_listen(mut self: Arc<Self>, addr: std::net::SocketAddr) -> Arc<Self> {
        if let Some(state) = Arc::get_mut(&mut self) {
            state.listen = Some(addr);
        }
        self
    }

    /// The AI tools' service: providers and conversation threads, set up on first use so that
    /// starting the server stays fast.
    pub fn ai(&self) -> Arc<AiService> {
        self.ai
            .0
            .get_or_init(|| {
                let env = |name: &str| std::env::var(name).ok();
                let gateway = Arc::new(Gateway::from_config(&self.loaded.config, &env));
                Arc::new(AiService::new(
                    gateway,
                    self.paths.root.join("state.sqlite"),
                    self.access.clone(),
                    &self.loaded.config,
                    self.loaded.timeouts.clone(),
                ))
            })
            .clone()
    }

    /// The AI service if a call has set it up; never sets it up.
    pub fn ai_started(&self) -> Option<&Arc<AiService>> {
        self.ai.0.get()
    }

    /// Count a tool call in flight until the guard drops.
    pub fn enter(self: &Arc<Self>) -> InflightGuard {
        self.calls.count.fetch_add(1, Ordering::SeqCst);
        InflightGuard {
            state: self.clone(),
            response: false,
        }
    }

    /// Count an HTTP response being written until the guard drops.
    pub fn enter_response(self: &Arc<Self>) -> InflightGuard {
        self.responses.count.fetch_add(1, Ordering::SeqCst);
        InflightGuard {
            state: self.clone(),
            response: true,
        }
    }

    pub fn inflight(&self) -> usize {
        self.calls.count()
    }

    /// Refuse new calls from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Resolves once no tool call is running and no HTTP response is being written.
    pub async fn wait_idle(&self) {
        self.calls.wait_idle().await;
        self.responses.wait_idle().await;
    }
}

pub struct InflightGuard {
    state: Arc<AppState>,
    response: bool,
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        if self.response {
            self.state.responses.leave();
        } else {
            self.state.calls.leave();
        }
    }
}
