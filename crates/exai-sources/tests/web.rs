#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Web sites through `exai_sources`, against a loopback site: the first crawl indexes every
//! page (HTML, Markdown, PDF) and records the origin; a refresh of an unchanged site costs one
//! conditional request per page; changed, deleted and new pages are updated, removed and
//! added (a dry run only lists that); a stopped crawl keeps what it wrote and its frontier and
//! the next run fetches only the rest; a failing page is recorded and skipped; loopback is
//! refused unless `kb.fetch_allowed_hosts` lists it.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{Site, documents, index, kb, page_states, paths_found, refresh, request, settings};
use exai_kb::{KbError, Progress};
use exai_sources::Origin;

const ALLOWED: &[&str] = &["127.0.0.1"];

/// The handbook: a start page linking two HTML pages, a Markdown guide and a PDF manual.
fn handbook(site: &Site) {
    site.html(
        "/docs/",
        "Handbook",
        "The zephyr handbook starts here.",
        &["a.html", "b.html", "guide.md", "manual.pdf"],
    );
    site.html("/docs/a.html", "Alpha", "The alpaca chapter.", &[]);
    site.html("/docs/b.html", "Beta", "The bison chapter.", &[]);
    site.put(
        "/docs/guide.md",
        "text/markdown; charset=utf-8",
        "# Guide\n\nThe chinchilla guide.\n",
    );
    site.put(
        "/docs/manual.pdf",
        "application/pdf",
        common::pdf("The dingo manual"),
    );
}

/// Requests for the site's pages (not robots.txt, llms.txt or sitemaps), with their status.
fn page_requests(site: &Site) -> Vec<(String, u16)> {
    let mut log: Vec<(String, u16)> = site
        .take_log()
        .into_iter()
        .filter(|(p, _)| p.starts_with("/docs/") && !p.ends_with(".txt") && !p.ends_with(".xml"))
        .collect();
    log.sort();
    log
}

fn states_by_url(kb: &exai_kb::Kb, source: &str) -> Vec<(String, String)> {
    page_states(kb, source)
        .into_iter()
        .map(|p| (p.url, p.state))
        .collect()
}

