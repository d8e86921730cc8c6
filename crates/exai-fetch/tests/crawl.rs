//! The crawler against a loopback server: the test site's special cases, refresh, and the Rust
//! Book (counts, limits, filters, cancellation and resume).

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

use common::{Report, TestServer, book_reachable, client, options, run_crawl};
use exai_fetch::{Body, CrawlEvent, Format};
use tokio_util::sync::CancellationToken;

fn text(page: &exai_fetch::Page) -> &str {
    match &page.body {
        Body::Text(text) => text,
        Body::Bytes(_) => panic!("expected text"),
    }
}

fn reason<'a>(map: &'a HashMap<String, String>, path: &str) -> &'a str {
    map.get(path)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("{path} not in {map:#?}"))
}

#[tokio::test]
async fn the_site_crawl_reports_every_case_and_goes_on() {
    let server = TestServer::start().await;
    let (events, summary) = run_crawl(
        &client(),
        &options(server.url("/site/")),
        HashMap::new(),
        Vec::new(),
    )
    .await;
    let last_progress = events.iter().rev().find_map(|e| match e {
        CrawlEvent::Progress(p) => Some(*p),
        _ => None,
    });
    let last_progress = last_progress.unwrap();
    assert_eq!(last_progress.fetched, summary.pages);
    assert_eq!(last_progress.queued, 0);
    assert_eq!(last_progress.failed, summary.failed);
    let first_page = events.iter().find_map(|e| match e {
        CrawlEvent::Page(p) => Some(p.url.path().to_string()),
        _ => None,
    });
    assert_eq!(
        first_page.as_deref(),
        Some("/site/llms.txt"),
        "llms.txt is taken first"
    );
    let report = Report::new(events);
    let paths = report.page_paths();
    let unique: HashSet<_> = paths.iter().collect();
    assert_eq!(
        unique.len(),
        paths.len(),
        "a page was reported twice: {paths:?}"
    );
    for path in [
        "/site/",
        "/site/llms.txt",
        "/site/from-llms.html",
        "/site/from-sitemap.html",
        "/site/final.html",
        "/site/cp1252.html",
        "/site/sjis.html",
        "/site/busy.html",
        "/site/changing.html",
        "/site/vanishing.html",
        "/site/lm-only.html",
        "/site/canonical.html",
        "/site/notes.md",
        "/site/deep/1.html",
        "/site/deep/2.html",
        "/site/deep/3.html",
        "/site/moved.html",
        "/site/short.html",
    ] {
        assert!(
            paths.iter().any(|p| p == path),
            "{path} missing from {paths:?}"
        );
    }
    assert_eq!(
        report.page("/site/llms.txt").unwrap().format,
        Format::Markdown
    );
    assert_eq!(
        report.page("/site/notes.md").unwrap().format,
        Format::Markdown
    );
    assert_eq!(report.page("/site/from-llms.html").unwrap().depth, 1);
    assert!(text(report.page("/site/cp1252.html").unwrap()).contains("Café crème"));
    assert_eq!(
        report.page("/site/sjis.html").unwrap().title.as_deref(),
        Some("日本語")
    );

    assert_eq!(
        reason(&report.skipped, "/site/private/secret.html"),
        "robots.txt"
    );
    assert_eq!(server.hits("/site/private/secret.html"), 0);
    assert!(reason(&report.skipped, "/site/copy.html").contains("canonical URL is"));
    let same: Vec<_> = paths
        .iter()
        .filter(|p| p.starts_with("/site/same-"))
        .collect();
    assert_eq!(same.len(), 1, "identical bodies are reported once");
    let other = if same[0] == "/site/same-a.html" {
        "/site/same-b.html"
    } else {
        "/site/same-a.html"
    };
    assert!(reason(&report.skipped, other).starts_with("duplicate of"));
    assert_eq!(
        reason(&report.skipped, "/elsewhere/out-of-scope.html"),
        "out of scope"
    );
    assert!(reason(&report.skipped, "/site/old.html").contains("meta refresh"));

    assert!(reason(&report.failed, "/site/loop/a").contains("redirect loop"));
    assert!(reason(&report.failed, "/site/big.html").contains("too large"));
    assert!(reason(&report.failed, "/site/bomb.html").contains("too large"));
    assert!(
        reason(&report.failed, "/site/image.png").contains("unsupported content type image/png")
    );
    assert!(reason(&report.failed, "/site/missing.html").contains("HTTP 404"));
    assert_eq!(summary.pages, paths.len());
    assert_eq!(summary.failed, report.failed.len());
    assert!(!summary.cancelled && summary.frontier.is_empty());
}

#[tokio::test]
async fn a_refresh_costs_conditional_requests_and_reports_changes() {
    let server = TestServer::start().await;
    let opts = options(server.url("/site/"));
    let (events, _) = run_crawl(&client(), &opts, HashMap::new(), Vec::new()).await;
    let first = Report::new(events);
    server.state.round.store(2, Ordering::SeqCst);
    let (events, summary) = run_crawl(&client(), &opts, first.known(), Vec::new()).await;
    let second = Report::new(events);

    assert_eq!(
        second.page_paths(),
        ["/site/changing.html"],
        "only the changed page is a page again"
    );
    assert!(text(second.page("/site/changing.html").unwrap()).contains("version 2"));
    assert_eq!(second.gone, [("/site/vanishing.html".to_string(), 404)]);
    for path in [
        "/site/canonical.html",
        "/site/lm-only.html",
        "/site/",
        "/site/deep/3.html",
        "/site/llms.txt",
    ] {
        assert!(
            second.unchanged.iter().any(|p| p == path),
            "{path} not unchanged: {:?}",
            second.unchanged
        );
    }
    // ETag and Last-Modified validators were sent and answered 304.
    assert_eq!(server.not_modified("/site/canonical.html"), 1);
    assert_eq!(server.not_modified("/site/lm-only.html"), 1);
    // Pages reached only through an unchanged page's stored links were still visited.
    assert!(second.unchanged.iter().any(|p| p == "/site/deep/2.html"));
    assert_eq!(summary.pages + summary.unchanged, first.pages.len() - 1);
}

