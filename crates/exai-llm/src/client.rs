//! One attempt at a chat completion against an OpenAI-compatible API: the real endpoints and
//! headers, JSON or SSE answers, and every HTTP failure mapped to an [`LlmError`]. Retries,
//! limits and routing live in the gateway.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::BoxFuture;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::error::LlmError;
use crate::metrics::{Operation, ProviderMetrics};
use crate::providers::{Endpoint, Flavor};
use crate::wire::{self, Answer, ChatRequest, StreamAssembler};

/// Most bytes exai reads of one provider answer (JSON or the whole SSE stream). Far above any
/// model's output limit; a server that sends more is broken or hostile, and memory is bounded.
pub const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// Most bytes of an error body kept for its message.
const MAX_ERROR_BYTES: usize = 64 * 1024;

/// Streaming progress: characters of answer received so far.
pub type ProgressFn = Arc<dyn Fn(usize) + Send + Sync>;

/// What one attempt needs besides the request.
#[derive(Clone)]
pub struct Attempt {
    /// Sent as `Idempotency-Key`; the same for every retry of one logical call.
    pub idempotency_key: String,
    pub deadline: Instant,
    pub progress: Option<ProgressFn>,
    /// Key of the Kimi context-cache token for this conversation prefix, if any.
    pub cache_key: Option<String>,
}

/// A chat-completions provider.
pub trait Provider: Send + Sync {
    fn endpoint(&self) -> &Endpoint;
    fn metrics(&self) -> &ProviderMetrics;
    /// One HTTP attempt, bounded by `attempt.deadline`.
    fn chat_once<'a>(
        &'a self,
        req: &'a ChatRequest,
        attempt: &'a Attempt,
    ) -> BoxFuture<'a, Result<Answer, LlmError>>;
}

/// Kimi context-cache tokens by conversation prefix, bounded, oldest out first.
#[derive(Debug, Default)]
pub struct CacheTokens {
    inner: Mutex<(HashMap<String, String>, VecDeque<String>)>,
}

const CACHE_TOKENS_MAX: usize = 512;

impl CacheTokens {
    pub fn get(&self, key: &str) -> Option<String> {
        self.inner.lock().ok()?.0.get(key).cloned()
    }

