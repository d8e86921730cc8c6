//! The daemon's TCP listener, served connection by connection with hyper (HTTP/1.1), under
//! three limits from the configuration:
//!
//! - **Header-read timeout** (`server.header_read_timeout_secs`): a connection that has not sent
//!   a whole request head within it — a fresh one, or a kept-alive one between requests — is
//!   closed, so a client trickling headers byte by byte (slowloris) cannot hold it.
//! - **Connection cap** (`server.max_connections`): over the cap, new connections wait in the
//!   kernel's backlog rather than being refused, so a burst is served late, not failed.
//! - **Idle eviction at the cap**: while connections wait, the one that has been idle longest
//!   (no request in progress for at least a second) is closed to make room. Idle sockets —
//!   half-open, trickling or merely kept alive — therefore never keep `/health` and new clients
//!   out for the whole header timeout; a connection with a request in flight is never cut.
//!
//! On shutdown the listener stops accepting, asks every connection to finish its request in
//! flight and close, and returns once all have.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::metrics::TransportMetrics;

/// The listener's limits, from `server.*`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
}

impl Limits {
    pub fn from_config(server: &exai_core::config::ServerConfig) -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs_f64(server.header_read_timeout_secs),
            max_connections: usize::try_from(server.max_connections).unwrap_or(usize::MAX),
        }
    }

    /// How long a connection must have been idle before it may be evicted for a waiting one:
    /// a client that just connected gets a moment to send its request.
    fn evictable_after(&self) -> Duration {
        self.header_read_timeout.min(Duration::from_secs(1))
    }
}

/// Accept and serve connections with `app` until `stop` is cancelled, then wait for the open
/// connections to finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    metrics: Arc<TransportMetrics>,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    metrics
        .connections_max
        .set(u64::try_from(limits.max_connections).unwrap_or(u64::MAX));
    let open = Arc::new(Connections::new(metrics.clone()));
    let mut warned: Option<Instant> = None;
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                metrics.connections_waited.inc();
                if warned.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
                    warned = Some(Instant::now());
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "connection cap reached (server.max_connections); new connections wait for a free one"
                    );
                }
                let Some(slot) = admit(&slots, &open, limits, &stop).await else {
                    break;
                };
                slot
            }
        };
        // Streamed answers (progress, then the result) are several small writes; with Nagle's
        // algorithm each waits for the client's delayed ACK, about 40 ms.
        let _ = tcp.set_nodelay(true);
        tokio::spawn(connection(
            tcp,
            peer,
            app.clone(),
            slot,
            open.clone(),
            limits,
            stop.clone(),
        ));
    }
    drop(listener);
    // Every connection holds a slot until it closes: all slots back means all closed.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
}

/// Wait for a free slot while at the cap, evicting the longest-idle connection when one has
/// been idle long enough. `None` when stopping.
async fn admit(
    slots: &Arc<Semaphore>,
    open: &Connections,
    limits: Limits,
    stop: &CancellationToken,
) -> Option<OwnedSemaphorePermit> {
    loop {
        if let Some(victim) = open.evict_idlest(limits.evictable_after()) {
            tracing::debug!(
                idle_ms = victim.as_millis(),
                "at the connection cap: closing the longest-idle connection"
            );
        }
        tokio::select! {
            slot = slots.clone().acquire_owned() => return slot.ok(),
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
            () = stop.cancelled() => return None,
        }
    }
}