fn book_path(rel: &str) -> String {
    if rel == "index.html" {
        "/book/".to_string()
    } else {
        format!("/book/{rel}")
    }
}

#[tokio::test]
async fn the_book_crawl_finds_every_reachable_page() {
    let server = TestServer::start().await;
    let expected = book_reachable("index.html", u32::MAX);
    let mut opts = options(server.url("/book/"));
    opts.max_depth = 1000;
    opts.max_pages = 10_000;
    let (events, summary) = run_crawl(&client(), &opts, HashMap::new(), Vec::new()).await;
    let report = Report::new(events);
    let mut want: Vec<String> = expected.keys().map(|rel| book_path(rel)).collect();
    want.sort();
    assert!(
        want.len() > 100,
        "only {} Book pages found on disk",
        want.len()
    );
    assert_eq!(report.page_paths(), want);
    assert_eq!(summary.pages, want.len());
    assert!(
        report
            .pages
            .iter()
            .all(|p| p.format == Format::Html && p.title.is_some())
    );
}

#[tokio::test]
async fn max_pages_and_max_depth_are_respected() {
    let server = TestServer::start().await;
    let mut opts = options(server.url("/book/"));
    opts.max_pages = 10;
    let (events, summary) = run_crawl(&client(), &opts, HashMap::new(), Vec::new()).await;
    let report = Report::new(events);
    assert_eq!(report.pages.len(), 10);
    assert!(!summary.frontier.is_empty());
    assert!(report.skipped.values().any(|r| r == "max pages reached"));

    let mut opts = options(server.url("/book/"));
    opts.max_depth = 1;
    let (events, _) = run_crawl(&client(), &opts, HashMap::new(), Vec::new()).await;
    let report = Report::new(events);
    assert!(report.pages.iter().all(|p| p.depth <= 1));
    assert!(report.skipped.values().any(|r| r == "max depth reached"));
    let mut want: Vec<String> = book_reachable("index.html", 1)
        .keys()
        .map(|rel| book_path(rel))
        .collect();
    want.sort();
    assert_eq!(report.page_paths(), want);
}

#[tokio::test]
async fn include_and_exclude_globs_filter_pages() {
    let server = TestServer::start().await;
    let mut opts = options(server.url("/book/ch04-00-understanding-ownership.html"));
    opts.include = vec!["/book/ch04-*".into()];
    opts.exclude = vec!["/book/ch04-03*".into()];
    let (events, _) = run_crawl(&client(), &opts, HashMap::new(), Vec::new()).await;
    let report = Report::new(events);
    let paths = report.page_paths();
    assert!(paths.len() >= 3, "{paths:?}");
    assert!(
        paths
            .iter()
            .all(|p| p.starts_with("/book/ch04-") && !p.starts_with("/book/ch04-03")),
        "{paths:?}"
    );
    assert_eq!(
        reason(&report.skipped, "/book/ch04-03-slices.html"),
        "excluded"
    );
    assert_eq!(reason(&report.skipped, "/book/print.html"), "not included");
}

#[tokio::test]
async fn a_cancelled_crawl_resumes_without_fetching_a_page_twice() {
    let server = TestServer::start().await;
    let mut opts = options(server.url("/book/"));
    opts.max_depth = 1000;
    opts.per_host_concurrency = 2;
    let client = client();
    let cancel = CancellationToken::new();
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let crawl = {
        let (client, opts, cancel) = (client.clone(), opts.clone(), cancel.clone());
        tokio::spawn(async move {
            exai_fetch::crawl(&client, &opts, HashMap::new(), Vec::new(), tx, cancel).await
        })
    };
    let mut events = Vec::new();
    while let Some(event) = rx.recv().await {
        if matches!(event, CrawlEvent::Page(_))
            && events
                .iter()
                .filter(|e| matches!(e, CrawlEvent::Page(_)))
                .count()
                == 19
        {
            cancel.cancel();
        }
        events.push(event);
    }
    let summary = crawl.await.unwrap().unwrap();
    assert!(summary.cancelled);
    assert!(!summary.frontier.is_empty());
    let first = Report::new(events);
    // Pages already in the channel when the token fired were delivered too.
    assert!(
        first.pages.len() >= 20 && first.pages.len() < 30,
        "{}",
        first.pages.len()
    );

    let (events, rest) = run_crawl(&client, &opts, first.known(), summary.frontier).await;
    let second = Report::new(events);
    assert!(!rest.cancelled && rest.frontier.is_empty());
    let a: HashSet<_> = first.page_paths().into_iter().collect();
    let b: HashSet<_> = second.page_paths().into_iter().collect();
    assert!(
        a.is_disjoint(&b),
        "pages reported twice: {:?}",
        a.intersection(&b).collect::<Vec<_>>()
    );
    let mut all: Vec<String> = a.union(&b).cloned().collect();
    all.sort();
    let mut want: Vec<String> = book_reachable("index.html", u32::MAX)
        .keys()
        .map(|rel| book_path(rel))
        .collect();
    want.sort();
    assert_eq!(all, want);
    // Only requests in flight at the cancellation (at most the concurrency, plus the page being
    // reported) can have been made twice.
    let twice = server
        .total_hits_under("/book/")
        .values()
        .filter(|n| **n > 1)
        .count();
    assert!(twice <= 3, "{twice} Book URLs fetched more than once");
}
