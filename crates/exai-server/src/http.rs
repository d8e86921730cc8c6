//! The HTTP daemon: Streamable HTTP MCP at `/mcp`, `GET /health`, `GET /ready`, `GET /metrics`
//! and the routes the binary adds (the dashboard at `/` and `/ui/`), behind one guard that checks
//! `Host`, `Origin` and the bearer token (or, for the dashboard, its sign-in: `signin`) on every
//! request and names the request's [`Principal`]. The listener's limits (header-read timeout, connection cap) live
//! in `listener`, the MCP sessions' (cap, owner, idle expiry) in `sessions`; every refusal is
//! logged and counted by `refusal`.

mod json_answer;
mod listener;
mod refusal;
mod sessions;
mod signin;
pub use signin::CSRF_HEADER;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{RoleServer, transport::streamable_http_server::session::SessionId};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::handler::ExaiServer;
use crate::health::HealthReport;
use crate::metrics::Refusal;
use crate::registry::Profile;
use crate::state::AppState;
use listener::Limits;
use sessions::Sessions;
use signin::{Area, SignIns};

/// Who a request acts for: the owner of the conversation threads and index jobs it creates, and
/// the only one who sees them afterwards.
///
/// A named token of `server.tokens` is the principal of that name. Everything else is the
/// local user, [`exai_tools::LOCAL_PRINCIPAL`]: stdio, a daemon without tokens (so a single
/// user's threads follow them across clients and sessions), and the unnamed
/// `server.auth_token` (so adding a token to a daemon keeps the threads it had).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal(Arc<str>);

impl Principal {
    pub fn local() -> Principal {
        Principal(Arc::from(exai_tools::LOCAL_PRINCIPAL))
    }

    fn named(name: &str) -> Principal {
        Principal(Arc::from(name))
    }

    pub fn name(&self) -> &str {
        &self.0
    }

    /// The principal of an MCP request. The HTTP guard names one for every request it lets
    /// through; a request that came through no HTTP layer (stdio) is the local user's. An HTTP
    /// request without one never passed the guard: it gets a principal no token can name
    /// (the empty name), which owns nothing anyone else made.
    pub fn of(context: &RequestContext<RoleServer>) -> Principal {
        match context.extensions.get::<http::request::Parts>() {
            Some(parts) => parts
                .extensions
                .get::<Principal>()
                .cloned()
                .unwrap_or_else(|| Principal(Arc::from(""))),
            None => Principal::local(),
        }
    }
}

const LOOPBACK_HOSTS: &[&str] = &["localhost", "127.0.0.1", "::1"];

/// What the guard lets through. Built from the configuration, again after a reload: tokens
/// follow the configuration in force, hosts and origins stay as started (the SDK's own checks
/// were built with them).
#[derive(Debug, Clone)]
pub struct Guard {
    /// Each accepted bearer token and the principal it stands for; empty when no token is
    /// configured (every request is then the local user's).
    tokens: Vec<(Principal, String)>,
    /// `None` when Host is not checked (bearer-token deployments without an explicit list).
    hosts: Option<Vec<String>>,
    origins: Vec<String>,
}

impl Guard {
    pub fn from_state(state: &AppState, bind: SocketAddr) -> Self {
        let server = &state.loaded.config.server;
        let current = state.config();
        let in_force = &current.config.server;
        let mut tokens: Vec<(Principal, String)> = in_force
            .tokens
            .iter()
            .map(|(name, token)| (Principal::named(name), token.expose().to_string()))
            .collect();
        if in_force.auth_token.is_set() {
            tokens.push((Principal::local(), in_force.auth_token.expose().to_string()));
        }
        // DNS rebinding only threatens unauthenticated servers: with a token and no explicit
        // list, any Host is accepted so LAN and proxy names work.
        let hosts =
            if !tokens.is_empty() && server.allowed_hosts.is_empty() && !bind.ip().is_loopback() {
                None
            } else {
                let mut hosts: Vec<String> = LOOPBACK_HOSTS.iter().map(|h| h.to_string()).collect();
                hosts.extend(server.allowed_hosts.iter().cloned());
                Some(hosts)
            };
        let mut origins: Vec<String> = [
            "http://localhost:*",
            "http://127.0.0.1:*",
            "http://[::1]:*",
            "https://localhost:*",
            "https://127.0.0.1:*",
            "https://[::1]:*",
        ]
        .iter()
        .map(|o| o.to_string())
        .collect();
        origins.extend(server.allowed_origins.iter().cloned());
        Self {
            tokens,
            hosts,
            origins,
        }
    }

