//! Helpers for the integration tests: a loopback web server whose pages the tests change
//! between runs (answering conditional requests, logging every request with its status, and
//! holding one path back on demand), a SQLite knowledge base without an embedding model, and
//! the settings the tests fetch under. Nothing leaves the machine.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::Response;
use exai_kb::{CategoryMap, IndexReport, Kb, KbError, KbOptions, Mode, PageState, SearchRequest};
use exai_sources::{Request, Settings};
use sha2::{Digest, Sha256};

/// One thing the server answers at a path.
#[derive(Clone)]
struct Resource {
    content_type: String,
    body: Vec<u8>,
    /// An error status to answer with instead of the body.
    status: Option<u16>,
    /// Bumped on every change, so `Last-Modified` moves with the content.
    revision: u64,
}

impl Resource {
    fn etag(&self) -> String {
        let digest = Sha256::digest(&self.body);
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        format!("\"{hex}\"")
    }

    fn last_modified(&self) -> String {
        let at = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + self.revision * 60);
        httpdate(at)
    }
}

fn httpdate(at: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(at)
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

#[derive(Default)]
struct Served {
    resources: Mutex<HashMap<String, Resource>>,
    /// Every request as `(path, status)`, in order.
    log: Mutex<Vec<(String, u16)>>,
    /// A path whose requests wait until it is released.
    held: Mutex<Option<String>>,
    released: tokio::sync::Notify,
}

/// The loopback site. The server runs on a runtime of its own, so the (blocking) indexing
/// calls run on the test's thread as the CLI runs them.
pub struct Site {
    pub addr: SocketAddr,
    served: Arc<Served>,
    _runtime: tokio::runtime::Runtime,
}

impl Site {
    pub fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let served = Arc::new(Served::default());
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(Arc::clone(&served));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            addr,
            served,
            _runtime: runtime,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Serve `body` at `path` (a change when something was there).
    pub fn put(&self, path: &str, content_type: &str, body: impl Into<Vec<u8>>) {
        let mut resources = self.served.resources.lock().unwrap();
        let revision = resources.get(path).map_or(0, |r| r.revision + 1);
        resources.insert(
            path.to_string(),
            Resource {
                content_type: content_type.to_string(),
                body: body.into(),
                status: None,
                revision,
            },
        );
    }

    pub fn html(&self, path: &str, title: &str, text: &str, links: &[&str]) {
        let links: String = links
            .iter()
            .map(|l| format!("<li><a href=\"{l}\">{l}</a></li>"))
            .collect();
        let body = format!(
            "<!doctype html><html><head><title>{title}</title></head><body><main>\
             <h1>{title}</h1><p>{text}</p><ul>{links}</ul></main></body></html>"
        );
        self.put(path, "text/html; charset=utf-8", body);
    }

    /// Answer `path` with `status` from now on.
    pub fn fail(&self, path: &str, status: u16) {
        let mut resources = self.served.resources.lock().unwrap();
        let entry = resources.entry(path.to_string()).or_insert(Resource {
            content_type: "text/plain".into(),
            body: Vec::new(),
            status: None,
            revision: 0,
        });
        entry.status = Some(status);
    }

    pub fn remove(&self, path: &str) {
        self.served.resources.lock().unwrap().remove(path);
    }

    /// Requests to `path` wait from now on until [`Site::release`].
    pub fn hold(&self, path: &str) {
        *self.served.held.lock().unwrap() = Some(path.to_string());
    }

    pub fn release(&self) {
        *self.served.held.lock().unwrap() = None;
        self.served.released.notify_waiters();
    }

    /// Every request so far as `(path, status)`, and forget them.
    pub fn take_log(&self) -> Vec<(String, u16)> {
        std::mem::take(&mut *self.served.log.lock().unwrap())
    }
}

async fn answer(State(served): State<Arc<Served>>, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path().to_string();
    let mut held = false;
    loop {
        let released = served.released.notified();
        if served.held.lock().unwrap().as_deref() != Some(path.as_str()) {
            break;
        }
        held = true;
        released.await;
    }
    if held {
        // The client that asked gave up long ago (a stopped crawl): neither answered nor
        // counted.
        return plain(StatusCode::SERVICE_UNAVAILABLE);
    }
    let found = served.resources.lock().unwrap().get(&path).cloned();
    let header_of = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let response = match found {
        None => plain(StatusCode::NOT_FOUND),
        Some(Resource {
            status: Some(status),
            ..
        }) => plain(StatusCode::from_u16(status).unwrap()),
        Some(resource) => {
            let etag = resource.etag();
            let last_modified = resource.last_modified();
            // `If-None-Match` wins over `If-Modified-Since` (RFC 9110 §13.2.2).
            let not_modified = match header_of(header::IF_NONE_MATCH) {
                Some(tags) => tags.split(',').any(|t| t.trim() == etag),
                None => header_of(header::IF_MODIFIED_SINCE) == Some(last_modified.as_str()),
            };
            let builder = Response::builder()
                .header(header::ETAG, &etag)
                .header(header::LAST_MODIFIED, &last_modified);
            if not_modified {
                builder
                    .status(StatusCode::NOT_MODIFIED)
                    .body(Body::empty())
                    .unwrap()
            } else {
                builder
                    .status(StatusCode::OK)
                    .header(header::CONTENT_TYPE, &resource.content_type)
                    .body(Body::from(resource.body))
                    .unwrap()
            }
        }
    };
    served
        .log
        .lock()
        .unwrap()
        .push((path, response.status().as_u16()));
    response
}

fn plain(status: StatusCode) -> Response {
    Response::builder()
        .status(status)
        .body(Body::from(status.to_string()))
        .unwrap()
}

/// A one-page PDF with `text` on it.
pub fn pdf(text: &str) -> Vec<u8> {
    use lopdf::content::{Content, Operation};
    use lopdf::{Document, Object, Stream, dictionary};
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font = doc.add_object(dictionary! {
        "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica",
    });
    let resources = doc.add_object(dictionary! { "Font" => dictionary! { "F1" => font } });
    let content = Content {
        operations: vec![
            Operation::new("BT", vec![]),
            Operation::new("Tf", vec!["F1".into(), 14.into()]),
            Operation::new("Td", vec![72.into(), 700.into()]),
            Operation::new("Tj", vec![Object::string_literal(text)]),
            Operation::new("ET", vec![]),
        ],
    };
    let content_id = doc.add_object(Stream::new(dictionary! {}, content.encode().unwrap()));
    let page = doc.add_object(dictionary! {
        "Type" => "Page", "Parent" => pages_id, "Contents" => content_id,
    });
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages",
            "Kids" => vec![Object::from(page)],
            "Count" => 1,
            "Resources" => resources,
            "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
        }),
    );
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog);
    let mut bytes = Vec::new();
    doc.save_to(&mut bytes).unwrap();
    bytes
}