/// `accept` failing is mostly the process running out of descriptors: wait a moment rather
/// than spin. A connection reset before it was accepted is nothing.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!("cannot accept a connection: {e}; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    app: Router,
    _slot: OwnedSemaphorePermit,
    open: Arc<Connections>,
    limits: Limits,
    stop: CancellationToken,
) {
    let (id, conn) = open.add();
    let service = {
        let conn = conn.clone();
        hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            let busy = Busy::start(conn.clone());
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            let app = app.clone();
            async move {
                let response = app.oneshot(request).await?;
                Ok::<_, Infallible>(response.map(|body| TrackedBody { body, _busy: busy }))
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let served = builder.serve_connection(TokioIo::new(tcp), service);
    tokio::pin!(served);
    let mut closing = false;
    loop {
        tokio::select! {
            result = served.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, "connection ended: {e}");
                }
                break;
            }
            () = stop.cancelled(), if !closing => {
                served.as_mut().graceful_shutdown();
                closing = true;
            }
            () = conn.evict.cancelled(), if !closing => {
                // Nothing is in flight (the count only moves while this task polls the
                // connection): dropping it closes an idle socket. A request that arrived since
                // the eviction was decided is let finish.
                if conn.busy.load(Ordering::Relaxed) == 0 {
                    break;
                }
                served.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
    open.remove(id);
}

/// The open connections, for choosing one to evict.
struct Connections {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
    metrics: Arc<TransportMetrics>,
}

/// One connection: requests in progress, and since when it has had none.
struct Conn {
    epoch: Instant,
    busy: AtomicUsize,
    idle_since_ms: AtomicU64,
    evict: CancellationToken,
}

impl Conn {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

impl Connections {
    fn new(metrics: Arc<TransportMetrics>) -> Connections {
        Connections {
            next: AtomicU64::new(0),
            open: Mutex::default(),
            metrics,
        }
    }

    fn add(&self) -> (u64, Arc<Conn>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            epoch: Instant::now(),
            busy: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            evict: CancellationToken::new(),
        });
        if let Ok(mut open) = self.open.lock() {
            open.insert(id, conn.clone());
            self.metrics.connections_open.inc();
            self.metrics.connections_accepted.inc();
        }
        (id, conn)
    }

    fn remove(&self, id: u64) {
        if let Ok(mut open) = self.open.lock()
            && open.remove(&id).is_some()
        {
            self.metrics.connections_open.dec();
        }
    }

    /// Ask the connection idle longest (and at least `min_idle`) to close; how long it had been
    /// idle, or `None` when no connection qualifies.
    fn evict_idlest(&self, min_idle: Duration) -> Option<Duration> {
        let open = self.open.lock().ok()?;
        let victim = open
            .values()
            .filter(|c| c.busy.load(Ordering::Relaxed) == 0 && !c.evict.is_cancelled())
            .map(|c| {
                let idle = c
                    .now_ms()
                    .saturating_sub(c.idle_since_ms.load(Ordering::Relaxed));
                (Duration::from_millis(idle), c)
            })
            .filter(|(idle, _)| *idle >= min_idle)
            .max_by_key(|(idle, _)| *idle)?;
        victim.1.evict.cancel();
        self.metrics.connections_evicted.inc();
        Some(victim.0)
    }
}

/// A request in progress on a connection, until its response body has been written (or
/// dropped); the connection is idle from then on.
struct Busy(Arc<Conn>);

impl Busy {
    fn start(conn: Arc<Conn>) -> Busy {
        conn.busy.fetch_add(1, Ordering::Relaxed);
        Busy(conn)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let conn = &self.0;
        conn.idle_since_ms.store(conn.now_ms(), Ordering::Relaxed);
        conn.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its connection counted as busy until it has been sent.
struct TrackedBody {
    body: Body,
    _busy: Busy,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn start(limits: Limits) -> (SocketAddr, CancellationToken, Arc<TransportMetrics>) {
        let app = Router::new().route("/health", axum::routing::get(|| async { "ok" }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let metrics = Arc::new(TransportMetrics::default());
        tokio::spawn(serve(listener, app, limits, metrics.clone(), stop.clone()));
        (addr, stop, metrics)
    }

    /// `GET /health` on a fresh connection; the status line, or the error.
    async fn health(addr: SocketAddr) -> std::io::Result<String> {
        let mut tcp = TcpStream::connect(addr).await?;
        tcp.write_all(b"GET /health HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
            .await?;
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).await?;
        Ok(answer.lines().next().unwrap_or_default().to_string())
    }

    /// Read until the peer closes; true if it closed within `limit`.
    async fn closed_within(tcp: &mut TcpStream, limit: Duration) -> bool {
        let mut buf = [0u8; 256];
        let read = tokio::time::timeout(limit, async {
            loop {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        });
        read.await.is_ok()
    }

    #[tokio::test]
    async fn a_slow_header_sender_is_cut_off_while_others_are_served() {
        let (addr, stop, _) = start(Limits {
            header_read_timeout: Duration::from_millis(600),
            max_connections: 16,
        })
        .await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        let trickle = async {
            for byte in b"GET /health HTTP/1.1\r\nx-slow: " {
                if slow.write_all(&[*byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        let ((), answer) = tokio::join!(trickle, health(addr));
        assert_eq!(answer.unwrap(), "HTTP/1.1 200 OK");
        assert!(closed_within(&mut slow, Duration::from_secs(3)).await);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(500) && took < Duration::from_secs(4),
            "{took:?}"
        );
        stop.cancel();
    }

    /// At the cap, idle sockets make way for new connections instead of keeping them out until
    /// the header timeout; a connection with a request in flight is left alone.
    #[tokio::test]
    async fn idle_connections_make_way_at_the_cap() {
        let (addr, stop, metrics) = start(Limits {
            header_read_timeout: Duration::from_secs(60),
            max_connections: 4,
        })
        .await;
        let mut idle = Vec::new();
        for _ in 0..4 {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        let started = Instant::now();
        for _ in 0..3 {
            assert_eq!(health(addr).await.unwrap(), "HTTP/1.1 200 OK");
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        let mut evicted = 0;
        for tcp in &mut idle {
            if closed_within(tcp, Duration::from_millis(200)).await {
                evicted += 1;
            }
        }
        assert!(evicted >= 1, "no idle connection was closed");
        assert_eq!(metrics.connections_max.get(), 4);
        assert!(metrics.connections_waited.get() >= 1);
        assert_eq!(metrics.connections_evicted.get(), evicted);
        let open = metrics.connections_open.get();
        assert!((1..=4).contains(&open), "{open} connections open");
        stop.cancel();
    }

    #[tokio::test]
    async fn stopping_waits_for_open_connections() {
        let app = Router::new().route(
            "/slow",
            axum::routing::get(|| async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                "done"
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(
            listener,
            app,
            Limits {
                header_read_timeout: Duration::from_secs(5),
                max_connections: 8,
            },
            Arc::default(),
            stop.clone(),
        ));
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET /slow HTTP/1.1\r\nhost: localhost\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.cancel();
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert!(answer.ends_with("done"), "{answer}");
        tokio::time::timeout(Duration::from_secs(2), server)
            .await
            .unwrap()
            .unwrap();
        assert!(TcpStream::connect(addr).await.is_err());
    }
}