    fn host_allowed(&self, host: &str) -> bool {
        let Some(allowed) = &self.hosts else {
            return true;
        };
        let host = host.trim().to_ascii_lowercase();
        let name = strip_port(&host);
        allowed.iter().any(|a| {
            let a = a.to_ascii_lowercase();
            a == host || a.trim_matches(['[', ']']) == name
        })
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        let origin = origin.trim().to_ascii_lowercase();
        self.origins.iter().any(|pattern| {
            let pattern = pattern.to_ascii_lowercase();
            match pattern.strip_suffix(":*") {
                Some(prefix) => {
                    origin == prefix
                        || origin.strip_prefix(prefix).is_some_and(|rest| {
                            rest.strip_prefix(':').is_some_and(|port| {
                                !port.is_empty() && port.chars().all(|c| c.is_ascii_digit())
                            })
                        })
                }
                None => origin == pattern,
            }
        })
    }

    /// The principal whose bearer token the request carries; `None` for a missing or wrong one.
    fn authenticate(&self, headers: &HeaderMap) -> Option<Principal> {
        if self.tokens.is_empty() {
            return Some(Principal::local());
        }
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .unwrap_or("");
        // Every token is compared, each in constant time, so the time taken tells neither which
        // token matched nor how much of one; lengths differing is itself not secret.
        let mut found = None;
        for (principal, expected) in &self.tokens {
            if given.len() == expected.len()
                && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
            {
                found = Some(principal.clone());
            }
        }
        found
    }
}

/// `host:port`, `[v6]:port` or `host` → host without port or brackets.
fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) && !name.contains(':') => {
            name
        }
        _ => host,
    }
}

fn refuse(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message, "status": status.as_u16() });
    let mut response = (status, axum::Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"exai\""),
        );
    }
    response
}

/// The guard in force, rebuilt on the first request after a configuration reload.
struct GuardState {
    state: Arc<AppState>,
    bind: SocketAddr,
    /// The guard and the configuration generation it was built from.
    built: RwLock<(u64, Arc<Guard>)>,
    /// The dashboard's signed-in browsers (they outlive reloads; each is checked against the
    /// tokens in force).
    signins: SignIns,
}

impl GuardState {
    fn new(state: Arc<AppState>, bind: SocketAddr) -> GuardState {
        let built = (
            state.config_generation(),
            Arc::new(Guard::from_state(&state, bind)),
        );
        GuardState {
            state,
            signins: SignIns::new(bind.port()),
            bind,
            built: RwLock::new(built),
        }
    }

    fn current(&self) -> Arc<Guard> {
        let generation = self.state.config_generation();
        {
            let built = self.built.read().unwrap_or_else(PoisonError::into_inner);
            if built.0 == generation {
                return built.1.clone();
            }
        }
        let guard = Arc::new(Guard::from_state(&self.state, self.bind));
        *self.built.write().unwrap_or_else(PoisonError::into_inner) = (generation, guard.clone());
        guard
    }
}

