//! Plain JSON answers for calls that need no stream.
//!
//! Streamable HTTP lets a server answer a POSTed request either with an SSE stream or with
//! `Content-Type: application/json` and the one JSON-RPC response (MCP 2025-06-18, "Sending
//! Messages to the Server"). Inside a session the SDK always opens a stream, and a client that
//! stops reading a stream once it has its answer (the official Python SDK does, before the
//! stream's last chunk) cannot put the connection back in its pool: every call then pays a TCP
//! connect and close. A complete JSON body is read to its end by every client, so the
//! connection is kept.
//!
//! The `/mcp` gate puts a [`JsonAnswer`] on each request (a POST whose `Accept` does not take
//! `application/json` the SDK refuses before it gets further); the SDK carries the request's
//! parts, and with them the offer, to the session manager, which waits a moment for the call's
//! first message. When that message is the answer, it takes the stream's place and the gate
//! sends it as a JSON body. Anything else first — a progress notification, a request to the
//! client, or nothing within [`FIRST_MESSAGE_WAIT`] — keeps the stream, with every message in
//! order, so progress and the SDK's keep-alive comments on long calls work as before. The answer
//! to `initialize`, all its stream would ever carry, always goes out as JSON.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use futures::{Stream, StreamExt};
use rmcp::model::{ClientJsonRpcMessage, GetExtensions, ServerJsonRpcMessage};
use rmcp::transport::streamable_http_server::session::ServerSseMessage;

use super::Probe;

/// How long the answer may take to be the first message and still go out as JSON. Longer calls
/// answer on a stream, whose headers then leave at once and whose keep-alive comments keep
/// proxies from timing the call out; a connection set up again after a call this long costs
/// nothing that matters.
pub const FIRST_MESSAGE_WAIT: Duration = Duration::from_secs(1);

/// The offer of a JSON answer for one request, filled by the session manager when the call's
/// first message is its response.
#[derive(Clone, Default)]
pub struct JsonAnswer(Arc<OnceLock<Bytes>>);

impl JsonAnswer {
    /// The offer a client message carries, put there by the gate.
    pub fn of(message: &ClientJsonRpcMessage) -> Option<JsonAnswer> {
        let ClientJsonRpcMessage::Request(request) = message else {
            return None;
        };
        request
            .request
            .extensions()
            .get::<http::request::Parts>()?
            .extensions
            .get::<JsonAnswer>()
            .cloned()
    }

    /// Take `answer` (the response to the request the offer came with) for the JSON body; false
    /// when it cannot be serialised, which leaves the stream to carry it.
    pub fn fill(&self, answer: &ServerJsonRpcMessage) -> bool {
        match serde_json::to_vec(answer) {
            Ok(json) => self.0.set(Bytes::from(json)).is_ok(),
            Err(e) => {
                tracing::warn!("cannot serialise an answer as JSON: {e}");
                false
            }
        }
    }

    /// `stream`, a call's messages, or — when there is an `offer` and the first message is the
    /// response, within [`FIRST_MESSAGE_WAIT`] — nothing, the response having gone into the
    /// offer. Messages read while waiting are put back in front, in order.
    pub async fn take_first<S>(
        offer: Option<JsonAnswer>,
        stream: S,
    ) -> impl Stream<Item = ServerSseMessage> + Send + Sync + 'static + use<S>
    where
        S: Stream<Item = ServerSseMessage> + Send + Sync + 'static,
    {
        take_first_within(offer, stream, FIRST_MESSAGE_WAIT).await
    }
}

async fn take_first_within<S>(
    offer: Option<JsonAnswer>,
    stream: S,
    within: Duration,
) -> impl Stream<Item = ServerSseMessage> + Send + Sync + 'static + use<S>
where
    S: Stream<Item = ServerSseMessage> + Send + Sync + 'static,
{
    let mut stream = Box::pin(stream);
    let mut before = Vec::new();
    let mut answered = false;
    if let Some(offer) = offer {
        let wait = tokio::time::sleep(within);
        tokio::pin!(wait);
        // `next` is cancel-safe: no message is lost when the wait ends first.
        while let Some(event) = tokio::select! {
            next = stream.next() => next,
            () = &mut wait => None,
        } {
            let Some(first) = event.message.as_deref() else {
                // A priming event, which only lets a client resume a stream.
                before.push(event);
                continue;
            };
            if matches!(
                first,
                ServerJsonRpcMessage::Response(_) | ServerJsonRpcMessage::Error(_)
            ) {
                answered = offer.fill(first);
            }
            if !answered {
                before.push(event);
            }
            break;
        }
    }
    let rest = if answered {
        // Priming events read before it belonged to a stream that will not be sent.
        before.clear();
        futures::stream::empty().left_stream()
    } else {
        stream.right_stream()
    };
    futures::stream::iter(before).chain(rest)
}

/// An offer put on a request (a message with a method and an id) on its way to the SDK.
pub(super) fn offer(parts: &mut http::request::Parts, probe: Option<&Probe>) -> Option<JsonAnswer> {
    let request = probe.is_some_and(|p| p.method.is_some() && p.id.is_some());
    request.then(|| {
        let offer = JsonAnswer::default();
        parts.extensions.insert(offer.clone());
        offer
    })
}

