//! The safe HTTP client: one GET, with every bound a daemon needs when fetching URLs it was
//! handed by others.
//!
//! - Addresses: [`crate::policy`] checks literal IPs before the request and resolved names in
//!   the client's resolver; the environment's proxy settings are ignored so they cannot route
//!   around it.
//! - Redirects are followed here, not by the HTTP library, so each hop is checked (scheme,
//!   addresses, the caller's scope) and loops are named as loops.
//! - The body is read as a stream after decompression and stops at `max_page_bytes`: neither a
//!   huge page nor a decompression bomb is ever held in memory past the cap.
//! - One deadline covers each exchange (connect, headers and body); `429`/`503` with
//!   `Retry-After` are waited out when the wait is bounded, a bounded number of times.
//! - Only the content types the knowledge base can parse are read; text is decoded by
//!   [`crate::charset`].

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Response, StatusCode};
use url::Url;

use crate::charset;
use crate::error::FetchError;
use crate::policy::{AllowList, PolicyResolver};

/// The bounds of every fetch. `Default` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct FetchPolicy {
    /// Hosts exempt from the address policy (`kb.fetch_allowed_hosts`; syntax in
    /// [`crate::policy`]).
    pub allowed_hosts: Vec<String>,
    /// Largest decoded (decompressed) body read, in bytes.
    pub max_page_bytes: u64,
    /// Deadline of one exchange: connect, headers and body.
    pub page_timeout: Duration,
    /// The `User-Agent` header; robots.txt rules are matched against its product token.
    pub user_agent: String,
    /// Most redirects followed for one fetch.
    pub max_redirects: usize,
    /// Longest `Retry-After` waited out; a longer one fails the fetch with the reason.
    pub max_retry_wait: Duration,
    /// Most retries after `429`/`503` for one fetch.
    pub max_retries: u32,
}

impl Default for FetchPolicy {
    fn default() -> Self {
        Self {
            allowed_hosts: Vec::new(),
            max_page_bytes: 8 * 1024 * 1024,
            page_timeout: Duration::from_secs(30),
            user_agent: default_user_agent(),
            max_redirects: 10,
            max_retry_wait: Duration::from_secs(60),
            max_retries: 3,
        }
    }
}

/// `exai/<version> (+https://github.com/exai/exai)`.
pub fn default_user_agent() -> String {
    format!(
        "exai/{} (+https://github.com/exai/exai)",
        env!("CARGO_PKG_VERSION")
    )
}

/// Validators from an earlier fetch of the same URL, sent as `If-None-Match` /
/// `If-Modified-Since` so an unchanged page costs a `304` and no body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// What kind of document a response holds, from its content type (and, for `text/plain`, its
/// path: `*.md`, `*.markdown`, `llms.txt` and `llms-full.txt` are Markdown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Html,
    Markdown,
    Text,
    Pdf,
}

/// A response body: decoded text for the text formats, raw bytes for PDF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Text(String),
    Bytes(Vec<u8>),
}

/// A fetched document.
#[derive(Debug, Clone)]
pub struct Content {
    pub format: Format,
    /// The `Content-Type` header as sent (empty when the server sent none).
    pub content_type: String,
    pub body: Body,
}

/// The result of [`SafeClient::get`].
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The final URL, after redirects.
    pub url: Url,
    pub status: u16,
    /// `None` when the server answered `304 Not Modified` to the validators.
    pub content: Option<Content>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// Every hop's target, in order (the last is `url`).
    pub redirects: Vec<Url>,
}

impl Fetched {
    pub fn not_modified(&self) -> bool {
        self.content.is_none()
    }
}

/// Where one URL's exchange ends once retries are settled.
enum Hop {
    Done(Box<Fetched>),
    Redirect(Url),
}

/// One exchange's outcome, before retries are decided.
enum Step {
    Hop(Hop),
    Retry { status: u16, wait: Option<Duration> },
}

/// An HTTP client that enforces [`FetchPolicy`]. Cheap to clone (shared connection pool).
#[derive(Debug, Clone)]
pub struct SafeClient {
    http: reqwest::Client,
    allow: Arc<AllowList>,
    policy: Arc<FetchPolicy>,
}

