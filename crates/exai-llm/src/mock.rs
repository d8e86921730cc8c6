//! A local OpenAI-compatible server that speaks the real wire format, for tests, the validation
//! suite and benchmarks: JSON and SSE answers with usage, thinking and web-search extras, Kimi-style
//! file extraction and context-cache headers, GLM's `/web_search`, and every failure a provider can
//! produce, chosen by directives in the last user message:
//!
//! `[[mock:rate_limit=N]]` (429 with `Retry-After: 1` for the first N requests with that message),
//! `[[mock:error500=N]]`, `[[mock:slow=MS]]`, `[[mock:stream_delay=MS]]`, `[[mock:truncate]]`,
//! `[[mock:malformed]]`, `[[mock:context_length]]`, `[[mock:unauthorized]]`, `[[mock:reply=TEXT]]`.
//!
//! An uploaded file whose name holds `mock-content-error` is stored, but reading its content
//! answers 500, as when extraction fails on the provider's side; with `mock-content-slow`, the
//! content answers after 5 s.
//!
//! Without directives it answers `mock answer from MODEL (N messages): ` and the start of the last
//! user message, so a test can see what reached the model.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// A request the mock received.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Recorded {
    pub path: String,
    pub idempotency_key: Option<String>,
    pub cache_token: Option<String>,
    pub authorized: bool,
    pub body: Value,
}

#[derive(Default)]
struct MockState {
    key: Option<String>,
    counters: Mutex<HashMap<String, u32>>,
    files: Mutex<HashMap<String, (String, String)>>,
    /// The last 1000, oldest first: a ring, so a long benchmark run does not shift the whole
    /// log on every request.
    requests: Mutex<VecDeque<Recorded>>,
}

/// A running mock server.
pub struct MockServer {
    /// Base URL to configure as a provider's API URL, e.g. `http://127.0.0.1:PORT/v1`.
    pub url: String,
    pub addr: SocketAddr,
    state: Arc<MockState>,
    task: tokio::task::JoinHandle<()>,
}

impl MockServer {
    /// Start on a free loopback port. With `key`, requests must carry `Authorization: Bearer key`.
    pub async fn start(key: Option<String>) -> std::io::Result<MockServer> {
        MockServer::bind("127.0.0.1:0".parse().map_err(std::io::Error::other)?, key).await
    }

    pub async fn bind(addr: SocketAddr, key: Option<String>) -> std::io::Result<MockServer> {
        let state = Arc::new(MockState {
            key,
            ..MockState::default()
        });
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let app = router(state.clone());
        // Stream events go out one small write each, as a provider's would: no Nagle delay.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(MockServer {
            url: format!("http://{addr}/v1"),
            addr,
            state,
            task,
        })
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state
            .requests
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Files uploaded and not deleted.
    pub fn stored_files(&self) -> usize {
        self.state.files.lock().map_or(0, |f| f.len())
    }

    /// Wait until the server stops (for `exai mock-llm`).
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn router(state: Arc<MockState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .route("/v1/files", post(upload))
        .route("/v1/files/{id}/content", get(file_content))
        .route("/v1/files/{id}", axum::routing::delete(delete_file))
        .route("/v1/web_search", post(web_search))
        .route("/mock/requests", get(recorded))
        .with_state(state)
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "error": { "message": message, "type": kind, "code": kind } })),
    )
        .into_response()
}

fn authorized(state: &MockState, headers: &HeaderMap) -> bool {
    match &state.key {
        None => true,
        Some(key) => headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == format!("Bearer {key}")),
    }
}

fn record(state: &MockState, path: &str, headers: &HeaderMap, body: Value) {
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    if let Ok(mut r) = state.requests.lock() {
        if r.len() >= 1000 {
            r.pop_front();
        }
        r.push_back(Recorded {
            path: path.into(),
            idempotency_key: h("idempotency-key"),
            cache_token: h("msh-context-cache-token"),
            authorized: authorized(state, headers),
            body,
        });
    }
}

/// The `[[mock:…]]` directives of a message.
fn directives(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = text;
    while let Some(start) = rest.find("[[mock:") {
        let after = &rest[start + 7..];
        let Some(end) = after.find("]]") else { break };
        let body = &after[..end];
        let (k, v) = body.split_once('=').unwrap_or((body, ""));
        out.insert(k.trim().to_string(), v.trim().to_string());
        rest = &after[end + 2..];
    }
    out
}

/// How many times this (message, directive) was seen before.
fn seen(state: &MockState, key: String) -> u32 {
    let Ok(mut c) = state.counters.lock() else {
        return 0;
    };
    let n = c.entry(key).or_insert(0);
    *n += 1;
    *n - 1
}