/// The SDK's response turned into the JSON answer when the offer was taken; `response`
/// unchanged otherwise.
pub(super) fn answer(offer: Option<JsonAnswer>, response: Response) -> Response {
    let Some(json) = offer.and_then(|o| o.0.get().cloned()) else {
        return response;
    };
    if response.status() != StatusCode::OK {
        return response;
    }
    let (mut parts, _stream) = response.into_parts();
    parts.headers.remove(header::CACHE_CONTROL);
    parts.headers.remove("x-accel-buffering");
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(json))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn event(message: serde_json::Value) -> ServerSseMessage {
        ServerSseMessage::from_message(serde_json::from_value(message).unwrap())
    }

    fn priming() -> ServerSseMessage {
        ServerSseMessage::priming("0", Duration::from_secs(3))
    }

    fn response() -> serde_json::Value {
        json!({"jsonrpc": "2.0", "id": 7, "result": {"content": [], "isError": false}})
    }

    fn progress() -> serde_json::Value {
        json!({"jsonrpc": "2.0", "method": "notifications/progress",
               "params": {"progressToken": 1, "progress": 5.0}})
    }

    async fn collect(stream: impl Stream<Item = ServerSseMessage>) -> Vec<serde_json::Value> {
        stream
            .map(|e| {
                e.message
                    .map_or(json!(null), |m| serde_json::to_value(&*m).unwrap())
            })
            .collect()
            .await
    }

    fn sse_response() -> Response {
        Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "text/event-stream")
            .header(header::CACHE_CONTROL, "no-cache")
            .header("mcp-session-id", "s-1")
            .body(Body::from("data: {}\n\n"))
            .unwrap()
    }

    #[tokio::test]
    async fn an_answer_that_comes_first_goes_out_as_json() {
        let offer = JsonAnswer::default();
        let stream = futures::stream::iter([priming(), event(response())]);
        let rest = JsonAnswer::take_first(Some(offer.clone()), stream).await;
        assert!(
            collect(rest).await.is_empty(),
            "nothing left for the stream"
        );
        let answered = answer(Some(offer), sse_response());
        assert_eq!(answered.status(), StatusCode::OK);
        let headers = answered.headers();
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        assert_eq!(headers["mcp-session-id"], "s-1");
        assert!(headers.get(header::CACHE_CONTROL).is_none());
        let body = axum::body::to_bytes(answered.into_body(), 1 << 20)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body, response());
    }

    #[tokio::test]
    async fn progress_first_keeps_the_stream_in_order() {
        let offer = JsonAnswer::default();
        let stream = futures::stream::iter([priming(), event(progress()), event(response())]);
        let rest = JsonAnswer::take_first(Some(offer.clone()), stream).await;
        assert_eq!(
            collect(rest).await,
            vec![json!(null), progress(), response()]
        );
        let kept = answer(Some(offer), sse_response());
        assert_eq!(kept.headers()[header::CONTENT_TYPE], "text/event-stream");
    }

    #[tokio::test]
    async fn a_slow_answer_keeps_the_stream() {
        let offer = JsonAnswer::default();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let stream = tokio_stream_of(rx);
        let rest = take_first_within(Some(offer.clone()), stream, Duration::from_millis(10)).await;
        // The answer comes only after the wait is over: it must still arrive, on the stream.
        tx.send(event(response())).unwrap();
        drop(tx);
        assert_eq!(collect(rest).await, vec![response()]);
        assert_eq!(
            answer(Some(offer), sse_response()).headers()[header::CONTENT_TYPE],
            "text/event-stream"
        );
    }

    fn tokio_stream_of(
        mut rx: tokio::sync::mpsc::UnboundedReceiver<ServerSseMessage>,
    ) -> impl Stream<Item = ServerSseMessage> + Send + Sync + 'static {
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }

    #[tokio::test]
    async fn without_an_offer_nothing_is_read_ahead() {
        let stream = futures::stream::iter([event(response())]);
        let rest = JsonAnswer::take_first(None, stream).await;
        assert_eq!(collect(rest).await, vec![response()]);
        assert_eq!(
            answer(None, sse_response()).headers()[header::CONTENT_TYPE],
            "text/event-stream"
        );
    }

    #[test]
    fn offers_go_with_requests_and_travel_in_their_parts() {
        let probe = |v: serde_json::Value| serde_json::from_value::<Probe>(v).unwrap();
        let (mut parts, ()) = http::Request::new(()).into_parts();
        let note = probe(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        assert!(offer(&mut parts, Some(&note)).is_none());
        assert!(offer(&mut parts, None).is_none(), "a batch or an answer");
        let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"});
        let made = offer(&mut parts, Some(&probe(call.clone()))).unwrap();
        let mut message: ClientJsonRpcMessage = serde_json::from_value(call).unwrap();
        let ClientJsonRpcMessage::Request(request) = &mut message else {
            panic!("a request")
        };
        request.request.extensions_mut().insert(parts);
        let carried = JsonAnswer::of(&message).unwrap();
        assert!(Arc::ptr_eq(&made.0, &carried.0));
    }
}
