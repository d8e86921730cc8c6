//! A loopback web server for the integration tests: the toolchain's Rust Book under `/book/`,
//! and under `/site/` one route per behaviour the client and crawler must handle. Nothing
//! leaves the machine.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use exai_fetch::{
    CrawlEvent, CrawlOptions, CrawlSummary, FetchPolicy, FrontierEntry, KnownPage, RenderMode,
    SafeClient,
};
use tokio_util::sync::CancellationToken;
use url::Url;

pub const FIXED_DATE: &str = "Tue, 01 Oct 2024 10:00:00 GMT";

/// The toolchain's Rust Book (`rustc --print sysroot` + `share/doc/rust/html/book`).
pub fn book_dir() -> PathBuf {
    let out = std::process::Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .unwrap();
    let sysroot = String::from_utf8(out.stdout).unwrap();
    let dir = PathBuf::from(sysroot.trim()).join("share/doc/rust/html/book");
    assert!(
        dir.join("index.html").is_file(),
        "the Rust Book is not installed at {}",
        dir.display()
    );
    dir
}

#[derive(Default)]
pub struct ServerState {
    pub hits: Mutex<HashMap<String, usize>>,
    /// `304` answers by path.
    pub not_modified: Mutex<HashMap<String, usize>>,
    /// 1 for the first crawl, 2 for the refresh.
    pub round: AtomicU32,
    pub book: PathBuf,
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub state: Arc<ServerState>,
}

impl TestServer {
    pub async fn start() -> Self {
        let state = Arc::new(ServerState {
            book: book_dir(),
            round: AtomicU32::new(1),
            ..Default::default()
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, state }
    }

    pub fn url(&self, path: &str) -> Url {
        Url::parse(&format!("http://{}{path}", self.addr)).unwrap()
    }

    pub fn hits(&self, path: &str) -> usize {
        self.state
            .hits
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    pub fn not_modified(&self, path: &str) -> usize {
        self.state
            .not_modified
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    pub fn total_hits_under(&self, prefix: &str) -> HashMap<String, usize> {
        self.state
            .hits
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p.starts_with(prefix))
            .map(|(p, n)| (p.clone(), *n))
            .collect()
    }
}

/// The policy every test uses: loopback allowed, a short deadline for the slow page.
pub fn policy() -> FetchPolicy {
    FetchPolicy {
        allowed_hosts: vec!["127.0.0.1".into()],
        page_timeout: Duration::from_secs(3),
        ..FetchPolicy::default()
    }
}

pub fn client() -> SafeClient {
    SafeClient::new(policy()).unwrap()
}

/// Crawl options for tests: no politeness delay, no browser unless a test asks.
pub fn options(start: Url) -> CrawlOptions {
    let mut opts = CrawlOptions::new(start);
    opts.min_delay = Duration::ZERO;
    opts.per_host_concurrency = 4;
    opts.render = RenderMode::Never;
    opts.renderer = None;
    opts
}

/// Runs a crawl to its end and returns its events and summary.
pub async fn run_crawl(
    client: &SafeClient,
    opts: &CrawlOptions,
    known: HashMap<String, KnownPage>,
    resume: Vec<FrontierEntry>,
) -> (Vec<CrawlEvent>, CrawlSummary) {
    let (tx, mut rx) = tokio::sync::mpsc::channel(8);
    let collector = tokio::spawn(async move {
        let mut events = Vec::new();
        while let Some(event) = rx.recv().await {
            events.push(event);
        }
        events
    });
    let summary = exai_fetch::crawl(client, opts, known, resume, tx, CancellationToken::new())
        .await
        .unwrap();
    (collector.await.unwrap(), summary)
}

/// What a run reported, by kind, with URL paths as keys.
#[derive(Debug, Default)]
pub struct Report {
    pub pages: Vec<exai_fetch::Page>,
    pub unchanged: Vec<String>,
    pub gone: Vec<(String, u16)>,
    pub failed: HashMap<String, String>,
    pub skipped: HashMap<String, String>,
}

impl Report {
    pub fn new(events: Vec<CrawlEvent>) -> Self {
        let mut report = Report::default();
        for event in events {
            match event {
                CrawlEvent::Page(page) => report.pages.push(*page),
                CrawlEvent::Unchanged { url } => report.unchanged.push(url.path().to_string()),
                CrawlEvent::Gone { url, status } => {
                    report.gone.push((url.path().to_string(), status))
                }
                CrawlEvent::Failed { url, reason } => {
                    report.failed.insert(url.path().to_string(), reason);
                }
                CrawlEvent::Skipped { url, reason } => {
                    report.skipped.insert(url.path().to_string(), reason);
                }
                CrawlEvent::Progress(_) => {}
            }
        }
        report
    }

    pub fn page_paths(&self) -> Vec<String> {
        let mut paths: Vec<String> = self
            .pages
            .iter()
            .map(|p| p.url.path().to_string())
            .collect();
        paths.sort();
        paths
    }

    pub fn page(&self, path: &str) -> Option<&exai_fetch::Page> {
        self.pages.iter().find(|p| p.url.path() == path)
    }

    /// The `known` map a caller would store from this run's pages.
    pub fn known(&self) -> HashMap<String, KnownPage> {
        self.pages
            .iter()
            .map(|p| {
                let page = KnownPage {
                    etag: p.etag.clone(),
                    last_modified: p.last_modified.clone(),
                    links: p.links.iter().map(Url::to_string).collect(),
                    hash: p.hash.clone(),
                };
                (p.url.to_string(), page)
            })
            .collect()
    }
}

async fn handle(State(state): State<Arc<ServerState>>, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path().to_string();
    *state.hits.lock().unwrap().entry(path.clone()).or_default() += 1;
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_string();
    let response = match path.strip_prefix("/book/") {
        Some(rest) => book(&state, rest, &headers),
        None => site(&state, &path, &host, &headers).await,
    };
    if response.status() == StatusCode::NOT_MODIFIED {
        *state.not_modified.lock().unwrap().entry(path).or_default() += 1;
    }
    response
}

fn book(state: &ServerState, rest: &str, headers: &HeaderMap) -> Response {
    if rest.contains("..") {
        return StatusCode::BAD_REQUEST.into_response();
    }
    let rel = if rest.is_empty() || rest.ends_with('/') {
        format!("{rest}index.html")
    } else {
        rest.to_string()
    };
    let Ok(bytes) = std::fs::read(state.book.join(&rel)) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let content_type = match rel.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css",
        Some("js") => "application/javascript",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    };
    conditional(headers, bytes, content_type, true, true)
}

/// A `200` with validators, or `304` when the request's validators match.
pub fn conditional(
    headers: &HeaderMap,
    body: Vec<u8>,
    content_type: &str,
    etag: bool,
    last_modified: bool,
) -> Response {
    let tag = format!("\"{}\"", &blake3::hash(&body).to_hex()[..16]);
    let etag_matches = etag
        && headers
            .get(header::IF_NONE_MATCH)
            .is_some_and(|v| v.as_bytes() == tag.as_bytes());
    let date_matches = !etag
        && last_modified
        && headers
            .get(header::IF_MODIFIED_SINCE)
            .is_some_and(|v| v.as_bytes() == FIXED_DATE.as_bytes());
    let mut response = if etag_matches || date_matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = Response::new(Body::from(body));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(content_type).unwrap(),
        );
        r
    };
    if etag {
        response
            .headers_mut()
            .insert(header::ETAG, HeaderValue::from_str(&tag).unwrap());
    }
    if last_modified {
        response
            .headers_mut()
            .insert(header::LAST_MODIFIED, HeaderValue::from_static(FIXED_DATE));
    }
    response
}

