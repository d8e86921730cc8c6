//! The polite crawler: visits a site within a scope and reports each page by an event.
//!
//! Order of work: robots.txt (rules, crawl delay, sitemaps); `llms-full.txt` and `llms.txt` at
//! the scope root and the host root, taken as pages of their own, `llms.txt`'s links queued
//! first; the start URL; the sitemaps' URLs. Then breadth-first over links. Seeds from llms.txt
//! and sitemaps are at depth 1, like the start page's links.
//!
//! Each URL is visited once per run. A page is reported once: a page whose canonical link names
//! another in-scope URL is skipped in favour of that URL, and a page whose decoded body is
//! identical to one already reported is skipped as its duplicate. Failures are events, never
//! the end of the crawl.
//!
//! Refresh and resume: pages the caller indexed before come in `known`. In a refresh (no
//! resume frontier) every reached page is requested with its validators; `304` (or an
//! identical body) is [`CrawlEvent::Unchanged`] and the stored links keep the crawl going, so
//! an unchanged site costs one conditional request per page; `404`/`410` is
//! [`CrawlEvent::Gone`]. A body already indexed under a known URL stays reported under that URL:
//! its other copies are duplicates even when reached first. In a resume (a frontier from a stopped run's summary) the known pages
//! are taken as done this run and only the frontier and what it leads to are visited.
//!
//! Events go through a bounded channel: when the consumer is behind, the crawl waits. On
//! cancellation in-flight requests are dropped, and their URLs return to the frontier that the
//! summary hands back for resuming.

mod scope;
mod seeds;
mod visit;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::sync::mpsc::Sender;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::client::{Body, Format, SafeClient};
use crate::error::FetchError;
use crate::render::{RenderMode, Renderer};
use scope::Scope;
use seeds::{RobotsRules, fetch_robots, llms_candidates, sitemap_urls};
use visit::{Gate, Outcome, Visitor};

/// What to crawl and how. [`CrawlOptions::new`] gives the documented defaults.
#[derive(Debug, Clone)]
pub struct CrawlOptions {
    pub start: Url,
    /// The URL prefix pages must be under; `None`: the start URL's scheme, host, port and path up
    /// to its last `/`.
    pub scope: Option<Url>,
    /// Globs over the URL path (syntax in the scope rules: `*` within a segment, `**` across).
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    /// Most pages reported (pages and unchanged pages) in one run.
    pub max_pages: usize,
    /// Deepest link distance from the start page followed (0: the start page only).
    pub max_depth: u32,
    pub per_host_concurrency: usize,
    /// Least time between the starts of two requests to the host; zero turns it off (a
    /// robots.txt `Crawl-delay`, bounded to 30 s, still applies when `respect_robots`).
    pub min_delay: Duration,
    pub respect_robots: bool,
    pub use_sitemap: bool,
    pub use_llms_txt: bool,
    pub render: RenderMode,
    /// The browser for [`RenderMode::Auto`]/[`RenderMode::Always`]; `new` looks for one
    /// ([`Renderer::find`]).
    pub renderer: Option<Renderer>,
}

impl CrawlOptions {
    pub fn new(start: Url) -> Self {
        Self {
            start,
            scope: None,
            include: Vec::new(),
            exclude: Vec::new(),
            max_pages: 1000,
            max_depth: 5,
            per_host_concurrency: 2,
            min_delay: Duration::from_millis(250),
            respect_robots: true,
            use_sitemap: true,
            use_llms_txt: true,
            render: RenderMode::Auto,
            renderer: Renderer::find(),
        }
    }
}

/// What an earlier run stored about a page, keyed by its URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownPage {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// The page's links as reported in [`Page::links`].
    pub links: Vec<String>,
    /// [`Page::hash`].
    pub hash: String,
}

/// A URL still to visit, with its link distance from the start page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontierEntry {
    pub url: Url,
    pub depth: u32,
}

