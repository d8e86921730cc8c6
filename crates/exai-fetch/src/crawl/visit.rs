//! Visiting one URL: the politeness gate, the (conditional) fetch, rendering when needed, and
//! turning the response into a [`Page`] with its links. Runs in parallel tasks; everything
//! that needs the crawl's shared state (seen URLs, duplicate bodies) happens in the crawl loop.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use url::Url;

use super::scope::Scope;
use super::seeds::{body_text, markdown_links, markdown_title};
use super::{KnownPage, Page};
use crate::client::{Body, Fetched, Format, SafeClient, Validators};
use crate::error::FetchError;
use crate::html::{HtmlFacts, analyse};
use crate::render::{INSTALL_HINT, MIN_MAIN_TEXT_CHARS, RenderMode, Renderer, shell_facts};

/// Per-host politeness: at most `n` requests at once, and request starts at least `delay`
/// apart.
#[derive(Debug)]
pub(crate) struct Gate {
    permits: Arc<Semaphore>,
    next_start: Mutex<Instant>,
    delay: Duration,
}

impl Gate {
    pub(crate) fn new(concurrency: usize, delay: Duration) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            next_start: Mutex::new(Instant::now()),
            delay,
        }
    }

    /// Waits for a slot and for this request's turn.
    async fn enter(&self) -> Option<OwnedSemaphorePermit> {
        let permit = Arc::clone(&self.permits).acquire_owned().await.ok()?;
        if !self.delay.is_zero() {
            let start = {
                let mut next = self.next_start.lock().await;
                let start = (*next).max(Instant::now());
                *next = start + self.delay;
                start
            };
            tokio::time::sleep_until(start).await;
        }
        Some(permit)
    }
}

/// What visiting a URL came to.
#[derive(Debug)]
pub(crate) enum Outcome {
    Fetched {
        page: Box<Page>,
        canonical: Option<Url>,
    },
    /// `304 Not Modified`.
    Unchanged,
    Gone(u16),
    /// A `<meta http-equiv="refresh">` stub: not a page, its target is queued instead.
    Forward(Url),
    Failed(String),
    Skipped(String),
}

/// Everything a visit task needs, shared by all of them.
#[derive(Debug)]
pub(crate) struct Visitor {
    pub(crate) client: SafeClient,
    pub(crate) scope: Arc<Scope>,
    pub(crate) gate: Gate,
    pub(crate) render: RenderMode,
    pub(crate) renderer: Option<Renderer>,
    /// One browser at a time: each is hundreds of MB.
    pub(crate) render_slot: Semaphore,
}

impl Visitor {
    pub(crate) async fn visit(&self, url: Url, depth: u32, known: Option<KnownPage>) -> Outcome {
        let Some(_permit) = self.gate.enter().await else {
            return Outcome::Failed("crawl stopped".into());
        };
        let validators = known.as_ref().map(|k| Validators {
            etag: k.etag.clone(),
            last_modified: k.last_modified.clone(),
        });
        let scope = Arc::clone(&self.scope);
        let in_scope = move |u: &Url| scope.under_prefix(u);
        let fetched = match self
            .client
            .get_scoped(&url, validators.as_ref(), &in_scope)
            .await
        {
            Ok(fetched) => fetched,
            Err(e) => return failure(e, known.is_some()),
        };
        if fetched.not_modified() {
            return Outcome::Unchanged;
        }
        self.page(fetched, depth).await
    }

