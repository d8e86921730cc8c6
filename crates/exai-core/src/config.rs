//! Configuration, one source of truth: compiled defaults → `exai.toml` (data directory or
//! `--config`) → `.env` in the data directory → `--env-file` files → process environment →
//! command-line flags. Every value remembers where it came from, so an error can name the key,
//! the source and what is allowed.
//!
//! Values are parsed once, here: each is checked against its rule in the settings registry
//! once every source is applied, then the whole tree becomes the typed [`Config`], then the
//! conditions that involve several keys are checked. Other crates read typed fields only.
//!
//! The trust boundary: the user's environment, the data directory and files the user names are
//! trusted. A project directory is not — MCP clients start `exai serve` in whatever project is
//! open — so a `.env` in the working directory is never read for settings: it could send the
//! user's keys to another host, load a library or widen what tools may read. It is only looked
//! at to warn that it was ignored and how to adopt it (`exai config import`, `--env-file`).
//!
//! The Python servers' operators bring their `.env`: its variables either set the matching key
//! (aliases in the registry; `EXAI_WS_HOST`/`EXAI_WS_PORT` and the per-provider in-flight
//! limits combined here) or become one notice line per reason exai no longer needs them. Those
//! notices, unknown `EXAI_*` variables (a typo is pointed out, but an unrelated `EXAI_BIN` in a
//! shell must not stop every command) and an expert-analysis timeout lowered below the workflow
//! timeout are returned in [`Loaded::notices`] for the binary to print; unknown keys in a
//! configuration file stay errors.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Value;

use crate::error::{ConfigError, Expected};
use crate::paths;
use crate::rules::{HTTP_EMBEDDINGS_URL, HTTP_URL, Shape, log_level};
use crate::settings::{self, LEGACY_COMBINED, NON_SETTING_ENV, SETTINGS, Setting};
use crate::timeouts::{MAX_SECS, TimeoutHierarchy};

pub use crate::source::Source;
pub use crate::timeouts::TimeoutConfig;
pub use crate::values::{
    CustomProvider, EmbedBackend, EmbedPrecision, ModelOverride, RenderMode, ToolFamily,
    ToolProfile, UntrustedContent,
};

pub mod fuzz;

/// A secret string. Its `Debug` and `Display` never show the value.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The value, for the one place that sends it (an HTTP header, a comparison).
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_set(&self) -> bool {
        !self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_set() {
            "<redacted>"
        } else {
            "<unset>"
        })
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub auth_token: Secret,
    pub allowed_origins: Vec<String>,
    pub allowed_hosts: Vec<String>,
    pub max_body_bytes: u64,
    /// Named bearer tokens (name → token): each name is a principal owning its threads and jobs.
    pub tokens: BTreeMap<String, Secret>,
    pub header_read_timeout_secs: f64,
    pub max_connections: u64,
    pub max_sessions: u64,
    pub session_idle_secs: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShimConfig {
    pub url: String,
    pub autostart: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingConfig {
    pub level: String,
    pub file_max_mb: u64,
    pub file_count: u64,
    pub archive_keep_days: u64,
    pub log_queries: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolsConfig {
    pub disabled: Vec<String>,
    pub disabled_families: Vec<ToolFamily>,
    pub diagnostics: bool,
    pub allowed_roots: Vec<String>,
    pub allowed_private_paths: Vec<String>,
    pub max_output_tokens: u64,
    pub profile: ToolProfile,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvidersConfig {
    pub default_model: String,
    pub kimi_api_key: Secret,
    pub kimi_api_url: String,
    pub glm_api_key: Secret,
    pub glm_api_url: String,
    pub openai_api_key: Secret,
    pub openai_api_url: String,
    pub openrouter_api_key: Secret,
    pub openrouter_api_url: String,
    pub custom: BTreeMap<String, CustomProvider>,
    pub models: BTreeMap<String, ModelOverride>,
    pub max_concurrent: u64,
    pub max_concurrent_per_provider: u64,
    pub max_concurrent_per_session: u64,
    pub max_retries: u64,
    pub max_file_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThreadsConfig {
    pub ttl_hours: f64,
    pub max_turns: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedConfig {
    pub backend: EmbedBackend,
    pub precision: EmbedPrecision,
    pub onnx_runtime: String,
    pub model: String,
    pub remote_url: String,
    pub remote_model: String,
    pub remote_api_key: Secret,
    pub batch_size: u64,
    pub max_batch_tokens: u64,
    pub query_threads: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KbConfig {
    pub database: String,
    pub max_file_bytes: u64,
    pub max_chunks_per_file: u64,
    pub chunk_tokens: u64,
    pub chunk_overlap: u64,
    pub ann_min_vectors: u64,
    pub slow_query_ms: u64,
    pub categories: BTreeMap<String, Vec<String>>,
    pub untrusted_content: UntrustedContent,
    pub untrusted_patterns: Vec<String>,
    pub fetch_allowed_hosts: Vec<String>,
    pub fetch_max_page_bytes: u64,
    pub fetch_page_timeout_secs: f64,
    pub crawl_max_pages: u64,
    pub crawl_max_depth: u64,
    pub crawl_concurrency: u64,
    pub crawl_delay_ms: u64,
    pub render: RenderMode,
    pub refresh_interval_hours: f64,
    pub npm_registry_url: String,
    pub pypi_url: String,
    pub crates_api_url: String,
    pub crates_download_url: String,
}

/// The whole configuration. Field names mirror the keys in [`SETTINGS`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub shim: ShimConfig,
    pub timeouts: TimeoutConfig,
    pub logging: LoggingConfig,
    pub tools: ToolsConfig,
    pub providers: ProvidersConfig,
    pub threads: ThreadsConfig,
    pub embed: EmbedConfig,
    pub kb: KbConfig,
    pub ops: OpsConfig,
    pub database: DatabaseConfig,
}

/// The shared database for scale-out (PostgreSQL + pgvector); empty `url`: SQLite files in the
/// data directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    pub url: Secret,
    pub pool_size: u64,
    pub statement_timeout_secs: f64,
    pub connect_retry_secs: f64,
}

impl DatabaseConfig {
    /// The PostgreSQL URL when one is configured.
    pub fn postgres_url(&self) -> Option<&str> {
        let url = self.url.expose().trim();
        (!url.is_empty()).then_some(url)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpsConfig {
    pub backup_dir: String,
    pub backup_keep: u64,
    /// More files `exai db backup` copies besides the databases and the configuration.
    pub backup_extra: Vec<PathBuf>,
    pub sample_interval_secs: f64,
    pub resource_history_days: u64,
    pub memory_warn_percent: f64,
    pub memory_review_percent: f64,
    pub memory_growth_mb_per_hour: f64,
    pub disk_warn_percent: f64,
    pub slo_uptime_percent: f64,
    pub slo_simple_p95_secs: f64,
    pub slo_workflow_p95_secs: f64,
    pub slo_error_rate_percent: f64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig {
                listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8079)),
                auth_token: Secret::default(),
                allowed_origins: vec![],
                allowed_hosts: vec![],
                max_body_bytes: 4 * 1024 * 1024,
                tokens: BTreeMap::new(),
                header_read_timeout_secs: 10.0,
                max_connections: 512,
                max_sessions: 256,
                session_idle_secs: 8.0 * 3600.0,
            },
            shim: ShimConfig {
                url: "http://127.0.0.1:8079/mcp".into(),
                autostart: true,
            },
            timeouts: TimeoutConfig {
                workflow_tool_secs: 46.0,
                simple_tool_secs: 30.0,
                expert_analysis_secs: 40.0,
                model_multipliers: BTreeMap::new(),
            },
            logging: LoggingConfig {
                level: "info".into(),
                file_max_mb: 20,
                file_count: 5,
                archive_keep_days: 90,
                log_queries: false,
            },
            tools: ToolsConfig {
                disabled: vec![],
                disabled_families: vec![],
                diagnostics: false,
                allowed_roots: vec![],
                allowed_private_paths: vec![],
                max_output_tokens: 25_000,
                profile: ToolProfile::Lean,
            },
            providers: ProvidersConfig {
                default_model: "auto".into(),
                kimi_api_key: Secret::default(),
                kimi_api_url: "https://api.moonshot.ai/v1".into(),
                glm_api_key: Secret::default(),
                glm_api_url: "https://api.z.ai/api/paas/v4".into(),
                openai_api_key: Secret::default(),
                openai_api_url: "https://api.openai.com/v1".into(),
                openrouter_api_key: Secret::default(),
                openrouter_api_url: "https://openrouter.ai/api/v1".into(),
                custom: BTreeMap::new(),
                models: BTreeMap::new(),
                max_concurrent: 32,
                max_concurrent_per_provider: 8,
                max_concurrent_per_session: 4,
                max_retries: 3,
                max_file_bytes: 1024 * 1024,
            },
            threads: ThreadsConfig {
                ttl_hours: 3.0,
                max_turns: 20,
            },
            ops: OpsConfig {
                backup_dir: String::new(),
                backup_keep: 7,
                backup_extra: Vec::new(),
                sample_interval_secs: 60.0,
                resource_history_days: 30,
                memory_warn_percent: 80.0,
                memory_review_percent: 70.0,
                memory_growth_mb_per_hour: 5.0,
                disk_warn_percent: 85.0,
                slo_uptime_percent: 99.0,
                slo_simple_p95_secs: 5.0,
                slo_workflow_p95_secs: 60.0,
                slo_error_rate_percent: 1.0,
            },
            database: DatabaseConfig {
                url: Secret::default(),
                pool_size: 8,
                statement_timeout_secs: 30.0,
                connect_retry_secs: 30.0,
            },
            embed: EmbedConfig {
                backend: EmbedBackend::Auto,
                precision: EmbedPrecision::Int8,
                onnx_runtime: String::new(),
                model: String::new(),
                remote_url: "http://127.0.0.1:11434/v1".into(),
                remote_model: "nomic-embed-text".into(),
                remote_api_key: Secret::default(),
                batch_size: 32,
                max_batch_tokens: 1024,
                query_threads: 1,
            },
            kb: KbConfig {
                database: String::new(),
                max_file_bytes: 4 * 1024 * 1024,
                max_chunks_per_file: 2000,
                chunk_tokens: 200,
                chunk_overlap: 32,
                ann_min_vectors: 20_000,
                slow_query_ms: 1000,
                categories: BTreeMap::new(),
                untrusted_content: UntrustedContent::Drop,
                untrusted_patterns: Vec::new(),
                fetch_allowed_hosts: Vec::new(),
                fetch_max_page_bytes: 8 * 1024 * 1024,
                fetch_page_timeout_secs: 30.0,
                crawl_max_pages: 1000,
                crawl_max_depth: 5,
                crawl_concurrency: 2,
                crawl_delay_ms: 250,
                render: RenderMode::Auto,
                refresh_interval_hours: 0.0,
                npm_registry_url: "https://registry.npmjs.org".into(),
                pypi_url: "https://pypi.org".into(),
                crates_api_url: "https://crates.io".into(),
                crates_download_url: "https://static.crates.io/crates".into(),
            },
        }
    }
}

/// Where to look for configuration. Tests build one by hand; the binary uses [`Inputs::from_process`].
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// Explicit `--config` path; must exist when given.
    pub config_file: Option<PathBuf>,
    /// `.env` files the user named (`--env-file`, `EXAI_ENV_FILE`); each must exist.
    pub env_files: Vec<PathBuf>,
    /// The working directory. Its `.env`, a project's file, is never applied; see the module docs.
    pub working_dir: Option<PathBuf>,
    /// Environment variables (name, value).
    pub env: Vec<(String, String)>,
    /// Command-line overrides: (setting key, flag name, value). Applied last.
    pub flags: Vec<(&'static str, &'static str, String)>,
}

impl Inputs {
    /// The process environment, `--config` and `--env-file`s if given, and the working directory.
    pub fn from_process(config_file: Option<PathBuf>, env_files: Vec<PathBuf>) -> Self {
        Self {
            config_file,
            env_files,
            working_dir: std::env::current_dir().ok(),
            env: std::env::vars().collect(),
            flags: Vec::new(),
        }
    }

    /// Override a setting from a command-line flag.
    pub fn with_flag(
        mut self,
        key: &'static str,
        flag: &'static str,
        value: impl Into<String>,
    ) -> Self {
        self.flags.push((key, flag, value.into()));
        self
    }

    fn var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A validated configuration with the provenance of each key.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub sources: BTreeMap<&'static str, Source>,
    pub data_dir: PathBuf,
    /// The configuration file that was read, if any.
    pub file: Option<PathBuf>,
    /// The `.env` files that were read, in order.
    pub env_files: Vec<PathBuf>,
    /// A `.env` in the working directory that holds exai settings and was not applied.
    pub ignored_project_env: Option<IgnoredEnv>,
    pub timeouts: TimeoutHierarchy,
    /// Lines to print once at start: variables read but not needed, unknown `EXAI_*`
    /// variables, values adjusted to fit. Never values of secrets.
    pub notices: Vec<String>,
}

/// A project's `.env` left unread, with the exai variables it would have set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredEnv {
    pub path: PathBuf,
    pub names: Vec<String>,
}

