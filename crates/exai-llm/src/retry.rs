//! The one retry loop: 429, 5xx, network errors, malformed answers and cut streams are retried
//! with exponential backoff and full jitter (or the server's `Retry-After`), a bounded number of
//! times and never past the deadline. Context-length and auth errors are never retried.

use std::time::{Duration, Instant};

use crate::client::{Attempt, Provider};
use crate::error::LlmError;
use crate::wire::{Answer, ChatRequest};

const BASE: Duration = Duration::from_millis(250);
const CAP: Duration = Duration::from_secs(8);

/// The pause before retry number `n` (0-based).
pub fn backoff(n: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(ra) = retry_after {
        return ra + Duration::from_millis(fastrand::u64(0..100));
    }
    let ceiling = BASE.saturating_mul(1 << n.min(10)).min(CAP);
    // Full jitter in [ceiling/2, ceiling]: spreads retries of many clients apart.
    ceiling / 2 + ceiling.mul_f64(fastrand::f64() / 2.0)
}

/// Call until success, a final error, `max_retries` retries, or the deadline. Returns the answer
/// and the number of attempts made.
pub async fn with_retries(
    provider: &dyn Provider,
    req: &ChatRequest,
    attempt: &Attempt,
    max_retries: u32,
) -> Result<(Answer, u32), LlmError> {
    let mut n = 0;
    loop {
        match provider.chat_once(req, attempt).await {
            Ok(answer) => return Ok((answer, n + 1)),
            Err(e) if e.is_retryable() && n < max_retries => {
                let wait = backoff(n, e.retry_after());
                if Instant::now() + wait >= attempt.deadline {
                    tracing::info!(provider = %provider.endpoint().id, error = %e, "no time left to retry");
                    return Err(e);
                }
                tracing::info!(
                    provider = %provider.endpoint().id,
                    attempt = n + 1,
                    wait_ms = wait.as_millis() as u64,
                    error = %e,
                    "retrying provider request"
                );
                provider.metrics().retries.inc();
                tokio::time::sleep(wait).await;
                n += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_jittered_and_capped() {
        for n in 0..20 {
            let d = backoff(n, None);
            let ceiling = BASE.saturating_mul(1 << n.min(10)).min(CAP);
            assert!(d >= ceiling / 2 && d <= ceiling, "{n}: {d:?}");
        }
        let ra = backoff(0, Some(Duration::from_secs(3)));
        assert!(ra >= Duration::from_secs(3) && ra < Duration::from_millis(3100));
    }
}