/// A page to index.
#[derive(Debug, Clone)]
pub struct Page {
    pub url: Url,
    pub depth: u32,
    pub format: Format,
    /// Decoded text (HTML, Markdown, plain text; the rendered DOM when `rendered`), or PDF bytes.
    pub body: Body,
    /// `<title>` of HTML, the first `# ` heading of Markdown.
    pub title: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// Every link of the page, resolved, fragments removed (in scope or not).
    pub links: Vec<Url>,
    /// blake3 (hex) of the decoded text, or of the bytes of a PDF.
    pub hash: String,
    pub rendered: bool,
}

/// Counters sent after each visit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CrawlProgress {
    /// Pages reported as [`CrawlEvent::Page`] or [`CrawlEvent::Unchanged`].
    pub fetched: usize,
    /// URLs waiting or in flight.
    pub queued: usize,
    pub failed: usize,
}

#[derive(Debug, Clone)]
pub enum CrawlEvent {
    Page(Box<Page>),
    Unchanged {
        url: Url,
    },
    Gone {
        url: Url,
        status: u16,
    },
    Failed {
        url: Url,
        reason: String,
    },
    /// Not fetched (or fetched and not reported): robots.txt, out of scope, not included,
    /// excluded, duplicate, canonical elsewhere, max pages/depth reached, needs rendering.
    Skipped {
        url: Url,
        reason: String,
    },
    Progress(CrawlProgress),
}

/// How a run ended.
#[derive(Debug, Clone, Default)]
pub struct CrawlSummary {
    pub pages: usize,
    pub unchanged: usize,
    pub gone: usize,
    pub failed: usize,
    pub skipped: usize,
    /// Whether the run was cancelled (or its event receiver dropped).
    pub cancelled: bool,
    /// URLs not visited (cancelled, or over `max_pages`): pass them back to resume.
    pub frontier: Vec<FrontierEntry>,
}

/// Crawls per `opts`, reporting through `events`; see the module documentation.
///
/// `known`: pages from earlier runs, by URL. `resume_frontier`: a stopped run's
/// [`CrawlSummary::frontier`]; when not empty the run resumes instead of starting over.
pub async fn crawl(
    client: &SafeClient,
    opts: &CrawlOptions,
    known: HashMap<String, KnownPage>,
    resume_frontier: Vec<FrontierEntry>,
    events: Sender<CrawlEvent>,
    cancel: CancellationToken,
) -> Result<CrawlSummary, FetchError> {
    client.allow_list().check_url(&opts.start)?;
    let prefix = opts
        .scope
        .clone()
        .unwrap_or_else(|| scope::default_prefix(&opts.start));
    let scope = Arc::new(Scope::new(prefix, &opts.include, &opts.exclude)?);
    let mut crawler = Crawler::new(client, opts, scope, known, events, cancel.clone());
    let resuming = !resume_frontier.is_empty();
    let prepared = tokio::select! {
        biased;
        () = cancel.cancelled() => false,
        ok = crawler.prepare(resume_frontier) => ok,
    };
    if prepared {
        crawler.run().await;
    } else {
        crawler.summary.cancelled = true;
        let start_queued = crawler.frontier.iter().any(|e| e.url == opts.start);
        if !resuming && !start_queued {
            crawler.frontier.push_back(FrontierEntry {
                url: opts.start.clone(),
                depth: 0,
            });
        }
    }
    Ok(crawler.finish())
}

/// The crawl's state; one per run, driven by one task.
struct Crawler<'a> {
    opts: &'a CrawlOptions,
    client: SafeClient,
    scope: Arc<Scope>,
    known: HashMap<String, KnownPage>,
    events: Sender<CrawlEvent>,
    cancel: CancellationToken,
    robots: RobotsRules,
    visitor: Option<Arc<Visitor>>,
    frontier: VecDeque<FrontierEntry>,
    /// URLs queued, visited or reported as skipped in this run.
    seen: HashSet<String>,
    /// Body hash → URL reported with it.
    bodies: HashMap<String, Url>,
    in_flight: HashMap<tokio::task::Id, FrontierEntry>,
    summary: CrawlSummary,
}