impl fmt::Display for IgnoredEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ignored {} in the working directory ({}): a project's files cannot configure exai, \
             since they could send your keys elsewhere or widen what tools read. To use these \
             settings, import them once with `exai config import {}` (into the data directory) \
             or pass `--env-file {}`",
            self.path.display(),
            self.names.join(", "),
            self.path.display(),
            self.path.display()
        )
    }
}

impl Loaded {
    /// Variables that make a child `exai` (the daemon a shim starts) read this configuration.
    pub fn child_env(&self) -> Vec<(String, String)> {
        let mut env = vec![("EXAI_HOME".to_string(), self.data_dir.display().to_string())];
        if let Some(file) = &self.file {
            env.push(("EXAI_CONFIG".into(), file.display().to_string()));
        }
        let data_env = self.data_dir.join(".env");
        let named: Vec<String> = self
            .env_files
            .iter()
            .filter(|p| **p != data_env)
            .map(|p| p.display().to_string())
            .collect();
        if !named.is_empty() {
            env.push(("EXAI_ENV_FILE".into(), named.join(":")));
        }
        env
    }

    /// What tools and indexing may read, for this process (its working directory and `$HOME`).
    pub fn access(&self) -> crate::access::PathPolicy {
        crate::access::PathPolicy::for_process(
            &self.config.tools.allowed_roots,
            &self.config.tools.allowed_private_paths,
            &self.data_dir,
        )
    }

    pub fn source(&self, key: &str) -> Source {
        self.sources.get(key).cloned().unwrap_or(Source::Default)
    }

    /// Every key with its value as shown to people (secrets redacted) and its source.
    pub fn rows(&self) -> Vec<(&'static str, String, Source)> {
        let tree = to_tree(&self.config);
        SETTINGS
            .iter()
            .map(|s| {
                let shown = match lookup(&tree, s.key) {
                    Some(Value::String(v)) if s.secret => if v.is_empty() {
                        "<unset>"
                    } else {
                        "<redacted>"
                    }
                    .to_string(),
                    Some(Value::Table(t)) if s.secret => t
                        .keys()
                        .map(|k| format!("{k}=<redacted>"))
                        .collect::<Vec<_>>()
                        .join(","),
                    Some(v) => render(v),
                    None => String::new(),
                };
                (s.key, shown, self.source(s.key))
            })
            .collect()
    }
}

/// The settings whose values differ between two configurations, in registry order: what a
/// configuration reload changes. Names only, so the answer never carries a secret.
pub fn changed_keys(old: &Config, new: &Config) -> Vec<&'static str> {
    let (old, new) = (to_tree(old), to_tree(new));
    SETTINGS
        .iter()
        .filter(|s| lookup(&old, s.key) != lookup(&new, s.key))
        .map(|s| s.key)
        .collect()
}

/// Where each key's value came from, for keys not left at their default. The values themselves
/// are built up in one TOML tree shaped like [`Config`].
type Sources = BTreeMap<&'static str, Source>;

/// Load and validate the configuration.
pub fn load(inputs: &Inputs) -> Result<Loaded, ConfigError> {
    let data_dir = paths::data_dir(
        inputs.var("EXAI_HOME"),
        inputs.var("XDG_DATA_HOME"),
        inputs.var("HOME"),
    )
    .ok_or(ConfigError::NoDataDir)?;
    // A secret can reach a message as another key's value: a `.env` line such as
    // `EXAI_SERVER_LISTEN=${KIMI_API_KEY}` is expanded before exai sees it.
    load_from(inputs, data_dir.clone()).map_err(|e| e.redact(&known_secrets(inputs, &data_dir)))
}

/// Shorter secret values are not looked for in messages: "true" or "8079" would garble them.
const MIN_REDACTED_SECRET: usize = 6;

