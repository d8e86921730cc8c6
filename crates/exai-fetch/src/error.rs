//! The one error type of fetching and crawling. Its `Display` is the reason a crawl records for
//! a failed page, so every message names the URL's problem and, where the operator can act,
//! the setting or command that fixes it.

use std::net::IpAddr;
use std::time::Duration;

use crate::policy::ALLOWED_HOSTS_SETTING;

/// Why a fetch, a crawl or a render failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    #[error("invalid fetch policy: {0}")]
    InvalidPolicy(String),
    #[error("{url}: only http and https URLs are fetched")]
    UnsupportedScheme { url: String },
    #[error(
        "refused to fetch from {host}: {detail}; add \"{host}\" to {ALLOWED_HOSTS_SETTING} to allow it"
    )]
    Refused { host: String, detail: String },
    #[error("{url}: HTTP {status}")]
    Http { url: String, status: u16 },
    #[error("{url}: HTTP {status}, and {detail}")]
    RateLimited {
        url: String,
        status: u16,
        detail: String,
    },
    #[error("{url}: too large (over the {limit}-byte page cap)")]
    TooLarge { url: String, limit: u64 },
    #[error("{url}: no complete response within {}s (the page deadline)", .after.as_secs_f64())]
    Timeout { url: String, after: Duration },
    #[error("{url}: more than {max} redirects")]
    TooManyRedirects { url: String, max: usize },
    #[error("{url}: redirect loop back to {target}")]
    RedirectLoop { url: String, target: String },
    #[error("{url}: redirected out of the crawl's scope to {target}")]
    RedirectOutOfScope { url: String, target: String },
    #[error("{url}: unsupported content type {content_type}")]
    UnsupportedContentType { url: String, content_type: String },
    #[error("{url}: {message}")]
    Network { url: String, message: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error("render {url}: {message}")]
    Render { url: String, message: String },
}

impl FetchError {
    pub(crate) fn refused(host: &str, ip: IpAddr, range: &str) -> Self {
        let detail = if host == ip.to_string() || host.trim_matches(['[', ']']) == ip.to_string() {
            format!("{ip} is a {range}")
        } else {
            format!("it resolves to {ip}, a {range}")
        };
        Self::Refused {
            host: host.to_string(),
            detail,
        }
    }

    pub(crate) fn refused_port(host: &str, port: Option<u16>) -> Self {
        let port = port.map_or_else(|| "no port".to_string(), |p| format!("port {p}"));
        Self::Refused {
            host: host.to_string(),
            detail: format!("the host is allowed only on other ports, not {port}"),
        }
    }

    /// Whether the failure says the page is gone for good (404, 410), not merely unreachable.
    pub fn is_gone(&self) -> bool {
        matches!(
            self,
            Self::Http {
                status: 404 | 410,
                ..
            }
        )
    }
}
