//! Refused requests: each is logged with the client's address and the reason, and counted by
//! reason for `/metrics` (`exai_http_refused_total`) and `/health`. What a client offered as a
//! credential is never logged.
//!
//! The address is the TCP peer's. Behind a reverse proxy that is the proxy; forwarded headers
//! are not believed, since any client can send them.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request};

use crate::metrics::{Refusal, TransportMetrics};

/// The client's address, as the listener recorded it on the request.
pub fn peer(request: &Request) -> Option<SocketAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}

/// Log and count one refusal; `detail` says what was wrong in the request.
pub fn refused(
    metrics: &TransportMetrics,
    peer: Option<SocketAddr>,
    reason: Refusal,
    detail: &str,
) {
    metrics.count_refusal(reason);
    let client = peer.map_or_else(|| "unknown".to_string(), |p| p.to_string());
    tracing::warn!(
        client,
        reason = reason.as_str(),
        "refused request from {client}: {detail}"
    );
}