impl SafeClient {
    pub fn new(policy: FetchPolicy) -> Result<Self, FetchError> {
        let allow = Arc::new(AllowList::new(&policy.allowed_hosts)?);
        let user_agent = HeaderValue::from_str(&policy.user_agent).map_err(|_| {
            FetchError::InvalidPolicy(format!(
                "user agent {:?} is not a header value",
                policy.user_agent
            ))
        })?;
        let http = reqwest::Client::builder()
            .user_agent(user_agent)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(PolicyResolver::new(Arc::clone(&allow)))
            .connect_timeout(policy.page_timeout)
            .build()
            .map_err(|e| FetchError::Client(error_chain(&e)))?;
        Ok(Self {
            http,
            allow,
            policy: Arc::new(policy),
        })
    }

    pub fn policy(&self) -> &FetchPolicy {
        &self.policy
    }

    /// The address policy, for callers that connect by other means (the renderer).
    pub fn allow_list(&self) -> &AllowList {
        &self.allow
    }

    /// GETs `url`, following redirects anywhere the address policy allows.
    pub async fn get(
        &self,
        url: &Url,
        validators: Option<&Validators>,
    ) -> Result<Fetched, FetchError> {
        self.get_scoped(url, validators, &|_| true).await
    }

    /// GETs `url`, following only redirects whose target `in_scope` accepts (others fail with
    /// [`FetchError::RedirectOutOfScope`]). `validators` apply to `url` only, not to redirect
    /// targets, which are other resources.
    pub async fn get_scoped(
        &self,
        url: &Url,
        validators: Option<&Validators>,
        in_scope: &(dyn Fn(&Url) -> bool + Send + Sync),
    ) -> Result<Fetched, FetchError> {
        self.follow(url, validators, in_scope, false).await
    }

    /// The body of `url` whatever its content type, undecoded (robots.txt, sitemaps, package
    /// archives): the same bounds as [`SafeClient::get`] apply.
    pub async fn get_raw(&self, url: &Url) -> Result<Vec<u8>, FetchError> {
        let fetched = self.follow(url, None, &|_| true, true).await?;
        Ok(match fetched.content.map(|c| c.body) {
            Some(Body::Bytes(bytes)) => bytes,
            Some(Body::Text(text)) => text.into_bytes(),
            None => Vec::new(),
        })
    }

    async fn follow(
        &self,
        url: &Url,
        validators: Option<&Validators>,
        in_scope: &(dyn Fn(&Url) -> bool + Send + Sync),
        raw: bool,
    ) -> Result<Fetched, FetchError> {
        let mut current = url.clone();
        let mut redirects = Vec::new();
        let mut visited = HashSet::from([url.clone()]);
        loop {
            let hop_validators = if redirects.is_empty() {
                validators
            } else {
                None
            };
            match self
                .exchange_with_retries(&current, hop_validators, raw)
                .await?
            {
                Hop::Redirect(target) => {
                    check_redirect(
                        &current,
                        &target,
                        &visited,
                        redirects.len(),
                        self.policy.max_redirects,
                        in_scope,
                    )?;
                    visited.insert(target.clone());
                    redirects.push(target.clone());
                    current = target;
                }
                Hop::Done(mut fetched) => {
                    fetched.redirects = redirects;
                    return Ok(*fetched);
                }
            }
        }
    }

    /// One URL's exchange, repeated while the server asks to retry within the bounds.
    async fn exchange_with_retries(
        &self,
        url: &Url,
        validators: Option<&Validators>,
        raw: bool,
    ) -> Result<Hop, FetchError> {
        let mut retries = 0;
        loop {
            let step = tokio::time::timeout(
                self.policy.page_timeout,
                self.exchange(url, validators, raw),
            )
            .await
            .map_err(|_| FetchError::Timeout {
                url: url.to_string(),
                after: self.policy.page_timeout,
            })??;
            let (status, wait) = match step {
                Step::Hop(hop) => return Ok(hop),
                Step::Retry { status, wait } => (status, wait),
            };
            let detail = match wait {
                None => "no usable Retry-After header".to_string(),
                Some(w) if w > self.policy.max_retry_wait => format!(
                    "its Retry-After of {}s exceeds the {}s bound",
                    w.as_secs(),
                    self.policy.max_retry_wait.as_secs()
                ),
                Some(_) if retries >= self.policy.max_retries => {
                    format!("it still asked to retry after {retries} retries")
                }
                Some(w) => {
                    tracing::debug!(%url, wait_s = w.as_secs_f64(), "waiting out Retry-After");
                    tokio::time::sleep(w).await;
                    retries += 1;
                    continue;
                }
            };
            return Err(FetchError::RateLimited {
                url: url.to_string(),
                status,
                detail,
            });
        }
    }