#[test]
fn a_site_is_indexed_refreshed_conditionally_and_follows_its_changes() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::start();
    handbook(&site);
    let kb = kb(dir.path());
    let settings = settings(ALLOWED, dir.path());
    let start = site.url("/docs/");

    let first = index(&kb, &request(&start, Some("site")), &settings).unwrap();
    assert_eq!(
        (first.added, first.updated, first.removed),
        (5, 0, 0),
        "{first:?}"
    );
    for (word, path) in [
        ("zephyr", "docs/"),
        ("alpaca", "docs/a.html"),
        ("bison", "docs/b.html"),
        ("chinchilla", "docs/guide.md"),
        ("dingo", "docs/manual.pdf"),
    ] {
        let hits = common::search(&kb, word, Some("site"));
        assert_eq!(
            hits.iter().map(|(_, p, _)| p.as_str()).collect::<Vec<_>>(),
            [path],
            "{word}: {hits:?}"
        );
        assert_eq!(
            hits[0].2,
            site.url(&format!("/{path}")),
            "the hit's uri is the page's URL"
        );
    }
    match exai_sources::origins(&kb).unwrap().as_slice() {
        [(name, Origin::Web(web))] => {
            assert_eq!(name, "site");
            assert_eq!(web.url, start);
        }
        other => panic!("origins: {other:?}"),
    }
    let info = kb.sources().unwrap();
    assert_eq!(info[0].origin["kind"], "web");
    assert_eq!(info[0].origin["url"], start.as_str());
    let states = page_states(&kb, "site");
    assert_eq!(states.len(), 5, "{states:?}");
    assert!(
        states
            .iter()
            .all(|p| p.state == "indexed" && p.etag.is_some() && p.path.is_some()),
        "{states:?}"
    );
    site.take_log();

    // Nothing changed: every page is asked with its validators and answered 304.
    let same = refresh(&kb, "site", &settings).unwrap();
    assert_eq!(
        (same.unchanged, same.added, same.updated, same.removed),
        (5, 0, 0, 0),
        "{same:?}"
    );
    let expected: Vec<(String, u16)> = [
        "/docs/",
        "/docs/a.html",
        "/docs/b.html",
        "/docs/guide.md",
        "/docs/manual.pdf",
    ]
    .iter()
    .map(|p| (p.to_string(), 304))
    .collect();
    assert_eq!(page_requests(&site), expected);

    // One page changed (and links a new one), one deleted.
    site.html(
        "/docs/a.html",
        "Alpha",
        "The armadillo chapter, rewritten.",
        &["e.html"],
    );
    site.remove("/docs/b.html");
    site.html("/docs/e.html", "Epsilon", "The emu chapter.", &[]);
    let before = page_states(&kb, "site");

    let mut dry = request(&start, Some("site"));
    dry.dry_run = true;
    let plan = index(&kb, &dry, &settings).unwrap();
    let planned: BTreeSet<(String, &str)> = plan
        .plan
        .iter()
        .map(|p| (p.path.clone(), p.action))
        .collect();
    assert_eq!(
        planned,
        BTreeSet::from([
            ("docs/a.html".to_string(), "update"),
            ("docs/b.html".to_string(), "remove"),
            ("docs/e.html".to_string(), "add"),
        ]),
        "{plan:?}"
    );
    assert_eq!(
        (plan.added, plan.updated, plan.removed),
        (1, 1, 1),
        "{plan:?}"
    );
    assert!(
        paths_found(&kb, "armadillo").is_empty(),
        "a dry run writes nothing"
    );
    assert!(paths_found(&kb, "emu").is_empty());
    assert_eq!(paths_found(&kb, "bison"), ["docs/b.html"]);
    assert_eq!(
        page_states(&kb, "site"),
        before,
        "a dry run keeps the page states"
    );
    assert_eq!(documents(&kb, "site"), 5);

    let changed = refresh(&kb, "site", &settings).unwrap();
    assert_eq!(
        (
            changed.added,
            changed.updated,
            changed.removed,
            changed.unchanged
        ),
        (1, 1, 1, 3),
        "{changed:?}"
    );
    assert_eq!(paths_found(&kb, "armadillo"), ["docs/a.html"]);
    assert_eq!(paths_found(&kb, "emu"), ["docs/e.html"]);
    assert!(paths_found(&kb, "alpaca").is_empty());
    assert!(paths_found(&kb, "bison").is_empty());
    assert_eq!(documents(&kb, "site"), 5);
    let urls: Vec<String> = page_states(&kb, "site")
        .into_iter()
        .map(|p| p.url)
        .collect();
    assert!(!urls.contains(&site.url("/docs/b.html")), "{urls:?}");
    assert!(urls.contains(&site.url("/docs/e.html")), "{urls:?}");
}

#[test]
fn loopback_is_refused_unless_allowed_and_nothing_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::start();
    handbook(&site);
    let kb = kb(dir.path());
    let err = index(
        &kb,
        &request(&site.url("/docs/"), Some("site")),
        &settings(&[], dir.path()),
    )
    .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("kb.fetch_allowed_hosts"), "{message}");
    assert!(message.contains("127.0.0.1"), "{message}");
    assert!(site.take_log().is_empty(), "refused before any request");
    assert!(
        kb.sources().unwrap().is_empty(),
        "a refused site leaves no source behind"
    );

    // Allowing the host on another port is no permission for this one.
    let other_port = format!("127.0.0.1:{}", site.addr.port().wrapping_add(1).max(1));
    let err = index(
        &kb,
        &request(&site.url("/docs/"), Some("site")),
        &settings(&[other_port.as_str()], dir.path()),
    )
    .unwrap_err();
    assert!(err.to_string().contains("kb.fetch_allowed_hosts"), "{err}");

    // Allowed on its port; with no source named, the site's host and port name it.
    let this_port = format!("127.0.0.1:{}", site.addr.port());
    let report = index(
        &kb,
        &request(&site.url("/docs/"), None),
        &settings(&[this_port.as_str()], dir.path()),
    )
    .unwrap();
    assert_eq!(report.added, 5, "{report:?}");
    assert_eq!(report.source, format!("127.0.0.1-{}", site.addr.port()));
}

