//! How registry metadata and package files are downloaded: the [`Fetcher`] trait, so that the
//! caller can route every request through its own client (address policy, proxies, limits), and
//! [`ReqwestFetcher`], a plain client for tests and tools that need no policy.

use std::fmt;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;

/// Downloads one URL (following redirects), refusing bodies over `max_bytes`.
pub trait Fetcher: Send + Sync {
    fn get<'a>(
        &'a self,
        url: &'a str,
        max_bytes: u64,
    ) -> BoxFuture<'a, Result<Vec<u8>, FetchError>>;
}

/// Why a download failed: the HTTP status when the server answered with an error (a 404 from a
/// registry means "no such package"), and a message for the user (the caller adds the URL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchError {
    pub status: Option<u16>,
    pub message: String,
}

impl FetchError {
    /// A failure without an HTTP status (network, policy, size limit).
    pub fn other(message: impl Into<String>) -> Self {
        Self {
            status: None,
            message: message.into(),
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status == Some(404)
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
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

    async fn fetch(&self, url: &str, max_bytes: u64) -> Result<Vec<u8>, FetchError> {
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| FetchError::other(format!("request failed: {e}")))?;
        let status = response.status();
        if !status.is_success() {
            return Err(FetchError {
                status: Some(status.as_u16()),
                message: format!("HTTP {status}"),
            });
        }
        if response
            .content_length()
            .is_some_and(|length| length > max_bytes)
        {
            return Err(too_large(max_bytes));
        }
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk
                .map_err(|e| FetchError::other(format!("reading the response failed: {e}")))?;
            if body.len() as u64 + chunk.len() as u64 > max_bytes {
                return Err(too_large(max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

impl Fetcher for ReqwestFetcher {
    fn get<'a>(
        &'a self,
        url: &'a str,
        max_bytes: u64,
    ) -> BoxFuture<'a, Result<Vec<u8>, FetchError>> {
        Box::pin(self.fetch(url, max_bytes))
    }
}

fn too_large(max_bytes: u64) -> FetchError {
    FetchError::other(format!(
        "the response is larger than the {max_bytes}-byte limit"
    ))
}
