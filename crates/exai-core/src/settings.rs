//! The registry of every configuration key: its environment names, whether it is a secret, how
//! it is written, the values it allows and what it does. Loading, validation, `exai config
//! show`, the configuration table in the docs and the tests that keep that table honest all read
//! this one list.

use crate::rules::{
    HTTP_URL, custom_providers, model_overrides, named_tokens, number, whole, whole_says,
};
pub use crate::rules::{Rule, Shape};
use crate::values::{
    EmbedBackend, EmbedPrecision, RenderMode, ToolFamily, ToolProfile, UntrustedContent,
};

/// One configurable key.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// Dotted path in `exai.toml`, e.g. `timeouts.workflow_tool_secs`.
    pub key: &'static str,
    /// Environment names accepted besides the canonical `EXAI_*` one, in priority order. These
    /// are the names users of the Python servers already have in their `.env` files.
    pub aliases: &'static [&'static str],
    /// Secrets are redacted in every output and never logged.
    pub secret: bool,
    /// How the value is written in the file and in the environment.
    pub shape: Shape,
    /// What values are allowed beyond the type of the default.
    pub rule: Rule,
    /// One line for the configuration table.
    pub doc: &'static str,
}

impl Setting {
    /// `EXAI_` followed by the key in upper case with dots as underscores.
    pub fn env_name(&self) -> String {
        format!("EXAI_{}", self.key.replace('.', "_").to_ascii_uppercase())
    }

    /// Every environment name that sets this key, canonical first.
    pub fn env_names(&self) -> Vec<String> {
        let mut names = vec![self.env_name()];
        names.extend(self.aliases.iter().map(|a| a.to_string()));
        names
    }
}

/// Environment variables with an `EXAI_` prefix that are not configuration keys.
pub const NON_SETTING_ENV: &[(&str, &str)] = &[
    (
        "EXAI_HOME",
        "data directory (database, logs, pid file); default `$XDG_DATA_HOME/exai`",
    ),
    (
        "EXAI_ENV_FILE",
        "`.env` files to read besides the data directory's, separated by `:` (like `--env-file`); a `.env` in the working directory is never read",
    ),
    (
        "EXAI_CONFIG",
        "path of the configuration file; default `exai.toml` in the data directory",
    ),
    (
        "EXAI_CHROMIUM",
        "the Chromium (or Chrome) binary that renders script-built pages while crawling; default the first of `chromium`, `chromium-browser`, `google-chrome` on `PATH`",
    ),
    (
        "EXAI_REQUIRE_CHROMIUM",
        "make exai's own render tests fail rather than skip when no Chromium is found (set by `scripts/test.sh`)",
    ),
    (
        "EXAI_TEST_MODEL_DIR",
        "embedding model directory used by exai's own test suite and benchmarks (set by `scripts/test.sh`)",
    ),
    (
        "EXAI_TEST_ONNX_MODEL_DIR",
        "ONNX embedding model directory used by exai's own tests (set by `scripts/test.sh`)",
    ),
    (
        "EXAI_ONNX_MODEL_SRC",
        "where `scripts/install-model.sh --onnx` copies the ONNX model from (default `../shared/models/all-MiniLM-L6-v2-onnx`)",
    ),
    (
        "EXAI_ONNXRUNTIME_VERSION",
        "ONNX Runtime version `scripts/install-onnxruntime.sh` installs",
    ),
    (
        "EXAI_TEST_DATABASE_URL",
        "PostgreSQL server exai's own tests create throwaway databases on (set by `scripts/test.sh`, which starts one from the PyPI package pgserver)",
    ),
    (
        "EXAI_REQUIRE_POSTGRES",
        "`1`: exai's own PostgreSQL tests fail instead of skipping when `EXAI_TEST_DATABASE_URL` is unset (set by `scripts/test.sh`)",
    ),
    (
        "EXAI_CACHE_DIR",
        "where `scripts/test.sh` keeps its build, venv and models (default `~/.cache/exai-ci`)",
    ),
];

/// The Python daemon's variables that set one key together or pick between two values, so they
/// are no aliases: the loader combines them (see `config::apply_legacy`).
pub const LEGACY_COMBINED: &[(&str, &str)] = &[
    ("EXAI_WS_HOST", "server.listen"),
    ("EXAI_WS_PORT", "server.listen"),
    (
        "EXAI_WS_KIMI_MAX_INFLIGHT",
        "providers.max_concurrent_per_provider",
    ),
    (
        "EXAI_WS_GLM_MAX_INFLIGHT",
        "providers.max_concurrent_per_provider",
    ),
];