    /// One request and, for a document, its body, under the caller's deadline.
    /// `raw` skips the content-type check and decoding.
    async fn exchange(
        &self,
        url: &Url,
        validators: Option<&Validators>,
        raw: bool,
    ) -> Result<Step, FetchError> {
        self.allow.check_url(url)?;
        let response = self
            .http
            .get(url.clone())
            .headers(conditional_headers(validators))
            .send()
            .await
            .map_err(|e| network_error(url, &e))?;
        let status = response.status();
        if status == StatusCode::NOT_MODIFIED && validators.is_some() {
            return Ok(Step::Hop(Hop::Done(Box::new(fetched(
                url, &response, None,
            )))));
        }
        if status.is_redirection()
            && let Some(target) = location(url, &response)?
        {
            return Ok(Step::Hop(Hop::Redirect(target)));
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
            return Ok(Step::Retry {
                status: status.as_u16(),
                wait: retry_after(response.headers()),
            });
        }
        if !status.is_success() {
            return Err(FetchError::Http {
                url: url.to_string(),
                status: status.as_u16(),
            });
        }
        let (format, content_type) =
            content_format(url, response.headers().get(header::CONTENT_TYPE), raw)?;
        let meta = fetched(url, &response, None);
        let bytes = read_capped(url, response, self.policy.max_page_bytes).await?;
        let body = match format {
            _ if raw => Body::Bytes(bytes),
            Format::Pdf => Body::Bytes(bytes),
            _ => Body::Text(charset::decode(
                &bytes,
                Some(&content_type),
                format == Format::Html,
            )),
        };
        Ok(Step::Hop(Hop::Done(Box::new(Fetched {
            content: Some(Content {
                format,
                content_type,
                body,
            }),
            ..meta
        }))))
    }
}

/// The format and the `Content-Type` text, checked before the body is read.
/// In `raw` mode any type is accepted (as `Text`: the caller reads bytes).
fn content_format(
    url: &Url,
    content_type: Option<&HeaderValue>,
    raw: bool,
) -> Result<(Format, String), FetchError> {
    let content_type = content_type
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let format = if raw {
        Format::Text
    } else {
        classify(url, &content_type)?
    };
    Ok((format, content_type))
}

fn check_redirect(
    from: &Url,
    target: &Url,
    visited: &HashSet<Url>,
    hops: usize,
    max: usize,
    in_scope: &(dyn Fn(&Url) -> bool + Send + Sync),
) -> Result<(), FetchError> {
    if visited.contains(target) {
        return Err(FetchError::RedirectLoop {
            url: from.to_string(),
            target: target.to_string(),
        });
    }
    if hops >= max {
        return Err(FetchError::TooManyRedirects {
            url: from.to_string(),
            max,
        });
    }
    if !in_scope(target) {
        return Err(FetchError::RedirectOutOfScope {
            url: from.to_string(),
            target: target.to_string(),
        });
    }
    Ok(())
}

fn conditional_headers(validators: Option<&Validators>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let Some(v) = validators else { return headers };
    let pairs = [
        (header::IF_NONE_MATCH, &v.etag),
        (header::IF_MODIFIED_SINCE, &v.last_modified),
    ];
    for (name, value) in pairs {
        if let Some(value) = value.as_deref().and_then(|s| HeaderValue::from_str(s).ok()) {
            headers.insert(name, value);
        }
    }
    headers
}

fn header_string(response: &Response, name: header::HeaderName) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn fetched(url: &Url, response: &Response, content: Option<Content>) -> Fetched {
    Fetched {
        url: url.clone(),
        status: response.status().as_u16(),
        content,
        etag: header_string(response, header::ETAG),
        last_modified: header_string(response, header::LAST_MODIFIED),
        redirects: Vec::new(),
    }
}

/// The redirect target, resolved against the current URL; `None` without a `Location`.
fn location(url: &Url, response: &Response) -> Result<Option<Url>, FetchError> {
    let Some(value) = response.headers().get(header::LOCATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| {
        FetchError::InvalidUrl(format!("{url} redirects to a Location that is not text"))
    })?;
    let mut target = url
        .join(value)
        .map_err(|e| FetchError::InvalidUrl(format!("{url} redirects to {value:?}: {e}")))?;
    target.set_fragment(None);
    Ok(Some(target))
}

