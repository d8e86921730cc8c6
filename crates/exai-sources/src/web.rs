//! Web sites: crawl with [`exai_fetch::crawl`] and index each page as it arrives through a
//! [`exai_kb::Feed`], keeping every page's validators, links and failures in the store
//! ([`PageState`]), so that a refresh asks each known page conditionally (an unchanged page
//! costs one `304`), a stopped crawl resumes from its frontier, and pages that disappeared are
//! removed once a crawl has seen the whole site.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use exai_fetch::{CrawlEvent, CrawlOptions, FrontierEntry, KnownPage, SafeClient};
use exai_kb::model::Format;
use exai_kb::{Feed, IndexReport, IndexRequest, Item, Kb, KbError, PageState, Progress};
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::settings::Settings;
use crate::{Request, Result};

/// Pages written per transaction.
const BATCH: usize = 32;
/// Page states: `indexed` (a document), `unchanged` is not a state (the stored one stays),
/// `failed` with the reason, `queued` (the frontier of a stopped crawl).
const INDEXED: &str = "indexed";
const FAILED: &str = "failed";
const QUEUED: &str = "queued";

/// What a web source was crawled with, recorded in its origin.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WebOrigin {
    pub url: String,
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    pub max_pages: usize,
    pub max_depth: u32,
    pub render: exai_core::RenderMode,
}

impl WebOrigin {
    pub fn new(url: &str, req: &Request, settings: &Settings) -> Result<Self> {
        let parsed = Url::parse(url).map_err(|e| KbError::Invalid(format!("`{url}`: {e}")))?;
        Ok(Self {
            url: parsed.to_string(),
            include: req.include.clone(),
            exclude: req.exclude.clone(),
            max_pages: req.max_pages.unwrap_or(settings.max_pages),
            max_depth: req.max_depth.unwrap_or(settings.max_depth),
            render: req.render.unwrap_or(settings.render),
        })
    }
}

