//! The value types of settings below the configuration itself, so the settings registry can
//! name them: the entries of the table-of-tables settings, and the settings whose value is one
//! of a few words. The loader turns words into these enums once, so no other crate compares
//! configuration strings; each lists its spellings for the registry, which checks them before
//! the conversion.

use serde::{Deserialize, Serialize};

/// An OpenAI-compatible server of the user's (`providers.custom.<name>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomProvider {
    /// Base URL, e.g. `http://127.0.0.1:11434/v1`.
    pub url: String,
    /// Models it serves.
    #[serde(default)]
    pub models: Vec<String>,
    /// Environment variable holding its API key; empty: no key.
    #[serde(default)]
    pub api_key_env: String,
    /// Context window assumed for its models when `providers.models` says nothing.
    #[serde(default)]
    pub context_window: Option<u64>,
}

/// Fields of a model registry entry to add or override (`providers.models.<name>`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelOverride {
    pub provider: Option<String>,
    pub context_window: Option<u64>,
    pub max_output: Option<u64>,
    pub thinking: Option<bool>,
    pub vision: Option<bool>,
    pub web_search: Option<bool>,
    pub files: Option<bool>,
    pub price_in: Option<f64>,
    pub price_out: Option<f64>,
    pub aliases: Option<Vec<String>>,
}

/// Which embedder computes vectors (`embed.backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmbedBackend {
    /// ONNX Runtime when its library and the ONNX model are present, else candle.
    Auto,
    /// The name `auto` had before the choice between ONNX Runtime and candle; it means `auto`
    /// and is kept as written so `exai config show` and `/health` show what was set.
    Local,
    Onnx,
    Candle,
    /// An OpenAI-compatible `/v1/embeddings`.
    Remote,
    /// No embeddings: keyword search only.
    None,
}

impl EmbedBackend {
    /// Every spelling the setting accepts.
    pub const NAMES: &[&str] = &["auto", "local", "onnx", "candle", "remote", "none"];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Local => "local",
            Self::Onnx => "onnx",
            Self::Candle => "candle",
            Self::Remote => "remote",
            Self::None => "none",
        }
    }
}

impl std::fmt::Display for EmbedBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Numeric precision of a local embedding model (`embed.precision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmbedPrecision {
    Fp32,
    Int8,
}

impl EmbedPrecision {
    /// Every spelling the setting accepts.
    pub const NAMES: &[&str] = &["fp32", "int8"];
}

/// A tool family that can be switched off as a whole (`tools.disabled_families`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolFamily {
    Ai,
    Kb,
    Ops,
}

impl ToolFamily {
    /// Every spelling the setting accepts.
    pub const NAMES: &[&str] = &["ai", "kb", "ops"];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ai => "ai",
            Self::Kb => "kb",
            Self::Ops => "ops",
        }
    }
}

/// What `tools/list` shows a client (`tools.profile`); the tools it leaves out stay callable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolProfile {
    /// The everyday tools and `enable_tools`, the way to the rest.
    Lean,
    Kb,
    Ai,
    Full,
}

impl ToolProfile {
    /// Every spelling the setting accepts.
    pub const NAMES: &[&str] = &["lean", "kb", "ai", "full"];
    pub const ALL: [ToolProfile; 4] = [Self::Lean, Self::Kb, Self::Ai, Self::Full];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lean => "lean",
            Self::Kb => "kb",
            Self::Ai => "ai",
            Self::Full => "full",
        }
    }

    pub fn parse(s: &str) -> Option<ToolProfile> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// What indexing does with text a reader of the page never sees or that addresses an AI
/// (`kb.untrusted_content`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum UntrustedContent {
    /// Left out of what is indexed.
    #[default]
    Drop,
    /// Indexed inside a visible `[untrusted: reason] … [/untrusted]` marker.
    Mark,
    /// Indexed as the file has it (still counted).
    Keep,
}

impl UntrustedContent {
    /// Every spelling the setting accepts.
    pub const NAMES: &[&str] = &["drop", "mark", "keep"];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Drop => "drop",
            Self::Mark => "mark",
            Self::Keep => "keep",
        }
    }
}

/// When a crawl renders a page in headless Chromium (`kb.render`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RenderMode {
    /// Only pages whose server HTML holds no main content, when Chromium is installed.
    #[default]
    Auto,
    /// Every HTML page.
    Always,
    /// Never: such pages are reported as needing rendering.
    Never,
}

impl RenderMode {
    /// Every spelling the setting accepts.
    pub const NAMES: &[&str] = &["auto", "always", "never"];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Always => "always",
            Self::Never => "never",
        }
    }
}

/// Most bytes of compiled program one `kb.untrusted_patterns` entry may take: every indexed
/// sentence is matched against each pattern, so a pattern that compiles to a huge automaton
/// would slow every indexing run.
pub const UNTRUSTED_PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// An extra instruction pattern (`kb.untrusted_patterns`) as indexing matches it: case-insensitive,
/// its compiled size bounded. The `regex` crate matches in time linear in the text.
pub fn untrusted_pattern(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(pattern)
        .case_insensitive(true)
        .size_limit(UNTRUSTED_PATTERN_SIZE_LIMIT)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The registry checks spellings against `NAMES`; serde must accept exactly those.
    #[test]
    fn names_are_the_serde_spellings() {
        fn round_trip<T: Serialize + for<'de> Deserialize<'de>>(names: &[&str]) {
            for name in names {
                let value: T = serde_json::from_value(serde_json::json!(name))
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(
                    serde_json::to_value(&value).ok(),
                    Some(serde_json::json!(name))
                );
            }
        }
        round_trip::<EmbedBackend>(EmbedBackend::NAMES);
        round_trip::<EmbedPrecision>(EmbedPrecision::NAMES);
        round_trip::<ToolFamily>(ToolFamily::NAMES);
        round_trip::<ToolProfile>(ToolProfile::NAMES);
        round_trip::<UntrustedContent>(UntrustedContent::NAMES);
        round_trip::<RenderMode>(RenderMode::NAMES);
        assert!(serde_json::from_value::<EmbedBackend>(serde_json::json!("ONNX")).is_err());
    }
}