async fn chat(State(state): State<Arc<MockState>>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "body is not JSON",
        );
    };
    record(&state, "/v1/chat/completions", &headers, request.clone());
    if !authorized(&state, &headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_authentication_error",
            "Invalid Authentication",
        );
    }
    let model = request["model"].as_str().unwrap_or("mock").to_string();
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    if messages.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "messages must not be empty",
        );
    }
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_string();
    let d = directives(&last_user);
    let number = |k: &str| d.get(k).and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = number("rate_limit")
        && u64::from(seen(&state, format!("429:{last_user}"))) < n
    {
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_reached_error",
            "rate limit reached",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return r;
    }
    if let Some(n) = number("error500")
        && u64::from(seen(&state, format!("500:{last_user}"))) < n
    {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the engine is overloaded",
        );
    }
    if d.contains_key("unauthorized") {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_authentication_error",
            "Invalid Authentication",
        );
    }
    if d.contains_key("context_length") {
        return error(
            StatusCode::BAD_REQUEST,
            "context_length_exceeded",
            "This model's maximum context length is 8192 tokens; your messages resulted in 9000 tokens",
        );
    }
    if let Some(ms) = number("slow") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let total_chars: usize = messages
        .iter()
        .map(|m| m["content"].as_str().map_or(0, str::len))
        .sum();
    let content = match d.get("reply") {
        Some(text) => text.clone(),
        None => {
            let echo: String = last_user.chars().take(120).collect();
            format!(
                "mock answer from {model} ({} messages): {echo}",
                messages.len()
            )
        }
    };
    // As a provider does: an answer longer than `max_tokens` (four characters a token here)
    // stops there, with finish_reason `length`.
    let (content, finish) = match request["max_tokens"].as_u64() {
        Some(limit) if content.len().div_ceil(4) as u64 > limit => {
            let keep = usize::try_from(limit.saturating_mul(4)).unwrap_or(usize::MAX);
            (exai_core::text::clip(&content, keep).to_string(), "length")
        }
        _ => (content, "stop"),
    };
    let thinking = request["thinking"]["type"] == "enabled";
    let web = request["tools"]
        .as_array()
        .is_some_and(|t| t.iter().any(|t| t["type"] == "web_search"));
    let reasoning = thinking.then(|| "mock reasoning: considered the question".to_string());
    let usage = json!({
        "prompt_tokens": total_chars.div_ceil(4),
        "completion_tokens": content.len().div_ceil(4),
        "total_tokens": total_chars.div_ceil(4) + content.len().div_ceil(4),
    });
    let web_results = web.then(|| {
        json!([{ "title": "Mock result", "link": "https://example.com/mock", "content": "a web page about the question", "media": "example.com" }])
    });
    let cache_saved = format!(
        "cache-{}",
        blake3::hash(model.as_bytes())
            .to_hex()
            .get(..12)
            .unwrap_or("")
    );
    if d.contains_key("malformed") {
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            "{\"choices\": [ {\"mess",
        )
            .into_response();
    }
    if request["stream"] != true {
        let mut answer = json!({
            "id": "chatcmpl-mock",
            "object": "chat.completion",
            "model": model,
            "choices": [{ "index": 0, "message": { "role": "assistant", "content": content }, "finish_reason": finish }],
            "usage": usage,
        });
        if let Some(r) = reasoning {
            answer["choices"][0]["message"]["reasoning_content"] = json!(r);
        }
        if let Some(w) = web_results {
            answer["web_search"] = w;
        }
        let mut response = axum::Json(answer).into_response();
        if let Ok(v) = header::HeaderValue::from_str(&cache_saved) {
            response
                .headers_mut()
                .insert("Msh-Context-Cache-Token-Saved", v);
        }
        return response;
    }
    let delay = Duration::from_millis(number("stream_delay").unwrap_or(0));
    let truncate = d.contains_key("truncate");
    let mut events: Vec<String> = Vec::new();
    let chunk = |delta: Value, finish: Value| {
        json!({ "id": "chatcmpl-mock", "object": "chat.completion.chunk", "model": model,
                "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }] })
    };
    events.push(chunk(json!({ "role": "assistant" }), Value::Null).to_string());
    if let Some(r) = &reasoning {
        events.push(chunk(json!({ "reasoning_content": r }), Value::Null).to_string());
    }
    let words: Vec<String> = content.split_inclusive(' ').map(str::to_string).collect();
    for w in &words {
        events.push(chunk(json!({ "content": w }), Value::Null).to_string());
    }
    if truncate {
        events.truncate(events.len().div_ceil(2).max(1));
    } else {
        let mut last = chunk(json!({}), json!(finish));
        last["usage"] = usage;
        if let Some(w) = web_results {
            last["web_search"] = w;
        }
        events.push(last.to_string());
        events.push("[DONE]".into());
    }
    let stream = futures::stream::unfold(
        (events.into_iter(), true),
        move |(mut it, first)| async move {
            let next = it.next()?;
            if !first && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Some((
                Ok::<_, Infallible>(format!("data: {next}\n\n")),
                (it, false),
            ))
        },
    );
    let mut response = Response::new(Body::from_stream(stream));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    if let Ok(v) = header::HeaderValue::from_str(&cache_saved) {
        response
            .headers_mut()
            .insert("Msh-Context-Cache-Token-Saved", v);
    }
    response
}

async fn models(State(state): State<Arc<MockState>>, headers: HeaderMap) -> Response {
    if !authorized(&state, &headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_authentication_error",
            "Invalid Authentication",
        );
    }
    axum::Json(json!({ "object": "list", "data": [{ "id": "mock", "object": "model" }] }))
        .into_response()
}