fn html(body: impl Into<String>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

fn redirect(to: &str) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, to.to_string())]).into_response()
}

/// Enough prose that a page is never taken for a script shell.
pub fn prose(topic: &str) -> String {
    format!(
        "<p>{}</p>",
        format!("This page explains {topic} in enough words to be real documentation. ").repeat(6)
    )
}

pub const SITE_LINKS: &[&str] = &[
    "/site/changing.html",
    "/site/vanishing.html",
    "/site/lm-only.html",
    "/site/private/secret.html",
    "/site/redirect/1",
    "/site/loop/a",
    "/site/big.html",
    "/site/bomb.html",
    "/site/cp1252.html",
    "/site/sjis.html",
    "/site/busy.html",
    "/site/image.png",
    "/site/missing.html",
    "/site/canonical.html",
    "/site/copy.html",
    "/site/same-a.html",
    "/site/same-b.html",
    "/site/notes.md",
    "/site/deep/1.html",
    "/site/old.html",
    "/site/short.html",
];

fn site_index() -> Response {
    let links: String = SITE_LINKS
        .iter()
        .map(|l| format!("<a href=\"{l}#frag\">{l}</a>\n"))
        .collect();
    html(format!(
        "<html><head><title>Test site</title></head><body>{}{links}<a href=\"https://example.com/\">out</a></body></html>",
        prose("the test site")
    ))
}