/// Every value the inputs give to a secret setting, as far as they parse: the environment,
/// the `.env` files and the configuration file.
fn known_secrets(inputs: &Inputs, data_dir: &Path) -> Vec<String> {
    let secret_env = |name: &str| settings::by_env(name).is_some_and(|s| s.secret);
    // dotenvy expands `${NAME}` from the process environment, which may differ from `inputs`.
    let process = std::env::vars_os()
        .filter_map(|(n, v)| Some((n.into_string().ok()?, v.into_string().ok()?)));
    let mut found: Vec<String> = inputs
        .env
        .iter()
        .cloned()
        .chain(process)
        .filter(|(name, _)| secret_env(name))
        .map(|(_, value)| value)
        .collect();
    for path in std::iter::once(data_dir.join(".env")).chain(inputs.env_files.iter().cloned()) {
        if let Ok(iter) = dotenvy::from_path_iter(&path) {
            found.extend(
                iter.filter_map(Result::ok)
                    .filter(|(name, _)| secret_env(name))
                    .map(|(_, value)| value),
            );
        }
    }
    let file = (inputs.config_file.clone())
        .or_else(|| inputs.var("EXAI_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| data_dir.join("exai.toml"));
    if let Some(tree) = std::fs::read_to_string(file)
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .map(Value::Table)
    {
        for setting in SETTINGS.iter().filter(|s| s.secret) {
            match lookup(&tree, setting.key) {
                Some(Value::String(s)) => found.push(s.clone()),
                Some(Value::Table(t)) => {
                    found.extend(t.values().filter_map(Value::as_str).map(str::to_string));
                }
                _ => {}
            }
        }
    }
    found.retain(|s| s.chars().count() >= MIN_REDACTED_SECRET);
    // Longest first, so a secret holding another is replaced whole.
    found.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    found.dedup();
    found
}

fn load_from(inputs: &Inputs, data_dir: PathBuf) -> Result<Loaded, ConfigError> {
    let mut tree = to_tree(&Config::default());
    let mut sources = Sources::new();
    let mut notes = Notes::default();
    let file = apply_config_file(&mut tree, &mut sources, inputs, &data_dir)?;
    let env_files = apply_env_files(&mut tree, &mut sources, &mut notes, inputs, &data_dir)?;
    let ignored_project_env = inputs
        .working_dir
        .as_deref()
        .and_then(|dir| project_env(&dir.join(".env"), &env_files));
    apply_process_env(&mut tree, &mut sources, &mut notes, inputs)?;
    apply_flags(&mut tree, &mut sources, inputs)?;
    check_process_env_names(inputs, &mut notes);

    let source_of = |key: &str| sources.get(key).cloned().unwrap_or(Source::Default);
    let mut config = typed(tree, &source_of)?;
    let mut notices = notes.lines();
    notices.extend(clamp_expert(&mut config.timeouts, &source_of));
    if !sources.contains_key("shim.url") {
        config.shim.url = format!("http://{}/mcp", connect_addr(config.server.listen));
    }
    let timeouts =
        TimeoutHierarchy::derive(&config.timeouts).map_err(|e| e.into_config_error(&source_of))?;
    Ok(Loaded {
        config,
        sources,
        data_dir,
        file,
        env_files,
        ignored_project_env,
        timeouts,
        notices,
    })
}

/// What loading has to say besides errors, gathered while the sources are applied.
#[derive(Debug, Default)]
struct Notes {
    /// Variables exai does not need, by the reason (one line each).
    retired: Vec<(&'static str, Vec<String>)>,
    other: Vec<String>,
}

impl Notes {
    fn retire(&mut self, name: &str, why: &'static str) {
        match self.retired.iter_mut().find(|(w, _)| *w == why) {
            Some((_, names)) if names.iter().any(|n| n == name) => {}
            Some((_, names)) => names.push(name.to_string()),
            None => self.retired.push((why, vec![name.to_string()])),
        }
    }

    /// An `EXAI_*` variable that is neither a setting nor one of exai's other variables.
    fn unknown(&mut self, name: &str, source: &Source) {
        if NON_SETTING_ENV.iter().any(|(n, _)| *n == name) {
            return;
        }
        let names: Vec<String> = SETTINGS
            .iter()
            .map(Setting::env_name)
            .chain(NON_SETTING_ENV.iter().map(|(n, _)| n.to_string()))
            .collect();
        let hint = settings::closest(name, names.iter().map(String::as_str))
            .map(|h| format!("; did you mean `{h}`?"))
            .unwrap_or_default();
        let line = format!("ignored {source}: not an exai setting{hint}");
        if !self.other.contains(&line) {
            self.other.push(line);
        }
    }

    fn lines(self) -> Vec<String> {
        self.retired
            .into_iter()
            .map(|(why, names)| format!("{}: not read, since {why}", names.join(", ")))
            .chain(self.other)
            .collect()
    }
}

/// An expert-analysis deadline at or above the workflow tool timeout that contains it, lowered
/// to just below: the Python server's defaults (45 s and 60 s) ran that way, the expert call
/// being cut off by the tool's own deadline. Values out of range are left for the hierarchy
/// to refuse.
fn clamp_expert(timeouts: &mut TimeoutConfig, source: &dyn Fn(&str) -> Source) -> Option<String> {
    let t = timeouts.workflow_tool_secs;
    let expert = timeouts.expert_analysis_secs;
    let in_range = |x: f64| x.is_finite() && x > 0.0 && x <= MAX_SECS;
    if !(in_range(t) && in_range(expert) && expert >= t) {
        return None;
    }
    // A second, or a tenth of a short timeout, for the tool to report what the expert missed.
    let clamped = t - (t / 10.0).min(1.0);
    timeouts.expert_analysis_secs = clamped;
    Some(format!(
        "timeouts.expert_analysis_secs {expert} s ({}) is not below the workflow tool timeout \
         {t} s ({}) that contains it: using {clamped} s",
        source("timeouts.expert_analysis_secs"),
        source("timeouts.workflow_tool_secs"),
    ))
}

/// Where a client reaches a daemon listening on `listen`: an unspecified address (all
/// interfaces) is reached on loopback.
fn connect_addr(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// The Python daemon's variables that need combining ([`LEGACY_COMBINED`]), from one source,
/// applied before that source's other variables so a registry name in it wins.
fn apply_legacy(
    tree: &mut Value,
    sources: &mut Sources,
    notes: &mut Notes,
    vars: &[(String, String, Source)],
) -> Result<(), ConfigError> {
    // An empty value is a template's "unset", as for the Python daemon's defaults.
    let get = |name: &str| {
        vars.iter()
            .rev()
            .find(|(n, v, _)| n == name && !v.trim().is_empty())
    };
    let (host, port) = (get("EXAI_WS_HOST"), get("EXAI_WS_PORT"));
    if host.is_some() || port.is_some() {
        let listen = registered("server.listen")?;
        let current = lookup(tree, listen.key)
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<SocketAddr>().ok())
            .unwrap_or(Config::default().server.listen);
        let invalid =
            |(_, text, source): &(String, String, Source), allowed: &str| ConfigError::Invalid {
                key: listen.key.into(),
                value: text.clone(),
                origin: source.clone(),
                allowed: allowed.into(),
            };
        let ip = match host {
            Some(var) => match var.1.trim() {
                "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
                text => text.parse::<IpAddr>().map_err(|_| {
                    invalid(
                        var,
                        "an IP address such as 127.0.0.1, 0.0.0.0 or ::1, or localhost",
                    )
                })?,
            },
            None => current.ip(),
        };
        let port_number = match port {
            Some(var) => var
                .1
                .trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| invalid(var, "a port number from 1 to 65535"))?,
            None => current.port(),
        };
        let source = match (host, port) {
            (Some((_, _, source)), Some(_)) => renamed(source, "EXAI_WS_HOST and EXAI_WS_PORT"),
            (Some((_, _, source)), None) | (None, Some((_, _, source))) => source.clone(),
            (None, None) => Source::Default,
        };
        let addr = SocketAddr::new(ip, port_number).to_string();
        apply_setting(tree, sources, listen, &addr, source)?;
    }

    let limits: Vec<_> = ["EXAI_WS_KIMI_MAX_INFLIGHT", "EXAI_WS_GLM_MAX_INFLIGHT"]
        .into_iter()
        .filter_map(get)
        .collect();
    if !limits.is_empty() {
        let setting = registered("providers.max_concurrent_per_provider")?;
        let mut parsed = Vec::new();
        for (name, text, source) in limits {
            let n = text
                .trim()
                .parse::<i64>()
                .map_err(|_| Expected::new("a whole number"))
                .and_then(|n| setting.rule.check(&Value::Integer(n)).map(|()| n))
                .map_err(|e| reject(setting, text, source.clone(), e))?;
            parsed.push((n, name, text, source));
        }
        parsed.sort_by_key(|(n, ..)| *n);
        if let [(low, low_name, ..), (high, high_name, ..)] = parsed.as_slice()
            && low != high
        {
            notes.other.push(format!(
                "{low_name}={low} and {high_name}={high}: exai has one limit per provider, \
                 providers.max_concurrent_per_provider = {high} (the larger)"
            ));
        }
        if let Some((_, _, text, source)) = parsed.last() {
            apply_setting(tree, sources, setting, text, (*source).clone())?;
        }
    }
    Ok(())
}

/// The same place with another variable named (two variables that set one key).
fn renamed(source: &Source, var: &str) -> Source {
    match source {
        Source::DotEnv { path, .. } => Source::DotEnv {
            path: path.clone(),
            var: var.to_string(),
        },
        Source::Env(_) => Source::Env(var.to_string()),
        other => other.clone(),
    }
}

/// A key the loader names itself; missing only if the registry and this file disagree.
fn registered(key: &str) -> Result<&'static Setting, ConfigError> {
    settings::find(key).ok_or_else(|| ConfigError::UnknownKey {
        key: key.to_string(),
        origin: Source::Default,
        hint: None,
    })
}

fn is_combined(name: &str) -> bool {
    LEGACY_COMBINED.iter().any(|(n, _)| *n == name)
}

/// The configuration file named by `--config` or `EXAI_CONFIG` (which must exist), else the
/// data directory's `exai.toml` if there is one. Returns the file read.
fn apply_config_file(
    tree: &mut Value,
    sources: &mut Sources,
    inputs: &Inputs,
    data_dir: &Path,
) -> Result<Option<PathBuf>, ConfigError> {
    let (path, required) = match (&inputs.config_file, inputs.var("EXAI_CONFIG")) {
        (Some(p), _) => (p.clone(), true),
        (None, Some(p)) => (PathBuf::from(p), true),
        (None, None) => (data_dir.join("exai.toml"), false),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            apply_file(tree, sources, &path, &text)?;
            Ok(Some(path))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Ok(None),
        Err(e) => Err(ConfigError::Read {
            path,
            reason: e.to_string(),
        }),
    }
}

/// The data directory's `.env`, then the ones the user named. Returns the files read.
fn apply_env_files(
    tree: &mut Value,
    sources: &mut Sources,
    notes: &mut Notes,
    inputs: &Inputs,
    data_dir: &Path,
) -> Result<Vec<PathBuf>, ConfigError> {
    let mut read = Vec::new();
    let data_env = data_dir.join(".env");
    if data_env.is_file() {
        apply_env_file(tree, sources, notes, &data_env)?;
        read.push(data_env);
    }
    for path in &inputs.env_files {
        apply_env_file(tree, sources, notes, path)?;
        read.push(path.clone());
    }
    Ok(read)
}

/// The process environment's values for every setting.
fn apply_process_env(
    tree: &mut Value,
    sources: &mut Sources,
    notes: &mut Notes,
    inputs: &Inputs,
) -> Result<(), ConfigError> {
    let legacy: Vec<(String, String, Source)> = inputs
        .env
        .iter()
        .filter(|(name, _)| is_combined(name))
        .map(|(name, value)| (name.clone(), value.clone(), Source::Env(name.clone())))
        .collect();
    apply_legacy(tree, sources, notes, &legacy)?;
    // Aliases are listed in priority order, so the canonical name is applied last and wins.
    for setting in SETTINGS {
        for name in setting.env_names().iter().rev() {
            if let Some(value) = inputs.var(name) {
                apply_setting(tree, sources, setting, value, Source::Env(name.clone()))?;
            }
        }
    }
    Ok(())
}

/// An `EXAI_*` variable that is no setting may be a typo to point out, or the Python daemon's.
/// Other programs' variables in the environment are none of exai's business, even where the
/// Python server used the same generic name (`DEBUG`, `TZ`).
fn check_process_env_names(inputs: &Inputs, notes: &mut Notes) {
    for (name, _) in &inputs.env {
        if name.starts_with("EXAI_") && settings::by_env(name).is_none() && !is_combined(name) {
            match settings::retired(name) {
                Some(why) => notes.retire(name, why),
                None => notes.unknown(name, &Source::Env(name.clone())),
            }
        }
    }
}

/// Command-line flags, applied last.
fn apply_flags(
    tree: &mut Value,
    sources: &mut Sources,
    inputs: &Inputs,
) -> Result<(), ConfigError> {
    for (key, flag, value) in &inputs.flags {
        let setting = settings::find(key).ok_or_else(|| ConfigError::UnknownKey {
            key: key.to_string(),
            origin: Source::Flag(flag.to_string()),
            hint: None,
        })?;
        apply_setting(
            tree,
            sources,
            setting,
            value,
            Source::Flag(flag.to_string()),
        )?;
    }
    Ok(())
}

/// The checked, typed configuration: each value against its registry rule, the conversion,
/// then the conditions that involve several keys.
fn typed(tree: Value, source: &dyn Fn(&str) -> Source) -> Result<Config, ConfigError> {
    check_rules(&tree, source)?;
    let config: Config = tree
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::Invalid {
            key: "(configuration)".into(),
            value: String::new(),
            origin: Source::Default,
            allowed: e.to_string(),
        })?;
    check_joint(&config, source)?;
    Ok(config)
}