impl<'a> Crawler<'a> {
    fn new(
        client: &SafeClient,
        opts: &'a CrawlOptions,
        scope: Arc<Scope>,
        known: HashMap<String, KnownPage>,
        events: Sender<CrawlEvent>,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            opts,
            client: client.clone(),
            scope,
            known,
            events,
            cancel,
            robots: RobotsRules::allow_all(),
            visitor: None,
            frontier: VecDeque::new(),
            seen: HashSet::new(),
            bodies: HashMap::new(),
            in_flight: HashMap::new(),
            summary: CrawlSummary::default(),
        }
    }

    /// Reads robots.txt and seeds the frontier; `false` when the consumer went away.
    async fn prepare(&mut self, resume_frontier: Vec<FrontierEntry>) -> bool {
        let origin = self.scope.prefix().clone();
        if self.opts.respect_robots || self.opts.use_sitemap {
            let rules = fetch_robots(&self.client, &origin).await;
            if self.opts.respect_robots {
                self.robots = rules;
            } else {
                self.robots.sitemaps = rules.sitemaps;
            }
        }
        let delay = self
            .opts
            .min_delay
            .max(self.robots.crawl_delay.unwrap_or_default());
        self.visitor = Some(Arc::new(Visitor {
            client: self.client.clone(),
            scope: Arc::clone(&self.scope),
            gate: Gate::new(self.opts.per_host_concurrency, delay),
            render: self.opts.render,
            renderer: self.opts.renderer.clone(),
            render_slot: Semaphore::new(1),
        }));
        // A body stays reported under the URL it was indexed with, whichever of its
        // duplicates this run reaches first.
        for (url, page) in &self.known {
            if let Ok(url) = Url::parse(url) {
                self.bodies.entry(page.hash.clone()).or_insert(url);
            }
        }
        if !resume_frontier.is_empty() {
            self.resume(resume_frontier);
            return true;
        }
        self.seed().await
    }

    /// A resumed run: the known pages are done, the frontier is what is left.
    fn resume(&mut self, frontier: Vec<FrontierEntry>) {
        self.seen.extend(self.known.keys().cloned());
        for entry in frontier {
            if self.seen.insert(entry.url.to_string()) {
                self.frontier.push_back(entry);
            }
        }
    }

    /// llms files, the start URL, then sitemap URLs.
    async fn seed(&mut self) -> bool {
        if self.opts.use_llms_txt {
            for name in ["llms-full.txt", "llms.txt"] {
                for url in llms_candidates(self.scope.prefix(), name) {
                    if self.probe(url).await.is_err() {
                        return false;
                    }
                }
            }
        }
        // The start page is visited even when the globs leave it out: its links lead in.
        let start = self.opts.start.clone();
        if self.seen.insert(start.to_string()) {
            match self.robots.refusal(&start) {
                Some(reason) => {
                    let _ = self.skip(start, reason).await;
                }
                None => self.frontier.push_back(FrontierEntry {
                    url: start,
                    depth: 0,
                }),
            }
        }
        if self.opts.use_sitemap {
            let mut roots = self.robots.sitemaps.clone();
            roots.extend(llms_candidates(self.scope.prefix(), "sitemap.xml"));
            for url in sitemap_urls(&self.client, roots).await {
                self.offer(url, 1).await;
            }
        }
        !self.cancel.is_cancelled()
    }

    /// Visits an optional seed file: reported when it exists, silently passed over when not.
    async fn probe(&mut self, url: Url) -> Result<(), Stopped> {
        if self.robots.refusal(&url).is_some() || !self.seen.insert(url.to_string()) {
            return Ok(());
        }
        let entry = FrontierEntry { url, depth: 0 };
        let outcome = self.visit_now(&entry).await;
        match outcome {
            Outcome::Failed(_) | Outcome::Skipped(_) => {
                tracing::debug!(url = %entry.url, "no such seed file");
                Ok(())
            }
            outcome => self.settle(entry, outcome).await,
        }
    }

    async fn visit_now(&self, entry: &FrontierEntry) -> Outcome {
        let known = self.known.get(entry.url.as_str()).cloned();
        match &self.visitor {
            Some(visitor) => visitor.visit(entry.url.clone(), entry.depth, known).await,
            None => Outcome::Failed("crawl not prepared".into()),
        }
    }

    /// The breadth-first loop: keeps up to `per_host_concurrency` visits in flight.
    async fn run(&mut self) {
        let mut tasks = JoinSet::new();
        loop {
            self.spawn_visits(&mut tasks);
            if tasks.is_empty() {
                break;
            }
            let joined = tokio::select! {
                biased;
                () = self.cancel.cancelled() => None,
                joined = tasks.join_next_with_id() => joined,
            };
            let Some(joined) = joined else { break };
            let (id, outcome) = match joined {
                Ok((id, outcome)) => (id, outcome),
                Err(e) => (e.id(), Outcome::Failed(format!("visit task failed: {e}"))),
            };
            let Some(entry) = self.in_flight.remove(&id) else {
                continue;
            };
            if self.settle(entry, outcome).await.is_err() {
                break;
            }
        }
        if self.cancel.is_cancelled() || self.events.is_closed() {
            self.summary.cancelled = true;
        }
        tasks.abort_all();
        let unfinished: Vec<FrontierEntry> =
            self.in_flight.drain().map(|(_, entry)| entry).collect();
        for entry in unfinished.into_iter().rev() {
            self.frontier.push_front(entry);
        }
        if !self.summary.cancelled {
            self.report_left_over().await;
        }
    }

    fn spawn_visits(&mut self, tasks: &mut JoinSet<Outcome>) {
        let Some(visitor) = &self.visitor else { return };
        let concurrency = self.opts.per_host_concurrency.max(1);
        while tasks.len() < concurrency && self.reported() + tasks.len() < self.opts.max_pages {
            let Some(entry) = self.frontier.pop_front() else {
                break;
            };
            let visitor = Arc::clone(visitor);
            let known = self.known.get(entry.url.as_str()).cloned();
            let (url, depth) = (entry.url.clone(), entry.depth);
            let handle = tasks.spawn(async move { visitor.visit(url, depth, known).await });
            self.in_flight.insert(handle.id(), entry);
        }
    }

    fn reported(&self) -> usize {
        self.summary.pages + self.summary.unchanged
    }

    /// The frontier left when `max_pages` stopped the crawl is reported as skipped (and kept).
    async fn report_left_over(&mut self) {
        let left: Vec<Url> = self.frontier.iter().map(|e| e.url.clone()).collect();
        for url in left {
            if self.skip(url, "max pages reached".into()).await.is_err() {
                return;
            }
        }
    }

    /// Applies one visit's outcome to the crawl's state and reports it.
    async fn settle(&mut self, entry: FrontierEntry, outcome: Outcome) -> Result<(), Stopped> {
        let result = match outcome {
            Outcome::Fetched { page, canonical } => {
                self.settle_page(&entry, *page, canonical).await
            }
            Outcome::Unchanged => self.settle_unchanged(&entry.url, entry.depth).await,
            Outcome::Gone(status) => {
                self.summary.gone += 1;
                self.emit(CrawlEvent::Gone {
                    url: entry.url.clone(),
                    status,
                })
                .await
            }
            Outcome::Failed(reason) => {
                self.summary.failed += 1;
                self.emit(CrawlEvent::Failed {
                    url: entry.url.clone(),
                    reason,
                })
                .await
            }
            Outcome::Skipped(reason) => self.skip(entry.url.clone(), reason).await,
            Outcome::Forward(target) => {
                let reason = format!("redirects (meta refresh) to {target}");
                let skipped = self.skip(entry.url.clone(), reason).await;
                if skipped.is_ok() {
                    self.offer(target, entry.depth).await;
                }
                skipped
            }
        };
        if result.is_err() {
            // Not reported: visit it again on resume.
            self.frontier.push_front(entry);
            return result;
        }
        let progress = CrawlProgress {
            fetched: self.reported(),
            queued: self.frontier.len() + self.in_flight.len(),
            failed: self.summary.failed,
        };
        // Progress is advisory: losing it to a cancellation loses nothing.
        let _ = self.emit(CrawlEvent::Progress(progress)).await;
        Ok(())
    }

    async fn settle_page(
        &mut self,
        entry: &FrontierEntry,
        page: Page,
        canonical: Option<Url>,
    ) -> Result<(), Stopped> {
        if page.url != entry.url && !self.seen.insert(page.url.to_string()) {
            return self
                .skip(
                    entry.url.clone(),
                    format!("redirects to {}, already visited", page.url),
                )
                .await;
        }
        if let Some(canonical) = canonical.filter(|c| *c != page.url && self.scope.check(c).is_ok())
        {
            self.skip(page.url.clone(), format!("canonical URL is {canonical}"))
                .await?;
            self.offer(canonical, entry.depth).await;
            return Ok(());
        }
        // Redirected to a known page, or a server without validators: compare bodies.
        if self
            .known
            .get(page.url.as_str())
            .is_some_and(|known| known.hash == page.hash)
        {
            return self.settle_unchanged(&page.url, entry.depth).await;
        }
        if let Some(first) = self
            .bodies
            .get(&page.hash)
            .filter(|first| **first != page.url)
        {
            let reason = format!("duplicate of {first}");
            return self.skip(page.url.clone(), reason).await;
        }
        self.bodies.insert(page.hash.clone(), page.url.clone());
        let links = page.links.clone();
        let depth = entry.depth;
        self.emit(CrawlEvent::Page(Box::new(page))).await?;
        self.summary.pages += 1;
        self.offer_links(links, depth + 1).await;
        Ok(())
    }

    async fn settle_unchanged(&mut self, url: &Url, depth: u32) -> Result<(), Stopped> {
        self.emit(CrawlEvent::Unchanged { url: url.clone() })
            .await?;
        self.summary.unchanged += 1;
        let Some(known) = self.known.get(url.as_str()) else {
            return Ok(());
        };
        self.bodies
            .entry(known.hash.clone())
            .or_insert_with(|| url.clone());
        let links: Vec<Url> = known
            .links
            .iter()
            .filter_map(|l| Url::parse(l).ok())
            .collect();
        self.offer_links(links, depth + 1).await;
        Ok(())
    }

    async fn offer_links(&mut self, links: Vec<Url>, depth: u32) {
        for link in links {
            self.offer(link, depth).await;
        }
    }

    /// Queues `url` unless it was seen, is out of scope, disallowed or too deep (reported once).
    /// Never fails: once the page that links here is reported, its links must reach the
    /// frontier even when the crawl is being cancelled (the skip reports are then dropped).
    async fn offer(&mut self, url: Url, depth: u32) {
        if !matches!(url.scheme(), "http" | "https") || !self.seen.insert(url.to_string()) {
            return;
        }
        let refusal = match self.scope.check(&url) {
            Err(reason) => Some(reason.to_string()),
            Ok(()) => self
                .robots
                .refusal(&url)
                .or_else(|| (depth > self.opts.max_depth).then(|| "max depth reached".into())),
        };
        match refusal {
            Some(reason) => {
                let _ = self.skip(url, reason).await;
            }
            None => self.frontier.push_back(FrontierEntry { url, depth }),
        }
    }

    async fn skip(&mut self, url: Url, reason: String) -> Result<(), Stopped> {
        self.summary.skipped += 1;
        self.emit(CrawlEvent::Skipped { url, reason }).await
    }

    /// Sends an event, waiting while the consumer is behind; `Err` on cancellation or when the
    /// consumer is gone.
    async fn emit(&self, event: CrawlEvent) -> Result<(), Stopped> {
        tokio::select! {
            biased;
            () = self.cancel.cancelled() => Err(Stopped),
            sent = self.events.send(event) => sent.map_err(|_| Stopped),
        }
    }

    fn finish(mut self) -> CrawlSummary {
        self.summary.frontier = self.frontier.into_iter().collect();
        self.summary
    }
}

/// The crawl was cancelled or its consumer went away.
#[derive(Debug)]
struct Stopped;