    pub fn put(&self, key: String, token: String) {
        let Ok(mut guard) = self.inner.lock() else {
            return;
        };
        let (map, order) = &mut *guard;
        if map.insert(key.clone(), token).is_none() {
            order.push_back(key);
        }
        while order.len() > CACHE_TOKENS_MAX {
            if let Some(old) = order.pop_front() {
                map.remove(&old);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().map(|g| g.0.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The header Kimi reads a context-cache token from, and the one it returns a new token in.
pub const KIMI_CACHE_HEADER: &str = "Msh-Context-Cache-Token";
pub const KIMI_CACHE_SAVED_HEADER: &str = "Msh-Context-Cache-Token-Saved";

/// The one implementation: any OpenAI-compatible chat-completions API.
pub struct OpenAiCompatible {
    endpoint: Endpoint,
    http: reqwest::Client,
    pub cache_tokens: CacheTokens,
    /// Shared with the client that replaces this one on a configuration reload.
    pub metrics: Arc<ProviderMetrics>,
}

impl OpenAiCompatible {
    pub fn new(endpoint: Endpoint, http: reqwest::Client) -> Self {
        Self::counting_into(endpoint, http, Arc::default())
    }

    /// A client whose requests are counted in `metrics` (those of the client it replaces).
    pub fn counting_into(
        endpoint: Endpoint,
        http: reqwest::Client,
        metrics: Arc<ProviderMetrics>,
    ) -> Self {
        Self {
            endpoint,
            http,
            cache_tokens: CacheTokens::default(),
            metrics,
        }
    }

    fn request(&self, path: &str, attempt: &Attempt) -> Result<reqwest::RequestBuilder, LlmError> {
        let remaining = remaining(&self.endpoint, attempt.deadline)?;
        let mut builder = self
            .http
            .post(self.endpoint.url(path))
            .timeout(remaining)
            .header("Idempotency-Key", &attempt.idempotency_key);
        if self.endpoint.api_key.is_set() {
            builder = builder.bearer_auth(self.endpoint.api_key.expose());
        }
        if self.endpoint.flavor == Flavor::OpenRouter {
            builder = builder
                .header("HTTP-Referer", "https://github.com/exai/exai")
                .header("X-Title", "exai");
        }
        Ok(builder)
    }

    async fn run(&self, req: &ChatRequest, attempt: &Attempt) -> Result<Answer, LlmError> {
        let mut builder = self
            .request("chat/completions", attempt)?
            .json(&wire::Body::new(self.endpoint.flavor, req));
        let cache_key = attempt
            .cache_key
            .as_ref()
            .filter(|_| self.endpoint.flavor == Flavor::Kimi);
        if let Some(key) = cache_key {
            match self.cache_tokens.get(key) {
                Some(token) => {
                    self.metrics.context_cache_hits.inc();
                    builder = builder.header(KIMI_CACHE_HEADER, token);
                }
                None => self.metrics.context_cache_misses.inc(),
            }
        }
        let response = builder
            .send()
            .await
            .map_err(|e| self.transport_error(&e, attempt))?;
        let status = response.status();
        if let Some(key) = cache_key
            && let Some(saved) = response
                .headers()
                .get(KIMI_CACHE_SAVED_HEADER)
                .and_then(|v| v.to_str().ok())
        {
            self.cache_tokens.put(key.clone(), saved.to_string());
        }
        if !status.is_success() {
            let headers = response.headers().clone();
            let body = error_body(response).await;
            return Err(self.status_error(status.as_u16(), &headers, &body));
        }
        if !req.stream {
            let text = self.answer_body(response, attempt).await?;
            return wire::parse_answer(&text).map_err(|message| LlmError::Malformed {
                provider: self.endpoint.id.clone(),
                message,
            });
        }
        let mut assembler = StreamAssembler::default();
        let mut stream = response.bytes_stream();
        let mut received = 0usize;
        loop {
            let next = tokio::time::timeout_at(attempt.deadline.into(), stream.next())
                .await
                .map_err(|_| self.timeout(attempt))?;
            let Some(chunk) = next else { break };
            let bytes = chunk.map_err(|e| self.transport_error(&e, attempt))?;
            received += bytes.len();
            if received > MAX_ANSWER_BYTES {
                return Err(self.too_large());
            }
            let delta = assembler
                .feed(&bytes)
                .map_err(|message| LlmError::Malformed {
                    provider: self.endpoint.id.clone(),
                    message,
                })?;
            if let Some(progress) = &attempt.progress
                && (delta.content > 0 || delta.reasoning > 0)
            {
                progress(assembler.chars());
            }
        }
        assembler.finish().ok_or_else(|| LlmError::TruncatedStream {
            provider: self.endpoint.id.clone(),
        })
    }

    fn timeout(&self, attempt: &Attempt) -> LlmError {
        LlmError::Timeout {
            provider: self.endpoint.id.clone(),
            limit: attempt
                .deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        }
    }

    fn transport_error(&self, e: &reqwest::Error, attempt: &Attempt) -> LlmError {
        if e.is_timeout() || Instant::now() >= attempt.deadline {
            return self.timeout(attempt);
        }
        let mut message = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            message = format!("{message}: {s}");
            source = s.source();
        }
        LlmError::Network {
            provider: self.endpoint.id.clone(),
            message,
        }
    }

    /// The body of a successful answer, or the status mapped to an error.
    async fn success_body(
        &self,
        response: reqwest::Response,
        attempt: &Attempt,
    ) -> Result<String, LlmError> {
        let status = response.status();
        let headers = response.headers().clone();
        if status.is_success() {
            self.answer_body(response, attempt).await
        } else {
            let body = error_body(response).await;
            Err(self.status_error(status.as_u16(), &headers, &body))
        }
    }

    /// A whole answer body, at most [`MAX_ANSWER_BYTES`].
    async fn answer_body(
        &self,
        response: reqwest::Response,
        attempt: &Attempt,
    ) -> Result<String, LlmError> {
        match read_body(response, MAX_ANSWER_BYTES).await {
            Ok((text, true)) => Ok(text),
            Ok((_, false)) => Err(self.too_large()),
            Err(e) => Err(self.transport_error(&e, attempt)),
        }
    }

    fn too_large(&self) -> LlmError {
        LlmError::Malformed {
            provider: self.endpoint.id.clone(),
            message: format!(
                "the answer is larger than {} MiB; exai stopped reading it",
                MAX_ANSWER_BYTES >> 20
            ),
        }
    }

    fn status_error(&self, status: u16, headers: &HeaderMap, body: &str) -> LlmError {
        let provider = self.endpoint.id.clone();
        let message = wire::error_message(body);
        match status {
            401 | 403 => LlmError::Auth {
                provider,
                status,
                variables: self.endpoint.key_variables.clone(),
            },
            429 => LlmError::RateLimited {
                provider,
                retry_after: retry_after(headers),
                message,
            },
            400 | 413 if wire::is_context_length(body) => {
                LlmError::ContextLength { provider, message }
            }
            500..=599 => LlmError::Server {
                provider,
                status,
                message,
            },
            _ => LlmError::BadRequest {
                provider,
                status,
                message,
            },
        }
    }

    /// Kimi: upload a file for server-side text extraction (`purpose=file-extract`) and return
    /// the extracted text. The uploaded file is deleted afterwards.
    pub async fn kimi_extract(
        &self,
        name: &str,
        bytes: Vec<u8>,
        attempt: &Attempt,
    ) -> Result<String, LlmError> {
        if self.endpoint.flavor != Flavor::Kimi {
            return Err(LlmError::Unsupported {
                model: self.endpoint.id.clone(),
                capability: "file upload".into(),
                hint: "; only Kimi extracts uploaded files".into(),
            });
        }
        let timer = self.metrics.start(Operation::FileExtract);
        let result = self.extract(name, bytes, attempt).await;
        timer.finish(&result);
        result
    }

    /// Upload, read back the text, delete: the requests behind [`Self::kimi_extract`].
    async fn extract(
        &self,
        name: &str,
        bytes: Vec<u8>,
        attempt: &Attempt,
    ) -> Result<String, LlmError> {
        let part = reqwest::multipart::Part::bytes(bytes).file_name(name.to_string());
        let form = reqwest::multipart::Form::new()
            .text("purpose", "file-extract")
            .part("file", part);
        let response = self
            .request("files", attempt)?
            .multipart(form)
            .send()
            .await
            .map_err(|e| self.transport_error(&e, attempt))?;
        let body = self.success_body(response, attempt).await?;
        let id = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_string))
            .ok_or_else(|| LlmError::Malformed {
                provider: self.endpoint.id.clone(),
                message: "file upload answer without an `id`".into(),
            })?;
        // From here on the file is deleted on every path: an error, a timeout, or the call
        // being dropped when the client cancels.
        let uploaded = UploadedFile {
            http: self.http.clone(),
            url: self.endpoint.url(&format!("files/{id}")),
            api_key: self
                .endpoint
                .api_key
                .is_set()
                .then(|| self.endpoint.api_key.clone()),
        };
        let content = self.file_content(&id, attempt).await;
        uploaded.delete().await;
        let text = content?;
        // The content endpoint answers `{"content": "...", ...}`; keep the text only.
        Ok(serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| {
                v.get("content")
                    .and_then(|c| c.as_str())
                    .map(str::to_string)
            })
            .unwrap_or(text))
    }

    /// The text Kimi extracted from an uploaded file.
    async fn file_content(&self, id: &str, attempt: &Attempt) -> Result<String, LlmError> {
        let remaining = remaining(&self.endpoint, attempt.deadline)?;
        let mut get = self
            .http
            .get(self.endpoint.url(&format!("files/{id}/content")))
            .timeout(remaining);
        if self.endpoint.api_key.is_set() {
            get = get.bearer_auth(self.endpoint.api_key.expose());
        }
        let response = get
            .send()
            .await
            .map_err(|e| self.transport_error(&e, attempt))?;
        self.success_body(response, attempt).await
    }

    /// GLM: the standalone web search API (`POST /web_search`).
    pub async fn glm_web_search(
        &self,
        query: &str,
        count: u32,
        attempt: &Attempt,
    ) -> Result<Vec<serde_json::Value>, LlmError> {
        if self.endpoint.flavor != Flavor::Glm {
            return Err(LlmError::Unsupported {
                model: self.endpoint.id.clone(),
                capability: "web search".into(),
                hint: "; GLM offers it".into(),
            });
        }
        let timer = self.metrics.start(Operation::WebSearch);
        let result = self.web_search(query, count, attempt).await;
        timer.finish(&result);
        result
    }

    async fn web_search(
        &self,
        query: &str,
        count: u32,
        attempt: &Attempt,
    ) -> Result<Vec<serde_json::Value>, LlmError> {
        let response = self
            .request("web_search", attempt)?
            .json(&serde_json::json!({
                "search_engine": "search_std",
                "search_query": query,
                "count": count,
            }))
            .send()
            .await
            .map_err(|e| self.transport_error(&e, attempt))?;
        let body = self.success_body(response, attempt).await?;
        let v: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| LlmError::Malformed {
                provider: self.endpoint.id.clone(),
                message: format!("invalid JSON: {e}"),
            })?;
        Ok(v.get("search_result")
            .and_then(|r| r.as_array())
            .cloned()
            .unwrap_or_default())
    }
}

