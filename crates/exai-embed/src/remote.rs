//! The remote back end: any OpenAI-compatible `POST {base}/embeddings` endpoint (OpenAI, Ollama,
//! vLLM, LM Studio, text-embeddings-inference…).

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::blocking::{Client, Response};
use serde::Deserialize;

use crate::pooling::l2_normalize;
use crate::{EmbedError, EmbedSettings, Embedder, ModelIdentity};

/// Most texts sent in one request; servers commonly cap batches and bodies.
pub const MAX_REMOTE_BATCH: usize = 64;

/// The remote model's input limit is unknown; 512 word pieces is what BERT-family embedding
/// models (the smallest common limit) accept, so texts are cut to about that before sending.
const REMOTE_MAX_TOKENS: usize = 512;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest error body quoted in a message.
const MAX_QUOTED_BODY: usize = 300;

/// Bounded retries of 429, 5xx and network failures.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    /// Attempts in all, the first included.
    pub(crate) attempts: u32,
    /// Delay before the first retry when the server gives no `Retry-After`; doubles each time.
    pub(crate) base_delay: Duration,
    /// Cap of computed delays and of honoured `Retry-After` values.
    pub(crate) max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
        }
    }
}

pub struct RemoteEmbedder {
    client: Client,
    endpoint: String,
    model: String,
    api_key: Option<String>,
    identity: ModelIdentity,
    batch_size: usize,
    retry: RetryPolicy,
}

impl std::fmt::Debug for RemoteEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteEmbedder")
            .field("endpoint", &self.endpoint)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct EmbeddingsResponse {
    data: Vec<EmbeddingItem>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    embedding: Vec<f32>,
    index: Option<usize>,
}

/// Why one attempt failed, and whether another may succeed.
enum Failure {
    Retry {
        error: EmbedError,
        retry_after: Option<Duration>,
    },
    Fatal(EmbedError),
}

impl RemoteEmbedder {
    /// Checks the settings; when `remote_dim` is unset, embeds one probe text to learn the
    /// dimension.
    pub fn new(settings: &EmbedSettings) -> Result<RemoteEmbedder, EmbedError> {
        RemoteEmbedder::with_retry(settings, RetryPolicy::default())
    }