/// `Retry-After` as delta-seconds or an HTTP date; `None` when absent or unreadable.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// The document format of a response, or the refusal naming its content type.
pub(crate) fn classify(url: &Url, content_type: &str) -> Result<Format, FetchError> {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let path = url.path().to_ascii_lowercase();
    let markdown_path = path.ends_with(".md")
        || path.ends_with(".markdown")
        || path.ends_with("/llms.txt")
        || path.ends_with("/llms-full.txt");
    let format = match essence.as_str() {
        "text/html" | "application/xhtml+xml" => Format::Html,
        "text/markdown" | "text/x-markdown" => Format::Markdown,
        "text/plain" if markdown_path => Format::Markdown,
        "text/plain" => Format::Text,
        "application/pdf" => Format::Pdf,
        "" => by_extension(&path, markdown_path).ok_or_else(|| unsupported(url, "(none)"))?,
        other => return Err(unsupported(url, other)),
    };
    Ok(format)
}

fn by_extension(path: &str, markdown_path: bool) -> Option<Format> {
    if markdown_path {
        Some(Format::Markdown)
    } else if path.ends_with(".html") || path.ends_with(".htm") || path.ends_with('/') {
        Some(Format::Html)
    } else if path.ends_with(".txt") {
        Some(Format::Text)
    } else if path.ends_with(".pdf") {
        Some(Format::Pdf)
    } else {
        None
    }
}

fn unsupported(url: &Url, content_type: &str) -> FetchError {
    FetchError::UnsupportedContentType {
        url: url.to_string(),
        content_type: content_type.to_string(),
    }
}

/// Reads the (decompressed) body chunk by chunk, failing as soon as it passes `limit`.
async fn read_capped(url: &Url, mut response: Response, limit: u64) -> Result<Vec<u8>, FetchError> {
    let too_large = || FetchError::TooLarge {
        url: url.to_string(),
        limit,
    };
    if response.content_length().is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| network_error(url, &e))? {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A transport error as a [`FetchError`]: a refusal raised inside the resolver keeps its
/// message; anything else carries the whole cause chain (reqwest's own message is terse).
fn network_error(url: &Url, error: &reqwest::Error) -> FetchError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(FetchError::Refused { host, detail }) = e.downcast_ref::<FetchError>() {
            return FetchError::Refused {
                host: host.clone(),
                detail: detail.clone(),
            };
        }
        source = e.source();
    }
    FetchError::Network {
        url: url.to_string(),
        message: error_chain(error),
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = e.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn content_types_map_to_formats() {
        let page = url("http://h/a");
        assert_eq!(
            classify(&page, "text/html; charset=utf-8").unwrap(),
            Format::Html
        );
        assert_eq!(
            classify(&page, "application/xhtml+xml").unwrap(),
            Format::Html
        );
        assert_eq!(classify(&page, "text/markdown").unwrap(), Format::Markdown);
        assert_eq!(
            classify(&page, "text/x-markdown").unwrap(),
            Format::Markdown
        );
        assert_eq!(classify(&page, "text/plain").unwrap(), Format::Text);
        assert_eq!(
            classify(&url("http://h/README.md"), "text/plain").unwrap(),
            Format::Markdown
        );
        assert_eq!(
            classify(&url("http://h/llms.txt"), "text/plain").unwrap(),
            Format::Markdown
        );
        assert_eq!(classify(&page, "application/pdf").unwrap(), Format::Pdf);
        assert_eq!(classify(&url("http://h/doc.pdf"), "").unwrap(), Format::Pdf);
        let err = classify(&page, "image/png").unwrap_err().to_string();
        assert!(err.contains("unsupported content type image/png"), "{err}");
        assert!(classify(&page, "").is_err());
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        headers.insert(header::RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        let wait = retry_after(&headers).unwrap();
        assert!(
            wait > Duration::from_secs(100) && wait <= Duration::from_secs(120),
            "{wait:?}"
        );
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
    }

    #[test]
    fn default_user_agent_names_exai() {
        assert!(FetchPolicy::default().user_agent.starts_with("exai/"));
    }
}