async fn guard(State(cell): State<Arc<GuardState>>, mut request: Request, next: Next) -> Response {
    let guard = cell.current();
    let refused = |reason: Refusal, detail: &str| {
        refusal::refused(
            &cell.state.metrics.transport,
            refusal::peer(&request),
            reason,
            detail,
        )
    };
    let headers = request.headers();
    if let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok())
        && !guard.host_allowed(host)
    {
        refused(Refusal::Host, &format!("Host {host:?} not allowed"));
        return refuse(
            StatusCode::FORBIDDEN,
            "Host header not allowed; add it to server.allowed_hosts (EXAI_SERVER_ALLOWED_HOSTS)",
        );
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let allowed = origin
            .to_str()
            .map(|o| guard.origin_allowed(o))
            .unwrap_or(false);
        if !allowed {
            refused(Refusal::Origin, &format!("Origin {origin:?} not allowed"));
            return refuse(
                StatusCode::FORBIDDEN,
                "Origin not allowed; add it to server.allowed_origins (EXAI_SERVER_ALLOWED_ORIGINS)",
            );
        }
    }
    let area = Area::of(request.method(), request.uri().path());
    if area != Area::Api {
        let visitor = cell.signins.visitor(&guard, headers);
        match (area, visitor) {
            (Area::Dashboard, None) => {
                refused(
                    Refusal::Token,
                    "dashboard request without a session or token",
                );
                return refuse(
                    StatusCode::UNAUTHORIZED,
                    "sign in to the dashboard first (at /, with EXAI_AUTH_TOKEN or one of server.tokens)",
                );
            }
            (Area::Dashboard, Some(v))
                if !signin::csrf_ok(&v, request.method(), request.headers()) =>
            {
                refused(
                    Refusal::Origin,
                    "dashboard change without its x-exai-csrf value",
                );
                return refuse(
                    StatusCode::FORBIDDEN,
                    "missing or wrong x-exai-csrf header: changes come from the dashboard's own pages",
                );
            }
            (_, Some(v)) => {
                request.extensions_mut().insert(v.principal);
            }
            (_, None) => {}
        }
        return next.run(request).await;
    }
    let Some(principal) = guard.authenticate(headers) else {
        let offered = if headers.contains_key(header::AUTHORIZATION) {
            "wrong bearer token"
        } else {
            "no bearer token"
        };
        refused(Refusal::Token, offered);
        return refuse(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token (Authorization: Bearer <token>, the token being EXAI_AUTH_TOKEN or one of server.tokens)",
        );
    };
    request.extensions_mut().insert(principal);
    next.run(request).await
}

/// How long a client refused for lack of a session slot is asked to wait.
const SESSIONS_RETRY_AFTER_SECS: u64 = 5;

/// What the `/mcp` gate needs.
struct McpGate {
    state: Arc<AppState>,
    sessions: Arc<Sessions>,
    body_limit: usize,
    /// How long a request body may take to arrive once its head has (the header-read timeout:
    /// a body trickled byte by byte would otherwise hold its connection as busy forever).
    body_timeout: Duration,
}

/// The parts of a JSON-RPC message the gate looks at; the SDK parses the whole message.
#[derive(serde::Deserialize)]
struct Probe {
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    id: Option<serde_json::Value>,
}