    pub(crate) fn with_retry(
        settings: &EmbedSettings,
        retry: RetryPolicy,
    ) -> Result<RemoteEmbedder, EmbedError> {
        let base = settings.remote_url.trim().trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(EmbedError::InvalidSetting {
                key: "embed.remote_url",
                value: settings.remote_url.clone(),
                reason:
                    "expected an http:// or https:// base URL such as http://127.0.0.1:11434/v1"
                        .into(),
            });
        }
        let model = settings.remote_model.trim();
        if model.is_empty() {
            return Err(EmbedError::InvalidSetting {
                key: "embed.remote_model",
                value: String::new(),
                reason: "the remote backend needs the model name the server knows".into(),
            });
        }
        if settings.remote_dim == Some(0) {
            return Err(EmbedError::InvalidSetting {
                key: "embed.remote_dim",
                value: "0".into(),
                reason: "must be a positive dimension or unset".into(),
            });
        }
        let endpoint = format!("{base}/embeddings");
        let client = Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| EmbedError::RemoteUnreachable {
                url: endpoint.clone(),
                attempts: 0,
                reason: crate::model_dir::error_chain(&e),
            })?;
        let mut embedder = RemoteEmbedder {
            client,
            endpoint,
            model: model.to_string(),
            api_key: settings
                .remote_api_key
                .as_ref()
                .map(|k| k.trim().to_string())
                .filter(|k| !k.is_empty()),
            identity: ModelIdentity {
                name: model.to_string(),
                dim: settings.remote_dim.unwrap_or(0),
                precision: crate::Precision::Fp32.as_str().into(),
                max_tokens: REMOTE_MAX_TOKENS,
            },
            batch_size: settings.batch_size.clamp(1, MAX_REMOTE_BATCH),
            retry,
        };
        if embedder.identity.dim == 0 {
            let probe = embedder.request(&["dimension probe"])?;
            embedder.identity.dim = probe.first().map_or(0, Vec::len);
            if embedder.identity.dim == 0 {
                return Err(EmbedError::RemoteProtocol {
                    url: embedder.endpoint.clone(),
                    reason: "the probe embedding was empty".into(),
                });
            }
        }
        Ok(embedder)
    }

    /// One request for up to `batch_size` texts, retried per the policy; vectors in input order.
    fn request(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let failure = match self.attempt(texts) {
                Ok(vectors) => return Ok(vectors),
                Err(failure) => failure,
            };
            match failure {
                Failure::Fatal(error) => return Err(error),
                Failure::Retry { error, retry_after } => {
                    if attempt >= self.retry.attempts {
                        return Err(match error {
                            EmbedError::RemoteUnreachable { url, reason, .. } => {
                                EmbedError::RemoteUnreachable {
                                    url,
                                    attempts: attempt,
                                    reason,
                                }
                            }
                            other => other,
                        });
                    }
                    let delay = self.delay(attempt, retry_after);
                    tracing::warn!(
                        endpoint = %self.endpoint, attempt, delay_ms = delay.as_millis() as u64,
                        error = %error, "embedding request failed; retrying"
                    );
                    std::thread::sleep(delay);
                }
            }
        }
    }

    /// The wait before retry number `attempt`: the server's `Retry-After` if it sent one,
    /// else exponential backoff with jitter; both capped.
    fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(after) = retry_after {
            return after.min(self.retry.max_delay);
        }
        let exp = self
            .retry
            .base_delay
            .saturating_mul(1 << (attempt.saturating_sub(1)).min(16));
        // ±25 % jitter so clients that failed together do not retry together.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let factor = 0.75 + f64::from(nanos % 1000) / 2000.0;
        exp.mul_f64(factor).min(self.retry.max_delay)
    }

    fn attempt(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, Failure> {
        let body = serde_json::json!({ "model": self.model, "input": texts });
        let mut request = self.client.post(&self.endpoint).json(&body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response = request.send().map_err(|e| Failure::Retry {
            error: EmbedError::RemoteUnreachable {
                url: self.endpoint.clone(),
                attempts: 1,
                reason: crate::model_dir::error_chain(&e),
            },
            retry_after: None,
        })?;
        let status = response.status();
        if !status.is_success() {
            return Err(self.status_failure(response));
        }
        let protocol = |reason: String| {
            Failure::Fatal(EmbedError::RemoteProtocol {
                url: self.endpoint.clone(),
                reason,
            })
        };
        let (text, complete) =
            read_capped(response, MAX_RESPONSE_BYTES).map_err(|e| Failure::Retry {
                error: EmbedError::RemoteUnreachable {
                    url: self.endpoint.clone(),
                    attempts: 1,
                    reason: e.to_string(),
                },
                retry_after: None,
            })?;
        if !complete {
            return Err(protocol(format!(
                "the answer is larger than {} MiB; exai stopped reading it",
                MAX_RESPONSE_BYTES >> 20
            )));
        }
        let parsed: EmbeddingsResponse = serde_json::from_str(&text).map_err(|e| {
            protocol(format!(
                "expected {{\"data\": [{{\"embedding\": [...]}}]}}: {e}"
            ))
        })?;
        if parsed.data.len() != texts.len() {
            return Err(protocol(format!(
                "{} embeddings for {} inputs",
                parsed.data.len(),
                texts.len()
            )));
        }
        let mut slots: Vec<Option<Vec<f32>>> = vec![None; texts.len()];
        for (position, item) in parsed.data.into_iter().enumerate() {
            let index = item.index.unwrap_or(position);
            match slots.get_mut(index) {
                Some(slot @ None) => *slot = Some(item.embedding),
                _ => return Err(protocol(format!("bad or repeated index {index}"))),
            }
        }
        let mut vectors = Vec::with_capacity(texts.len());
        for mut vector in slots.into_iter().flatten() {
            if self.identity.dim != 0 && vector.len() != self.identity.dim {
                return Err(protocol(format!(
                    "an embedding has {} dimensions, expected {} (embed.remote_dim or the first \
                     response)",
                    vector.len(),
                    self.identity.dim
                )));
            }
            if vector.iter().any(|x| !x.is_finite()) {
                return Err(protocol("an embedding holds a non-finite value".into()));
            }
            l2_normalize(&mut vector);
            vectors.push(vector);
        }
        Ok(vectors)
    }

    fn status_failure(&self, response: Response) -> Failure {
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64);
        let body = read_capped(response, MAX_ERROR_BYTES)
            .map(|(text, _)| text)
            .unwrap_or_default();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Failure::Fatal(EmbedError::RemoteAuth {
                url: self.endpoint.clone(),
                status: status.as_u16(),
            });
        }
        let error = EmbedError::RemoteStatus {
            url: self.endpoint.clone(),
            status: status.as_u16(),
            message: self.quote(&body),
        };
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            Failure::Retry { error, retry_after }
        } else {
            Failure::Fatal(error)
        }
    }

    /// The server's error message (OpenAI's `error.message` when present), shortened, with the
    /// API key removed in case the server echoes request headers.
    fn quote(&self, body: &str) -> String {
        let message = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| {
                v.pointer("/error/message")
                    .or_else(|| v.get("error"))
                    .and_then(|m| m.as_str().map(str::to_string))
            })
            .unwrap_or_else(|| body.trim().to_string());
        let mut message = match &self.api_key {
            Some(key) => message.replace(key.as_str(), "<redacted>"),
            None => message,
        };
        if message.len() > MAX_QUOTED_BODY {
            let mut cut = MAX_QUOTED_BODY;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        if message.is_empty() {
            "(empty body)".into()
        } else {
            message
        }
    }
}

