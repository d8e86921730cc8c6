//! One error type for every provider failure, with the two questions the retry loop and the
//! router ask of it: may this be retried, and may another provider be tried instead.

use std::time::Duration;

/// A provider call's failure. Messages never contain keys; they name the variable to set.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LlmError {
    #[error(
        "no AI provider is configured: set KIMI_API_KEY (or MOONSHOT_API_KEY), GLM_API_KEY (or ZHIPUAI_API_KEY), OPENAI_API_KEY or OPENROUTER_API_KEY, or add an OpenAI-compatible server under providers.custom"
    )]
    NoProvider,
    #[error("unknown model `{name}`{hint}; `listmodels` shows the models available")]
    UnknownModel { name: String, hint: String },
    #[error("model `{model}` needs provider `{provider}`, which has no API key: set {variables}")]
    ProviderNotConfigured {
        model: String,
        provider: String,
        variables: String,
    },
    #[error("model `{model}` does not support {capability}{hint}")]
    Unsupported {
        model: String,
        capability: String,
        hint: String,
    },
    #[error(
        "the request needs about {needed} tokens but `{model}` reads at most {window}; send fewer or smaller files, or pick a model with a larger window"
    )]
    ContextTooLong {
        model: String,
        needed: u64,
        window: u64,
    },
    #[error("{provider} rejected the request as longer than the model's context window: {message}")]
    ContextLength { provider: String, message: String },
    #[error("{provider} refused the API key ({status}): check {variables}")]
    Auth {
        provider: String,
        status: u16,
        variables: String,
    },
    #[error("{provider} rejected the request ({status}): {message}")]
    BadRequest {
        provider: String,
        status: u16,
        message: String,
    },
    #[error("{provider} is rate limiting (429){}: {message}", retry_hint(.retry_after))]
    RateLimited {
        provider: String,
        retry_after: Option<Duration>,
        message: String,
    },
    #[error("{provider} failed with a server error ({status}): {message}")]
    Server {
        provider: String,
        status: u16,
        message: String,
    },
    #[error("cannot reach {provider}: {message}")]
    Network { provider: String, message: String },
    #[error("{provider} sent an answer exai cannot read: {message}")]
    Malformed { provider: String, message: String },
    #[error("{provider}'s stream ended before the answer was complete")]
    TruncatedStream { provider: String },
    #[error("{provider} did not answer within the {} s left of the tool's deadline", fmt_secs(.limit))]
    Timeout { provider: String, limit: Duration },
    #[error(
        "OVER_CAPACITY: {scope} already has {limit} provider requests in flight; retry after {} s",
        .retry_after.as_secs().max(1)
    )]
    OverCapacity {
        scope: String,
        limit: usize,
        retry_after: Duration,
    },
    #[error("cancelled by the client")]
    Cancelled,
}

fn retry_hint(retry_after: &Option<Duration>) -> String {
    retry_after
        .map(|d| format!(", retry after {} s", fmt_secs(&d)))
        .unwrap_or_default()
}

fn fmt_secs(d: &Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0}")
    } else {
        format!("{s:.1}")
    }
}

impl LlmError {
    /// Worth sending the same request to the same provider again after a pause.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            LlmError::RateLimited { .. }
                | LlmError::Server { .. }
                | LlmError::Network { .. }
                | LlmError::Malformed { .. }
                | LlmError::TruncatedStream { .. }
        )
    }

    /// Worth trying the next model of an `auto` chain after this provider gave up.
    pub fn allows_fallback(&self) -> bool {
        self.is_retryable()
            || matches!(
                self,
                LlmError::Auth { .. }
                    | LlmError::ContextLength { .. }
                    | LlmError::OverCapacity { .. }
                    | LlmError::BadRequest { status: 404, .. }
            )
    }

    /// The server's own `Retry-After`, or ours for OVER_CAPACITY.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            LlmError::RateLimited { retry_after, .. } => *retry_after,
            LlmError::OverCapacity { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// A short machine-readable name, for activity records, metrics and tool results.
    pub fn kind(&self) -> &'static str {
        match self {
            LlmError::NoProvider => "no_provider",
            LlmError::UnknownModel { .. } => "unknown_model",
            LlmError::ProviderNotConfigured { .. } => "provider_not_configured",
            LlmError::Unsupported { .. } => "unsupported",
            LlmError::ContextTooLong { .. } => "context_too_long",
            LlmError::ContextLength { .. } => "context_length",
            LlmError::Auth { .. } => "auth",
            LlmError::BadRequest { .. } => "bad_request",
            LlmError::RateLimited { .. } => "rate_limited",
            LlmError::Server { .. } => "server_error",
            LlmError::Network { .. } => "network",
            LlmError::Malformed { .. } => "malformed",
            LlmError::TruncatedStream { .. } => "truncated_stream",
            LlmError::Timeout { .. } => "timeout",
            LlmError::OverCapacity { .. } => "OVER_CAPACITY",
            LlmError::Cancelled => "cancelled",
        }
    }

    /// The HTTP-like status a gateway would answer with.
    pub fn status_code(&self) -> u16 {
        match self {
            LlmError::NoProvider | LlmError::ProviderNotConfigured { .. } => 503,
            LlmError::UnknownModel { .. } => 404,
            LlmError::Unsupported { .. }
            | LlmError::ContextTooLong { .. }
            | LlmError::ContextLength { .. } => 400,
            LlmError::Auth { status, .. } => *status,
            LlmError::BadRequest { status, .. } => *status,
            LlmError::RateLimited { .. } | LlmError::OverCapacity { .. } => 429,
            LlmError::Server { status, .. } => *status,
            LlmError::Network { .. } | LlmError::Malformed { .. } => 502,
            LlmError::TruncatedStream { .. } => 502,
            LlmError::Timeout { .. } => 504,
            LlmError::Cancelled => 499,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_and_fallback_rules() {
        let p = || "kimi".to_string();
        let limited = LlmError::RateLimited {
            provider: p(),
            retry_after: Some(Duration::from_secs(2)),
            message: "slow down".into(),
        };
        assert!(limited.is_retryable());
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(2)));
        assert!(limited.to_string().contains("retry after 2 s"));
        let ctx = LlmError::ContextLength {
            provider: p(),
            message: "too long".into(),
        };
        assert!(!ctx.is_retryable() && ctx.allows_fallback());
        let auth = LlmError::Auth {
            provider: p(),
            status: 401,
            variables: "KIMI_API_KEY".into(),
        };
        assert!(!auth.is_retryable());
        assert!(auth.to_string().contains("KIMI_API_KEY"));
        assert!(!LlmError::Cancelled.allows_fallback());
        let full = LlmError::OverCapacity {
            scope: "provider kimi".into(),
            limit: 8,
            retry_after: Duration::from_millis(300),
        };
        assert!(full.to_string().starts_with("OVER_CAPACITY"));
        assert!(full.to_string().contains("retry after 1 s"));
    }
}