#[test]
fn a_failing_page_is_recorded_and_the_crawl_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::start();
    site.html(
        "/docs/",
        "Start",
        "The quokka start page.",
        &["a.html", "broken.html", "c.html"],
    );
    site.html("/docs/a.html", "A", "The alpaca page.", &[]);
    site.fail("/docs/broken.html", 500);
    site.html("/docs/c.html", "C", "The capybara page.", &[]);
    let kb = kb(dir.path());
    let settings = settings(ALLOWED, dir.path());

    let report = index(&kb, &request(&site.url("/docs/"), Some("site")), &settings).unwrap();
    assert_eq!(report.added, 3, "{report:?}");
    assert_eq!(
        report.skipped,
        std::collections::BTreeMap::from([("HTTP 500".to_string(), 1)]),
        "{report:?}"
    );
    assert_eq!(paths_found(&kb, "alpaca"), ["docs/a.html"]);
    assert_eq!(paths_found(&kb, "capybara"), ["docs/c.html"]);
    let broken = page_states(&kb, "site")
        .into_iter()
        .find(|p| p.url == site.url("/docs/broken.html"))
        .expect("the failed page has a state");
    assert_eq!(broken.state, "failed");
    assert!(
        broken.reason.as_deref().is_some_and(|r| r.contains("500")),
        "{broken:?}"
    );
    assert_eq!(broken.path, None);

    // Fixed on the server: the next refresh indexes it.
    site.html("/docs/broken.html", "B", "The bandicoot page.", &[]);
    let again = refresh(&kb, "site", &settings).unwrap();
    assert_eq!((again.added, again.unchanged), (1, 3), "{again:?}");
    assert_eq!(paths_found(&kb, "bandicoot"), ["docs/broken.html"]);
    assert!(
        page_states(&kb, "site")
            .iter()
            .all(|p| p.state == "indexed")
    );

    // A page indexed before that fails for a while keeps its document and validators.
    site.fail("/docs/a.html", 503);
    let passing = refresh(&kb, "site", &settings).unwrap();
    assert_eq!((passing.removed, passing.unchanged), (0, 3), "{passing:?}");
    assert_eq!(paths_found(&kb, "alpaca"), ["docs/a.html"]);
    let a = page_states(&kb, "site")
        .into_iter()
        .find(|p| p.url == site.url("/docs/a.html"))
        .unwrap();
    assert_eq!(a.state, "indexed", "{a:?}");
    assert!(a.etag.is_some(), "{a:?}");
    assert!(
        a.reason.as_deref().is_some_and(|r| r.contains("503")),
        "{a:?}"
    );
}

#[test]
fn a_dry_run_of_a_new_site_lists_its_pages_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::start();
    handbook(&site);
    let kb = kb(dir.path());
    let mut req = request(&site.url("/docs/"), Some("site"));
    req.dry_run = true;
    let plan = index(&kb, &req, &settings(ALLOWED, dir.path())).unwrap();
    let mut added: Vec<&str> = plan
        .plan
        .iter()
        .filter(|p| p.action == "add")
        .map(|p| p.path.as_str())
        .collect();
    added.sort_unstable();
    assert_eq!(
        added,
        [
            "docs/",
            "docs/a.html",
            "docs/b.html",
            "docs/guide.md",
            "docs/manual.pdf"
        ],
        "{plan:?}"
    );
    assert!(kb.sources().unwrap().is_empty(), "{:?}", kb.sources());
    assert!(page_states(&kb, "site").is_empty());
    assert!(exai_sources::origins(&kb).unwrap().is_empty());
}

#[test]
fn a_stopped_crawl_keeps_its_pages_and_the_next_index_fetches_only_the_rest() {
    stop_and_resume(false);
}

#[test]
fn a_refresh_resumes_a_stopped_crawl() {
    stop_and_resume(true);
}