impl Embedder for RemoteEmbedder {
    fn identity(&self) -> &ModelIdentity {
        &self.identity
    }

    fn backend(&self) -> &'static str {
        "remote"
    }

    fn embed_passages(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let texts: Vec<&str> = texts
            .iter()
            .map(|t| truncate_to_estimate(t, self.identity.max_tokens))
            .collect();
        let mut vectors = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(self.batch_size) {
            vectors.extend(self.request(chunk)?);
        }
        Ok(vectors)
    }

    fn embed_query(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        self.embed_passages(&[text])?
            .pop()
            .ok_or_else(|| EmbedError::RemoteProtocol {
                url: self.endpoint.clone(),
                reason: "no embedding for the query".into(),
            })
    }

    fn count_tokens(&self, text: &str) -> usize {
        estimate_tokens(text)
    }
}

/// Word pieces of one word, estimated: about four characters per piece, punctuation apart.
fn word_estimate(word: &str) -> usize {
    let punct = word.chars().filter(|c| c.is_ascii_punctuation()).count();
    let letters = word.chars().count() - punct;
    letters.div_ceil(4).max(usize::from(punct == 0)) + punct
}

/// An estimate of the word pieces a BERT-like tokenizer makes of `text`, special tokens included.
pub(crate) fn estimate_tokens(text: &str) -> usize {
    2 + text.split_whitespace().map(word_estimate).sum::<usize>()
}

/// The longest prefix of whole words whose estimate fits `max_tokens`.
fn truncate_to_estimate(text: &str, max_tokens: usize) -> &str {
    let mut total = 2;
    for (start, word) in word_spans(text) {
        total += word_estimate(word);
        if total > max_tokens {
            return text[..start].trim_end();
        }
    }
    text
}

fn word_spans(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split_whitespace()
        .map(move |w| (w.as_ptr() as usize - text.as_ptr() as usize, w))
}

/// Most bytes of one embeddings answer: a batch of vectors as JSON numbers, with room to spare.
const MAX_RESPONSE_BYTES: u64 = 256 * 1024 * 1024;

/// Most bytes of an error body kept for its message.
const MAX_ERROR_BYTES: u64 = 64 * 1024;