/// A knowledge base in `dir` with no embedding model (keyword search only).
pub fn kb(dir: &Path) -> Kb {
    Kb::open(
        &dir.join("kb.sqlite"),
        None,
        KbOptions::default(),
        CategoryMap::default(),
    )
    .unwrap()
}

/// Settings for tests: loopback allowed when `allowed` says so, one request at a time, no
/// politeness delay, no browser.
pub fn settings(allowed: &[&str], cache: &Path) -> Settings {
    Settings {
        allowed_hosts: allowed.iter().map(|h| h.to_string()).collect(),
        max_page_bytes: 4 * 1024 * 1024,
        page_timeout: Duration::from_secs(60),
        max_pages: 100,
        max_depth: 5,
        concurrency: 1,
        delay: Duration::ZERO,
        render: exai_core::RenderMode::Never,
        cache_dir: cache.join("sources"),
        registries: exai_packages::RegistryConfig::default(),
    }
}

pub fn request(spec: &str, source: Option<&str>) -> Request {
    Request {
        specs: vec![spec.to_string()],
        source: source.map(str::to_string),
        skip_embedding: true,
        ..Request::default()
    }
}

pub fn index(kb: &Kb, req: &Request, settings: &Settings) -> Result<IndexReport, KbError> {
    exai_sources::index(kb, req, settings, &|_| {}, &AtomicBool::new(false))
}

pub fn refresh(kb: &Kb, source: &str, settings: &Settings) -> Result<IndexReport, KbError> {
    exai_sources::refresh(kb, source, settings, true, &|_| {}, &AtomicBool::new(false))
}

/// `(source, path, uri)` of every keyword hit for `query`, optionally in one source or library.
pub fn search(kb: &Kb, query: &str, source: Option<&str>) -> Vec<(String, String, String)> {
    let mut req = SearchRequest::new(query);
    req.mode = Mode::Keyword;
    req.limit = 50;
    req.filters.sources = source.map(|s| vec![s.to_string()]).unwrap_or_default();
    kb.search(&req)
        .unwrap()
        .hits
        .into_iter()
        .map(|h| (h.source, h.path, h.uri.unwrap_or_default()))
        .collect()
}

/// Paths of the documents a keyword search for `query` finds.
pub fn paths_found(kb: &Kb, query: &str) -> Vec<String> {
    let mut paths: Vec<String> = search(kb, query, None)
        .into_iter()
        .map(|(_, p, _)| p)
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

pub fn page_states(kb: &Kb, source: &str) -> Vec<PageState> {
    let mut states = kb.with_reader(|s| s.page_states(source)).unwrap();
    states.sort_by(|a, b| a.url.cmp(&b.url));
    states
}

pub fn documents(kb: &Kb, source: &str) -> i64 {
    kb.sources()
        .unwrap()
        .iter()
        .find(|s| s.name == source)
        .map_or(0, |s| s.documents)
}
