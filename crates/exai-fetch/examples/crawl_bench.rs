//! Crawl throughput over loopback on the toolchain's Rust Book: politeness off (no delay, the
//! default 2 and then 8 requests at a time) and on (the defaults: 250 ms between requests, 2 at
//! a time, over the first `--polite-pages` pages), then a refresh of the unchanged Book (one
//! conditional request per page, all `304`). Then generated sites the Book is too small for:
//! the refresh of an unchanged 500-page site, and a 5,000-page crawl, with the process's peak
//! RSS at the end (crawler and server share the process; the consumer keeps only what an
//! indexer stores per page). Prints pages/s, seconds and the peak RSS.
//!
//! Usage: `cargo run --release -p exai-fetch --example crawl_bench [-- --polite-pages N]`
//! (bench/crawl.sh runs it).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use exai_fetch::{CrawlEvent, CrawlOptions, FetchPolicy, KnownPage, RenderMode, SafeClient};
use tokio_util::sync::CancellationToken;
use url::Url;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn book_dir() -> Result<PathBuf, Error> {
    let out = std::process::Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()?;
    let dir = PathBuf::from(String::from_utf8(out.stdout)?.trim()).join("share/doc/rust/html/book");
    if !dir.join("index.html").is_file() {
        return Err(format!("the Rust Book is not installed at {}", dir.display()).into());
    }
    Ok(dir)
}

/// Page `i` of a generated `n`-page site: 4 KB of text and links to its ten children
/// (`10i+1`…`10i+10`), so every page is within a few links of page 0.
fn generated_page(n: usize, i: usize) -> Vec<u8> {
    let links: String = (10 * i + 1..=10 * i + 10)
        .filter(|c| *c < n)
        .map(|c| format!("<li><a href=\"{c}.html\">Page {c}</a></li>"))
        .collect();
    let text = format!("Page {i} describes one part of a generated manual. ").repeat(80);
    format!("<html><head><title>Page {i}</title></head><body><main><h1>Page {i}</h1><p>{text}</p><ul>{links}</ul></main></body></html>")
        .into_bytes()
}

/// `/gen/N/I.html`: page `I` of the generated `N`-page site.
fn generated(path: &str) -> Option<Vec<u8>> {
    let (n, file) = path.strip_prefix("/gen/")?.split_once('/')?;
    let (n, i): (usize, usize) = (n.parse().ok()?, file.strip_suffix(".html")?.parse().ok()?);
    (i < n).then(|| generated_page(n, i))
}

fn with_etag(headers: &HeaderMap, body: Vec<u8>, content_type: &str) -> Response {
    let etag = format!("\"{}\"", &blake3::hash(&body).to_hex()[..16]);
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    (
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::ETAG, etag),
        ],
        body,
    )
        .into_response()
}

/// The Book's files and the generated sites, with an `ETag`, answering `304` to a matching
/// `If-None-Match`.
async fn serve(State(dir): State<Arc<PathBuf>>, uri: Uri, headers: HeaderMap) -> Response {
    if let Some(body) = generated(uri.path()) {
        return with_etag(&headers, body, "text/html; charset=utf-8");
    }
    let Some(rest) = uri
        .path()
        .strip_prefix("/book/")
        .filter(|r| !r.contains(".."))
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let rel = if rest.is_empty() || rest.ends_with('/') {
        format!("{rest}index.html")
    } else {
        rest.to_string()
    };
    let Ok(body) = tokio::fs::read(dir.join(&rel)).await else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let content_type = if rel.ends_with(".html") {
        "text/html; charset=utf-8"
    } else {
        "application/octet-stream"
    };
    with_etag(&headers, body, content_type)
}

struct Run {
    pages: usize,
    unchanged: usize,
    seconds: f64,
    known: HashMap<String, KnownPage>,
}

async fn run(
    client: &SafeClient,
    opts: &CrawlOptions,
    known: HashMap<String, KnownPage>,
) -> Result<Run, Error> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let collector = tokio::spawn(async move {
        let mut stored = HashMap::new();
        let mut unchanged = 0;
        while let Some(event) = rx.recv().await {
            match event {
                CrawlEvent::Page(p) => {
                    let links = p.links.iter().map(Url::to_string).collect();
                    let page = KnownPage {
                        etag: p.etag,
                        last_modified: p.last_modified,
                        links,
                        hash: p.hash,
                    };
                    stored.insert(p.url.to_string(), page);
                }
                CrawlEvent::Unchanged { .. } => unchanged += 1,
                _ => {}
            }
        }
        (stored, unchanged)
    });
    let started = Instant::now();
    exai_fetch::crawl(
        client,
        opts,
        known,
        Vec::new(),
        tx,
        CancellationToken::new(),
    )
    .await?;
    let (known, unchanged) = collector.await?;
    Ok(Run {
        pages: known.len(),
        unchanged,
        seconds: started.elapsed().as_secs_f64(),
        known,
    })
}

fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let polite_pages: usize = match args.iter().position(|a| a == "--polite-pages") {
        Some(i) => args
            .get(i + 1)
            .ok_or("--polite-pages needs a number")?
            .parse()?,
        None => 40,
    };
    let app = axum::Router::new()
        .fallback(serve)
        .with_state(Arc::new(book_dir()?));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });

    let client = SafeClient::new(FetchPolicy {
        allowed_hosts: vec!["127.0.0.1".into()],
        ..FetchPolicy::default()
    })?;
    let mut opts = CrawlOptions::new(Url::parse(&format!("http://{addr}/book/"))?);
    opts.render = RenderMode::Never;
    opts.max_depth = 1000;
    opts.max_pages = 100_000;

    let polite = opts.clone();
    opts.min_delay = Duration::ZERO;
    let mut known = HashMap::new();
    for concurrency in [2, 8] {
        opts.per_host_concurrency = concurrency;
        let r = run(&client, &opts, HashMap::new()).await?;
        println!(
            "politeness off, {concurrency} at a time: {} pages in {:.2} s = {:.0} pages/s",
            r.pages,
            r.seconds,
            r.pages as f64 / r.seconds
        );
        known = r.known;
    }
    opts.per_host_concurrency = 2;
    let r = run(&client, &opts, known).await?;
    println!(
        "refresh of the unchanged Book (politeness off): {} unchanged in {:.2} s",
        r.unchanged, r.seconds
    );

    let mut polite = polite;
    polite.max_pages = polite_pages;
    let r = run(&client, &polite, HashMap::new()).await?;
    println!(
        "politeness on (250 ms, 2 at a time), first {} pages: {:.2} s = {:.1} pages/s",
        r.pages,
        r.seconds,
        r.pages as f64 / r.seconds
    );
    for (n, refresh) in [(500, true), (5000, false)] {
        let mut site = opts.clone();
        site.start = Url::parse(&format!("http://{addr}/gen/{n}/0.html"))?;
        site.per_host_concurrency = 2;
        let r = run(&client, &site, HashMap::new()).await?;
        println!(
            "generated {n}-page site, politeness off: {} pages in {:.2} s = {:.0} pages/s",
            r.pages,
            r.seconds,
            r.pages as f64 / r.seconds
        );
        if refresh {
            let again = run(&client, &site, r.known).await?;
            println!(
                "refresh of the unchanged {n}-page site: {} unchanged in {:.2} s",
                again.unchanged, again.seconds
            );
        }
    }
    if let Some(mb) = peak_rss_mb() {
        println!("peak RSS after all runs (crawler and server in one process): {mb:.0} MB");
    }
    Ok(())
}