/// The body read through a bounded reader: the text and whether it was complete.
fn read_capped(response: Response, cap: u64) -> std::io::Result<(String, bool)> {
    use std::io::Read;
    let mut bytes = Vec::new();
    response.take(cap + 1).read_to_end(&mut bytes)?;
    let complete = bytes.len() as u64 <= cap;
    bytes.truncate(usize::try_from(cap).unwrap_or(usize::MAX));
    Ok((String::from_utf8_lossy(&bytes).into_owned(), complete))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_server::{Reply, TestServer};
    use std::time::Instant;

    fn settings(url: &str, dim: Option<usize>, key: Option<&str>) -> EmbedSettings {
        EmbedSettings {
            backend: crate::Backend::Remote,
            precision: crate::Precision::Fp32,
            onnx_runtime: None,
            model: None,
            data_dir: std::env::temp_dir(),
            remote_url: url.to_string(),
            remote_model: "test-embed".into(),
            remote_api_key: key.map(str::to_string),
            remote_dim: dim,
            batch_size: 32,
            max_batch_tokens: 1024,
            query_threads: 1,
        }
    }

    fn fast_retry() -> RetryPolicy {
        RetryPolicy {
            attempts: 4,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_secs(5),
        }
    }

    #[test]
    fn embeds_in_order_normalised_and_batched() {
        let server = TestServer::start(vec![]);
        let embedder = RemoteEmbedder::with_retry(
            &settings(&server.base_url(), None, Some("sk-test")),
            fast_retry(),
        )
        .unwrap();
        // The probe learned the dimension.
        assert_eq!(embedder.identity().dim, 3);
        assert_eq!(embedder.identity().key(), "test-embed:3:fp32");
        let texts: Vec<String> = (0..150).map(|i| format!("text number {i}")).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let vectors = embedder.embed_passages(&refs).unwrap();
        assert_eq!(vectors.len(), 150);
        for (text, v) in texts.iter().zip(&vectors) {
            let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-6);
            // The fake server encodes the text's length in the first component.
            let expected = crate::test_server::fake_embedding(text);
            let mut expected = expected;
            l2_normalize(&mut expected);
            assert_eq!(v, &expected);
        }
        let requests = server.requests();
        // probe + ceil(150 / 32) batches, every one with the bearer key and the model.
        assert_eq!(requests.len(), 1 + 5);
        assert!(requests.iter().all(|r| r.inputs.len() <= 32));
        assert!(
            requests
                .iter()
                .all(|r| r.auth.as_deref() == Some("Bearer sk-test"))
        );
        assert!(requests.iter().all(|r| r.model == "test-embed"));
        assert_eq!(embedder.embed_query("hello").unwrap().len(), 3);
    }

    #[test]
    fn batches_never_exceed_64() {
        let server = TestServer::start(vec![]);
        let mut s = settings(&server.base_url(), Some(3), None);
        s.batch_size = 1000;
        let embedder = RemoteEmbedder::with_retry(&s, fast_retry()).unwrap();
        let texts = vec!["x"; 130];
        embedder.embed_passages(&texts).unwrap();
        let sizes: Vec<usize> = server.requests().iter().map(|r| r.inputs.len()).collect();
        assert_eq!(sizes, vec![64, 64, 2]);
        assert!(server.requests().iter().all(|r| r.auth.is_none()));
    }

    #[test]
    fn retries_429_honouring_retry_after() {
        let server = TestServer::start(vec![Reply::Status(429, Some("1"))]);
        let embedder =
            RemoteEmbedder::with_retry(&settings(&server.base_url(), Some(3), None), fast_retry())
                .unwrap();
        let started = Instant::now();
        let v = embedder.embed_passages(&["a", "b"]).unwrap();
        let waited = started.elapsed();
        assert_eq!(v.len(), 2);
        assert_eq!(server.requests().len(), 2);
        assert!(waited >= Duration::from_millis(950), "{waited:?}");
        assert!(waited < Duration::from_secs(4), "{waited:?}");
    }

    #[test]
    fn unauthorised_is_a_clear_error_without_retry_and_without_the_key() {
        let server = TestServer::start(vec![Reply::Status(401, None); 4]);
        let embedder = RemoteEmbedder::with_retry(
            &settings(&server.base_url(), Some(3), Some("sk-secret-123")),
            fast_retry(),
        )
        .unwrap();
        let err = embedder.embed_passages(&["a"]).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, EmbedError::RemoteAuth { status: 401, .. }),
            "{msg}"
        );
        assert!(msg.contains("embed.remote_api_key"), "{msg}");
        assert!(!msg.contains("sk-secret-123"), "{msg}");
        assert!(!format!("{embedder:?}").contains("sk-secret-123"));
        assert_eq!(server.requests().len(), 1);
        assert!(!err.is_retryable());
    }

    #[test]
    fn server_errors_give_up_after_four_attempts() {
        let server = TestServer::start(vec![Reply::Status(503, None); 10]);
        let embedder =
            RemoteEmbedder::with_retry(&settings(&server.base_url(), Some(3), None), fast_retry())
                .unwrap();
        let err = embedder.embed_passages(&["a"]).unwrap_err();
        assert!(
            matches!(err, EmbedError::RemoteStatus { status: 503, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("overloaded"), "{err}");
        assert_eq!(server.requests().len(), 4);
    }

    #[test]
    fn client_errors_are_not_retried() {
        let server = TestServer::start(vec![Reply::Status(400, None)]);
        let embedder =
            RemoteEmbedder::with_retry(&settings(&server.base_url(), Some(3), None), fast_retry())
                .unwrap();
        let err = embedder.embed_passages(&["a"]).unwrap_err();
        assert!(
            matches!(err, EmbedError::RemoteStatus { status: 400, .. }),
            "{err}"
        );
        assert_eq!(server.requests().len(), 1);
    }

    #[test]
    fn network_failure_is_retried_then_reported() {
        // Nothing listens on port 1 of loopback.
        let embedder = RemoteEmbedder::with_retry(
            &settings("http://127.0.0.1:1/v1", Some(3), None),
            fast_retry(),
        )
        .unwrap();
        let err = embedder.embed_passages(&["a"]).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, EmbedError::RemoteUnreachable { attempts: 4, .. }),
            "{msg}"
        );
        assert!(msg.contains("http://127.0.0.1:1/v1/embeddings"), "{msg}");
        assert!(err.is_retryable());
    }

    #[test]
    fn wrong_dimension_and_bad_json_are_protocol_errors() {
        let server = TestServer::start(vec![Reply::Body("{\"nope\": 1}".into())]);
        let embedder =
            RemoteEmbedder::with_retry(&settings(&server.base_url(), Some(3), None), fast_retry())
                .unwrap();
        let err = embedder.embed_passages(&["a"]).unwrap_err();
        assert!(matches!(err, EmbedError::RemoteProtocol { .. }), "{err}");
        let embedder =
            RemoteEmbedder::with_retry(&settings(&server.base_url(), Some(7), None), fast_retry())
                .unwrap();
        let err = embedder.embed_passages(&["a"]).unwrap_err();
        assert!(err.to_string().contains("expected 7"), "{err}");
    }

    #[test]
    fn settings_are_checked() {
        let err = RemoteEmbedder::new(&settings("localhost:11434", Some(3), None)).unwrap_err();
        assert!(err.to_string().contains("embed.remote_url"), "{err}");
        let mut s = settings("http://127.0.0.1:1/v1", Some(3), None);
        s.remote_model = " ".into();
        let err = RemoteEmbedder::new(&s).unwrap_err();
        assert!(err.to_string().contains("embed.remote_model"), "{err}");
    }

    #[test]
    fn can_be_dropped_inside_an_async_context() {
        // The knowledge base holds the embedder in async state; dropping it there must not panic
        // (reqwest's blocking client owns a runtime of its own).
        let embedder = RemoteEmbedder::with_retry(
            &settings("http://127.0.0.1:1/v1", Some(3), None),
            fast_retry(),
        )
        .unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async move { drop(embedder) });
    }

    #[test]
    fn token_estimates_and_truncation() {
        assert_eq!(estimate_tokens(""), 2);
        assert_eq!(estimate_tokens("the cat sat."), 2 + 1 + 1 + 2);
        let long = "word ".repeat(1000);
        let cut = truncate_to_estimate(&long, 512);
        assert_eq!(estimate_tokens(cut), 512);
        assert_eq!(truncate_to_estimate("short text", 512), "short text");
    }
}