    /// A fetched document as a page, rendered first when the mode asks for it.
    async fn page(&self, fetched: Fetched, depth: u32) -> Outcome {
        let Fetched {
            url,
            content,
            etag,
            last_modified,
            ..
        } = fetched;
        let Some(content) = content else {
            return Outcome::Unchanged;
        };
        let mut page = Page {
            url,
            depth,
            format: content.format,
            body: content.body,
            title: None,
            etag,
            last_modified,
            links: Vec::new(),
            hash: String::new(),
            rendered: false,
        };
        let canonical = match page.format {
            Format::Html => match self.read_html(&mut page).await {
                Ok(canonical) => canonical,
                Err(outcome) => return outcome,
            },
            Format::Markdown | Format::Text => {
                let text = body_text(&page.body).unwrap_or_default();
                if page.format == Format::Markdown {
                    page.links = markdown_links(text, &page.url);
                    page.title = markdown_title(text);
                }
                None
            }
            Format::Pdf => None,
        };
        page.hash = body_hash(&page.body);
        Outcome::Fetched {
            page: Box::new(page),
            canonical,
        }
    }

    /// Fills an HTML page's title and links (from the rendered DOM when it is rendered) and
    /// returns its canonical URL; `Err` when the page cannot be taken as it is.
    async fn read_html(&self, page: &mut Page) -> Result<Option<Url>, Outcome> {
        let body = std::mem::replace(&mut page.body, Body::Text(String::new()));
        let (body, mut facts) = analyse_off_thread(body, &page.url).await?;
        page.body = body;
        // A redirect stub: follow it like an HTTP redirect instead of indexing "Redirecting…".
        if let Some(target) = facts.refresh.take()
            && facts.main_text_chars < MIN_MAIN_TEXT_CHARS
        {
            return Err(Outcome::Forward(target));
        }
        let wanted = match self.render {
            RenderMode::Never => false,
            RenderMode::Always => true,
            RenderMode::Auto => shell_facts(&facts),
        };
        if wanted {
            let dom = self.render_page(&page.url).await?;
            (page.body, facts) = analyse_off_thread(Body::Text(dom), &page.url).await?;
            page.rendered = true;
        }
        page.title = facts.title;
        page.links = facts.links;
        Ok(facts.canonical)
    }

    async fn render_page(&self, url: &Url) -> Result<String, Outcome> {
        let Some(renderer) = &self.renderer else {
            return Err(Outcome::Skipped(format!("needs rendering: {INSTALL_HINT}")));
        };
        let _slot = self
            .render_slot
            .acquire()
            .await
            .map_err(|_| Outcome::Failed("crawl stopped".into()))?;
        renderer
            .render(url, self.client.allow_list())
            .await
            .map_err(|e| Outcome::Failed(e.to_string()))
    }
}

/// Parses HTML on the blocking pool: a multi-megabyte page would stall the other visits.
async fn analyse_off_thread(body: Body, url: &Url) -> Result<(Body, HtmlFacts), Outcome> {
    let url = url.clone();
    tokio::task::spawn_blocking(move || {
        let facts = analyse(body_text(&body).unwrap_or_default(), &url);
        (body, facts)
    })
    .await
    .map_err(|e| Outcome::Failed(format!("HTML analysis failed: {e}")))
}

fn failure(error: FetchError, known: bool) -> Outcome {
    match error {
        FetchError::Http {
            status: status @ (404 | 410),
            ..
        } if known => Outcome::Gone(status),
        FetchError::RedirectOutOfScope { .. } => Outcome::Skipped(error.to_string()),
        other => Outcome::Failed(other.to_string()),
    }
}

/// blake3 of the decoded text (or the bytes of a PDF), hex.
pub(crate) fn body_hash(body: &Body) -> String {
    match body {
        Body::Text(text) => blake3::hash(text.as_bytes()),
        Body::Bytes(bytes) => blake3::hash(bytes),
    }
    .to_hex()
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn gate_spaces_request_starts() {
        let gate = Gate::new(4, Duration::from_millis(250));
        let t0 = Instant::now();
        for _ in 0..4 {
            let _permit = gate.enter().await;
        }
        // Starts at 0, 250, 500 and 750 ms (virtual time).
        assert_eq!(Instant::now() - t0, Duration::from_millis(750));
        let free = Gate::new(1, Duration::ZERO);
        let t1 = Instant::now();
        for _ in 0..3 {
            let _permit = free.enter().await;
        }
        assert_eq!(Instant::now() - t1, Duration::ZERO);
    }
}
