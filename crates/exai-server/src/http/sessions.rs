//! MCP sessions of the HTTP daemon: a cap on how many are open, each bound to the principal that
//! opened it, and closed after `server.session_idle_secs` without a request.
//!
//! [`Sessions`] is the SDK's in-memory session manager with a ledger beside it. A session is
//! counted from the `initialize` that asks for it: the `/mcp` gate takes a slot first (none
//! free: 503 with `Retry-After`) and hands it to the session named in the answer, with the
//! principal. Every later request naming the session must come from that principal, or it reads
//! as unknown (404, as for an expired session), so a session id that leaks is useless to another
//! token. The idle clock runs while no call of the session is in flight: an open event stream
//! (`GET /mcp`) only listens and does not hold a session open.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::Stream;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::streamable_http_server::SessionManager;
use rmcp::transport::streamable_http_server::session::local::{
    LocalSessionManager, LocalSessionManagerError, SessionConfig,
};
use rmcp::transport::streamable_http_server::session::{ServerSseMessage, SessionId};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::Principal;
use super::json_answer::JsonAnswer;
use crate::metrics::TransportMetrics;

/// What the ledger knows of one open session.
struct Entry {
    principal: Principal,
    activity: Arc<Activity>,
    /// Held for the session's life: dropping the entry frees the slot.
    _slot: OwnedSemaphorePermit,
}

/// When a session was last asked for something, and how many of its calls are running.
#[derive(Default)]
pub struct Activity {
    last_seen_ms: AtomicU64,
    in_flight: AtomicUsize,
}

/// Counts one call of a session as in flight until dropped (when its answer has been written).
pub struct InFlight {
    activity: Arc<Activity>,
    sessions: Arc<Sessions>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.activity
            .last_seen_ms
            .store(self.sessions.now_ms(), Ordering::Relaxed);
        self.activity.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

pub struct Sessions {
    inner: LocalSessionManager,
    slots: Arc<Semaphore>,
    max: usize,
    idle: Duration,
    epoch: Instant,
    ledger: Mutex<HashMap<SessionId, Entry>>,
    metrics: Arc<TransportMetrics>,
}

impl Sessions {
    /// At most `max` sessions, each closed after `idle` without a request. The SDK's own
    /// keep-alive stays on as a backstop well beyond that (`idle` plus `grace`, the longest a
    /// call may run), for a session the ledger somehow lost.
    pub fn new(
        max: usize,
        idle: Duration,
        grace: Duration,
        metrics: Arc<TransportMetrics>,
    ) -> Sessions {
        let mut inner = LocalSessionManager::default();
        let mut config = SessionConfig::default();
        config.keep_alive = Some(idle + grace + Duration::from_secs(60));
        inner.session_config = config;
        metrics
            .sessions_max
            .set(u64::try_from(max).unwrap_or(u64::MAX));
        Sessions {
            inner,
            slots: Arc::new(Semaphore::new(max)),
            max,
            idle,
            epoch: Instant::now(),
            ledger: Mutex::default(),
            metrics,
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A slot for a session about to be opened; `None` when all are taken.
    pub fn reserve(&self) -> Option<OwnedSemaphorePermit> {
        let slot = self.slots.clone().try_acquire_owned().ok();
        if slot.is_none() {
            self.metrics.sessions_refused.inc();
        }
        slot
    }

    /// Record the session the SDK just opened as `principal`'s, holding `slot`.
    pub async fn bind(&self, id: SessionId, principal: Principal, slot: OwnedSemaphorePermit) {
        let activity = Arc::new(Activity::default());
        activity
            .last_seen_ms
            .store(self.now_ms(), Ordering::Relaxed);
        if let Ok(mut ledger) = self.ledger.lock()
            && ledger
                .insert(
                    id.clone(),
                    Entry {
                        principal,
                        activity,
                        _slot: slot,
                    },
                )
                .is_none()
        {
            self.metrics.sessions_open.inc();
        }
        // A session that ended between its creation and now would hold its slot until the
        // next sweep; drop it at once instead.
        if !self.inner.sessions.read().await.contains_key(&id) {
            self.forget(&id);
        }
    }

    /// The session `id` as `principal` may use it: its activity, with the request counted as
    /// seen now. `None` for an unknown session and for another principal's.
    pub fn touch(&self, id: &str, principal: &Principal) -> Option<Arc<Activity>> {
        let ledger = self.ledger.lock().ok()?;
        let entry = ledger.get(id).filter(|e| e.principal == *principal)?;
        entry
            .activity
            .last_seen_ms
            .store(self.now_ms(), Ordering::Relaxed);
        Some(entry.activity.clone())
    }

    /// Count a call of the session as in flight until the returned guard drops.
    pub fn begin(self: &Arc<Self>, activity: Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            activity,
            sessions: self.clone(),
        }
    }

    fn forget(&self, id: &SessionId) -> bool {
        let forgotten = self
            .ledger
            .lock()
            .map(|mut l| l.remove(id).is_some())
            .unwrap_or(false);
        if forgotten {
            self.metrics.sessions_open.dec();
        }
        forgotten
    }

    /// Close the sessions idle for `idle` and drop entries whose session the SDK already
    /// ended. Runs until `stop` is cancelled.
    pub async fn sweep(self: Arc<Self>, stop: CancellationToken) {
        let every = (self.idle / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = stop.cancelled() => return,
            }
            let idle_ms = u64::try_from(self.idle.as_millis()).unwrap_or(u64::MAX);
            let now = self.now_ms();
            let (idle, known): (Vec<SessionId>, Vec<SessionId>) = match self.ledger.lock() {
                Ok(ledger) => (
                    ledger
                        .iter()
                        .filter(|(_, e)| {
                            e.activity.in_flight.load(Ordering::Relaxed) == 0
                                && now
                                    .saturating_sub(e.activity.last_seen_ms.load(Ordering::Relaxed))
                                    >= idle_ms
                        })
                        .map(|(id, _)| id.clone())
                        .collect(),
                    ledger.keys().cloned().collect(),
                ),
                Err(_) => return,
            };
            for id in idle {
                tracing::info!(
                    session = %id,
                    idle_secs = self.idle.as_secs_f64(),
                    "closing an idle MCP session (server.session_idle_secs)"
                );
                self.metrics.sessions_expired.inc();
                if let Err(e) = self.close_session(&id).await {
                    tracing::warn!(session = %id, "cannot close an idle MCP session: {e}");
                }
            }
            let live = self.inner.sessions.read().await;
            let gone: Vec<SessionId> = known
                .into_iter()
                .filter(|id| !live.contains_key(id))
                .collect();
            drop(live);
            for id in gone {
                self.forget(&id);
            }
        }
    }
}

/// The SDK's manager underneath; closing a session also frees its slot.
impl SessionManager for Sessions {
    type Error = LocalSessionManagerError;
    type Transport = <LocalSessionManager as SessionManager>::Transport;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        self.inner.create_session().await
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        let offer = JsonAnswer::of(&message);
        let answer = self.inner.initialize_session(id, message).await?;
        // The answer to `initialize` is all its stream would carry.
        if let Some(offer) = offer {
            offer.fill(&answer);
        }
        Ok(answer)
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        self.inner.has_session(id).await
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        self.forget(id);
        self.inner.close_session(id).await
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        let offer = JsonAnswer::of(&message);
        let stream = self.inner.create_stream(id, message).await?;
        Ok(JsonAnswer::take_first(offer, stream).await)
    }

    async fn accept_message(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), Self::Error> {
        self.inner.accept_message(id, message).await
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.inner.create_standalone_stream(id).await
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.inner.resume(id, last_event_id).await
    }
}
