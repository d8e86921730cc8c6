//! The stdio shim: an MCP server on stdin/stdout that forwards tools, progress and cancellation
//! to a shared daemon over Streamable HTTP. It starts the daemon when none answers (if allowed),
//! reconnects once when the connection drops, and gives up after the shim timeout.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CancelledNotificationParam, ClientRequest, ErrorCode,
    Implementation, JsonRpcMessage, JsonRpcNotification, ListToolsResult, PaginatedRequestParams,
    ProgressNotificationParam, ProgressToken, Request, ServerCapabilities, ServerConfig,
    ServerNotification, ServerResult,
};
use rmcp::service::{
    NotificationContext, PeerRequestOptions, RequestContext, RunningService, RxJsonRpcMessage,
    ServiceError, TxJsonRpcMessage,
};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, Transport};
use rmcp::{ClientHandler, ErrorData, Peer, RoleClient, RoleServer, ServerHandler, ServiceExt};
use tokio::sync::Mutex as AsyncMutex;

use crate::daemon;
use crate::state::AppState;

type Upstream = RunningService<RoleClient, ShimClient>;

/// Daemon-side progress token → the stdio client's token and peer.
type ProgressRoutes = HashMap<ProgressToken, (ProgressToken, Peer<RoleServer>)>;

/// Routes the daemon's notifications back to the stdio client.
#[derive(Clone, Default)]
pub struct ShimClient {
    progress: Arc<Mutex<ProgressRoutes>>,
    downstream: Arc<Mutex<Option<Peer<RoleServer>>>>,
}

impl ShimClient {
    /// Forwards a progress notification to the stdio client that asked for it; false when no
    /// call of the client's is waiting on that token.
    async fn forward_progress(&self, params: &ProgressNotificationParam) -> bool {
        let target = self
            .progress
            .lock()
            .ok()
            .and_then(|m| m.get(&params.progress_token).cloned());
        let Some((token, peer)) = target else {
            return false;
        };
        let mut forwarded = params.clone();
        forwarded.progress_token = token;
        let _ = peer.notify_progress(forwarded).await;
        true
    }
}

/// The HTTP client for the daemon connection. The SDK's own client keeps no idle connection
/// (a client that left a stream unread would stall on reuse), so every call would open one; the
/// daemon answers quick calls as complete JSON bodies and ends its streams right after the
/// answer, which the SDK reads to the end, so connections are kept here. Redirects are not
/// followed: the daemon sends none.
fn daemon_transport(
    config: StreamableHttpClientTransportConfig,
) -> StreamableHttpClientTransport<reqwest::Client> {
    match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(client) => StreamableHttpClientTransport::with_client(client, config),
        Err(e) => {
            tracing::warn!(
                "cannot build a pooled HTTP client ({e}); opening a connection per call"
            );
            StreamableHttpClientTransport::from_config(config)
        }
    }
}

/// The daemon connection's transport, with progress notifications forwarded as they arrive.
///
/// The SDK hands each notification to the handler on a task of its own but completes a request
/// straight from its receive loop, so a handler-side forward can lose the race against the
/// answer: the client then sees the result before the last progress (and drops that progress).
/// Forwarding here, in the receive loop itself, keeps the daemon's order.
struct ProgressTap<T> {
    inner: T,
    client: ShimClient,
}

impl<T: Transport<RoleClient>> Transport<RoleClient> for ProgressTap<T> {
    type Error = T::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleClient>> {
        loop {
            let message = self.inner.receive().await?;
            if let JsonRpcMessage::Notification(JsonRpcNotification {
                notification: ServerNotification::ProgressNotification(n),
                ..
            }) = &message
                && self.client.forward_progress(&n.params).await
            {
                continue;
            }
            return Some(message);
        }
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}

impl ClientHandler for ShimClient {
    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        let peer = self.downstream.lock().ok().and_then(|p| p.clone());
        if let Some(peer) = peer {
            let _ = peer.notify_tool_list_changed().await;
        }
    }
}

/// Where the shim forwards to, and how.
#[derive(Debug, Clone)]
pub struct ShimOptions {
    pub url: String,
    pub token: Option<String>,
    pub autostart: bool,
    pub timeout: Duration,
    /// The binary to start as `exai daemon` (normally the running executable).
    pub exe: std::path::PathBuf,
}

#[derive(Clone)]
pub struct ShimServer {
    state: Arc<AppState>,
    options: Arc<ShimOptions>,
    client: ShimClient,
    upstream: Arc<AsyncMutex<Option<Arc<Upstream>>>>,
}

fn unavailable(message: String) -> ErrorData {
    ErrorData::new(ErrorCode::INTERNAL_ERROR, message, None)
}