async fn upload(
    State(state): State<Arc<MockState>>,
    headers: HeaderMap,
    mut form: Multipart,
) -> Response {
    record(&state, "/v1/files", &headers, json!({}));
    if !authorized(&state, &headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_authentication_error",
            "Invalid Authentication",
        );
    }
    let mut purpose = String::new();
    let mut file: Option<(String, String)> = None;
    while let Ok(Some(field)) = form.next_field().await {
        let name = field.name().unwrap_or("").to_string();
        let filename = field.file_name().unwrap_or("upload").to_string();
        let Ok(bytes) = field.bytes().await else {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "unreadable form field",
            );
        };
        match name.as_str() {
            "purpose" => purpose = String::from_utf8_lossy(&bytes).into_owned(),
            "file" => file = Some((filename, String::from_utf8_lossy(&bytes).into_owned())),
            _ => {}
        }
    }
    if purpose != "file-extract" {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "purpose must be file-extract",
        );
    }
    let Some((filename, text)) = file else {
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", "no file");
    };
    let Ok(mut files) = state.files.lock() else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "lock");
    };
    let id = format!("file-mock-{}", files.len() + 1);
    let bytes = text.len();
    files.insert(id.clone(), (filename.clone(), text));
    axum::Json(json!({ "id": id, "object": "file", "bytes": bytes, "filename": filename, "purpose": "file-extract", "status": "ok" })).into_response()
}

async fn file_content(
    State(state): State<Arc<MockState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if !authorized(&state, &headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_authentication_error",
            "Invalid Authentication",
        );
    }
    let found = state.files.lock().ok().and_then(|f| f.get(&id).cloned());
    if found
        .as_ref()
        .is_some_and(|(name, _)| name.contains("mock-content-slow"))
    {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    if found
        .as_ref()
        .is_some_and(|(name, _)| name.contains("mock-content-error"))
    {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "extraction failed",
        );
    }
    match found {
        Some((filename, text)) => axum::Json(json!({ "content": text, "file_type": "text/plain", "filename": filename, "title": "", "type": "file" })).into_response(),
        None => error(StatusCode::NOT_FOUND, "resource_not_found_error", "no such file"),
    }
}

async fn delete_file(State(state): State<Arc<MockState>>, Path(id): Path<String>) -> Response {
    let removed = state.files.lock().ok().and_then(|mut f| f.remove(&id));
    axum::Json(json!({ "id": id, "deleted": removed.is_some() })).into_response()
}

async fn web_search(
    State(state): State<Arc<MockState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    record(&state, "/v1/web_search", &headers, request.clone());
    if !authorized(&state, &headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_authentication_error",
            "Invalid Authentication",
        );
    }
    let query = request["search_query"].as_str().unwrap_or("");
    let count = request["count"].as_u64().unwrap_or(3).clamp(1, 10);
    let results: Vec<Value> = (1..=count)
        .map(|i| json!({ "title": format!("Result {i} for {query}"), "link": format!("https://example.com/{i}"), "content": format!("page {i} about {query}"), "media": "example.com" }))
        .collect();
    axum::Json(json!({ "id": "search-mock", "search_result": results })).into_response()
}

async fn recorded(State(state): State<Arc<MockState>>) -> Response {
    let all: Vec<Recorded> = state
        .requests
        .lock()
        .map(|r| r.iter().cloned().collect())
        .unwrap_or_default();
    axum::Json(json!(all)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_parse() {
        let d = directives("hi [[mock:rate_limit=2]] and [[mock:truncate]] [[mock:reply=a b]]");
        assert_eq!(d["rate_limit"], "2");
        assert!(d.contains_key("truncate"));
        assert_eq!(d["reply"], "a b");
        assert!(directives("nothing").is_empty());
    }
}
