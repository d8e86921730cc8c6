//! What every session of one process shares: configuration, the activity log, metrics, start
//! time and the count of calls in flight (graceful shutdown waits for it to reach zero).
//!
//! The configuration has two faces: `loaded`, as the process started, and [`AppState::config`],
//! the latest one a reload accepted. Settings that apply on reload (keys, tokens, provider
//! limits, timeouts; see `reload`) are read through `config()` where they are used; the others
//! keep their startup value until a restart.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

use exai_core::Loaded;
use exai_core::activity::ActivityLog;
use exai_core::paths::DataPaths;
use exai_llm::Gateway;
use exai_tools::AiService;
use tokio::sync::Notify;

/// The lazily built AI service, replaced whole when a reload changes its configuration.
#[derive(Default)]
struct Ai(RwLock<Option<Arc<AiService>>>);

impl Ai {
    fn get(&self) -> Option<Arc<AiService>> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl std::fmt::Debug for Ai {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.get().is_some() {
            "Ai(ready)"
        } else {
            "Ai(lazy)"
        })
    }
}

/// The configuration in force and how it got there.
#[derive(Debug)]
struct Live {
    config: RwLock<Arc<Loaded>>,
    /// Bumped by every accepted reload, so a cache of derived values (the HTTP guard's tokens)
    /// knows when to rebuild.
    generation: AtomicU64,
    /// The latest reload's answer; `None` until the first.
    last_reload: Mutex<Option<crate::reload::ReloadOutcome>>,
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
    /// The configuration as the process started. What a reload can change is read through
    /// [`AppState::config`] instead.
    pub loaded: Loaded,
    live: Live,
    pub paths: DataPaths,
    pub transport: Transport,
    pub started: Instant,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub activity: Option<ActivityLog>,
    pub listen: Option<std::net::SocketAddr>,
    pub knowledge: crate::knowledge::Knowledge,
    pub metrics: crate::metrics::ServerMetrics,
    /// Live events for watchers (the dashboard).
    pub events: crate::events::Events,
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
            live: Live {
                config: RwLock::new(Arc::new(loaded.clone())),
                generation: AtomicU64::new(0),
                last_reload: Mutex::new(None),
            },
            loaded,
            paths,
            transport,
            started: Instant::now(),
            started_at: chrono::Utc::now(),
            activity,
            listen: None,
            metrics: crate::metrics::ServerMetrics::default(),
            events: crate::events::Events::default(),
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

    /// The configuration in force: the startup one until a reload replaces it.
    pub fn config(&self) -> Arc<Loaded> {
        self.live
            .config
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many reloads have been accepted.
    pub fn config_generation(&self) -> u64 {
        self.live.generation.load(Ordering::SeqCst)
    }

    /// The latest reload's answer, if there was one.
    pub fn last_reload(&self) -> Option<crate::reload::ReloadOutcome> {
        self.live.last_reload.lock().ok().and_then(|r| r.clone())
    }

    /// Put an accepted configuration in force: the AI service, if it is running, is rebuilt on
    /// it (calls in flight finish on the old one).
    pub(crate) fn install_config(&self, new: Loaded) {
        let new = Arc::new(new);
        // The configuration first: an AI service set up meanwhile is then built on it, or is
        // already there to be rebuilt below.
        *self
            .live
            .config
            .write()
            .unwrap_or_else(PoisonError::into_inner) = new.clone();
        self.live.generation.fetch_add(1, Ordering::SeqCst);
        let mut ai = self.ai.0.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = ai.as_ref() {
            let gateway = Gateway::reconfigured(&new.config, &process_env, &old.gateway);
            *ai = Some(Arc::new(old.reconfigured(
                Arc::new(gateway),
                &new.config,
                new.timeouts.clone(),
            )));
        }
    }

    pub(crate) fn set_last_reload(&self, outcome: crate::reload::ReloadOutcome) {
        if let Ok(mut last) = self.live.last_reload.lock() {
            *last = Some(outcome);
        }
    }

    /// The AI tools' service: providers and conversation threads, set up on first use so that
    /// starting the server stays fast.
    pub fn ai(&self) -> Arc<AiService> {
        if let Some(ai) = self.ai.get() {
            return ai;
        }
        let mut slot = self.ai.0.write().unwrap_or_else(PoisonError::into_inner);
        slot.get_or_insert_with(|| Arc::new(self.new_ai())).clone()
    }

    fn new_ai(&self) -> AiService {
        let config = self.config();
        let gateway = Arc::new(Gateway::from_config(&config.config, &process_env));
        AiService::new(
            gateway,
            self.paths.root.join("state.sqlite"),
            self.access.clone(),
            &config.config,
            config.timeouts.clone(),
        )
    }

    /// The AI service if a call has set it up; never sets it up.
    pub fn ai_started(&self) -> Option<Arc<AiService>> {
        self.ai.get()
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

/// Custom providers name the variable holding their key; it is read from the process
/// environment, which a reload does not change.
fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
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