impl Provider for OpenAiCompatible {
    fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    fn metrics(&self) -> &ProviderMetrics {
        &self.metrics
    }

    fn chat_once<'a>(
        &'a self,
        req: &'a ChatRequest,
        attempt: &'a Attempt,
    ) -> BoxFuture<'a, Result<Answer, LlmError>> {
        Box::pin(async move {
            let timer = self.metrics.start(Operation::Chat);
            let result = match tokio::time::timeout_at(
                attempt.deadline.into(),
                self.run(req, attempt),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err(self.timeout(attempt)),
            };
            timer.finish(&result);
            result
        })
    }
}

fn remaining(endpoint: &Endpoint, deadline: Instant) -> Result<Duration, LlmError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(LlmError::Timeout {
            provider: endpoint.id.clone(),
            limit: Duration::ZERO,
        });
    }
    Ok(left)
}

/// `Retry-After` in seconds (the HTTP-date form is rare from APIs and treated as absent).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(3600.0)))
}

/// The body, reading at most `cap` bytes: the text and whether it was complete.
async fn read_body(
    response: reqwest::Response,
    cap: usize,
) -> Result<(String, bool), reqwest::Error> {
    let mut stream = response.bytes_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        let room = cap - bytes.len();
        if chunk.len() > room {
            bytes.extend_from_slice(&chunk[..room]);
            return Ok((String::from_utf8_lossy(&bytes).into_owned(), false));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok((String::from_utf8_lossy(&bytes).into_owned(), true))
}

/// An error answer's body for its message: its first [`MAX_ERROR_BYTES`], or nothing.
async fn error_body(response: reqwest::Response) -> String {
    read_body(response, MAX_ERROR_BYTES)
        .await
        .map(|(text, _)| text)
        .unwrap_or_default()
}

/// A file uploaded to Kimi, deleted when this is dropped unless [`UploadedFile::delete`] ran.
struct UploadedFile {
    http: reqwest::Client,
    url: String,
    api_key: Option<exai_core::Secret>,
}

impl UploadedFile {
    fn request(&self) -> reqwest::RequestBuilder {
        let mut delete = self.http.delete(&self.url).timeout(Duration::from_secs(5));
        if let Some(key) = &self.api_key {
            delete = delete.bearer_auth(key.expose());
        }
        delete
    }

    /// Delete now; a failed delete only leaves the file in the user's Kimi storage (logged).
    async fn delete(mut self) {
        let request = self.request();
        // An empty URL tells `drop` the work is done.
        let url = std::mem::take(&mut self.url);
        log_delete(&url, request.send().await);
    }
}

impl Drop for UploadedFile {
    fn drop(&mut self) {
        if self.url.is_empty() {
            return;
        }
        let request = self.request();
        let url = std::mem::take(&mut self.url);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { log_delete(&url, request.send().await) });
        }
    }
}

fn log_delete(url: &str, sent: Result<reqwest::Response, reqwest::Error>) {
    match sent {
        Ok(r) if r.status().is_success() || r.status() == reqwest::StatusCode::NOT_FOUND => {}
        Ok(r) => {
            tracing::warn!(%url, status = r.status().as_u16(), "could not delete an uploaded file")
        }
        Err(e) => tracing::warn!(%url, error = %e, "could not delete an uploaded file"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_tokens_are_bounded() {
        let c = CacheTokens::default();
        for i in 0..(CACHE_TOKENS_MAX + 10) {
            c.put(format!("k{i}"), format!("t{i}"));
        }
        assert_eq!(c.len(), CACHE_TOKENS_MAX);
        assert!(c.get("k0").is_none());
        assert_eq!(
            c.get(&format!("k{}", CACHE_TOKENS_MAX + 9)).as_deref(),
            Some(&*format!("t{}", CACHE_TOKENS_MAX + 9))
        );
    }

    #[test]
    fn retry_after_seconds() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
    }
}