/// In front of the SDK's `/mcp` service:
/// - a request naming a session must come from the principal that opened it, else the session
///   is unknown to it (404, as the SDK answers for an expired one);
/// - `POST` bodies are size-capped, must arrive within the header-read timeout (408 otherwise)
///   and must be JSON, so a bad body gets the JSON-RPC answer (413, or 400 with
///   `-32700 Parse error`) rather than the SDK's bare 415;
/// - an `initialize` takes a session slot first: none free is 503 with `Retry-After` and a
///   JSON-RPC `OVER_CAPACITY` error; the session opened is bound to the caller;
/// - a call whose first message is its answer gets it as a JSON body, not a stream
///   (`json_answer`), so clients keep their connection;
/// - a response is counted until it is fully written or dropped, so a stopping daemon does not
///   end a session before its last answers have left, and an idle session is not closed while
///   one of its calls runs.
async fn mcp_gate(State(gate): State<Arc<McpGate>>, request: Request, next: Next) -> Response {
    let peer = refusal::peer(&request);
    let Some(principal) = request.extensions().get::<Principal>().cloned() else {
        return refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "request reached /mcp without passing the guard",
        );
    };
    let session = session_id(request.headers()).map(str::to_string);
    let activity = match &session {
        Some(id) => match gate.sessions.touch(id, &principal) {
            Some(activity) => Some(activity),
            None => return session_not_found(),
        },
        None => None,
    };
    if request.method() == axum::http::Method::DELETE {
        return end_session(request, next).await;
    }
    if request.method() != axum::http::Method::POST {
        return next.run(request).await;
    }
    let guard = gate.state.enter_response();
    let in_flight = activity.map(|a| gate.sessions.begin(a));
    let (mut parts, body) = request.into_parts();
    let bytes = match gate.read_body(&parts.headers, body, peer).await {
        Ok(bytes) => bytes,
        Err(answer) => return answer,
    };
    let probe = match probe(&bytes) {
        Ok(probe) => probe,
        Err(answer) => return *answer,
    };
    let offer = json_answer::offer(&mut parts, probe.as_ref());
    let slot = match gate.slot_for(session.is_none(), probe, peer) {
        Ok(slot) => slot,
        Err(answer) => return *answer,
    };
    let response = next
        .run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await;
    let response = json_answer::answer(offer, response);
    if let Some(slot) = slot
        && let Some(id) = session_id(response.headers())
    {
        let id: SessionId = Arc::from(id);
        gate.sessions.bind(id, principal, slot).await;
    }
    let (parts, body) = response.into_parts();
    let stream = futures::StreamExt::map(body.into_data_stream(), move |chunk| {
        let _counted = (&guard, &in_flight);
        chunk
    });
    Response::from_parts(parts, axum::body::Body::from_stream(stream))
}

/// The `Mcp-Session-Id` header of a request or a response.
fn session_id(headers: &HeaderMap) -> Option<&str> {
    headers.get("mcp-session-id").and_then(|v| v.to_str().ok())
}

/// A session ended by the client: rmcp answers 202 Accepted, which the official Python SDK
/// reports as "Session termination failed: 202"; the session is gone at once, so say so with 204
/// No Content (what both official SDKs accept).
async fn end_session(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    if response.status() == StatusCode::ACCEPTED {
        *response.status_mut() = StatusCode::NO_CONTENT;
        *response.body_mut() = axum::body::Body::empty();
    }
    response
}

impl McpGate {
    /// Log and count a refusal of `peer`'s request.
    fn refused(&self, peer: Option<SocketAddr>, reason: Refusal, detail: &str) {
        refusal::refused(&self.state.metrics.transport, peer, reason, detail);
    }

    /// The whole `POST` body, or the refusal: 413 past `body_limit` (declared or counted), 408
    /// when it does not arrive within `body_timeout`.
    async fn read_body(
        &self,
        headers: &HeaderMap,
        body: axum::body::Body,
        peer: Option<SocketAddr>,
    ) -> Result<axum::body::Bytes, Response> {
        let limit = self.body_limit;
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let too_large = || {
            self.refused(
                peer,
                Refusal::BodyTooLarge,
                &format!("body over {limit} bytes"),
            );
            refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("request body exceeds {limit} bytes (server.max_body_bytes)"),
            )
        };
        if declared.is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        match tokio::time::timeout(self.body_timeout, axum::body::to_bytes(body, limit)).await {
            Ok(Ok(b)) => Ok(b),
            Ok(Err(_)) => Err(too_large()),
            Err(_) => {
                self.refused(peer, Refusal::BodyTimeout, "body not received in time");
                Err(refuse(
                    StatusCode::REQUEST_TIMEOUT,
                    &format!(
                        "request body not received within {:.1} s (server.header_read_timeout_secs)",
                        self.body_timeout.as_secs_f64()
                    ),
                ))
            }
        }
    }

    /// A session slot for an `initialize` outside a session, or the refusal when none is free
    /// (503); `None` for any other message.
    fn slot_for(
        &self,
        outside_session: bool,
        probe: Option<Probe>,
        peer: Option<SocketAddr>,
    ) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, Box<Response>> {
        let opening = outside_session
            && probe
                .as_ref()
                .is_some_and(|p| p.method.as_deref() == Some("initialize"));
        if !opening {
            return Ok(None);
        }
        match self.sessions.reserve() {
            Some(slot) => Ok(Some(slot)),
            None => {
                let id = probe.and_then(|p| p.id).unwrap_or(serde_json::Value::Null);
                let max = self.sessions.max();
                self.refused(
                    peer,
                    Refusal::SessionsFull,
                    &format!("new MCP session over the cap of {max} (server.max_sessions)"),
                );
                Err(Box::new(over_capacity(id, max)))
            }
        }
    }
}

