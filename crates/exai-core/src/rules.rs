//! The vocabulary of the settings registry: how a value is written ([`Shape`]) and what it may
//! be ([`Rule`]). Reading a value checks its shape; once every source is applied, each value is
//! checked against its rule, before the configuration becomes typed.

use std::collections::BTreeMap;

use toml::Value;

use crate::error::Expected;
use crate::values::{CustomProvider, ModelOverride};

/// How a setting's value is written, in the file and in the environment.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// As the type of the default (env: a string, a number, a boolean or a comma-separated list).
    Plain,
    /// A string read without its surrounding blanks (`RUST_LOG` values often carry some).
    Trimmed,
    /// A log filter: trimmed, and a lone level name of Python's `logging` (the old servers'
    /// `LOG_LEVEL`) read as tracing's nearest. Tracing would take `WARNING` as a target name
    /// and silently log nothing of exai's.
    LogLevel,
    /// A table of names to numbers (env: `name=number,…`).
    NumberTable { says: &'static str },
    /// A table of names to keyword lists (env: `name=a|b,…`).
    ListTable { says: &'static str },
    /// A table of tables, any shape in the file and JSON in the environment; the function
    /// says whether it is one of its type.
    Structured(fn(&Value) -> Result<(), Expected>),
}

impl Shape {
    /// Whether a value read from either place has this shape, or what is allowed. Tables of
    /// numbers hold numbers only once read (a file's integers become numbers).
    pub fn check(&self, value: &Value) -> Result<(), Expected> {
        let table_of = |says: &str, each: fn(&Value) -> bool| match value.as_table() {
            Some(t) if t.values().all(each) => Ok(()),
            _ => Err(Expected::new(says)),
        };
        match self {
            Shape::Plain | Shape::Trimmed | Shape::LogLevel => Ok(()),
            Shape::NumberTable { says } => table_of(says, Value::is_float),
            Shape::ListTable { says } => table_of(says, |v| {
                v.as_array()
                    .is_some_and(|items| items.iter().all(Value::is_str))
            }),
            Shape::Structured(check) => check(value),
        }
    }
}

/// A log filter as [`Shape::LogLevel`] reads it.
pub(crate) fn log_level(text: &str) -> String {
    let text = text.trim();
    let level = match text.to_ascii_lowercase().as_str() {
        "critical" | "fatal" | "error" => "error",
        "warning" | "warn" => "warn",
        "info" => "info",
        "debug" => "debug",
        "trace" => "trace",
        "notset" => "trace",
        _ => return text.to_string(),
    };
    level.to_string()
}

pub(crate) fn custom_providers(value: &Value) -> Result<(), Expected> {
    value
        .clone()
        .try_into::<BTreeMap<String, CustomProvider>>()
        .map(drop)
        .map_err(|e| {
            Expected::new(format!(
                "a table of names to {{ url, models, api_key_env, context_window }} ({e})"
            ))
        })
}

pub(crate) fn model_overrides(value: &Value) -> Result<(), Expected> {
    value
        .clone()
        .try_into::<BTreeMap<String, ModelOverride>>()
        .map(drop)
        .map_err(|e| Expected::new(format!("a table of model names to registry fields ({e})")))
}

pub(crate) fn named_tokens(value: &Value) -> Result<(), Expected> {
    value
        .clone()
        .try_into::<BTreeMap<String, String>>()
        .map(drop)
        .map_err(|_| {
            Expected::new(
                "a table of principal names to tokens, e.g. { alice = \"…\" } (env: the table as JSON)",
            )
        })
}

/// The values a setting allows beyond the type of its default, checked on each value once all
/// sources are applied and before it becomes a typed [`crate::config::Config`].
#[derive(Debug, Clone, Copy)]
pub enum Rule {
    /// The type alone decides.
    Any,
    /// Checked together with other settings: the timeout hierarchy, or a condition that
    /// involves another key (`kb.chunk_overlap` against `kb.chunk_tokens`, a non-loopback
    /// `server.listen` against the tokens, …).
    Joint,
    /// A whole number from `min` to `max`; `says` replaces the plain "min to max".
    Whole {
        min: i64,
        max: i64,
        says: Option<&'static str>,
    },
    /// A number from `min` (excluded when `above_min`) to `max`.
    Number {
        min: f64,
        max: f64,
        above_min: bool,
        says: &'static str,
    },
    /// One of these words.
    OneOf {
        names: &'static [&'static str],
        says: &'static str,
    },
    /// A list of these words.
    EachOf(&'static [&'static str]),
    /// An `http://` or `https://` URL.
    HttpUrl { says: &'static str },
    /// An IP address and port.
    SocketAddr,
    /// A tracing filter directive.
    LogFilter,
    /// Browser origins: each with a scheme, or `null`.
    Origins,
    /// At least this many characters when set at all (tokens).
    MinChars { min: usize, says: &'static str },
    /// Empty, or a PostgreSQL URL.
    PostgresUrl,
    /// A list of absolute paths: a relative one would name a different file from each working
    /// directory, and a restore writes to it.
    AbsolutePaths,
    /// A list of regular expressions as `kb.untrusted_patterns` compiles them.
    Patterns,
}

pub(crate) const fn whole(min: i64, max: i64) -> Rule {
    Rule::Whole {
        min,
        max,
        says: None,
    }
}

pub(crate) const fn whole_says(min: i64, max: i64, says: &'static str) -> Rule {
    Rule::Whole {
        min,
        max,
        says: Some(says),
    }
}

pub(crate) const fn number(min: f64, max: f64, says: &'static str) -> Rule {
    Rule::Number {
        min,
        max,
        above_min: false,
        says,
    }
}

/// The rule of provider base URLs.
pub const HTTP_URL: Rule = Rule::HttpUrl {
    says: "an http:// or https:// URL",
};

/// The rule of `embed.remote_url`, checked only when `embed.backend` is `remote`.
pub const HTTP_EMBEDDINGS_URL: Rule = Rule::HttpUrl {
    says: "an http:// or https:// URL such as http://127.0.0.1:11434/v1",
};

impl Rule {
    /// Whether `value` (of the type of the setting's default) is allowed, or what is.
    pub fn check(&self, value: &Value) -> Result<(), Expected> {
        let allowed = match (self, value) {
            (Rule::Whole { min, max, says }, Value::Integer(i)) => {
                if (*min..=*max).contains(i) {
                    return Ok(());
                }
                says.map_or_else(|| format!("{min} to {max}"), str::to_string)
            }
            (
                Rule::Number {
                    min,
                    max,
                    above_min,
                    says,
                },
                Value::Float(x),
            ) => {
                let above = if *above_min { x > min } else { x >= min };
                if above && x <= max {
                    return Ok(());
                }
                says.to_string()
            }
            (Rule::OneOf { names, says }, Value::String(s)) => {
                if names.contains(&s.as_str()) {
                    return Ok(());
                }
                says.to_string()
            }
            (Rule::EachOf(names), Value::Array(items)) => {
                return match strings(items).find(|s| !names.contains(s)) {
                    Some(wrong) => Err(Expected::at(wrong, format!("any of {}", names.join(", ")))),
                    None => Ok(()),
                };
            }
            (Rule::HttpUrl { says }, Value::String(s)) => {
                if s.starts_with("http://") || s.starts_with("https://") {
                    return Ok(());
                }
                says.to_string()
            }
            (Rule::SocketAddr, Value::String(s)) => {
                if s.parse::<std::net::SocketAddr>().is_ok() {
                    return Ok(());
                }
                "an IP address and port such as 127.0.0.1:8079 or [::1]:8079".into()
            }
            (Rule::LogFilter, Value::String(s)) => {
                if tracing_subscriber::EnvFilter::try_new(s).is_ok() {
                    return Ok(());
                }
                "error, warn, info, debug, trace or a tracing directive like exai=debug".into()
            }
            (Rule::Origins, Value::Array(items)) => {
                return match strings(items).find(|o| *o != "null" && !o.contains("://")) {
                    Some(wrong) => Err(Expected::at(
                        wrong,
                        "origins with a scheme, e.g. https://app.example.com:443 or http://localhost:*",
                    )),
                    None => Ok(()),
                };
            }
            (Rule::MinChars { min, says }, Value::String(s)) => {
                if s.is_empty() || s.len() >= *min {
                    return Ok(());
                }
                says.to_string()
            }
            (Rule::PostgresUrl, Value::String(s)) => {
                let url = s.trim();
                if url.is_empty()
                    || url.starts_with("postgres://")
                    || url.starts_with("postgresql://")
                {
                    return Ok(());
                }
                "a postgres:// or postgresql:// URL (empty: SQLite files in the data directory)"
                    .into()
            }
            (Rule::AbsolutePaths, Value::Array(items)) => {
                return match strings(items).find(|p| !std::path::Path::new(p).is_absolute()) {
                    Some(wrong) => Err(Expected::at(
                        wrong,
                        "absolute paths, e.g. /etc/exai/extra.env",
                    )),
                    None => Ok(()),
                };
            }
            (Rule::Patterns, Value::Array(items)) => {
                for pattern in strings(items) {
                    if let Err(e) = crate::values::untrusted_pattern(pattern) {
                        let why = e
                            .to_string()
                            .lines()
                            .last()
                            .unwrap_or("")
                            .trim()
                            .to_string();
                        return Err(Expected::at(
                            pattern,
                            format!("a regular expression (Rust `regex` syntax): {why}"),
                        ));
                    }
                }
                return Ok(());
            }
            // Values of another type were refused when they were read.
            _ => return Ok(()),
        };
        Err(Expected::new(allowed))
    }
}

fn strings(items: &[Value]) -> impl Iterator<Item = &str> {
    items.iter().filter_map(Value::as_str)
}
