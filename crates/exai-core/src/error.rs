//! Configuration errors. Each names the key, where its value came from and what is allowed;
//! the binary turns them into exit code 2.

use std::path::PathBuf;

use crate::source::Source;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown configuration key `{key}` ({origin}){}", hint.as_ref().map(|h| format!("; did you mean `{h}`?")).unwrap_or_default())]
    UnknownKey {
        key: String,
        origin: Source,
        hint: Option<String>,
    },
    #[error("invalid value {value:?} for `{key}` ({origin}): expected {allowed}")]
    Invalid {
        key: String,
        value: String,
        origin: Source,
        allowed: String,
    },
    #[error("invalid timeout hierarchy: {reason} (set by {origin}); see `exai config check`")]
    Hierarchy { reason: String, origin: Source },
    #[error("cannot read {}: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    #[error("no data directory: set EXAI_HOME (or HOME / XDG_DATA_HOME)")]
    NoDataDir,
}

impl ConfigError {
    /// The process exit code for configuration errors.
    pub const EXIT_CODE: i32 = 2;

    /// This error with every occurrence of the given secret values replaced by `<redacted>`.
    pub fn redact(self, secrets: &[String]) -> Self {
        let scrub = |mut text: String| {
            for secret in secrets.iter().filter(|s| !s.is_empty()) {
                if text.contains(secret.as_str()) {
                    text = text.replace(secret.as_str(), "<redacted>");
                }
            }
            text
        };
        match self {
            ConfigError::UnknownKey { key, origin, hint } => ConfigError::UnknownKey {
                key: scrub(key),
                origin,
                hint,
            },
            ConfigError::Invalid {
                key,
                value,
                origin,
                allowed,
            } => ConfigError::Invalid {
                key,
                value: scrub(value),
                origin,
                allowed: scrub(allowed),
            },
            ConfigError::Hierarchy { reason, origin } => ConfigError::Hierarchy {
                reason: scrub(reason),
                origin,
            },
            ConfigError::Read { path, reason } => ConfigError::Read {
                path,
                reason: scrub(reason),
            },
            ConfigError::NoDataDir => ConfigError::NoDataDir,
        }
    }
}

/// A value that is not what its setting allows, before the key and the value's source are
/// known: parsing and the settings registry's rules say what they expected, the loader adds
/// where the value came from.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("expected {allowed}")]
pub struct Expected {
    /// What the setting allows, e.g. `1 to 100`.
    pub allowed: String,
    /// The offending part when it is not the whole value (one entry of a list).
    pub part: Option<String>,
}

impl Expected {
    pub fn new(allowed: impl Into<String>) -> Self {
        Self {
            allowed: allowed.into(),
            part: None,
        }
    }

    /// Blame one entry of a list rather than the whole value.
    pub fn at(part: impl Into<String>, allowed: impl Into<String>) -> Self {
        Self {
            allowed: allowed.into(),
            part: Some(part.into()),
        }
    }
}