/// The message's method and id (`None` for a batch, which is no `initialize`), or a JSON-RPC
/// parse error (400) for a body that is not JSON.
fn probe(bytes: &[u8]) -> Result<Option<Probe>, Box<Response>> {
    match serde_json::from_slice::<Probe>(bytes) {
        Ok(probe) => Ok(Some(probe)),
        Err(_) => match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
            Ok(_) => Ok(None),
            Err(e) => {
                tracing::warn!("malformed JSON from client: {e}");
                let body = serde_json::json!({
                    "jsonrpc": "2.0",
                    "id": null,
                    "error": { "code": -32700, "message": format!("Parse error: {e}") },
                });
                Err(Box::new(
                    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response(),
                ))
            }
        },
    }
}

/// What the SDK answers for a session it does not know.
fn session_not_found() -> Response {
    (StatusCode::NOT_FOUND, "Not Found: Session not found").into_response()
}

/// 503 for an `initialize` while every session slot is taken.
fn over_capacity(id: serde_json::Value, max: usize) -> Response {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {
            "code": -32000,
            "message": format!(
                "OVER_CAPACITY: all {max} MCP sessions are in use; retry in {SESSIONS_RETRY_AFTER_SECS} s, \
                 end unused sessions, or raise server.max_sessions (EXAI_SERVER_MAX_SESSIONS)"
            ),
            "data": {
                "error": "OVER_CAPACITY",
                "setting": "server.max_sessions",
                "retry_after_secs": SESSIONS_RETRY_AFTER_SECS,
            },
        },
    });
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    response.headers_mut().insert(
        header::RETRY_AFTER,
        header::HeaderValue::from(SESSIONS_RETRY_AFTER_SECS),
    );
    response
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    let tools = ExaiServer::new(state.clone()).tool_names();
    axum::Json(HealthReport::collect(&state, tools)).into_response()
}

async fn ready(State(state): State<Arc<AppState>>) -> Response {
    if state.is_draining() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "ready": false, "reason": "draining" })),
        )
            .into_response()
    } else {
        axum::Json(serde_json::json!({ "ready": true })).into_response()
    }
}

/// Prometheus text exposition; behind the same guard (and bearer token) as everything else.
async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let body = crate::metrics::render(&state).await;
    (
        [(header::CONTENT_TYPE, exai_core::metrics::CONTENT_TYPE)],
        body,
    )
        .into_response()
}