/// Apply a trusted `.env` file: our variables set settings, the Python servers' are mapped or
/// noted, other programs' are left alone.
fn apply_env_file(
    tree: &mut Value,
    sources: &mut Sources,
    notes: &mut Notes,
    path: &Path,
) -> Result<(), ConfigError> {
    let read_error = |reason: String| ConfigError::Read {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| read_error(e.to_string()))?;
    // Editors on Windows, where the Python servers ran, start files with a byte order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut vars = Vec::new();
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        let (name, value) = match item {
            Ok(pair) => pair,
            // python-dotenv reads values dotenvy refuses (an unquoted `C:\path`); one exai
            // does not use need not parse, but one of ours must, or its value would be lost.
            Err(dotenvy::Error::LineParse(part, at)) => {
                let name = crate::env_import::name_of_value(text, &part);
                match name {
                    Some(name) if settings::by_env(name).is_none() && !is_combined(name) => {
                        if let Some(why) = settings::retired(name) {
                            notes.retire(name, why);
                        }
                        continue;
                    }
                    _ => {
                        let error = dotenvy::Error::LineParse(part, at);
                        // A setting that is not secret shows its value, as its other errors
                        // do; any other line may hold a key and is only located.
                        let shown = name.and_then(settings::by_env).is_some_and(|s| !s.secret);
                        let reason = if shown {
                            error.to_string()
                        } else {
                            env_syntax_error(text, error)
                        };
                        return Err(read_error(reason));
                    }
                }
            }
            Err(e) => return Err(read_error(e.to_string())),
        };
        let source = Source::DotEnv {
            path: path.to_path_buf(),
            var: name.clone(),
        };
        vars.push((name, value, source));
    }
    let (legacy, vars): (Vec<_>, Vec<_>) = vars.into_iter().partition(|(n, ..)| is_combined(n));
    apply_legacy(tree, sources, notes, &legacy)?;
    for (name, value, source) in vars {
        apply_env_var(tree, sources, notes, &name, &value, source)?;
    }
    Ok(())
}

/// Where a `.env` stops parsing, without the line: dotenvy's own message quotes it, and the
/// line may hold a key.
pub(crate) fn env_syntax_error(text: &str, error: dotenvy::Error) -> String {
    match error {
        dotenvy::Error::LineParse(line, index) => {
            // dotenvy hands back the logical line (several for a quoted value spanning lines),
            // and its length when it reached the end of the file inside quotes.
            let start = text.find(line.as_str());
            match start {
                Some(start) if index >= line.len() => {
                    let (line, _) = line_column(text, start);
                    format!("line {line}: a quoted value that is never closed")
                }
                Some(start) => {
                    let (line, column) = line_column(text, start + index);
                    format!(
                        "line {line}, column {column}: not NAME=value (a character a name or an \
                         unquoted value cannot hold)"
                    )
                }
                None => "a line that is not NAME=value".into(),
            }
        }
        other => other.to_string(),
    }
}

/// Where a TOML file stops parsing and why, without the line: the `toml` crate's message
/// quotes it, and it may hold a key.
fn toml_syntax_error(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim();
    match error.span() {
        Some(span) => {
            let (line, column) = line_column(text, span.start);
            format!("line {line}, column {column}: {message}")
        }
        None => message.to_string(),
    }
}

/// The 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

/// The working directory's `.env` when it holds exai settings and is none of the files read.
fn project_env(path: &Path, read: &[PathBuf]) -> Option<IgnoredEnv> {
    let real = std::fs::canonicalize(path).ok()?;
    if read
        .iter()
        .any(|r| std::fs::canonicalize(r).ok().as_ref() == Some(&real))
    {
        return None;
    }
    // Unparsable lines are skipped: this file is only looked at to warn, never applied.
    let names: Vec<String> = dotenvy::from_path_iter(&real)
        .ok()?
        .filter_map(Result::ok)
        .map(|(name, _)| name)
        .filter(|name| settings::by_env(name).is_some() || name.starts_with("EXAI_"))
        .collect();
    (!names.is_empty()).then_some(IgnoredEnv { path: real, names })
}

fn to_tree(config: &Config) -> Value {
    // Serialising a plain struct of strings, numbers, lists and maps cannot fail.
    Value::try_from(config).unwrap_or(Value::Table(Default::default()))
}

fn lookup<'a>(tree: &'a Value, key: &str) -> Option<&'a Value> {
    key.split('.').try_fold(tree, |node, part| node.get(part))
}

fn lookup_mut<'a>(tree: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    key.split('.')
        .try_fold(tree, |node, part| node.get_mut(part))
}

fn render(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(render).collect::<Vec<_>>().join(","),
        Value::Table(t) => t
            .iter()
            .map(|(k, v)| format!("{k}={}", render(v)))
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}

fn apply_file(
    tree: &mut Value,
    sources: &mut Sources,
    path: &Path,
    text: &str,
) -> Result<(), ConfigError> {
    let parsed: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Read {
            path: path.to_path_buf(),
            reason: toml_syntax_error(text, &e),
        })?;
    let mut leaves = Vec::new();
    flatten(&Value::Table(parsed), String::new(), &mut leaves);
    for (key, value) in leaves {
        let setting = settings::find(&key).ok_or_else(|| ConfigError::UnknownKey {
            key: key.clone(),
            origin: Source::File(path.to_path_buf()),
            hint: settings::closest(&key, SETTINGS.iter().map(|s| s.key)).map(str::to_string),
        })?;
        let source = Source::File(path.to_path_buf());
        let current = lookup(tree, setting.key)
            .cloned()
            .unwrap_or(Value::Boolean(false));
        let text = render(&value);
        let value = from_file(setting, value, &current)
            .map_err(|e| reject(setting, &text, source.clone(), e))?;
        set(tree, setting.key, value);
        sources.insert(setting.key, source);
    }
    Ok(())
}

/// Leaves of a parsed file: a table is a leaf when it is a map-valued setting.
fn flatten(value: &Value, prefix: String, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Table(t) if settings::find(&prefix).is_none() => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(v, key, out);
            }
        }
        other => out.push((prefix, other.clone())),
    }
}

fn set(tree: &mut Value, key: &str, value: Value) {
    if let Some(slot) = lookup_mut(tree, key) {
        *slot = value;
    }
}

/// A value from the file in the shape its setting is written in, or what is allowed.
fn from_file(setting: &Setting, value: Value, like: &Value) -> Result<Value, Expected> {
    match setting.shape {
        Shape::Plain | Shape::Trimmed => coerce(value, like),
        Shape::LogLevel => match coerce(value, like)? {
            Value::String(s) => Ok(Value::String(log_level(&s))),
            other => Ok(other),
        },
        Shape::NumberTable { says } => match value {
            Value::Table(t) if t.values().all(|v| v.is_float() || v.is_integer()) => {
                Ok(Value::Table(
                    t.into_iter()
                        .map(|(k, v)| {
                            let n = v.as_float().or(v.as_integer().map(|i| i as f64));
                            (k, Value::Float(n.unwrap_or(0.0)))
                        })
                        .collect(),
                ))
            }
            _ => Err(Expected::new(says)),
        },
        Shape::ListTable { .. } | Shape::Structured(_) => {
            setting.shape.check(&value).map(|()| value)
        }
    }
}

/// A file value converted to the type of the default it replaces, or what is allowed.
fn coerce(value: Value, like: &Value) -> Result<Value, Expected> {
    match (like, value) {
        (Value::Float(_), Value::Integer(i)) => Ok(Value::Float(i as f64)),
        (Value::Float(_), v @ Value::Float(_)) => Ok(v),
        (Value::Integer(_), v @ Value::Integer(_)) => Ok(v),
        (Value::Boolean(_), v @ Value::Boolean(_)) => Ok(v),
        (Value::String(_), v @ Value::String(_)) => Ok(v),
        (Value::Array(_), Value::Array(items)) if items.iter().all(Value::is_str) => {
            Ok(Value::Array(items))
        }
        (like, _) => Err(Expected::new(type_name(like))),
    }
}

fn type_name(like: &Value) -> &'static str {
    match like {
        Value::Float(_) => "a number",
        Value::Integer(_) => "a whole number",
        Value::Boolean(_) => "true or false",
        Value::String(_) => "a string",
        Value::Array(_) => "a list of strings",
        Value::Table(_) => "a table",
        Value::Datetime(_) => "a date",
    }
}

/// Parse an environment string as the type of the default it replaces.
fn parse_env(text: &str, like: &Value) -> Result<Value, Expected> {
    let text_trim = text.trim();
    match like {
        Value::Float(_) => text_trim
            .parse::<f64>()
            .map(Value::Float)
            .map_err(|_| Expected::new("a number")),
        Value::Integer(_) => text_trim
            .parse::<i64>()
            .map(Value::Integer)
            .map_err(|_| Expected::new("a whole number")),
        Value::Boolean(_) => match text_trim.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(Value::Boolean(true)),
            "0" | "false" | "no" | "off" => Ok(Value::Boolean(false)),
            _ => Err(Expected::new("true/false, 1/0, yes/no or on/off")),
        },
        Value::String(_) => Ok(Value::String(text.to_string())),
        Value::Array(_) => Ok(Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_string()))
                .collect(),
        )),
        Value::Table(_) => {
            let mut table = toml::Table::new();
            for pair in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let (name, number) = pair
                    .split_once('=')
                    .ok_or_else(|| Expected::new("comma-separated name=number pairs"))?;
                let value = match number.trim().parse::<f64>() {
                    Ok(n) => Value::Float(n),
                    Err(_) => Value::Array(
                        number
                            .split('|')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(|s| Value::String(s.to_string()))
                            .collect(),
                    ),
                };
                table.insert(name.trim().to_string(), value);
            }
            Ok(Value::Table(table))
        }
        Value::Datetime(_) => Err(Expected::new("a date")),
    }
}

/// One variable of a trusted `.env` file (not one of [`LEGACY_COMBINED`]).
fn apply_env_var(
    tree: &mut Value,
    sources: &mut Sources,
    notes: &mut Notes,
    name: &str,
    value: &str,
    source: Source,
) -> Result<(), ConfigError> {
    if let Some(setting) = settings::by_env(name) {
        return apply_setting(tree, sources, setting, value, source);
    }
    // A shared `.env` may hold other programs' variables: only the Python servers' are worth a
    // word, and an unknown one of our prefix.
    match settings::retired(name) {
        Some(why) => notes.retire(name, why),
        None if name.starts_with("EXAI_") => notes.unknown(name, &source),
        None => {}
    }
    Ok(())
}