/// 16 MiB of HTML compressed to a few KB.
fn gzip_bomb() -> &'static [u8] {
    static BOMB: OnceLock<Vec<u8>> = OnceLock::new();
    BOMB.get_or_init(|| {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let chunk = vec![b'a'; 1024 * 1024];
        enc.write_all(b"<html><body>").unwrap();
        for _ in 0..16 {
            enc.write_all(&chunk).unwrap();
        }
        enc.finish().unwrap()
    })
}

async fn site(state: &ServerState, path: &str, host: &str, headers: &HeaderMap) -> Response {
    let round = state.round.load(Ordering::SeqCst);
    match path {
        "/robots.txt" => format!("User-agent: *\nDisallow: /site/private/\n\nSitemap: http://{host}/sitemap.xml\n").into_response(),
        "/sitemap.xml" => {
            let xml = format!(
                "<?xml version=\"1.0\"?><urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\
                 <url><loc>http://{host}/site/from-sitemap.html</loc></url>\
                 <url><loc>http://{host}/elsewhere/out-of-scope.html</loc></url></urlset>"
            );
            ([(header::CONTENT_TYPE, "application/xml")], xml).into_response()
        }
        "/site/llms.txt" => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "# Test site\n\n> For language models.\n\n- [From llms](/site/from-llms.html): a page listed for LLMs\n",
        )
            .into_response(),
        "/site/" | "/site/index.html" => site_index(),
        "/site/from-llms.html" => html(format!("<title>From llms</title>{}", prose("llms.txt seeding"))),
        "/site/from-sitemap.html" => html(format!("<title>From sitemap</title>{}", prose("sitemaps"))),
        "/site/private/secret.html" => html(prose("secrets")),
        "/site/redirect/1" => redirect("/site/redirect/2"),
        "/site/redirect/2" => redirect("/site/redirect/3"),
        "/site/redirect/3" => redirect("/site/final.html"),
        "/site/final.html" => html(format!("<title>Final</title>{}", prose("redirect targets"))),
        "/site/to-metadata" => redirect("http://169.254.169.254/latest/meta-data/"),
        "/site/loop/a" => redirect("/site/loop/b"),
        "/site/loop/b" => redirect("/site/loop/a"),
        "/site/big.html" => html("x".repeat(10 * 1024 * 1024)),
        "/site/bomb.html" => (
            [(header::CONTENT_TYPE, "text/html"), (header::CONTENT_ENCODING, "gzip")],
            gzip_bomb().to_vec(),
        )
            .into_response(),
        "/site/cp1252.html" => {
            let mut body = b"<html><body><p>Caf\xe9 cr\xe8me \x93quoted\x94 \x80 10</p>".to_vec();
            body.extend_from_slice(prose("legacy encodings").as_bytes());
            ([(header::CONTENT_TYPE, "text/html; charset=windows-1252")], body).into_response()
        }
        "/site/sjis.html" => {
            let mut body = b"<html><head><meta charset=\"Shift_JIS\"><title>\x93\xfa\x96\x7b\x8c\xea</title></head><body><p>\x93\xfa\x96\x7b\x8c\xea\x82\xcc\x83\x65\x83\x4c\x83\x58\x83\x67</p>".to_vec();
            body.extend_from_slice(prose("Japanese text").as_bytes());
            ([(header::CONTENT_TYPE, "text/html")], body).into_response()
        }
        "/site/slow.html" => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            html("too late")
        }
        "/site/busy.html" => {
            let hits = state.hits.lock().unwrap().get(path).copied().unwrap_or(0);
            if hits == 1 {
                (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "1")]).into_response()
            } else {
                html(format!("<title>Busy</title>{}", prose("rate limits")))
            }
        }
        "/site/too-busy.html" => (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "3600")]).into_response(),
        "/site/image.png" => ([(header::CONTENT_TYPE, "image/png")], vec![0u8; 16]).into_response(),
        "/site/changing.html" => {
            let body = format!("<title>Changing</title><p>version {round}</p>{}", prose("change"));
            conditional(headers, body.into_bytes(), "text/html", true, true)
        }
        "/site/vanishing.html" if round == 1 => {
            conditional(headers, format!("<title>Vanishing</title>{}", prose("removal")).into_bytes(), "text/html", true, false)
        }
        "/site/lm-only.html" => {
            let body = format!("<title>Last-Modified only</title>{}", prose("dates"));
            conditional(headers, body.into_bytes(), "text/html", false, true)
        }
        "/site/canonical.html" => {
            let body = format!("<title>Canonical</title>{}", prose("canonical links"));
            conditional(headers, body.into_bytes(), "text/html", true, false)
        }
        "/site/copy.html" => html(format!(
            "<head><link rel=\"canonical\" href=\"/site/canonical.html\"></head>{}",
            prose("canonical links")
        )),
        "/site/same-a.html" | "/site/same-b.html" => html(format!("<title>Same</title>{}", prose("identical bodies"))),
        "/site/notes.md" => ([(header::CONTENT_TYPE, "text/plain")], "# Notes\n\nSee [the guide](deep/1.html).\n").into_response(),
        "/site/deep/1.html" => html(format!("{}<a href=\"2.html\">next</a>", prose("depth 1"))),
        "/site/deep/2.html" => html(format!("{}<a href=\"3.html\">next</a>", prose("depth 2"))),
        "/site/deep/3.html" => html(prose("depth 3")),
        "/site/old.html" => html(
            "<html><head><meta http-equiv=\"refresh\" content=\"0; url=moved.html\"></head>\
             <body><p>Moved.</p><script>location.replace('moved.html')</script></body></html>",
        ),
        "/site/moved.html" => html(format!("<title>Moved</title>{}", prose("moving"))),
        "/site/short.html" => html(
            "<html><head><title>Appendix</title><script src=\"/site/app.js\"></script></head>\
             <body><main><h1>Appendix</h1></main></body></html>",
        ),
        "/render/script.html" => html(
            "<html><head><title>Script page</title></head><body><div id=\"app\">Loading…</div>\
             <script>document.getElementById('app').innerHTML = '<h1>Rendered heading</h1><p>' + \
             'Content that only a script adds. '.repeat(20) + '</p><a href=\"/render/next.html\">next</a>';</script></body></html>",
        ),
        "/render/hang.html" => {
            // Headers and the start of a page, then nothing: the load never finishes.
            let stream = futures::stream::once(async { Ok::<_, std::io::Error>(axum::body::Bytes::from_static(b"<html><body><p>start")) })
                .chain(futures::stream::pending());
            ([(header::CONTENT_TYPE, "text/html")], Body::from_stream(stream)).into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

use futures::StreamExt as _;

/// The Book's HTML files reachable from `start` by links (`a[href]`, frames) within `max_depth` links, found on
/// disk (not over HTTP), as relative paths with their link depth; files with identical content
/// are counted once (the first in breadth-first order) and redirect stubs (`<meta
/// http-equiv="refresh">`) not at all, as the crawler reports them.
pub fn book_reachable(start: &str, max_depth: u32) -> HashMap<String, u32> {
    let dir = book_dir();
    let base = Url::parse("http://book.invalid/book/").unwrap();
    let mut depth_of: HashMap<String, u32> = HashMap::from([(start.to_string(), 0)]);
    let mut queue = std::collections::VecDeque::from([start.to_string()]);
    let mut order = Vec::new();
    while let Some(rel) = queue.pop_front() {
        let depth = depth_of[&rel];
        let Ok(html) = std::fs::read_to_string(dir.join(&rel)) else {
            continue;
        };
        order.push(rel.clone());
        if depth == max_depth {
            continue;
        }
        let doc = scraper::Html::parse_document(&html);
        let sel = scraper::Selector::parse("a[href], iframe[src], frame[src]").unwrap();
        let page = base.join(&rel).unwrap();
        for href in doc
            .select(&sel)
            .filter_map(|e| e.value().attr("href").or_else(|| e.value().attr("src")))
        {
            let Ok(mut url) = page.join(href.trim()) else {
                continue;
            };
            url.set_fragment(None);
            if url.host_str() != Some("book.invalid") || url.query().is_some() {
                continue;
            }
            let Some(mut target) = url.path().strip_prefix("/book/").map(str::to_string) else {
                continue;
            };
            if target.is_empty() || target.ends_with('/') {
                target.push_str("index.html");
            }
            if target.ends_with(".html")
                && dir.join(&target).is_file()
                && !depth_of.contains_key(&target)
            {
                depth_of.insert(target.clone(), depth + 1);
                queue.push_back(target);
            }
        }
    }
    let mut seen_bodies = std::collections::HashSet::new();
    let is_stub = |rel: &String| {
        let html = std::fs::read_to_string(dir.join(rel)).unwrap_or_default();
        html.len() < 4096 && html.to_ascii_lowercase().contains("http-equiv=\"refresh\"")
    };
    order
        .into_iter()
        .filter(|rel| !is_stub(rel))
        .filter(|rel| seen_bodies.insert(blake3::hash(&std::fs::read(dir.join(rel)).unwrap())))
        .map(|rel| {
            let depth = depth_of[&rel];
            (rel, depth)
        })
        .collect()
}