/// The full HTTP application and its MCP sessions. `sessions_ct` ends every MCP session when
/// cancelled.
fn app(
    state: Arc<AppState>,
    bind: SocketAddr,
    sessions_ct: CancellationToken,
    extra: Router,
) -> (Router, Arc<Sessions>) {
    let guard_state = Arc::new(GuardState::new(state.clone(), bind));
    let guard_cfg = guard_state.current();
    let server = &state.loaded.config.server;
    let mut mcp_config = StreamableHttpServerConfig::default()
        .with_cancellation_token(sessions_ct)
        .with_max_request_body_bytes(usize::try_from(server.max_body_bytes).unwrap_or(usize::MAX));
    mcp_config = match &guard_cfg.hosts {
        Some(hosts) => mcp_config.with_allowed_hosts(hosts.clone()),
        None => mcp_config.disable_allowed_hosts(),
    };
    mcp_config = mcp_config
        .with_allowed_origins(guard_cfg.origins.clone())
        .enforce_origin_validation();
    let sessions = Arc::new(Sessions::new(
        usize::try_from(server.max_sessions).unwrap_or(usize::MAX),
        Duration::from_secs_f64(server.session_idle_secs),
        state.loaded.timeouts.shutdown_grace(),
        state.metrics.transport.clone(),
    ));
    let gate = Arc::new(McpGate {
        state: state.clone(),
        sessions: sessions.clone(),
        body_limit: usize::try_from(server.max_body_bytes).unwrap_or(usize::MAX),
        body_timeout: Duration::from_secs_f64(server.header_read_timeout_secs),
    });
    // `/mcp` lists the configured profile's tools, `/mcp/PROFILE` that profile's (one client
    // can ask for `full` while the others stay lean); all share the sessions and their caps.
    let endpoint = |profile: Profile| {
        let factory_state = state.clone();
        tower::ServiceBuilder::new()
            .layer(middleware::from_fn_with_state(gate.clone(), mcp_gate))
            .service(StreamableHttpService::new(
                move || Ok(ExaiServer::with_profile(factory_state.clone(), profile)),
                sessions.clone(),
                mcp_config.clone(),
            ))
    };
    let mut router = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(state.clone())
        .nest_service("/mcp", endpoint(state.loaded.config.tools.profile));
    for profile in Profile::ALL {
        router = router.route_service(&format!("/mcp/{}", profile.as_str()), endpoint(profile));
    }
    let signing_in = Router::new()
        .route("/ui/signin", post(signin::sign_in))
        .route("/ui/signout", post(signin::sign_out))
        .route("/ui/api/session", get(signin::session))
        .with_state(guard_state.clone());
    let router = router
        .merge(signing_in)
        .merge(extra)
        .layer(middleware::from_fn_with_state(guard_state, guard))
        // A bug that panics in a handler still answers (500, logged) instead of dropping the
        // connection without a word.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked));
    (router, sessions)
}

fn panicked(payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = exai_core::text::panic_message(payload.as_ref());
    tracing::error!(panic = %message, "HTTP handler panicked");
    refuse(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error (a bug in exai; the details are in its log)",
    )
}

/// Errors the daemon reports to the operator.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "cannot listen on {addr}: the port is already in use (another exai daemon? see `exai daemon status`); choose another with --listen or server.listen"
    )]
    PortInUse { addr: SocketAddr },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Connections the kernel queues for `accept` (capped by `net.core.somaxconn`). Over
/// `server.max_connections` connections wait here; tokio's default of 128 made a burst of idle
/// sockets overflow it, and the kernel then drops handshakes without a word.
const LISTEN_BACKLOG: u32 = 1024;

pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    };
    socket
        .and_then(|s| {
            // As `TcpListener::bind` does: a restarted daemon can take its port back at once.
            s.set_reuseaddr(true)?;
            s.bind(addr)?;
            s.listen(LISTEN_BACKLOG)
        })
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::AddrInUse {
                ServeError::PortInUse { addr }
            } else {
                ServeError::Bind { addr, source }
            }
        })
}

/// Serve until `shutdown` resolves, then stop accepting, let calls in flight finish within the
/// grace period, end the sessions and return.
pub async fn serve(
    state: Arc<AppState>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    serve_with(state, listener, shutdown, Router::new()).await
}