/// `127.0.0.1:8079` from `http://127.0.0.1:8079/mcp`, when that host is this machine.
fn local_listen(url: &str) -> Option<String> {
    let url = reqwest::Url::parse(url).ok()?;
    let port = url.port_or_known_default()?;
    let host = url.host_str()?.trim_matches(['[', ']']);
    let ip: std::net::IpAddr = if host.eq_ignore_ascii_case("localhost") {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        host.parse().ok()?
    };
    ip.is_loopback()
        .then(|| SocketAddr::new(ip, port).to_string())
}

fn base_of(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("127.0.0.1");
            let host = if host.contains(':') && !host.starts_with('[') {
                format!("[{host}]")
            } else {
                host.to_string()
            };
            match u.port() {
                Some(p) => format!("{}://{host}:{p}", u.scheme()),
                None => format!("{}://{host}", u.scheme()),
            }
        }
        Err(_) => url.trim_end_matches("/mcp").to_string(),
    }
}

impl ShimServer {
    pub fn new(state: Arc<AppState>, options: ShimOptions) -> Self {
        Self {
            state,
            options: Arc::new(options),
            client: ShimClient::default(),
            upstream: Arc::new(AsyncMutex::new(None)),
        }
    }

    /// Make sure a daemon answers, starting one if allowed.
    async fn ensure_daemon(&self) -> Result<(), ErrorData> {
        let base = base_of(&self.options.url);
        let token = self.options.token.as_deref();
        if daemon::wait_ready(&base, token, Duration::from_millis(300)).await {
            return Ok(());
        }
        if !self.options.autostart {
            return Err(unavailable(format!(
                "no exai daemon answers at {}; start one with `exai daemon` (or set shim.autostart = true)",
                self.options.url
            )));
        }
        let Some(listen) = local_listen(&self.options.url) else {
            return Err(unavailable(format!(
                "no exai daemon answers at {} and it is not on this machine, so the shim cannot start one",
                self.options.url
            )));
        };
        tracing::info!(%listen, "no daemon answers; starting `exai daemon`");
        let pid =
            daemon::spawn_detached(&self.options.exe, &listen, &self.state.loaded.child_env())
                .map_err(|e| unavailable(e.to_string()))?;
        if daemon::wait_ready(&base, token, Duration::from_secs(15)).await {
            tracing::info!(pid, "daemon started");
            Ok(())
        } else {
            Err(unavailable(format!(
                "started `exai daemon --listen {listen}` (pid {pid}) but it did not become ready within 15 s; see its log in the data directory"
            )))
        }
    }

    async fn connect(&self) -> Result<Arc<Upstream>, ErrorData> {
        self.ensure_daemon().await?;
        let mut config = StreamableHttpClientTransportConfig::with_uri(self.options.url.clone());
        config.reinit_on_expired_session = true;
        if let Some(t) = &self.options.token {
            config = config.auth_header(t.clone());
        }
        let transport = ProgressTap {
            inner: daemon_transport(config),
            client: self.client.clone(),
        };
        let running =
            tokio::time::timeout(self.options.timeout, self.client.clone().serve(transport))
                .await
                .map_err(|_| {
                    unavailable(format!(
                        "the daemon at {} did not complete the MCP handshake in time",
                        self.options.url
                    ))
                })?
                .map_err(|e| {
                    unavailable(format!(
                        "cannot connect to the exai daemon at {}: {e}",
                        self.options.url
                    ))
                })?;
        Ok(Arc::new(running))
    }

    /// The live connection, connecting on first use.
    async fn upstream(&self) -> Result<Arc<Upstream>, ErrorData> {
        let mut slot = self.upstream.lock().await;
        if let Some(up) = slot.as_ref()
            && !up.is_transport_closed()
        {
            return Ok(up.clone());
        }
        let up = self.connect().await?;
        *slot = Some(up.clone());
        Ok(up)
    }

    async fn drop_upstream(&self, dead: &Arc<Upstream>) {
        let mut slot = self.upstream.lock().await;
        if slot.as_ref().is_some_and(|up| Arc::ptr_eq(up, dead)) {
            *slot = None;
        }
    }

    fn remember_peer(&self, peer: &Peer<RoleServer>) {
        if let Ok(mut p) = self.client.downstream.lock()
            && p.is_none()
        {
            *p = Some(peer.clone());
        }
    }

    fn timed_out(&self) -> ErrorData {
        unavailable(format!(
            "the exai daemon did not answer within the shim timeout of {:.0} s (2 × the workflow tool timeout); see `exai logs` on the daemon",
            self.options.timeout.as_secs_f64()
        ))
    }

