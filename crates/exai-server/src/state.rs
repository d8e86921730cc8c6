//! What every session of one process shares: configuration, the activity log, start time and
//! the count of calls in flight (graceful shutdown waits for it to reach zero).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use exai_core::Loaded;
use exai_core::activity::ActivityLog;
use exai_core::paths::DataPaths;
use tokio::sync::Notify;

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
    inflight: AtomicUsize,
    idle: Notify,
    draining: AtomicBool,
}

impl AppState {
    pub fn new(loaded: Loaded, transport: Transport, activity: Option<ActivityLog>) -> Arc<Self> {
        let paths = DataPaths::new(loaded.data_dir.clone());
        Arc::new(Self {
            loaded,
            paths,
            transport,
            started: Instant::now(),
            started_at: chrono::Utc::now(),
            activity,
            listen: None,
            inflight: AtomicUsize::new(0),
            idle: Notify::new(),
            draining: AtomicBool::new(false),
        })
    }

    pub fn with_listen(mut self: Arc<Self>, addr: std::net::SocketAddr) -> Arc<Self> {
        if let Some(state) = Arc::get_mut(&mut self) {
            state.listen = Some(addr);
        }
        self
    }

    /// Count a call in flight until the guard drops.
    pub fn enter(self: &Arc<Self>) -> InflightGuard {
        self.inflight.fetch_add(1, Ordering::SeqCst);
        InflightGuard(self.clone())
    }

    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::SeqCst)
    }

    /// Refuse new calls from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Resolves once no call is in flight.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.inflight() == 0 {
                return;
            }
            notified.await;
        }
    }
}

pub struct InflightGuard(Arc<AppState>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        if self.0.inflight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}