/// [`serve`], with more routes behind the same guard (the daemon's dashboard, mounted by the
/// binary: it lives in a crate above this one).
pub async fn serve_with(
    state: Arc<AppState>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    extra: Router,
) -> Result<(), ServeError> {
    let bind = listener.local_addr()?;
    let sessions_ct = CancellationToken::new();
    let (app, sessions) = app(state.clone(), bind, sessions_ct.clone(), extra);
    tokio::spawn(sessions.sweep(sessions_ct.clone()));
    // Read when stopping: timeouts may have been reloaded since the start.
    let grace = |state: &AppState| state.config().timeouts.shutdown_grace();
    let stopping = CancellationToken::new();
    {
        let state = state.clone();
        let stopping = stopping.clone();
        tokio::spawn(async move {
            shutdown.await;
            let grace = grace(&state);
            state.start_draining();
            stopping.cancel();
            let inflight = state.inflight();
            tracing::info!(
                inflight,
                grace_secs = grace.as_secs_f64(),
                "stopping: accepting no new connections, finishing calls in flight"
            );
            if tokio::time::timeout(grace, state.wait_idle())
                .await
                .is_err()
            {
                tracing::warn!(
                    inflight = state.inflight(),
                    "grace period over; ending the remaining calls"
                );
            }
            sessions_ct.cancel();
        });
    }
    let limits = Limits::from_config(&state.loaded.config.server);
    let server = listener::serve(
        listener,
        app,
        limits,
        state.metrics.transport.clone(),
        stopping.clone(),
    );
    let hard_stop = async {
        stopping.cancelled().await;
        tokio::time::sleep(grace(&state) + Duration::from_secs(5)).await;
    };
    tokio::select! {
        () = server => {}
        () = hard_stop => tracing::warn!("connections still open after the grace period; closing them"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(token: Option<&str>, hosts: Option<Vec<&str>>, origins: Vec<&str>) -> Guard {
        Guard {
            tokens: token
                .map(|t| vec![(Principal::local(), t.to_string())])
                .unwrap_or_default(),
            hosts: hosts.map(|h| h.into_iter().map(str::to_string).collect()),
            origins: origins.into_iter().map(str::to_string).collect(),
        }
    }

    #[test]
    fn hosts() {
        let g = guard(
            None,
            Some(vec!["localhost", "127.0.0.1", "::1", "exai.lan:9000"]),
            vec![],
        );
        assert!(g.host_allowed("127.0.0.1:8079"));
        assert!(g.host_allowed("localhost"));
        assert!(g.host_allowed("[::1]:8079"));
        assert!(g.host_allowed("exai.lan:9000"));
        assert!(!g.host_allowed("exai.lan:9001"));
        assert!(!g.host_allowed("evil.example:8079"));
        assert!(guard(None, None, vec![]).host_allowed("anything"));
    }

    #[test]
    fn origins() {
        let g = guard(
            None,
            None,
            vec!["http://localhost:*", "https://app.example.com"],
        );
        assert!(g.origin_allowed("http://localhost:3000"));
        assert!(g.origin_allowed("http://localhost"));
        assert!(!g.origin_allowed("http://localhost.evil.com"));
        assert!(!g.origin_allowed("http://localhost:3000.evil.com"));
        assert!(g.origin_allowed("https://app.example.com"));
        assert!(!g.origin_allowed("https://evil.example.com"));
    }

    #[test]
    fn tokens() {
        let bearer = |t: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                header::AUTHORIZATION,
                format!("Bearer {t}").parse().unwrap(),
            );
            h
        };
        let g = guard(Some("0123456789abcdef"), None, vec![]);
        assert_eq!(g.authenticate(&HeaderMap::new()), None);
        assert_eq!(g.authenticate(&bearer("0123456789abcdeX")), None);
        assert_eq!(
            g.authenticate(&bearer("0123456789abcdef")),
            Some(Principal::local())
        );
        // No token configured: everyone is the local user.
        let open = guard(None, None, vec![]);
        assert_eq!(
            open.authenticate(&HeaderMap::new()),
            Some(Principal::local())
        );
        // Named tokens: each names its principal; the unnamed one stays the local user's.
        let named = Guard {
            tokens: vec![
                (Principal::named("alice"), "alice-token-000000".into()),
                (Principal::named("bob"), "bob-token-11111111".into()),
                (Principal::local(), "operator-token-222".into()),
            ],
            hosts: None,
            origins: vec![],
        };
        assert_eq!(
            named.authenticate(&bearer("alice-token-000000")),
            Some(Principal::named("alice"))
        );
        assert_eq!(
            named.authenticate(&bearer("bob-token-11111111")),
            Some(Principal::named("bob"))
        );
        assert_eq!(
            named.authenticate(&bearer("operator-token-222")),
            Some(Principal::local())
        );
        assert_eq!(named.authenticate(&bearer("alice-token-00000")), None);
        assert_eq!(named.authenticate(&HeaderMap::new()), None);
    }
}
