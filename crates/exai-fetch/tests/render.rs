//! Rendering with a local headless Chromium: a page whose content only a script adds, and a
//! page that never finishes loading (killed at the deadline with no browser process left).
//!
//! Without Chromium these tests print why and pass, unless `EXAI_REQUIRE_CHROMIUM` is set:
//! then a missing browser fails them.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Report, TestServer, client, options, run_crawl};
use exai_fetch::{AllowList, Body, FetchError, RenderMode, Renderer};

fn chromium() -> Option<Renderer> {
    let found = Renderer::find();
    if found.is_none() {
        assert!(
            std::env::var_os("EXAI_REQUIRE_CHROMIUM").is_none(),
            "EXAI_REQUIRE_CHROMIUM is set but no Chromium was found (EXAI_CHROMIUM, chromium, chromium-browser, google-chrome)"
        );
        eprintln!(
            "skipped: no Chromium found; install it (Debian: apt install chromium) or set EXAI_CHROMIUM"
        );
    }
    found
}

fn loopback() -> AllowList {
    AllowList::new(&["127.0.0.1".into()]).unwrap()
}

/// The processes still mentioning `marker` once a killed browser has had up to 10 s to be torn
/// down (a SIGKILLed process stays in /proc until the kernel has finished with it, and a helper
/// the dying zygote was forking gets its signal from the second pass).
async fn survivors(marker: &Path) -> Vec<String> {
    let started = Instant::now();
    loop {
        let left = processes_mentioning(marker);
        if left.is_empty() || started.elapsed() > Duration::from_secs(10) {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Live (non-zombie) processes whose command line mentions `marker`.
fn processes_mentioning(marker: &Path) -> Vec<String> {
    let marker = marker.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .chars()
                .all(|c| c.is_ascii_digit())
        })
        .filter_map(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline
                .contains(&marker)
                .then(|| format!("{}: {cmdline}", e.file_name().to_string_lossy()))
        })
        .collect()
}

#[tokio::test]
async fn a_script_built_page_is_rendered_in_a_crawl() {
    let Some(renderer) = chromium() else { return };
    let server = TestServer::start().await;
    let dom = renderer
        .render(&server.url("/render/script.html"), &loopback())
        .await
        .unwrap();
    assert!(dom.contains("Rendered heading"), "{dom}");

    let mut opts = options(server.url("/render/script.html"));
    opts.render = RenderMode::Auto;
    opts.renderer = Some(renderer);
    let (events, _) = run_crawl(&client(), &opts, HashMap::new(), Vec::new()).await;
    let report = Report::new(events);
    let page = report.page("/render/script.html").unwrap();
    assert!(page.rendered);
    let Body::Text(text) = &page.body else {
        panic!("expected text")
    };
    assert!(text.contains("Content that only a script adds."));
    assert!(
        page.links.iter().any(|l| l.path() == "/render/next.html"),
        "links come from the rendered DOM"
    );
}

#[tokio::test]
async fn render_always_renders_every_html_page() {
    let Some(renderer) = chromium() else { return };
    let server = TestServer::start().await;
    let mut opts = options(server.url("/site/canonical.html"));
    opts.render = RenderMode::Always;
    opts.renderer = Some(renderer);
    opts.max_pages = 1;
    opts.use_llms_txt = false;
    opts.use_sitemap = false;
    let (events, _) = run_crawl(&client(), &opts, HashMap::new(), Vec::new()).await;
    let report = Report::new(events);
    let page = report.page("/site/canonical.html").unwrap();
    assert!(page.rendered);
    let Body::Text(text) = &page.body else {
        panic!("expected text")
    };
    assert!(text.contains("canonical links"));
}

#[tokio::test]
async fn without_chromium_a_shell_is_skipped_with_the_install_hint() {
    let server = TestServer::start().await;
    let mut opts = options(server.url("/render/script.html"));
    opts.render = RenderMode::Auto;
    opts.renderer = None;
    let (events, _) = run_crawl(&client(), &opts, HashMap::new(), Vec::new()).await;
    let report = Report::new(events);
    let reason = &report.skipped["/render/script.html"];
    assert!(
        reason.starts_with("needs rendering: install Chromium"),
        "{reason}"
    );
    assert!(reason.contains("EXAI_CHROMIUM"));
    // A short page with written content is not a shell: indexed as served.
    let mut opts = options(server.url("/site/short.html"));
    opts.render = RenderMode::Auto;
    opts.renderer = None;
    let (events, _) = run_crawl(&client(), &opts, HashMap::new(), Vec::new()).await;
    let report = Report::new(events);
    assert!(!report.page("/site/short.html").unwrap().rendered);
}

#[tokio::test]
async fn a_hanging_page_is_killed_at_the_deadline_with_no_process_left() {
    let Some(renderer) = chromium() else { return };
    let server = TestServer::start().await;
    let profiles = tempfile::tempdir().unwrap();
    let renderer = renderer
        .with_deadline(Duration::from_secs(5))
        .with_temp_root(profiles.path().to_path_buf());
    let started = Instant::now();
    let err = renderer
        .render(&server.url("/render/hang.html"), &loopback())
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Render { .. }), "{err}");
    assert!(err.to_string().contains("killed"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the 5 s deadline did not hold"
    );
    let left = survivors(profiles.path()).await;
    assert!(
        left.is_empty(),
        "browser processes survived the deadline: {left:#?}"
    );
    let dirs: Vec<_> = std::fs::read_dir(profiles.path()).unwrap().collect();
    assert!(dirs.is_empty(), "the browser profile was not removed");
}

#[tokio::test]
async fn refused_addresses_are_not_rendered() {
    // No browser is started: the address is checked first.
    let renderer = Renderer::new("/nonexistent/chromium".into());
    let url = url::Url::parse("http://127.0.0.1:9/").unwrap();
    let err = renderer
        .render(&url, &AllowList::default())
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Refused { .. }), "{err}");
    let url = url::Url::parse("http://localhost:9/").unwrap();
    let err = renderer
        .render(&url, &AllowList::default())
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Refused { .. }), "{err}");
}

#[tokio::test]
async fn a_render_dropped_mid_way_leaves_no_process() {
    let Some(renderer) = chromium() else { return };
    let server = TestServer::start().await;
    let profiles = tempfile::tempdir().unwrap();
    let renderer = renderer
        .with_deadline(Duration::from_secs(60))
        .with_temp_root(profiles.path().to_path_buf());
    let url = server.url("/render/hang.html");
    let render = tokio::spawn(async move { renderer.render(&url, &loopback()).await });
    // Wait until the browser runs (its profile directory exists and it asked for the page).
    let started = Instant::now();
    while server.hits("/render/hang.html") == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the browser never requested the page"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!processes_mentioning(profiles.path()).is_empty());
    // What a cancelled crawl does to a visit in flight.
    render.abort();
    let _ = render.await;
    let left = survivors(profiles.path()).await;
    assert!(
        left.is_empty(),
        "browser processes survived the dropped render: {left:#?}"
    );
}

#[test]
fn the_toolchain_docs_are_never_taken_for_script_shells() {
    let html = common::book_dir().join("..");
    let mut checked = 0;
    for dir in ["book", "std/vec", "std/collections", "reference"] {
        for entry in std::fs::read_dir(html.join(dir)).unwrap().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "html") {
                let text = std::fs::read_to_string(&path).unwrap();
                assert!(
                    !exai_fetch::needs_rendering(&text),
                    "{} taken for a shell",
                    path.display()
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 250, "only {checked} pages checked");
}