/// Stop a crawl after two pages, then run it again (`exai index URL` or `exai refresh`).
fn stop_and_resume(by_refresh: bool) {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::start();
    let words = [
        "aardvark", "bobcat", "cougar", "dormouse", "ermine", "ferret",
    ];
    let pages: Vec<String> = (1..=words.len()).map(|i| format!("p{i}.html")).collect();
    let links: Vec<&str> = pages.iter().map(String::as_str).collect();
    site.html("/docs/", "Start", "The kestrel start page.", &links);
    for (page, word) in pages.iter().zip(words) {
        site.html(
            &format!("/docs/{page}"),
            word,
            &format!("The {word} page."),
            &[],
        );
    }
    // The crawl cannot get past the fourth page: it is stopped before, whatever the timing.
    site.hold("/docs/p4.html");
    let kb = kb(dir.path());
    let settings = settings(ALLOWED, dir.path());
    let req = request(&site.url("/docs/"), Some("site"));

    let cancel = AtomicBool::new(false);
    let stop_after_two = |p: &Progress| {
        if let Progress::Fetching { fetched, .. } = p
            && *fetched >= 2
        {
            cancel.store(true, Ordering::Relaxed);
        }
    };
    let err = exai_sources::index(&kb, &req, &settings, &stop_after_two, &cancel).unwrap_err();
    assert!(matches!(err, KbError::Cancelled), "{err:?}");

    let states = states_by_url(&kb, "site");
    let indexed: BTreeSet<String> = states
        .iter()
        .filter(|(_, s)| s == "indexed")
        .map(|(u, _)| u.clone())
        .collect();
    let queued: BTreeSet<String> = states
        .iter()
        .filter(|(_, s)| s == "queued")
        .map(|(u, _)| u.clone())
        .collect();
    let all: BTreeSet<String> = std::iter::once(site.url("/docs/"))
        .chain(pages.iter().map(|p| site.url(&format!("/docs/{p}"))))
        .collect();
    assert_eq!(states.len(), all.len(), "{states:?}");
    assert_eq!(
        indexed.union(&queued).cloned().collect::<BTreeSet<_>>(),
        all,
        "{states:?}"
    );
    assert!(indexed.len() >= 2, "{states:?}");
    assert!(queued.contains(&site.url("/docs/p4.html")), "{states:?}");
    for (page, word) in pages.iter().zip(words) {
        let url = site.url(&format!("/docs/{page}"));
        let found = paths_found(&kb, word);
        if indexed.contains(&url) {
            assert_eq!(found, [format!("docs/{page}")], "{word}");
        } else {
            assert!(found.is_empty(), "{word} was not fetched: {found:?}");
        }
    }
    assert!(
        matches!(
            exai_sources::origins(&kb).unwrap().as_slice(),
            [(_, Origin::Web(_))]
        ),
        "a stopped crawl keeps its origin, so that a refresh resumes it: {:?}",
        exai_sources::origins(&kb)
    );

    site.release();
    site.take_log();
    let resumed = if by_refresh {
        refresh(&kb, "site", &settings).unwrap()
    } else {
        index(&kb, &req, &settings).unwrap()
    };
    let fetched: BTreeSet<String> = page_requests(&site)
        .into_iter()
        .map(|(p, status)| {
            assert_eq!(status, 200, "{p}");
            site.url(&p)
        })
        .collect();
    assert_eq!(fetched, queued, "only the frontier is fetched");
    assert_eq!(resumed.added, queued.len(), "{resumed:?}");
    assert_eq!(resumed.removed, 0, "{resumed:?}");
    for word in words {
        assert_eq!(paths_found(&kb, word).len(), 1, "{word}");
    }
    assert_eq!(paths_found(&kb, "kestrel"), ["docs/"]);
    assert_eq!(documents(&kb, "site"), 7);
    assert!(
        states_by_url(&kb, "site")
            .iter()
            .all(|(_, s)| s == "indexed"),
        "{:?}",
        states_by_url(&kb, "site")
    );

    // And a refresh afterwards sees the whole site unchanged.
    let again = refresh(&kb, "site", &settings).unwrap();
    assert_eq!((again.unchanged, again.removed), (7, 0), "{again:?}");
}