/// The document path of a page: its URL path without the leading `/` (`index` for the root),
/// with the query kept (two queries are two pages).
pub fn page_path(url: &Url) -> String {
    let path = url.path().trim_start_matches('/');
    let mut out = if path.is_empty() {
        "index".to_string()
    } else {
        path.to_string()
    };
    if let Some(q) = url.query() {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// The part of a skip or failure reason that counts it: up to a colon or a URL
/// (`duplicate of http://…` → `duplicate of`, `needs rendering: install …` → `needs rendering`),
/// after the URL a fetch error starts with (`http://…/a.html: HTTP 500` → `HTTP 500`).
fn reason_key(reason: &str) -> &str {
    let reason = match reason.split_once(": ") {
        Some((url, rest)) if url.starts_with("http://") || url.starts_with("https://") => rest,
        _ => reason,
    };
    [":", " http://", " https://"]
        .iter()
        .filter_map(|sep| reason.find(sep))
        .min()
        .map_or(reason, |at| &reason[..at])
        .trim()
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Crawl `origin` into `source`.
pub fn index(
    kb: &Kb,
    source: &str,
    origin: &WebOrigin,
    req: &Request,
    settings: &Settings,
    progress: &(dyn Fn(&Progress) + Sync),
    cancel: &AtomicBool,
) -> Result<IndexReport> {
    let start =
        Url::parse(&origin.url).map_err(|e| KbError::Invalid(format!("`{}`: {e}", origin.url)))?;
    let client = SafeClient::new(settings.fetch_policy()).map_err(fetch_error)?;
    // Refused before the feed opens, which would record the source.
    client.allow_list().check_url(&start).map_err(fetch_error)?;
    let opts = crawl_options(start, origin, settings);
    let request = IndexRequest {
        source: source.to_string(),
        technology: req.technology.clone(),
        dry_run: req.dry_run,
        reembed: req.reembed,
        skip_embedding: req.skip_embedding,
        ..IndexRequest::default()
    };
    let mut feed = kb.feed(request, std::slice::from_ref(&origin.url))?;
    let stored = feed.store().page_states(source)?;
    let mut run = Run::new(&mut feed, stored, req.dry_run);
    let (known, frontier) = run.known_and_frontier();
    if !frontier.is_empty() {
        // A resumed crawl takes the pages indexed before as done and does not visit them: they
        // are still on the site as far as this run knows, not gone.
        run.seen.extend(known.keys().cloned());
    }
    let outcome = crawl_blocking(&client, opts, known, frontier, cancel, |event| {
        run.event(event, progress)
    })?;
    run.flush()?;
    run.settle(&outcome)?;
    if outcome.cancelled {
        return Err(KbError::Cancelled);
    }
    feed.finish(progress, cancel)
}

fn crawl_options(start: Url, origin: &WebOrigin, settings: &Settings) -> CrawlOptions {
    let mut opts = CrawlOptions::new(start);
    opts.include = origin.include.clone();
    opts.exclude = origin.exclude.clone();
    opts.max_pages = origin.max_pages;
    opts.max_depth = origin.max_depth;
    opts.per_host_concurrency = settings.concurrency;
    opts.min_delay = settings.delay;
    opts.render = match origin.render {
        exai_core::RenderMode::Auto => exai_fetch::RenderMode::Auto,
        exai_core::RenderMode::Always => exai_fetch::RenderMode::Always,
        exai_core::RenderMode::Never => exai_fetch::RenderMode::Never,
    };
    opts.renderer = opts
        .renderer
        .take()
        .map(|r| r.with_deadline(settings.page_timeout));
    opts
}

pub(crate) fn fetch_error(e: exai_fetch::FetchError) -> KbError {
    KbError::Invalid(e.to_string())
}

/// How the crawl ended, as far as pruning and resuming need.
struct Outcome {
    cancelled: bool,
    frontier: Vec<FrontierEntry>,
}

/// Run the crawl on the async runtime (the caller's, when it runs inside one, else one of its
/// own) and hand each event to `on_event` on this thread. The `cancel` flag is watched on a
/// thread of its own, so a cancel stops the crawl even while no event arrives.
fn crawl_blocking(
    client: &SafeClient,
    opts: CrawlOptions,
    known: HashMap<String, KnownPage>,
    frontier: Vec<FrontierEntry>,
    cancel: &AtomicBool,
    mut on_event: impl FnMut(CrawlEvent) -> Result<()>,
) -> Result<Outcome> {
    let own_runtime;
    let handle = match tokio::runtime::Handle::try_current() {
        Ok(h) => h,
        Err(_) => {
            own_runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| KbError::Invalid(format!("cannot start the crawler: {e}")))?;
            own_runtime.handle().clone()
        }
    };
    let token = CancellationToken::new();
    let (tx, mut rx) = tokio::sync::mpsc::channel(256);
    let client = client.clone();
    let crawl_token = token.clone();
    let task = handle.spawn(async move {
        exai_fetch::crawl(&client, &opts, known, frontier, tx, crawl_token).await
    });
    // Whatever ends this function, a panic included, stops the crawl.
    let _stop = token.clone().drop_guard();
    let mut failure = None;
    loop {
        // Wait for the next event, looking at the cancel flag at least every 100 ms (a page
        // can take up to its deadline).
        let next = handle
            .block_on(async { tokio::time::timeout(Duration::from_millis(100), rx.recv()).await });
        if cancel.load(Ordering::Relaxed) {
            token.cancel();
        }
        match next {
            Ok(Some(event)) => {
                if let Err(e) = on_event(event) {
                    // Stop the crawl; what was written stays.
                    token.cancel();
                    failure = Some(e);
                    break;
                }
            }
            Ok(None) => break,
            Err(_elapsed) => continue,
        }
    }
    rx.close();
    let summary = handle
        .block_on(task)
        .map_err(|e| KbError::Invalid(format!("the crawler stopped: {e}")))?
        .map_err(fetch_error)?;
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(Outcome {
        cancelled: summary.cancelled || cancel.load(Ordering::Relaxed),
        frontier: summary.frontier,
    })
}

/// One crawl's bookkeeping between the crawler and the feed.
struct Run<'f, 'k> {
    feed: &'f mut Feed<'k>,
    dry_run: bool,
    /// Page states as stored before the run, by URL.
    stored: HashMap<String, PageState>,
    /// URLs reported this run as pages or unchanged (what the site still has).
    seen: HashSet<String>,
    items: Vec<Item>,
    states: Vec<PageState>,
    /// Whether the crawl left pages out for its bounds (max pages or depth): then a page not
    /// seen may still be on the site, and is not removed.
    bounded: bool,
}

impl<'f, 'k> Run<'f, 'k> {
    fn new(feed: &'f mut Feed<'k>, stored: Vec<PageState>, dry_run: bool) -> Self {
        Self {
            feed,
            dry_run,
            stored: stored.into_iter().map(|p| (p.url.clone(), p)).collect(),
            seen: HashSet::new(),
            items: Vec::new(),
            states: Vec::new(),
            bounded: false,
        }
    }

    /// Validators of the pages indexed before (asked conditionally), and a stopped crawl's
    /// frontier (resumed).
    fn known_and_frontier(&self) -> (HashMap<String, KnownPage>, Vec<FrontierEntry>) {
        let mut known = HashMap::new();
        let mut frontier = Vec::new();
        for p in self.stored.values() {
            match p.state.as_str() {
                INDEXED => {
                    known.insert(
                        p.url.clone(),
                        KnownPage {
                            etag: p.etag.clone(),
                            last_modified: p.last_modified.clone(),
                            links: p.links.clone(),
                            hash: p.hash.clone().unwrap_or_default(),
                        },
                    );
                }
                QUEUED => {
                    if let Ok(url) = Url::parse(&p.url) {
                        frontier.push(FrontierEntry {
                            url,
                            depth: p.depth,
                        });
                    }
                }
                _ => {}
            }
        }
        frontier.sort_by_key(|f| f.depth);
        (known, frontier)
    }

    fn event(&mut self, event: CrawlEvent, progress: &(dyn Fn(&Progress) + Sync)) -> Result<()> {
        match event {
            CrawlEvent::Page(page) => self.page(*page)?,
            CrawlEvent::Unchanged { url } => {
                self.feed.unchanged(1);
                self.seen.insert(url.to_string());
            }
            CrawlEvent::Gone { url, status } => {
                self.feed.remove(&[page_path(&url)])?;
                if !self.dry_run {
                    let source = self.feed_source().to_string();
                    self.feed
                        .store()
                        .delete_page_states(&source, Some(&[url.to_string()]))?;
                }
                tracing::info!(%url, status, "page gone; removed");
            }
            CrawlEvent::Failed { url, reason } => {
                self.feed.skipped(url.as_str(), reason_key(&reason));
                let mut state = self.stored.get(url.as_str()).cloned().unwrap_or(PageState {
                    url: url.to_string(),
                    path: None,
                    state: FAILED.into(),
                    reason: None,
                    etag: None,
                    last_modified: None,
                    hash: None,
                    links: Vec::new(),
                    depth: 0,
                    fetched_at: now(),
                });
                if state.state == INDEXED {
                    // A page indexed before keeps its document and validators through a
                    // passing failure (so it is not gone either); a new one is recorded as
                    // failed, with why.
                    self.seen.insert(url.to_string());
                } else {
                    state.state = FAILED.into();
                }
                state.reason = Some(reason);
                state.fetched_at = now();
                self.states.push(state);
            }
            CrawlEvent::Skipped { url, reason } => {
                self.bounded |= reason.starts_with("max ");
                self.feed.skipped(url.as_str(), reason_key(&reason));
            }
            CrawlEvent::Progress(p) => progress(&Progress::Fetching {
                fetched: p.fetched,
                queued: p.queued,
                failed: p.failed,
            }),
        }
        if self.items.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn feed_source(&self) -> &str {
        // The feed's report carries the source name it writes.
        &self.feed.report().source
    }

    fn page(&mut self, page: exai_fetch::Page) -> Result<()> {
        let path = page_path(&page.url);
        let (format, bytes) = match (page.format, page.body) {
            (exai_fetch::Format::Html, exai_fetch::Body::Text(t)) => (Format::Html, t.into_bytes()),
            (exai_fetch::Format::Markdown, exai_fetch::Body::Text(t)) => {
                (Format::Markdown, t.into_bytes())
            }
            (exai_fetch::Format::Text, exai_fetch::Body::Text(t)) => (Format::Text, t.into_bytes()),
            (exai_fetch::Format::Pdf, exai_fetch::Body::Bytes(b)) => (Format::Pdf, b),
            (_, exai_fetch::Body::Text(t)) => (Format::Text, t.into_bytes()),
            (_, exai_fetch::Body::Bytes(_)) => {
                self.feed.skipped(page.url.as_str(), "unsupported content");
                return Ok(());
            }
        };
        self.seen.insert(page.url.to_string());
        self.states.push(PageState {
            url: page.url.to_string(),
            path: Some(path.clone()),
            state: INDEXED.into(),
            reason: page.rendered.then(|| "rendered in Chromium".to_string()),
            etag: page.etag,
            last_modified: page.last_modified,
            hash: Some(page.hash),
            links: page.links.iter().map(Url::to_string).collect(),
            depth: page.depth,
            fetched_at: now(),
        });
        self.items.push(Item {
            path,
            uri: page.url.to_string(),
            format,
            bytes,
        });
        Ok(())
    }

    /// Write the pages gathered so far and their states.
    fn flush(&mut self) -> Result<()> {
        if !self.items.is_empty() {
            let items = std::mem::take(&mut self.items);
            self.feed.add(&items)?;
        }
        if !self.states.is_empty() && !self.dry_run {
            let states = std::mem::take(&mut self.states);
            let source = self.feed_source().to_string();
            self.feed.store().put_page_states(&source, &states)?;
        }
        self.states.clear();
        Ok(())
    }

    /// After the crawl: a stopped one leaves its frontier queued to resume from; a whole one
    /// clears the queue and removes the pages it no longer found.
    fn settle(&mut self, outcome: &Outcome) -> Result<()> {
        let source = self.feed_source().to_string();
        let queued: Vec<String> = self
            .stored
            .values()
            .filter(|p| p.state == QUEUED)
            .map(|p| p.url.clone())
            .collect();
        if outcome.cancelled {
            let states: Vec<PageState> = outcome
                .frontier
                .iter()
                .map(|f| PageState {
                    url: f.url.to_string(),
                    path: None,
                    state: QUEUED.into(),
                    reason: None,
                    etag: None,
                    last_modified: None,
                    hash: None,
                    links: Vec::new(),
                    depth: f.depth,
                    fetched_at: now(),
                })
                .collect();
            if !self.dry_run {
                self.feed.store().put_page_states(&source, &states)?;
            }
            return Ok(());
        }
        if !self.dry_run && !queued.is_empty() {
            self.feed
                .store()
                .delete_page_states(&source, Some(&queued))?;
        }
        if !outcome.frontier.is_empty() || self.bounded {
            // Cut at max_pages or max_depth: what was not reached may still exist (only pages
            // the site answered 404 or 410 for were removed).
            return Ok(());
        }
        let gone: Vec<(String, Option<String>)> = self
            .stored
            .values()
            .filter(|p| p.state == INDEXED && !self.seen.contains(&p.url))
            .map(|p| (p.url.clone(), p.path.clone()))
            .collect();
        let paths: Vec<String> = gone.iter().filter_map(|(_, p)| p.clone()).collect();
        self.feed.remove(&paths)?;
        if !self.dry_run && !gone.is_empty() {
            let urls: Vec<String> = gone.into_iter().map(|(u, _)| u).collect();
            self.feed.store().delete_page_states(&source, Some(&urls))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::reason_key;

    #[test]
    fn reasons_are_counted_by_their_kind_not_their_url() {
        for (reason, key) in [
            ("http://127.0.0.1:8080/a.html: HTTP 500", "HTTP 500"),
            (
                "https://example.org/a: HTTP 429, and retry later",
                "HTTP 429, and retry later",
            ),
            ("duplicate of http://example.org/b", "duplicate of"),
            ("needs rendering: install Chromium", "needs rendering"),
            ("max pages reached", "max pages reached"),
        ] {
            assert_eq!(reason_key(reason), key, "{reason}");
        }
    }
}