/// Variables of the Python servers (EX-AI-MCP-Server's `.env.example`, the vector server's
/// guide) that exai has no use for, grouped by why. Each group becomes one notice line naming
/// the variables a `.env` file held, so an operator's old file loads and says what it no
/// longer does. A name ending in `_` stands for every variable with that prefix; names that
/// set a key (aliases, [`LEGACY_COMBINED`]) are matched before these.
pub const RETIRED_ENV: &[(&[&str], &str)] = &[
    (
        &[
            "EXAI_WS_",
            "SHIM_LISTEN_PORT",
            "EX_SESSION_SCOPE_",
            "EX_ENSURE_NONEMPTY_FIRST",
            "EXAI_PORT_CHECK_TIMEOUT",
        ],
        "exai serves MCP over stdio and Streamable HTTP (`exai daemon` on `server.listen`, `exai shim`), not the Python daemon's WebSocket protocol, so there is no handshake, ping, coalescing or result cache to tune",
    ),
    (
        &[
            "EXAI_HEALTH_WRITER_",
            "EXAI_SEMAPHORE_HEALTH_CHECK_INTERVAL",
            "PERFORMANCE_METRICS_ENABLED",
            "METRICS_",
            "DIAGNOSTICS",
            "AGENTIC_ENABLE_LOGGING",
        ],
        "the daemon answers `/health`, `/ready` and `/metrics` (Prometheus) live and `exai health` reads them; there is no health file or separate metrics port",
    ),
    (
        &[
            "SUPABASE_",
            "REDIS_",
            "CONVERSATION_STORAGE_BACKEND",
            "UPLOAD_FILES_IMMEDIATELY",
            "ENABLE_FALLBACK",
            "KIMI_UPLOAD_TO_SUPABASE",
            "KIMI_SUPABASE_TIMEOUT",
            "MESSAGE_BUS_",
            "VECTOR_DB_PATH",
        ],
        "exai keeps conversation threads, the knowledge base and its vectors in its data directory (SQLite) or in PostgreSQL with `database.url` (a Supabase connection string works there), not in Redis, the Supabase API or a separate vector store",
    ),
    (
        &[
            "GLM_TIMEOUT_SECS",
            "KIMI_TIMEOUT_SECS",
            "KIMI_WEB_SEARCH_TIMEOUT_SECS",
            "EX_HTTP_TIMEOUT_SECONDS",
            "KIMI_CHAT_TOOL_TIMEOUT_",
            "KIMI_MF_CHAT_TIMEOUT_SECS",
            "KIMI_STREAM_TIMEOUT_SECS",
            "GLM_WEBSEARCH_TIMEOUT_SECS",
            "KIMI_FILES_UPLOAD_TIMEOUT_SECS",
            "KIMI_FILES_FETCH_",
            "THINKDEEP_EXPERT_TIMEOUT_SECS",
            "EXPERT_HEARTBEAT_INTERVAL_SECS",
            "KIMI_SEMAPHORE_TIMEOUT",
            "CIRCUIT_BREAKER_",
            "FALLBACK_TO_WEBSOCKET",
        ],
        "every provider call's deadline derives from the tool timeouts (`timeouts.simple_tool_secs`, `timeouts.workflow_tool_secs`, `timeouts.expert_analysis_secs`, per model `timeouts.model_multipliers`) and one retry loop handles 429, 5xx and network errors (`providers.max_retries`)",
    ),
    (
        &[
            "KIMI_DEFAULT_MODEL",
            "GLM_DEFAULT_MODEL",
            "KIMI_QUALITY_MODEL",
            "GLM_QUALITY_MODEL",
            "KIMI_SPEED_MODEL",
            "KIMI_THINKING_MODEL",
            "KIMI_PREFERRED_MODELS",
            "GLM_PREFERRED_MODELS",
            "ROUTER_",
            "HYBRID_",
            "FAST_MODEL_DEFAULT",
            "LONG_MODEL_DEFAULT",
            "DEFAULT_MAX_OUTPUT_TOKENS",
            "KIMI_MAX_OUTPUT_TOKENS",
            "GLM_MAX_OUTPUT_TOKENS",
            "ENFORCE_MAX_TOKENS",
            "EXPERT_ANALYSIS_AUTO_UPGRADE",
            "MINIMAX_",
        ],
        "exai's model registry chooses models (`providers.default_model`, `auto` picks one per call) and knows each model's output limit and capabilities; add or change models with `providers.models` and other OpenAI-compatible servers with `providers.custom`",
    ),
    (
        &[
            "EXPERT_ANALYSIS_ENABLED",
            "EXPERT_ANALYSIS_THINKING_MODE",
            "EXPERT_ANALYSIS_INCLUDE_FILES",
            "EXPERT_ANALYSIS_MAX_FILE_",
            "DEFAULT_USE_ASSISTANT_MODEL",
            "USE_MESSAGE_ARRAYS",
            "GLM_ENABLE_WEB_BROWSING",
            "GLM_WEBSEARCH_",
            "GLM_ACCEPT_LANGUAGE",
            "GLM_STREAM_ENABLED",
            "KIMI_STREAM_",
            "KIMI_EXTRACT_REASONING",
            "KIMI_CACHE_TOKEN_",
            "KIMI_MAX_HEADER_LEN",
        ],
        "each tool call makes these choices through its arguments (`use_assistant_model`, `thinking_mode`, `use_websearch`, files) and the model registry's capabilities; there is no server-wide switch",
    ),
    (
        &[
            "EMBEDDINGS_PROVIDER",
            "KIMI_EMBED_MODEL",
            "GLM_EMBED_MODEL",
            "GLM_EMBEDDINGS_BASE_URL",
            "EXTERNAL_EMBEDDINGS_URL",
        ],
        "the knowledge base computes its embeddings with `embed.backend`: a local model, or `remote` with `embed.remote_url` and `embed.remote_model`",
    ),
    (
        &[
            "EX_ALLOW_EXTERNAL_PATHS",
            "EX_ALLOWED_EXTERNAL_PREFIXES",
            "EX_DRIVE_MAPPINGS",
            "EX_DEBUG_PATH_CONVERSION",
            "EX_ALLOW_RELATIVE_PATHS",
            "SECURE_INPUTS_ENFORCED",
            "STRICT_FILE_SIZE_REJECTION",
            "TOOL_CALL_MAX_SIZE",
            "FILE_UPLOAD_MAX_SIZE",
            "KIMI_FILES_",
            "TEST_FILES_DIR",
        ],
        "tools read only the directories in `tools.allowed_roots` (list the old allowed prefixes there), path checks are always on, and sizes are capped by `providers.max_file_bytes` and `server.max_body_bytes`",
    ),
    (
        &[
            "MAX_CONNECTIONS",
            "MAX_CONNECTIONS_PER_IP",
            "RATE_LIMIT_",
            "SESSION_TIMEOUT_SECS",
            "SESSION_MAX_CONCURRENT",
            "SESSION_CLEANUP_INTERVAL",
        ],
        "the daemon's limits are `server.max_connections`, `server.max_sessions` and `server.session_idle_secs`, and provider calls in flight are capped by `providers.max_concurrent*`; there is no per-address rate limit",
    ),
    (
        &[
            "PYTHONUNBUFFERED",
            "PYTHONIOENCODING",
            "ENVIRONMENT",
            "ENV_FILE",
            "DEBUG",
            "TZ",
        ],
        "they set up the Python process, and exai is one binary that reads the data directory's `.env` and the files named by `--env-file` or `EXAI_ENV_FILE`, and logs more with `logging.level`",
    ),
];

