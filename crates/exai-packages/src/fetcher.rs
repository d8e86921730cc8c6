//! How registry metadata and package files are downloaded: the [`Fetcher`] trait, so that the
//! caller can route every request through its own client (address policy, proxies, limits), and
//! [`ReqwestFetcher`], a plain client for tests and tools that need no policy.

use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;

/// Downloads one URL, refusing bodies over `max_bytes`. Errors are messages for the user; the
/// caller adds the URL.
pub trait Fetcher: Send + Sync {
    fn get<'a>(&'a self, url: &'a str, max_bytes: u64) -> BoxFuture<'a, Result<Vec<u8>, String>>;
}

/// A [`Fetcher`] over a plain `reqwest` client: no address policy, so not for a daemon that
/// fetches on behalf of untrusted callers.
#[derive(Debug, Clone)]
pub struct ReqwestFetcher {
    client: reqwest::Client,
}

impl ReqwestFetcher {
    /// A client with the given overall deadline per request and a `User-Agent` naming exai
    /// (crates.io refuses requests without one).
    pub fn new(timeout: Duration) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!(
                "exai/",
                env!("CARGO_PKG_VERSION"),
                " (package docs indexer)"
            ))
            .build()
            .map_err(|e| format!("building the HTTP client failed: {e}"))?;
        Ok(Self { client })
    }

    async fn fetch(&self, url: &str, max_bytes: u64) -> Result<Vec<u8>, String> {
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("HTTP {status}"));
        }
        if response
            .content_length()
            .is_some_and(|length| length > max_bytes)
        {
            return Err(format!(
                "the response is larger than the {max_bytes}-byte limit"
            ));
        }
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| format!("reading the response failed: {e}"))?;
            if body.len() as u64 + chunk.len() as u64 > max_bytes {
                return Err(format!(
                    "the response is larger than the {max_bytes}-byte limit"
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

impl Fetcher for ReqwestFetcher {
    fn get<'a>(&'a self, url: &'a str, max_bytes: u64) -> BoxFuture<'a, Result<Vec<u8>, String>> {
        Box::pin(self.fetch(url, max_bytes))
    }
}

/// HTTP status 404 as [`ReqwestFetcher`] reports it, so registries can tell "no such package"
/// from other failures. Other fetchers should use the same wording (`HTTP 404 …`).
pub(crate) fn is_not_found(message: &str) -> bool {
    message.starts_with("HTTP 404")
}