fn apply_setting(
    tree: &mut Value,
    sources: &mut Sources,
    setting: &'static Setting,
    text: &str,
    source: Source,
) -> Result<(), ConfigError> {
    let like = lookup(tree, setting.key)
        .cloned()
        .unwrap_or(Value::String(String::new()));
    let parsed = match setting.shape {
        Shape::Structured(_) => serde_json::from_str::<serde_json::Value>(text)
            .map_err(|e| Expected::new(format!("a JSON object ({e})")))
            .and_then(|json| {
                Value::try_from(json).map_err(|e| Expected::new(format!("a JSON object ({e})")))
            }),
        Shape::Trimmed => Ok(Value::String(text.trim().to_string())),
        Shape::LogLevel => Ok(Value::String(log_level(text))),
        Shape::Plain | Shape::NumberTable { .. } | Shape::ListTable { .. } => {
            parse_env(text, &like)
        }
    };
    let value = parsed
        .and_then(|v| setting.shape.check(&v).map(|()| v))
        .map_err(|e| reject(setting, text, source.clone(), e))?;
    set(tree, setting.key, value);
    sources.insert(setting.key, source);
    Ok(())
}

fn shown(setting: &Setting, text: &str) -> String {
    if setting.secret {
        "<redacted>".into()
    } else {
        text.to_string()
    }
}

/// The error for a value of `setting` that is not what it allows; secrets stay redacted.
fn reject(setting: &Setting, text: &str, origin: Source, expected: Expected) -> ConfigError {
    let value = match expected.part {
        Some(part) if !setting.secret => part,
        _ => shown(setting, text),
    };
    ConfigError::Invalid {
        key: setting.key.into(),
        value,
        origin,
        allowed: expected.allowed,
    }
}

/// Every setting's value against its rule in the registry, in the registry's order.
fn check_rules(tree: &Value, source: &dyn Fn(&str) -> Source) -> Result<(), ConfigError> {
    for setting in SETTINGS {
        let Some(value) = lookup(tree, setting.key) else {
            continue;
        };
        setting
            .rule
            .check(value)
            .map_err(|e| reject(setting, &shown_value(value), source(setting.key), e))?;
    }
    Ok(())
}

/// A value as an error message shows it: numbers as Rust prints them (`601`, not `601.0`).
fn shown_value(value: &Value) -> String {
    match value {
        Value::Float(f) => f.to_string(),
        other => render(other),
    }
}

/// The conditions that involve more than one setting ([`Rule::Joint`]), on the typed values;
/// the timeout hierarchy is checked where it is derived.
fn check_joint(config: &Config, source: &dyn Fn(&str) -> Source) -> Result<(), ConfigError> {
    let invalid = |key: &str, value: String, allowed: &str| ConfigError::Invalid {
        key: key.to_string(),
        value,
        origin: source(key),
        allowed: allowed.to_string(),
    };
    let embed = &config.embed;
    if embed.backend == EmbedBackend::Remote
        && let Err(e) = HTTP_EMBEDDINGS_URL.check(&Value::String(embed.remote_url.clone()))
    {
        return Err(invalid(
            "embed.remote_url",
            embed.remote_url.clone(),
            &e.allowed,
        ));
    }
    let kb = &config.kb;
    if kb.chunk_overlap >= kb.chunk_tokens / 2 {
        return Err(invalid(
            "kb.chunk_overlap",
            kb.chunk_overlap.to_string(),
            &format!(
                "less than half of kb.chunk_tokens ({})",
                kb.chunk_tokens / 2
            ),
        ));
    }
    for custom in config.providers.custom.values() {
        if let Err(e) = HTTP_URL.check(&Value::String(custom.url.clone())) {
            return Err(invalid("providers.custom", custom.url.clone(), &e.allowed));
        }
    }
    check_bind(&config.server, &invalid)
}