/// Why exai does not need this Python server's variable, if it is one.
pub fn retired(name: &str) -> Option<&'static str> {
    RETIRED_ENV
        .iter()
        .find(|(names, _)| {
            names.iter().any(|n| {
                if n.ends_with('_') {
                    name.starts_with(n)
                } else {
                    name == *n
                }
            })
        })
        .map(|(_, why)| *why)
}

/// One line a setting: `key [aliases] secret {shape}? (rule) doc;` — the shape only where it is
/// not [`Shape::Plain`].
macro_rules! settings {
    ($( $key:literal [$($alias:literal),*] $secret:literal $({$shape:expr})? ($rule:expr) $doc:literal ;)*) => {
        pub const SETTINGS: &[Setting] = &[
            $( Setting {
                key: $key,
                aliases: &[$($alias),*],
                secret: $secret,
                shape: shape_or_plain!($($shape)?),
                rule: $rule,
                doc: $doc,
            }, )*
        ];
    };
}

macro_rules! shape_or_plain {
    () => {
        Shape::Plain
    };
    ($shape:expr) => {
        $shape
    };
}

settings! {
    "server.listen" [] false (Rule::SocketAddr) "Address of the HTTP daemon (`exai daemon`). Any non-loopback address requires `server.auth_token`. The Python daemon's `EXAI_WS_HOST` and `EXAI_WS_PORT` set it too (either alone keeps the other part).";
    "server.auth_token" ["EXAI_AUTH_TOKEN", "EXAI_WS_TOKEN"] true (Rule::MinChars { min: 16, says: "a token of at least 16 characters" }) "Bearer token every HTTP request must carry. Required for a non-loopback bind.";
    "server.allowed_origins" [] false (Rule::Origins) "Browser origins allowed besides loopback ones (`http://localhost:*` etc.). Entries need a scheme.";
    "server.allowed_hosts" [] false (Rule::Any) "`Host` header values allowed besides loopback names (needed behind a proxy or on a LAN address).";
    "server.max_body_bytes" ["EXAI_WS_MAX_BYTES"] false (whole_says(1024, 1024 * 1024 * 1024, "1024 to 1073741824 bytes")) "Largest accepted HTTP request body in bytes; larger bodies get 413.";
    "server.tokens" [] true {Shape::Structured(named_tokens)} (Rule::Joint) "Named bearer tokens, e.g. `{ alice = \"…\", ci = \"…\" }` (env: the table as JSON): each name is a principal that owns its conversation threads and index jobs. With neither these nor `server.auth_token`, everything belongs to the local user.";
    "server.header_read_timeout_secs" [] false (number(0.5, 600.0, "0.5 to 600 seconds")) "How long the HTTP daemon waits for a request's headers before closing the connection.";
    "server.max_connections" [] false (whole(1, 100_000)) "Open HTTP connections at most; further connections wait in the kernel's backlog.";
    "server.max_sessions" [] false (whole(1, 100_000)) "MCP sessions at most; a new session over the cap gets 503 with `Retry-After`.";
    "server.session_idle_secs" [] false (number(10.0, 30.0 * 86_400.0, "10 to 2592000 seconds (30 days)")) "An MCP session with no request for this long is closed (the client starts a new one).";
    "shim.url" [] false (Rule::HttpUrl { says: "an http:// or https:// URL such as http://127.0.0.1:8079/mcp" }) "Daemon endpoint the stdio shim forwards to; unset: `/mcp` at the address of `server.listen` (loopback for an unspecified address such as 0.0.0.0).";
    "shim.autostart" [] false (Rule::Any) "Start `exai daemon` when the shim finds none answering.";
    "timeouts.workflow_tool_secs" ["WORKFLOW_TOOL_TIMEOUT_SECS"] false (Rule::Joint) "Workflow tool timeout T. Daemon, shim and client timeouts derive from it (1.5·T, 2·T, 2.5·T).";
    "timeouts.simple_tool_secs" ["SIMPLE_TOOL_TIMEOUT_SECS"] false (Rule::Joint) "Timeout of simple (single request) tools; at most T.";
    "timeouts.expert_analysis_secs" ["EXPERT_ANALYSIS_TIMEOUT_SECS"] false (Rule::Joint) "Deadline of the expert-model call inside a workflow tool; below T (a value at or above T is lowered to just below it, with a notice).";
    "timeouts.model_multipliers" [] false {Shape::NumberTable { says: "a table of model names to numbers, e.g. { \"kimi-thinking-preview\" = 2.0 } (env: model=2.0,other=1.5)" }} (Rule::Joint) "Per-model timeout multipliers, e.g. `{ \"kimi-thinking-preview\" = 2.0 }` (env: `model=2.0,other=1.5`).";
    "logging.level" ["RUST_LOG", "LOG_LEVEL"] false {Shape::LogLevel} (Rule::LogFilter) "Log filter (`error`, `warn`, `info`, `debug`, `trace` or a tracing directive); the Python servers' level names read as the nearest (`WARNING` as `warn`, `CRITICAL` as `error`).";
    "logging.file_max_mb" [] false (whole(1, 10_240)) "Size at which `logs/exai.log` rotates, in MB.";
    "logging.file_count" [] false (whole(1, 100)) "Rotated log files kept besides the current one.";
    "logging.archive_keep_days" [] false (whole(1, 36_500)) "Days `exai logs archive` keeps the compressed archives of rotated logs (in `logs/archives/`), counted from each archive's newest entry; older archives are deleted.";
    "logging.log_queries" [] false (Rule::Any) "Record the text of `search_docs` queries in the activity log (and in slow-search warnings), for `exai stats --queries`. Off: only the mode, hit count and duration are kept.";
    "tools.disabled" ["DISABLED_TOOLS"] false (Rule::Any) "Tools to switch off (comma separated in env). `version`, `health` and `listmodels` always stay on.";
    "tools.profile" [] false (Rule::OneOf { names: ToolProfile::NAMES, says: "lean, kb, ai or full" }) "Which tools `tools/list` shows: `lean` (search_docs, get_document, chat, consensus and `enable_tools`, which lists the rest and shows them on request), `kb`, `ai` or `full`. Hidden tools stay callable; per client: `exai serve --profile`, `exai shim --profile`, or the daemon's `/mcp/PROFILE` path.";
    "tools.disabled_families" [] false (Rule::EachOf(ToolFamily::NAMES)) "Tool families to switch off: `ai`, `kb`, `ops`.";
    "tools.diagnostics" [] false (Rule::Any) "Turn on the `diag` family (`ping`: a delay with progress notifications, for testing clients, shims and timeouts).";
    "tools.allowed_roots" [] false (Rule::Any) "Directories that tools may read (`index_path`, files sent to models); empty: the server's working directory, unless that is `/` or the home directory. `..`, symlink escapes, device files, dot-files, secret files and the data directory are refused.";
    "tools.allowed_private_paths" [] false (Rule::Any) "Dot-files, dot-directories or secret-looking files (e.g. a `.docs` folder) that tools and indexing may read all the same; each path and everything under it.";
    "tools.max_output_tokens" ["MAX_MCP_OUTPUT_TOKENS"] false (whole(1_000, 1_000_000)) "Largest tool output, in tokens (about 4 characters each); longer output is truncated with a note.";
    "providers.default_model" ["DEFAULT_MODEL"] false (Rule::Any) "Model used when a tool call names none; `auto` picks one per call.";
    "providers.kimi_api_key" ["KIMI_API_KEY", "MOONSHOT_API_KEY"] true (Rule::Any) "Moonshot Kimi API key.";
    "providers.kimi_api_url" ["KIMI_API_URL", "KIMI_BASE_URL"] false (HTTP_URL) "Moonshot Kimi API base URL.";
    "providers.glm_api_key" ["GLM_API_KEY", "ZHIPUAI_API_KEY"] true (Rule::Any) "ZhipuAI GLM API key.";
    "providers.glm_api_url" ["GLM_API_URL", "GLM_BASE_URL", "ZHIPUAI_API_URL", "ZHIPUAI_BASE_URL"] false (HTTP_URL) "ZhipuAI GLM API base URL.";
    "providers.openai_api_key" ["OPENAI_API_KEY"] true (Rule::Any) "OpenAI API key.";
    "providers.openai_api_url" ["OPENAI_API_URL"] false (HTTP_URL) "OpenAI API base URL.";
    "providers.openrouter_api_key" ["OPENROUTER_API_KEY"] true (Rule::Any) "OpenRouter API key.";
    "providers.openrouter_api_url" [] false (HTTP_URL) "OpenRouter API base URL.";
    "providers.custom" [] false {Shape::Structured(custom_providers)} (Rule::Joint) "Other OpenAI-compatible servers (Ollama, vLLM, a gateway), e.g. `{ local = { url = \"http://127.0.0.1:11434/v1\", models = [\"llama3.1:8b\"], api_key_env = \"\" } }`; the key is read from the variable `api_key_env` names (env: the table as JSON).";
    "providers.models" [] false {Shape::Structured(model_overrides)} (Rule::Any) "Models to add or override in the registry, e.g. `{ \"glm-4.6\" = { price_in = 0.5 } }`; fields: provider, context_window, max_output, thinking, vision, web_search, files, price_in, price_out (USD per million tokens), aliases; timeout multipliers live in `timeouts.model_multipliers` (env: the table as JSON).";
    "providers.max_concurrent" ["EXAI_WS_GLOBAL_MAX_INFLIGHT"] false (whole(1, 10_000)) "Provider requests in flight at once, over all providers; more get OVER_CAPACITY with a retry_after.";
    "providers.max_concurrent_per_provider" [] false (whole(1, 10_000)) "Provider requests in flight at once to one provider (from the Python daemon's `EXAI_WS_KIMI_MAX_INFLIGHT` and `EXAI_WS_GLM_MAX_INFLIGHT`: the larger).";
    "providers.max_concurrent_per_session" ["EXAI_WS_SESSION_MAX_INFLIGHT"] false (whole(1, 10_000)) "Provider requests in flight at once for one MCP session.";
    "providers.max_retries" [] false (whole(0, 10)) "Retries after a 429, 5xx or network error (never after 400 context-length, 401 or 403).";
    "providers.max_file_bytes" [] false (whole(1024, 100 * 1024 * 1024)) "Largest file a tool call may send to a model, in bytes.";
    "threads.ttl_hours" ["CONVERSATION_TIMEOUT_HOURS"] false (Rule::Number { min: 0.0, max: 24.0 * 365.0, above_min: true, says: "more than 0 and at most 8760 (a year)" }) "A conversation thread expires this long after its last turn.";
    "threads.max_turns" [] false (whole(2, 1000)) "Most turns in one conversation thread.";
    "embed.backend" [] false (Rule::OneOf { names: EmbedBackend::NAMES, says: "auto, onnx, candle, remote or none" }) "Embeddings for semantic search: `auto` (ONNX Runtime when its library and the ONNX model are present, else candle), `onnx`, `candle` (pure Rust), `remote` (an OpenAI-compatible /v1/embeddings) or `none` (keyword search only). `local` means `auto`.";
    "embed.precision" [] false (Rule::OneOf { names: EmbedPrecision::NAMES, says: "fp32 or int8" }) "Local model precision: `int8` (quantized ONNX graph, about 1.6x faster, Rust Book hybrid nDCG@10 0.9185 vs 0.9131) or `fp32` (exact). Without ONNX Runtime or an int8 graph exai uses fp32. Vectors of different precisions never share an index.";
    "embed.onnx_runtime" ["ORT_DYLIB_PATH"] false (Rule::Any) "Path of the ONNX Runtime library (`libonnxruntime.so`); empty: a pip-installed `onnxruntime` package or the usual system locations.";
    "embed.model" [] false (Rule::Any) "Directory of the local model (Hugging Face layout); empty: `models/all-MiniLM-L6-v2` in the data directory, downloaded from the hub where reachable.";
    "embed.remote_url" [] false (Rule::Joint) "Base URL of the OpenAI-compatible embeddings API (`embed.backend = remote`).";
    "embed.remote_model" [] false (Rule::Any) "Model name sent to the remote embeddings API.";
    "embed.remote_api_key" [] true (Rule::Any) "API key for the remote embeddings API.";
    "embed.batch_size" [] false (whole(1, 1024)) "Texts per embedding forward pass or request.";
    "embed.max_batch_tokens" [] false (whole_says(0, 1_048_576, "0 (no bound) to 1048576")) "ONNX Runtime: padded word pieces per forward pass at most (texts × the batch's longest), so long passages go in narrower batches than short ones. Bounds indexing memory (the runtime keeps the largest pass's buffers); 0: only `embed.batch_size` bounds a batch.";
    "embed.query_threads" [] false (whole_says(0, 256, "0 (one per core) to 256")) "ONNX Runtime: threads computing one search query's vector (passages use every core); 0: one per core. One is as fast for a query of a few dozen word pieces and much faster when other work holds the cores.";
    "kb.database" [] false (Rule::Any) "Knowledge base database file; empty: `kb.sqlite` in the data directory.";
    "kb.max_file_bytes" [] false (whole_says(1024, i64::MAX, "at least 1024")) "Files larger than this are skipped when indexing.";
    "kb.max_chunks_per_file" [] false (whole(1, 1_000_000)) "Most chunks one file may produce, so one giant file cannot flood the index.";
    "kb.chunk_tokens" [] false (whole(32, 8192)) "Most word pieces per chunk (the embedding model reads 256).";
    "kb.chunk_overlap" [] false (Rule::Joint) "Word pieces repeated between consecutive chunks of a long section.";
    "kb.ann_min_vectors" [] false (whole_says(0, 1_000_000_000, "0 (always exact) to 1000000000")) "Semantic search goes through an HNSW index (a file next to the database, rebuilt when stale) from this many distinct vectors on (chunks with equal text share one), and scans them exactly below it; 0: always exact. The default is where the exact scan passes about 5 ms on two cores.";
    "kb.slow_query_ms" [] false (whole_says(0, 3_600_000, "0 to 3600000 milliseconds")) "A knowledge-base search taking at least this long is logged as a warning with its mode, hit count and duration (and its text with `logging.log_queries`); 0 logs every search.";
    "kb.categories" [] false {Shape::ListTable { says: "a table of categories to keyword lists, e.g. { recipes = [\"recipe\"] } (env: recipes=recipe|cookbook)" }} (Rule::Any) "Category keywords, replacing or adding to the built-in map, e.g. `{ recipes = [\"recipe\", \"cookbook\"] }` (env: `recipes=recipe|cookbook,setup=install`).";
    "kb.untrusted_content" [] false (Rule::OneOf { names: UntrustedContent::NAMES, says: "drop, mark or keep" }) "What indexing does with text a reader never sees but a model would read (hidden HTML, zero-width and bidirectional control characters, comments) and with sentences that give an AI orders: `drop` leaves it out, `mark` keeps it inside `[untrusted: reason] … [/untrusted]`, `keep` indexes it as written. Every mode counts it per source (`exai sources`). Changing it re-indexes each file on its next `exai index`.";
    "kb.untrusted_patterns" [] false (Rule::Patterns) "Extra regular expressions (Rust `regex` syntax, matched case-insensitively) for sentences that address an AI, besides the built-in rules, e.g. `[\"(?:send|post) .{0,40} to https?://\"]`. A pattern with a comma must be set in the file (env: comma separated).";
    "kb.fetch_allowed_hosts" [] false (Rule::Any) "Hosts that fetching (web crawls, git remotes, package registries) may reach although they resolve to a loopback, private, link-local or cloud-metadata address, which are refused otherwise (checked on the resolved address, so a name cannot point a crawl inward): `host` or `host:port`, e.g. `[\"docs.internal:8080\"]`.";
    "kb.fetch_max_page_bytes" [] false (whole_says(1024, 1024 * 1024 * 1024, "1024 to 1073741824 bytes")) "Largest page or file a fetch reads, after decompression; a larger one is recorded as too large and the crawl goes on.";
    "kb.fetch_page_timeout_secs" [] false (number(1.0, 600.0, "1 to 600 seconds")) "Deadline of one fetched page (connect, headers and body), and of rendering one page in Chromium.";
    "kb.crawl_max_pages" [] false (whole(1, 1_000_000)) "Most pages one crawl of a web site indexes (`--max-pages` overrides it per source).";
    "kb.crawl_max_depth" [] false (whole(0, 1000)) "Most links a crawl follows away from its start page (`--max-depth` overrides it per source).";
    "kb.crawl_concurrency" [] false (whole(1, 64)) "Requests a crawl has in flight to one host at once.";
    "kb.crawl_delay_ms" [] false (whole_says(0, 60_000, "0 to 60000 milliseconds")) "Pause between two requests to one host (a site's `Crawl-delay` can lengthen it); 0: as fast as the concurrency allows.";
    "kb.render" [] false (Rule::OneOf { names: RenderMode::NAMES, says: "auto, always or never" }) "Rendering script-built pages in a local headless Chromium: `auto` renders a page whose server HTML holds no main content (when Chromium is installed; otherwise the page is reported as needing it), `always` every HTML page, `never` none.";
    "kb.refresh_interval_hours" [] false (number(0.0, 24.0 * 365.0, "0 (off) to 8760 hours")) "How often `exai daemon` refreshes every fetched source (web, git, packages) as a background job: conditional requests, only what changed is re-indexed; 0: never (refresh by hand with `exai refresh`).";
    "kb.npm_registry_url" [] false (HTTP_URL) "npm registry that `npm:NAME@RANGE` sources resolve and download from (a mirror's URL works the same).";
    "kb.pypi_url" [] false (HTTP_URL) "PyPI (or a mirror with its JSON API) that `pypi:NAME@RANGE` sources resolve and download from.";
    "kb.crates_api_url" [] false (HTTP_URL) "crates.io API that `crate:NAME@RANGE` sources resolve from.";
    "kb.crates_download_url" [] false (Rule::Any) "Where `.crate` files are downloaded from, as `{url}/{name}/{name}-{version}.crate`; empty: the download path the API gives.";
    "ops.backup_dir" [] false (Rule::Any) "Where `exai db backup` writes backups; empty: `backups/` in the data directory.";
    "ops.backup_keep" [] false (whole(1, 10_000)) "Backups `exai db backup` keeps in its directory (the newest); older ones are removed.";
    "ops.backup_extra" [] false (Rule::AbsolutePaths) "More files `exai db backup` copies besides the databases, `exai.toml` and the data directory's `.env` (absolute paths of regular files, e.g. a `--env-file`; a symbolic link is refused: list its target). `exai db restore --with-config` puts them back where they were when this list still names them.";
    "ops.sample_interval_secs" [] false (number(1.0, 3600.0, "1 to 3600 seconds")) "How often the daemon records its resident memory, CPU time, open files, database sizes and free disk (for `exai stats --resources`, `exai health` and `exai db stats --history`).";
    "ops.resource_history_days" [] false (whole(1, 3650)) "Days of resource samples kept; older ones are removed as new ones are written.";
    "ops.memory_warn_percent" [] false (number(1.0, 100.0, "1 to 100 percent")) "`exai health` warns when the host's memory in use reaches this share of its total.";
    "ops.memory_review_percent" [] false (number(1.0, 100.0, "1 to 100 percent")) "`exai health` notes that memory use needs a review when the host's memory in use reaches this share (below `ops.memory_warn_percent`).";
    "ops.memory_growth_mb_per_hour" [] false (number(0.1, 1_000_000.0, "0.1 to 1000000 MiB per hour")) "`exai health` warns when the daemon's resident memory grows faster than this many MiB per hour over the last 24 h (least-squares slope of its samples; see OPERATIONS.md).";
    "ops.disk_warn_percent" [] false (number(1.0, 100.0, "1 to 100 percent")) "`exai health` warns when the file system of the data directory is this full.";
    "ops.slo_uptime_percent" [] false (number(0.0, 100.0, "0 to 100 percent")) "Target share of time the daemon is up (from its resource samples), checked by `exai stats --slo` and `exai health`.";
    "ops.slo_simple_p95_secs" [] false (number(0.001, 3600.0, "0.001 to 3600 seconds")) "Target 95th percentile latency of simple tools (every tool but the workflow tools).";
    "ops.slo_workflow_p95_secs" [] false (number(0.001, 3600.0, "0.001 to 3600 seconds")) "Target 95th percentile latency of workflow tools.";
    "ops.slo_error_rate_percent" [] false (number(0.0, 100.0, "0 to 100 percent")) "Target share of tool calls ending in an error or timeout.";
    "database.url" [] true (Rule::PostgresUrl) "PostgreSQL (with pgvector) shared by several daemons, e.g. `postgres://user:password@host:5432/exai?sslmode=verify-full` (a Supabase connection string works unchanged; sslmode takes libpq's values, sslrootcert a CA file). Holds the knowledge base, conversation threads, validation runs and index jobs. Empty: SQLite files in the data directory.";
    "database.pool_size" [] false (whole(1, 1_000)) "PostgreSQL connections one exai process opens at most.";
    "database.statement_timeout_secs" [] false (number(0.0, 3600.0, "0 to 3600 (0: none)")) "PostgreSQL `statement_timeout` of every connection, in seconds (0: none).";
    "database.connect_retry_secs" [] false (number(0.0, 3600.0, "0 to 3600 (0: none)")) "How long exai keeps retrying, with backoff, when PostgreSQL does not answer at start (0: fail at once).";
}

/// The setting with this dotted key.
pub fn find(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.key == key)
}

/// The setting an environment variable name sets, if any.
pub fn by_env(name: &str) -> Option<&'static Setting> {
    SETTINGS
        .iter()
        .find(|s| s.env_name() == name || s.aliases.contains(&name))
}

/// The closest known name to `wrong`, for "did you mean" hints.
pub fn closest<'a>(wrong: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(wrong, c), c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for s in SETTINGS {
            for name in s.env_names() {
                assert!(seen.insert(name.clone()), "{name} maps to two settings");
            }
        }
    }

    #[test]
    fn closest_finds_typos() {
        let keys = SETTINGS.iter().map(|s| s.key);
        assert_eq!(closest("server.lisen", keys), Some("server.listen"));
        assert_eq!(closest("zzz", SETTINGS.iter().map(|s| s.key)), None);
    }
}
