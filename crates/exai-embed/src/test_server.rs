//! An in-process HTTP server on 127.0.0.1 for the tests: an OpenAI-compatible `/embeddings`
//! endpoint with scripted failures, and a static file host standing in for the model hub.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// What the server answers to the next request; once the script is used up, every request
/// succeeds.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    /// This status, with an OpenAI-style error body and an optional `Retry-After` header.
    Status(u16, Option<&'static str>),
    /// 200 with this body.
    Body(String),
}

#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub(crate) model: String,
    pub(crate) inputs: Vec<String>,
    pub(crate) auth: Option<String>,
}

#[derive(Default)]
struct State {
    script: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<Recorded>>,
    files: HashMap<String, Vec<u8>>,
}

pub(crate) struct TestServer {
    addr: std::net::SocketAddr,
    state: Arc<State>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The fake model: 3 dimensions derived from the text, so tests can check order.
pub(crate) fn fake_embedding(text: &str) -> Vec<f32> {
    vec![
        text.len() as f32 + 1.0,
        1.0,
        text.bytes().map(f32::from).sum::<f32>() / 100.0,
    ]
}

impl TestServer {
    pub(crate) fn start(script: Vec<Reply>) -> TestServer {
        TestServer::with_state(State {
            script: Mutex::new(script.into()),
            ..State::default()
        })
    }

    /// Serves `files` (path → bytes) to GET; anything else is 404.
    pub(crate) fn files(files: HashMap<String, Vec<u8>>) -> TestServer {
        TestServer::with_state(State {
            files,
            ..State::default()
        })
    }

    fn with_state(state: State) -> TestServer {
        let state = Arc::new(state);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let shared = state.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = axum::Router::new().fallback(
                    move |method: axum::http::Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                        let state = shared.clone();
                        async move { handle(&state, &method, &uri, &headers, &body) }
                    },
                );
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await
                    .unwrap();
            });
        });
        TestServer {
            addr,
            state,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// Base URL in the OpenAI style (`…/v1`).
    pub(crate) fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The root URL, for the file host.
    pub(crate) fn root_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn handle(
    state: &State,
    method: &axum::http::Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    if method == axum::http::Method::GET {
        return match state.files.get(uri.path()) {
            Some(bytes) => bytes.clone().into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        };
    }
    if uri.path() != "/v1/embeddings" {
        return StatusCode::NOT_FOUND.into_response();
    }
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let inputs: Vec<String> = json["input"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    state.requests.lock().unwrap().push(Recorded {
        model: json["model"].as_str().unwrap_or_default().to_string(),
        inputs: inputs.clone(),
        auth: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    });
    let next = state.script.lock().unwrap().pop_front();
    match next {
        Some(Reply::Status(code, retry_after)) => {
            let status = StatusCode::from_u16(code).unwrap();
            let message = match code {
                401 => "invalid api key",
                429 => "rate limited",
                503 => "model overloaded",
                _ => "bad request",
            };
            let body = serde_json::json!({ "error": { "message": message } }).to_string();
            let mut response = (status, body).into_response();
            if let Some(after) = retry_after {
                response
                    .headers_mut()
                    .insert("retry-after", after.parse().unwrap());
            }
            response
        }
        Some(Reply::Body(body)) => (StatusCode::OK, body).into_response(),
        None => {
            // Answer in reverse order with explicit indices, as servers may.
            let data: Vec<serde_json::Value> = inputs
                .iter()
                .enumerate()
                .rev()
                .map(|(i, t)| serde_json::json!({ "object": "embedding", "index": i, "embedding": fake_embedding(t) }))
                .collect();
            let body =
                serde_json::json!({ "object": "list", "data": data, "model": json["model"] });
            (StatusCode::OK, body.to_string()).into_response()
        }
    }
}