    /// One attempt at forwarding a tool call. `Err(None)` means the connection failed before an
    /// answer, so one reconnect and retry is allowed.
    async fn forward_call(
        &self,
        up: &Arc<Upstream>,
        params: CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, Option<ErrorData>> {
        // The SDK's own request timeout waits to deliver its cancellation to a daemon that may
        // be hung; the shim keeps its deadline itself and tells the daemon in the background.
        let options = PeerRequestOptions::no_options();
        let handle = up
            .peer()
            .send_cancellable_request(
                ClientRequest::CallToolRequest(Request::new(params)),
                options,
            )
            .await
            .map_err(|_| None)?;
        let daemon_token = handle.progress_token.clone();
        let request_id = handle.id.clone();
        let peer = handle.peer.clone();
        if let Some(client_token) = context.meta.get_progress_token()
            && let Ok(mut m) = self.client.progress.lock()
        {
            m.insert(daemon_token.clone(), (client_token, context.peer.clone()));
        }
        let outcome = tokio::select! {
            r = tokio::time::timeout(self.options.timeout, handle.await_response()) => {
                Some(r.unwrap_or(Err(ServiceError::Timeout { timeout: self.options.timeout })))
            }
            () = context.ct.cancelled() => None,
        };
        if let Ok(mut m) = self.client.progress.lock() {
            m.remove(&daemon_token);
        }
        match outcome {
            None => {
                let _ = peer
                    .notify_cancelled(CancelledNotificationParam::new(
                        Some(request_id),
                        Some("cancelled by the client".into()),
                    ))
                    .await;
                Err(Some(unavailable("cancelled by the client".into())))
            }
            Some(Ok(ServerResult::CallToolResult(r))) => Ok(CallToolResponse::Complete(r)),
            Some(Ok(ServerResult::InputRequiredResult(r))) => {
                Ok(CallToolResponse::InputRequired(r))
            }
            Some(Ok(ServerResult::CreateTaskResult(r))) => Ok(CallToolResponse::Task(r)),
            Some(Ok(other)) => Err(Some(unavailable(format!(
                "unexpected answer from the daemon: {other:?}"
            )))),
            Some(Err(ServiceError::McpError(e))) => Err(Some(e)),
            Some(Err(ServiceError::Timeout { .. })) => {
                let _ = peer
                    .notify_cancelled(CancelledNotificationParam::new(
                        Some(request_id),
                        Some("shim timeout".into()),
                    ))
                    .await;
                Err(Some(self.timed_out()))
            }
            Some(Err(ServiceError::TransportClosed | ServiceError::TransportSend(_))) => Err(None),
            Some(Err(e)) => Err(Some(unavailable(format!("daemon request failed: {e}")))),
        }
    }
}

impl ServerHandler for ShimServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .enable_tool_list_changed()
                .build(),
        )
        .with_server_info(
            Implementation::new("exai", exai_core::VERSION)
                .with_title("exai (shim)")
                .with_description("stdio shim forwarding to a shared exai daemon"),
        )
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        self.remember_peer(&context.peer);
        for attempt in 0..2 {
            let up = self.upstream().await?;
            let result =
                tokio::time::timeout(self.options.timeout, up.peer().list_tools(request.clone()))
                    .await;
            match result {
                Err(_) => return Err(self.timed_out()),
                Ok(Ok(list)) => return Ok(list),
                Ok(Err(ServiceError::McpError(e))) => return Err(e),
                Ok(Err(e)) if attempt == 0 => {
                    tracing::warn!("daemon connection lost ({e}); reconnecting once");
                    self.drop_upstream(&up).await;
                }
                Ok(Err(e)) => {
                    return Err(unavailable(format!(
                        "the exai daemon at {} is unreachable: {e}",
                        self.options.url
                    )));
                }
            }
        }
        Err(unavailable("unreachable".into()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        self.remember_peer(&context.peer);
        let _inflight = self.state.enter();
        for attempt in 0..2 {
            let up = self.upstream().await?;
            match self.forward_call(&up, request.clone(), &context).await {
                Ok(r) => return Ok(r),
                Err(Some(e)) => return Err(e),
                Err(None) if attempt == 0 => {
                    tracing::warn!("daemon connection lost; reconnecting once");
                    self.drop_upstream(&up).await;
                }
                Err(None) => {}
            }
        }
        Err(unavailable(format!(
            "lost the connection to the exai daemon at {} twice; check `exai daemon status`",
            self.options.url
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_address_from_url() {
        assert_eq!(
            local_listen("http://127.0.0.1:8079/mcp").as_deref(),
            Some("127.0.0.1:8079")
        );
        assert_eq!(
            local_listen("http://localhost:9/mcp").as_deref(),
            Some("127.0.0.1:9")
        );
        assert_eq!(
            local_listen("http://[::1]:9/mcp").as_deref(),
            Some("[::1]:9")
        );
        assert_eq!(local_listen("http://example.com:9/mcp"), None);
        assert_eq!(
            base_of("http://127.0.0.1:8079/mcp"),
            "http://127.0.0.1:8079"
        );
        assert_eq!(base_of("http://[::1]:8079/mcp"), "http://[::1]:8079");
    }
}