/// Who may use the HTTP daemon: a non-loopback bind needs a bearer token, and each principal
/// a well-formed name and a long token of its own.
fn check_bind(
    server: &ServerConfig,
    invalid: &dyn Fn(&str, String, &str) -> ConfigError,
) -> Result<(), ConfigError> {
    if !server.listen.ip().is_loopback() && !server.auth_token.is_set() && server.tokens.is_empty()
    {
        return Err(invalid(
            "server.listen",
            server.listen.to_string(),
            "a loopback address (127.0.0.1, ::1) unless EXAI_AUTH_TOKEN is set: a non-loopback bind requires a bearer token",
        ));
    }
    for (name, token) in &server.tokens {
        let valid_name = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
        if !valid_name {
            return Err(invalid(
                "server.tokens",
                name.clone(),
                "principal names of 1 to 64 letters, digits, '-', '_', '.' or '@'",
            ));
        }
        if token.expose().len() < 16 {
            return Err(invalid(
                "server.tokens",
                format!("{name} = <redacted>"),
                "tokens of at least 16 characters",
            ));
        }
    }
    let mut seen_tokens: Vec<&str> = vec![];
    let auth_token = server
        .auth_token
        .is_set()
        .then(|| server.auth_token.expose());
    for token in server.tokens.values().map(Secret::expose).chain(auth_token) {
        if seen_tokens.contains(&token) {
            return Err(invalid(
                "server.tokens",
                "<redacted>".into(),
                "a different token for every principal (and server.auth_token)",
            ));
        }
        seen_tokens.push(token);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_keys_name_what_differs() {
        let old = Config::default();
        let mut new = old.clone();
        assert!(changed_keys(&old, &new).is_empty());
        new.providers.kimi_api_key = Secret::new("another-key");
        new.server
            .tokens
            .insert("alice".into(), Secret::new("alice-token"));
        new.server.max_sessions += 1;
        let mut changed = changed_keys(&old, &new);
        changed.sort_unstable();
        assert_eq!(
            changed,
            [
                "providers.kimi_api_key",
                "server.max_sessions",
                "server.tokens"
            ]
        );
    }

    fn inputs(env: &[(&str, &str)]) -> (tempfile::TempDir, Inputs) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut vars = vec![("EXAI_HOME".to_string(), dir.path().display().to_string())];
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        (
            dir,
            Inputs {
                config_file: None,
                env_files: Vec::new(),
                working_dir: None,
                env: vars,
                flags: Vec::new(),
            },
        )
    }

    /// Fuzzing finding (`config_load`): a TOML syntax error quoted the line, and with it the
    /// key on that line.
    #[test]
    fn toml_syntax_errors_give_the_place_not_the_line() {
        for (text, place) in [
            (
                "[providers]\nkimi_api_key = \"sk-leak-toml-0123456789\n",
                "line 2, column",
            ),
            (
                "providers.openai_api_key = \"sk-leak-toml-0123456789\" junk\n",
                "line 1, column 54",
            ),
        ] {
            let (dir, i) = inputs(&[]);
            std::fs::write(dir.path().join("exai.toml"), text).unwrap();
            let message = load(&i).unwrap_err().to_string();
            assert!(!message.contains("sk-leak"), "{message}");
            assert!(message.contains(place), "{message}");
            assert!(message.contains("exai.toml"), "{message}");
        }
    }

    /// Fuzzing finding (`config_load`): a `.env` line dotenvy cannot parse was quoted whole in
    /// the error, key included.
    #[test]
    fn env_syntax_errors_give_the_place_not_the_line() {
        for (text, place) in [
            (
                "EXAI_SERVER_LISTEN=127.0.0.1:1\nGLM_API_KEY=sk-leak-env-5555555555 x\n",
                "line 2, column 36",
            ),
            (
                "EXAI_SERVER_LISTEN=127.0.0.1:1\nGLM_API_KEY=sk-leak-env-5555555555 'x\n",
                "line 2: a quoted value that is never closed",
            ),
            (
                "KIMI_API_KEY=\"sk-leak-env-0123456789\nEXAI_SERVER_LISTEN=127.0.0.1:1\n",
                "line 1: a quoted value that is never closed",
            ),
        ] {
            let (dir, i) = inputs(&[]);
            std::fs::write(dir.path().join(".env"), text).unwrap();
            let message = load(&i).unwrap_err().to_string();
            assert!(!message.contains("sk-leak"), "{message}");
            assert!(message.contains(place), "{message}");
            assert!(message.contains(".env"), "{message}");
        }
    }

    /// Found while reviewing the `config_load` harness's blind spots, then confirmed with it:
    /// dotenvy expands `${NAME}`, so a `.env` can hand a secret to a key whose error shows its
    /// value.
    #[test]
    fn a_secret_expanded_into_another_key_is_redacted_in_its_error() {
        let (dir, i) = inputs(&[]);
        std::fs::write(
            dir.path().join(".env"),
            "KIMI_API_KEY=sk-subst-0123456789\nEXAI_SERVER_LISTEN=${KIMI_API_KEY}\n",
        )
        .unwrap();
        let message = load(&i).unwrap_err().to_string();
        assert!(!message.contains("sk-subst"), "{message}");
        assert!(message.contains("<redacted>"), "{message}");
        assert!(message.contains("server.listen"), "{message}");
    }

    #[test]
    fn defaults_load_and_every_setting_exists_in_the_struct() {
        let (_d, i) = inputs(&[]);
        let loaded = load(&i).unwrap();
        let tree = to_tree(&loaded.config);
        for s in SETTINGS {
            assert!(
                lookup(&tree, s.key).is_some(),
                "{} missing from Config",
                s.key
            );
        }
        let mut leaves = Vec::new();
        flatten(&tree, String::new(), &mut leaves);
        for (key, _) in leaves {
            assert!(
                settings::find(&key).is_some(),
                "{key} missing from SETTINGS"
            );
        }
    }

    #[test]
    fn precedence_default_file_dotenv_env() {
        let (dir, i) = inputs(&[("WORKFLOW_TOOL_TIMEOUT_SECS", "50")]);
        std::fs::write(
            dir.path().join("exai.toml"),
            "[timeouts]\nworkflow_tool_secs = 60\nsimple_tool_secs = 20\n[logging]\nlevel = \"debug\"\n",
        )
        .unwrap();
        let dotenv = dir.path().join(".env");
        std::fs::write(
            &dotenv,
            "SIMPLE_TOOL_TIMEOUT_SECS=25\nUNRELATED=1\nKIMI_API_KEY=sk-secret\n",
        )
        .unwrap();
        let loaded = load(&i).unwrap();
        assert_eq!(loaded.config.timeouts.workflow_tool_secs, 50.0);
        assert_eq!(loaded.config.timeouts.simple_tool_secs, 25.0);
        assert_eq!(loaded.config.logging.level, "debug");
        assert_eq!(loaded.config.providers.kimi_api_key.expose(), "sk-secret");
        assert_eq!(
            loaded.source("timeouts.workflow_tool_secs"),
            Source::Env("WORKFLOW_TOOL_TIMEOUT_SECS".into())
        );
        assert_eq!(
            loaded.source("timeouts.simple_tool_secs"),
            Source::DotEnv {
                path: dotenv,
                var: "SIMPLE_TOOL_TIMEOUT_SECS".into()
            }
        );
        assert_eq!(
            loaded.source("logging.level"),
            Source::File(dir.path().join("exai.toml"))
        );
        let rows = loaded.rows();
        let key_row = rows
            .iter()
            .find(|r| r.0 == "providers.kimi_api_key")
            .unwrap();
        assert_eq!(key_row.1, "<redacted>");
        assert!(!format!("{loaded:?}").contains("sk-secret"));
    }

    #[test]
    fn a_projects_env_is_never_applied_but_reported() {
        let (_d, mut i) = inputs(&[("KIMI_API_KEY", "sk-users-own-key")]);
        let project = tempfile::tempdir().unwrap();
        std::fs::write(
            project.path().join(".env"),
            "KIMI_API_URL=http://127.0.0.1:9999/v1\nORT_DYLIB_PATH=/tmp/evil.so\n\
             EXAI_TOOLS_ALLOWED_ROOTS=/\nEXAI_PROVIDERS_CUSTOM={\"x\":{\"url\":\"http://evil/v1\",\"api_key_env\":\"KIMI_API_KEY\"}}\n\
             EXAI_DATABASE_URL=postgres://evil/db\nEXAI_SERVER_LISTEN=0.0.0.0:80\nEXAI_EMBED_MODEL=/tmp/m\nOTHER_APP=1\n",
        )
        .unwrap();
        i.working_dir = Some(project.path().to_path_buf());
        let loaded = load(&i).unwrap();
        let defaults = Config::default();
        assert_eq!(
            loaded.config.providers.kimi_api_url,
            defaults.providers.kimi_api_url
        );
        assert_eq!(loaded.config.embed.onnx_runtime, "");
        assert!(loaded.config.tools.allowed_roots.is_empty());
        assert!(loaded.config.providers.custom.is_empty());
        assert!(loaded.config.database.postgres_url().is_none());
        assert_eq!(loaded.config.server.listen, defaults.server.listen);
        assert_eq!(loaded.config.embed.model, "");
        let ignored = loaded.ignored_project_env.clone().unwrap();
        assert_eq!(
            ignored.names,
            [
                "KIMI_API_URL",
                "ORT_DYLIB_PATH",
                "EXAI_TOOLS_ALLOWED_ROOTS",
                "EXAI_PROVIDERS_CUSTOM",
                "EXAI_DATABASE_URL",
                "EXAI_SERVER_LISTEN",
                "EXAI_EMBED_MODEL"
            ]
        );
        let message = ignored.to_string();
        assert!(message.contains("exai config import") && message.contains("--env-file"));
        // Only names are reported, never values.
        assert!(!message.contains("9999") && !message.contains("evil"));
        // A project's .env that holds nothing of ours is not worth a warning.
        std::fs::write(project.path().join(".env"), "OTHER_APP=1\n").unwrap();
        assert!(load(&i).unwrap().ignored_project_env.is_none());
    }

    #[test]
    fn named_env_files_apply_after_the_data_directorys_env() {
        let (dir, mut i) = inputs(&[]);
        std::fs::write(
            dir.path().join(".env"),
            "SIMPLE_TOOL_TIMEOUT_SECS=25\nEXPERT_ANALYSIS_TIMEOUT_SECS=30\n",
        )
        .unwrap();
        let named = tempfile::tempdir().unwrap();
        let file = named.path().join("python-server.env");
        std::fs::write(&file, "SIMPLE_TOOL_TIMEOUT_SECS=20\n").unwrap();
        i.env_files = vec![file.clone()];
        // The named file's directory as the working directory: read once, not reported.
        i.working_dir = Some(named.path().to_path_buf());
        std::fs::copy(&file, named.path().join(".env")).unwrap();
        i.env_files.push(named.path().join(".env"));
        let loaded = load(&i).unwrap();
        assert_eq!(loaded.config.timeouts.simple_tool_secs, 20.0);
        assert_eq!(loaded.config.timeouts.expert_analysis_secs, 30.0);
        assert_eq!(loaded.env_files.len(), 3);
        assert!(loaded.ignored_project_env.is_none());
        i.env_files = vec![named.path().join("missing.env")];
        let err = load(&i).unwrap_err().to_string();
        assert!(err.contains("missing.env"), "{err}");
    }

    #[test]
    fn named_tokens_load_from_file_and_env_and_stay_redacted() {
        let (dir, i) = inputs(&[]);
        std::fs::write(
            dir.path().join("exai.toml"),
            "[server.tokens]\nalice = \"alice-token-0123456789\"\nci = \"ci-token-0123456789ab\"\n",
        )
        .unwrap();
        let loaded = load(&i).unwrap();
        assert_eq!(loaded.config.server.tokens.len(), 2);
        assert_eq!(
            loaded.config.server.tokens["alice"].expose(),
            "alice-token-0123456789"
        );
        let row = loaded
            .rows()
            .into_iter()
            .find(|r| r.0 == "server.tokens")
            .unwrap();
        assert_eq!(row.1, "alice=<redacted>,ci=<redacted>");
        let (_d, i) = inputs(&[("EXAI_SERVER_TOKENS", r#"{"bob":"short"}"#)]);
        let err = load(&i).unwrap_err().to_string();
        assert!(
            err.contains("at least 16") && !err.contains("short"),
            "{err}"
        );
        let (_d, i) = inputs(&[(
            "EXAI_SERVER_TOKENS",
            r#"{"a":"same-token-0123456789","b":"same-token-0123456789"}"#,
        )]);
        assert!(
            load(&i)
                .unwrap_err()
                .to_string()
                .contains("different token")
        );
    }

    #[test]
    fn canonical_env_name_beats_alias() {
        let (_d, i) = inputs(&[
            ("MOONSHOT_API_KEY", "b"),
            ("KIMI_API_KEY", "a"),
            ("EXAI_PROVIDERS_KIMI_API_KEY", "c"),
        ]);
        assert_eq!(
            load(&i).unwrap().config.providers.kimi_api_key.expose(),
            "c"
        );
        let (_d, i) = inputs(&[("MOONSHOT_API_KEY", "b"), ("KIMI_API_KEY", "a")]);
        assert_eq!(
            load(&i).unwrap().config.providers.kimi_api_key.expose(),
            "a"
        );
    }

    #[test]
    fn unknown_file_key_is_named_with_source_and_hint() {
        let (dir, i) = inputs(&[]);
        std::fs::write(dir.path().join("exai.toml"), "[server]\nlisen = \"x\"\n").unwrap();
        let err = load(&i).unwrap_err().to_string();
        assert!(err.contains("server.lisen"), "{err}");
        assert!(err.contains("exai.toml"), "{err}");
        assert!(err.contains("server.listen"), "{err}");
    }

    #[test]
    fn unknown_exai_env_is_a_notice_with_a_hint_and_foreign_env_is_not_mentioned() {
        let (dir, i) = inputs(&[
            ("EXAI_SERVER_LISTN", "x"),
            ("EXAI_BIN", "/usr/bin/exai"),
            ("PATH", "/bin"),
            ("DEBUG", "1"),
        ]);
        std::fs::write(
            dir.path().join(".env"),
            "EXAI_KB_CHUNK_TOKEN=100
",
        )
        .unwrap();
        let loaded = load(&i).unwrap();
        let notices = loaded.notices.join("\n");
        assert!(
            notices.contains("environment variable EXAI_SERVER_LISTN")
                && notices.contains("did you mean `EXAI_SERVER_LISTEN`?"),
            "{notices}"
        );
        assert!(
            notices.contains("EXAI_KB_CHUNK_TOKEN in")
                && notices.contains("did you mean `EXAI_KB_CHUNK_TOKENS`?"),
            "{notices}"
        );
        assert!(notices.contains("EXAI_BIN"), "{notices}");
        assert!(
            !notices.contains("PATH") && !notices.contains("DEBUG"),
            "{notices}"
        );
        assert_eq!(loaded.notices.len(), 3, "{notices}");
        assert_eq!(loaded.config.server.listen, Config::default().server.listen);
    }

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    fn fixture_names(name: &str) -> Vec<String> {
        let text = std::fs::read_to_string(fixture(name)).unwrap();
        text.lines()
            .filter(|l| !l.trim_start_matches('\u{feff}').starts_with('#'))
            .filter_map(|l| l.split_once('=').map(|(name, _)| name.to_string()))
            .collect()
    }

    /// Every variable of the file is mapped to a key or named in a notice, none as unknown.
    fn assert_every_variable_is_accounted_for(file: &str, loaded: &Loaded) {
        let notices = loaded.notices.join("\n");
        assert!(!notices.contains("not an exai setting"), "{notices}");
        for name in fixture_names(file) {
            let mapped = settings::by_env(&name).is_some() || is_combined(&name);
            let noted = loaded.notices.iter().any(|line| {
                line.split(": ")
                    .next()
                    .is_some_and(|names| names.split(", ").any(|n| n == name))
            });
            assert!(
                mapped != noted,
                "{name}: mapped {mapped}, noted {noted}\n{notices}"
            );
        }
    }

    #[test]
    fn the_python_servers_env_loads_as_the_data_directorys_env() {
        let (dir, i) = inputs(&[]);
        let dotenv = dir.path().join(".env");
        std::fs::copy(fixture("python-server.env"), &dotenv).unwrap();
        let loaded = load(&i).unwrap();
        let c = &loaded.config;
        let from = |var: &str| Source::DotEnv {
            path: dotenv.clone(),
            var: var.into(),
        };
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8079");
        assert_eq!(
            loaded.source("server.listen"),
            from("EXAI_WS_HOST and EXAI_WS_PORT")
        );
        assert_eq!(c.shim.url, "http://127.0.0.1:8079/mcp");
        assert!(!c.server.auth_token.is_set());
        assert_eq!(loaded.source("server.auth_token"), from("EXAI_WS_TOKEN"));
        assert_eq!(c.server.max_body_bytes, 16_777_216);
        assert_eq!(c.providers.max_concurrent, 24);
        assert_eq!(c.providers.max_concurrent_per_session, 8);
        assert_eq!(c.providers.max_concurrent_per_provider, 6);
        assert_eq!(
            loaded.source("providers.max_concurrent_per_provider"),
            from("EXAI_WS_KIMI_MAX_INFLIGHT")
        );
        assert_eq!(c.providers.kimi_api_url, "https://api.moonshot.ai/v1");
        assert_eq!(
            loaded.source("providers.kimi_api_url"),
            from("KIMI_API_URL")
        );
        assert_eq!(c.providers.glm_api_url, "https://api.z.ai/api/paas/v4");
        assert_eq!(
            loaded.source("providers.glm_api_url"),
            from("ZHIPUAI_BASE_URL")
        );
        assert_eq!(c.providers.default_model, "glm-4.5-flash");
        assert_eq!(c.logging.level, "info");
        assert_eq!(loaded.source("logging.level"), from("LOG_LEVEL"));
        assert_eq!(c.threads.ttl_hours, 24.0);
        assert_eq!(c.timeouts.workflow_tool_secs, 45.0);
        assert_eq!(c.timeouts.simple_tool_secs, 30.0);
        assert_eq!(c.timeouts.expert_analysis_secs, 44.0);
        assert_eq!(loaded.timeouts.expert_analysis, 44.0);
        assert_eq!(loaded.timeouts.daemon, 68.0);

        let notices = loaded.notices.join("\n");
        for expected in [
            "timeouts.expert_analysis_secs 60 s (EXPERT_ANALYSIS_TIMEOUT_SECS in",
            "workflow tool timeout 45 s (WORKFLOW_TOOL_TIMEOUT_SECS in",
            "using 44 s",
            "EXAI_WS_GLM_MAX_INFLIGHT=4 and EXAI_WS_KIMI_MAX_INFLIGHT=6",
            "providers.max_concurrent_per_provider = 6 (the larger)",
        ] {
            assert!(notices.contains(expected), "{expected}\n{notices}");
        }
        let line_of = |name: &str| {
            loaded
                .notices
                .iter()
                .find(|l| {
                    l.split(": ")
                        .next()
                        .is_some_and(|n| n.split(", ").any(|n| n == name))
                })
                .cloned()
                .unwrap_or_else(|| panic!("no notice names {name}\n{notices}"))
        };
        let storage = line_of("SUPABASE_URL");
        assert!(storage.contains("database.url") && storage.contains("REDIS_PASSWORD"));
        assert_eq!(line_of("VECTOR_DB_PATH"), storage);
        assert!(line_of("GLM_TIMEOUT_SECS").contains("timeouts.model_multipliers"));
        assert!(line_of("KIMI_TIMEOUT_SECS").contains("providers.max_retries"));
        assert!(line_of("EXAI_WS_PING_INTERVAL").contains("Streamable HTTP"));
        assert!(line_of("EX_ALLOWED_EXTERNAL_PREFIXES").contains("tools.allowed_roots"));
        // One line per reason, however many variables share it.
        assert_eq!(
            loaded.notices.len(),
            settings::RETIRED_ENV.len() + 2,
            "{notices}"
        );
        assert_every_variable_is_accounted_for("python-server.env", &loaded);
    }

    #[test]
    fn the_newest_python_env_loads_with_its_port_and_token() {
        let (dir, i) = inputs(&[]);
        std::fs::copy(
            fixture("python-server-2025-11.env"),
            dir.path().join(".env"),
        )
        .unwrap();
        let loaded = load(&i).unwrap();
        let c = &loaded.config;
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:3010");
        assert_eq!(c.shim.url, "http://127.0.0.1:3010/mcp");
        assert_eq!(c.server.auth_token.expose(), "your_websocket_token_here");
        assert_eq!(c.timeouts.workflow_tool_secs, 46.0);
        assert_eq!(c.timeouts.expert_analysis_secs, 45.0);
        assert_eq!(c.logging.level, "info");
        assert_every_variable_is_accounted_for("python-server-2025-11.env", &loaded);
        assert!(!loaded.notices.join("\n").contains("your_"));
    }

    #[test]
    fn bad_values_of_the_python_servers_variables_are_errors_naming_them() {
        for (name, value, key) in [
            ("EXAI_WS_PORT", "80x", "server.listen"),
            ("EXAI_WS_PORT", "70000", "server.listen"),
            ("EXAI_WS_HOST", "my-host", "server.listen"),
            (
                "EXAI_WS_GLM_MAX_INFLIGHT",
                "0",
                "providers.max_concurrent_per_provider",
            ),
            (
                "EXAI_WS_KIMI_MAX_INFLIGHT",
                "many",
                "providers.max_concurrent_per_provider",
            ),
            (
                "EXAI_WS_GLOBAL_MAX_INFLIGHT",
                "-1",
                "providers.max_concurrent",
            ),
            ("EXAI_WS_MAX_BYTES", "10", "server.max_body_bytes"),
            ("CONVERSATION_TIMEOUT_HOURS", "0", "threads.ttl_hours"),
            ("KIMI_BASE_URL", "api.moonshot.ai", "providers.kimi_api_url"),
        ] {
            // In the data directory's .env and in the environment alike.
            let (dir, i) = inputs(&[]);
            std::fs::write(dir.path().join(".env"), format!("{name}={value}\n")).unwrap();
            let err = load(&i).unwrap_err().to_string();
            assert!(err.contains(name) && err.contains(key), "{name}: {err}");
            let (_d, i) = inputs(&[(name, value)]);
            let err = load(&i).unwrap_err().to_string();
            assert!(err.contains(name) && err.contains(key), "{name}: {err}");
        }
        let (_d, i) = inputs(&[("EXAI_WS_TOKEN", "short-secret")]);
        let err = load(&i).unwrap_err().to_string();
        assert!(
            err.contains("EXAI_WS_TOKEN")
                && err.contains("at least 16")
                && !err.contains("short-secret"),
            "{err}"
        );
        // A LAN address needs a token, whichever name set it.
        let (_d, i) = inputs(&[("EXAI_WS_HOST", "0.0.0.0")]);
        let err = load(&i).unwrap_err().to_string();
        assert!(
            err.contains("EXAI_WS_HOST") && err.contains("bearer token"),
            "{err}"
        );
    }

    #[test]
    fn host_and_port_each_keep_the_others_part_and_registry_names_win() {
        let (_d, i) = inputs(&[("EXAI_WS_PORT", "9000")]);
        assert_eq!(
            load(&i).unwrap().config.server.listen.to_string(),
            "127.0.0.1:9000"
        );
        let (_d, i) = inputs(&[
            ("EXAI_WS_HOST", "0.0.0.0"),
            ("EXAI_WS_TOKEN", "0123456789abcdef0"),
        ]);
        let loaded = load(&i).unwrap();
        assert_eq!(loaded.config.server.listen.to_string(), "0.0.0.0:8079");
        assert_eq!(loaded.config.shim.url, "http://127.0.0.1:8079/mcp");
        let (_d, i) = inputs(&[("EXAI_WS_HOST", "::1"), ("EXAI_WS_PORT", "8081")]);
        let loaded = load(&i).unwrap();
        assert_eq!(loaded.config.shim.url, "http://[::1]:8081/mcp");
        assert_eq!(
            loaded.source("server.listen"),
            Source::Env("EXAI_WS_HOST and EXAI_WS_PORT".into())
        );
        // The file's port and the environment's host make one address.
        let (dir, i) = inputs(&[("EXAI_WS_HOST", "localhost")]);
        std::fs::write(
            dir.path().join("exai.toml"),
            "[server]\nlisten = \"127.0.0.2:8090\"\n",
        )
        .unwrap();
        assert_eq!(
            load(&i).unwrap().config.server.listen.to_string(),
            "127.0.0.1:8090"
        );
        // EXAI_SERVER_LISTEN wins over the pair from the same source, whatever the order.
        let (dir, i) = inputs(&[
            ("EXAI_WS_PORT", "9001"),
            ("EXAI_SERVER_LISTEN", "127.0.0.1:9002"),
        ]);
        assert_eq!(
            load(&i).unwrap().config.server.listen.to_string(),
            "127.0.0.1:9002"
        );
        drop(dir);
        let (dir, i) = inputs(&[]);
        std::fs::write(
            dir.path().join(".env"),
            "EXAI_SERVER_LISTEN=127.0.0.1:9002\nEXAI_WS_PORT=9001\n",
        )
        .unwrap();
        assert_eq!(
            load(&i).unwrap().config.server.listen.to_string(),
            "127.0.0.1:9002"
        );
        // An explicit shim.url is kept.
        let (_d, i) = inputs(&[
            ("EXAI_WS_PORT", "9000"),
            ("EXAI_SHIM_URL", "http://127.0.0.1:7000/mcp"),
        ]);
        assert_eq!(
            load(&i).unwrap().config.shim.url,
            "http://127.0.0.1:7000/mcp"
        );
    }

    #[test]
    fn an_unreadable_value_is_skipped_only_where_exai_does_not_read_it() {
        let (dir, i) = inputs(&[]);
        let dotenv = dir.path().join(".env");
        std::fs::write(
            &dotenv,
            "OTHER_APP=C:\\x\\y\nTEST_FILES_DIR=C:\\t\nEXAI_WS_PORT=9000\n",
        )
        .unwrap();
        let loaded = load(&i).unwrap();
        assert_eq!(loaded.config.server.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(loaded.notices.len(), 1, "{:?}", loaded.notices);
        assert!(loaded.notices[0].starts_with("TEST_FILES_DIR: not read"));
        std::fs::write(&dotenv, "KIMI_API_URL=C:\\x\\y\n").unwrap();
        let err = load(&i).unwrap_err().to_string();
        assert!(err.contains(".env") && err.contains("C:"), "{err}");
    }

    #[test]
    fn python_log_levels_read_as_tracing_levels() {
        for (python, ours) in [
            ("WARNING", "warn"),
            ("CRITICAL", "error"),
            ("DEBUG", "debug"),
            (" info ", "info"),
            ("exai=debug", "exai=debug"),
        ] {
            let (_d, i) = inputs(&[("LOG_LEVEL", python)]);
            assert_eq!(load(&i).unwrap().config.logging.level, ours, "{python}");
        }
        let (_d, i) = inputs(&[("LOG_LEVEL", "WARNING"), ("RUST_LOG", "trace")]);
        assert_eq!(load(&i).unwrap().config.logging.level, "trace");
        let (dir, i) = inputs(&[]);
        std::fs::write(
            dir.path().join("exai.toml"),
            "[logging]\nlevel = \"WARNING\"\n",
        )
        .unwrap();
        assert_eq!(load(&i).unwrap().config.logging.level, "warn");
    }

    #[test]
    fn expert_timeout_at_or_above_the_workflow_timeout_is_lowered_with_a_notice() {
        let (dir, i) = inputs(&[]);
        std::fs::write(
            dir.path().join("exai.toml"),
            "[timeouts]\nworkflow_tool_secs = 5\nsimple_tool_secs = 5\nexpert_analysis_secs = 5\n",
        )
        .unwrap();
        let loaded = load(&i).unwrap();
        assert_eq!(loaded.config.timeouts.expert_analysis_secs, 4.5);
        assert!(
            loaded.notices[0].contains("exai.toml"),
            "{:?}",
            loaded.notices
        );
        // Below it: untouched, no notice.
        let (_d, i) = inputs(&[("EXPERT_ANALYSIS_TIMEOUT_SECS", "45")]);
        let loaded = load(&i).unwrap();
        assert_eq!(loaded.config.timeouts.expert_analysis_secs, 45.0);
        assert!(loaded.notices.is_empty(), "{:?}", loaded.notices);
        // Out of range is still refused, and so is every other rule of the hierarchy.
        let (_d, i) = inputs(&[("EXPERT_ANALYSIS_TIMEOUT_SECS", "5000")]);
        let err = load(&i).unwrap_err().to_string();
        assert!(err.contains("EXPERT_ANALYSIS_TIMEOUT_SECS"), "{err}");
        let (_d, i) = inputs(&[("SIMPLE_TOOL_TIMEOUT_SECS", "50")]);
        let err = load(&i).unwrap_err().to_string();
        assert!(err.contains("SIMPLE_TOOL_TIMEOUT_SECS"), "{err}");
    }

    #[test]
    fn the_python_daemons_variables_in_the_environment_are_noted_other_generic_names_not() {
        let (_d, i) = inputs(&[
            ("EXAI_WS_PING_INTERVAL", "45"),
            ("EXAI_HEALTH_WRITER_INTERVAL", "10"),
            ("SUPABASE_URL", "https://x.supabase.co"),
            ("TZ", "UTC"),
        ]);
        let loaded = load(&i).unwrap();
        let notices = loaded.notices.join("\n");
        assert!(
            notices.contains("EXAI_WS_PING_INTERVAL: not read")
                && notices.contains("EXAI_HEALTH_WRITER_INTERVAL: not read"),
            "{notices}"
        );
        assert!(
            !notices.contains("SUPABASE") && !notices.contains("TZ"),
            "{notices}"
        );
    }

    #[test]
    fn bad_values_name_key_source_and_allowed() {
        let (_d, i) = inputs(&[("SIMPLE_TOOL_TIMEOUT_SECS", "soon")]);
        let err = load(&i).unwrap_err().to_string();
        assert!(
            err.contains("timeouts.simple_tool_secs")
                && err.contains("SIMPLE_TOOL_TIMEOUT_SECS")
                && err.contains("a number"),
            "{err}"
        );
        let (_d, i) = inputs(&[("EXAI_TOOLS_DISABLED_FAMILIES", "ai,nope")]);
        let err = load(&i).unwrap_err().to_string();
        assert!(err.contains("nope") && err.contains("kb"), "{err}");
        let (_d, i) = inputs(&[("EXAI_SERVER_LISTEN", "0.0.0.0:9000")]);
        let err = load(&i).unwrap_err().to_string();
        assert!(err.contains("EXAI_AUTH_TOKEN"), "{err}");
        let (_d, i) = inputs(&[
            ("EXAI_SERVER_LISTEN", "0.0.0.0:9000"),
            ("EXAI_AUTH_TOKEN", "0123456789abcdef0"),
        ]);
        assert!(load(&i).is_ok());
    }

    #[test]
    fn secrets_never_appear_in_errors() {
        let (_d, i) = inputs(&[("EXAI_AUTH_TOKEN", "short-secret")]);
        let err = load(&i).unwrap_err().to_string();
        assert!(!err.contains("short-secret"), "{err}");
    }

    #[test]
    fn lists_and_maps_from_env() {
        let (_d, i) = inputs(&[
            ("DISABLED_TOOLS", "chat, consensus ,"),
            (
                "EXAI_TIMEOUTS_MODEL_MULTIPLIERS",
                "kimi-thinking-preview=2, glm-4.6=1.5",
            ),
        ]);
        let c = load(&i).unwrap().config;
        assert_eq!(c.tools.disabled, vec!["chat", "consensus"]);
        assert_eq!(
            c.timeouts.model_multipliers.get("kimi-thinking-preview"),
            Some(&2.0)
        );
        assert_eq!(c.timeouts.model_multipliers.get("glm-4.6"), Some(&1.5));
    }

    #[test]
    fn map_settings_check_their_value_kind() {
        let (_d, i) = inputs(&[(
            "EXAI_KB_CATEGORIES",
            "recipes=recipe|cookbook, setup=install",
        )]);
        let c = load(&i).unwrap().config;
        assert_eq!(c.kb.categories["recipes"], vec!["recipe", "cookbook"]);
        let (_d, i) = inputs(&[("EXAI_TIMEOUTS_MODEL_MULTIPLIERS", "slow=fast")]);
        let err = load(&i).unwrap_err().to_string();
        assert!(
            err.contains("timeouts.model_multipliers") && err.contains("model names to numbers"),
            "{err}"
        );
        let (dir, i) = inputs(&[]);
        std::fs::write(
            dir.path().join("exai.toml"),
            "[kb.categories]\nrecipes = 3\n",
        )
        .unwrap();
        let err = load(&i).unwrap_err().to_string();
        assert!(err.contains("kb.categories"), "{err}");
    }

    #[test]
    fn untrusted_settings_are_typed_and_patterns_compiled_at_load() {
        let (_d, i) = inputs(&[]);
        let kb = load(&i).unwrap().config.kb;
        assert_eq!(kb.untrusted_content, UntrustedContent::Drop);
        assert!(kb.untrusted_patterns.is_empty());
        let (dir, i) = inputs(&[("EXAI_KB_UNTRUSTED_CONTENT", "mark")]);
        std::fs::write(
            dir.path().join("exai.toml"),
            "[kb]\nuntrusted_patterns = [\"send .{0,40} to https?://\", \"wire money\"]\n",
        )
        .unwrap();
        let kb = load(&i).unwrap().config.kb;
        assert_eq!(kb.untrusted_content, UntrustedContent::Mark);
        assert_eq!(kb.untrusted_patterns.len(), 2);
        let (_d, i) = inputs(&[("EXAI_KB_UNTRUSTED_CONTENT", "strip")]);
        let err = load(&i).unwrap_err().to_string();
        assert!(
            err.contains("kb.untrusted_content") && err.contains("drop, mark or keep"),
            "{err}"
        );
        let (_d, i) = inputs(&[("EXAI_KB_UNTRUSTED_PATTERNS", "fine,(unclosed")]);
        let err = load(&i).unwrap_err().to_string();
        assert!(
            err.contains("kb.untrusted_patterns")
                && err.contains("(unclosed")
                && err.contains("regular expression"),
            "{err}"
        );
    }

    #[test]
    fn ann_min_vectors_is_range_checked() {
        let (_d, i) = inputs(&[("EXAI_KB_ANN_MIN_VECTORS", "0")]);
        assert_eq!(load(&i).unwrap().config.kb.ann_min_vectors, 0);
        let (_d, i) = inputs(&[]);
        assert_eq!(load(&i).unwrap().config.kb.ann_min_vectors, 20_000);
        let (_d, i) = inputs(&[("EXAI_KB_ANN_MIN_VECTORS", "5000000000")]);
        let err = load(&i).unwrap_err().to_string();
        assert!(err.contains("kb.ann_min_vectors"), "{err}");
    }

    /// A rule that never sees a value of its kind would pass everything without a word.
    #[test]
    fn every_rule_fits_its_settings_type_and_passes_the_default() {
        use crate::rules::Rule;
        let tree = to_tree(&Config::default());
        for s in SETTINGS {
            let value = lookup(&tree, s.key).unwrap_or_else(|| panic!("{}", s.key));
            let fits = matches!(
                (s.rule, value),
                (Rule::Any | Rule::Joint, _)
                    | (Rule::Whole { .. }, Value::Integer(_))
                    | (Rule::Number { .. }, Value::Float(_))
                    | (
                        Rule::EachOf(_) | Rule::Origins | Rule::AbsolutePaths | Rule::Patterns,
                        Value::Array(_)
                    )
                    | (
                        Rule::OneOf { .. }
                            | Rule::HttpUrl { .. }
                            | Rule::SocketAddr
                            | Rule::LogFilter
                            | Rule::MinChars { .. }
                            | Rule::PostgresUrl,
                        Value::String(_),
                    )
            );
            assert!(fits, "{}: {:?} on {value:?}", s.key, s.rule);
            assert!(s.rule.check(value).is_ok(), "{}: default refused", s.key);
        }
    }

    #[test]
    fn table_settings_read_from_the_file_in_their_shape() {
        let (dir, i) = inputs(&[]);
        std::fs::write(
            dir.path().join("exai.toml"),
            "[kb.categories]\nrecipes = [\"recipe\", \"cookbook\"]\n[timeouts.model_multipliers]\nslow = 2\n",
        )
        .unwrap();
        let c = load(&i).unwrap().config;
        assert_eq!(c.kb.categories["recipes"], vec!["recipe", "cookbook"]);
        assert_eq!(c.timeouts.model_multipliers["slow"], 2.0);
        std::fs::write(
            dir.path().join("exai.toml"),
            "[timeouts]\nmodel_multipliers = 3\n",
        )
        .unwrap();
        let err = load(&i).unwrap_err().to_string();
        assert!(err.contains("model names to numbers"), "{err}");
        let (_d, i) = inputs(&[("EXAI_SERVER_TOKENS", "[1]")]);
        let err = load(&i).unwrap_err().to_string();
        assert!(err.contains("principal names to tokens"), "{err}");
    }

    #[test]
    fn negative_whole_numbers_name_their_key() {
        let (_d, i) = inputs(&[("EXAI_LOGGING_FILE_COUNT", "-3")]);
        let err = load(&i).unwrap_err().to_string();
        assert!(
            err.contains("logging.file_count") && err.contains("1 to 100"),
            "{err}"
        );
    }

    #[test]
    fn explicit_missing_config_file_is_an_error() {
        let (dir, mut i) = inputs(&[]);
        i.config_file = Some(dir.path().join("nope.toml"));
        assert!(load(&i).unwrap_err().to_string().contains("nope.toml"));
    }
}
