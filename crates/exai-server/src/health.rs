//! The health report served by the `health` tool and `GET /health`.

use exai_core::EmbedBackend;
use serde::{Deserialize, Serialize};

use crate::state::AppState;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Timeouts {
    pub simple_tool_secs: f64,
    pub workflow_tool_secs: f64,
    pub expert_analysis_secs: f64,
    pub daemon_secs: f64,
    pub shim_secs: f64,
    pub client_secs: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Providers {
    pub kimi: bool,
    pub glm: bool,
    pub openai: bool,
    pub default_model: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Knowledge {
    pub database: String,
    /// `local`, `remote` or `none` (keyword search only).
    pub embed_backend: String,
    /// The local model's directory when found, or why semantic search is off.
    pub embed_model: String,
    /// Whether this process has opened the knowledge base yet (it opens on first use).
    pub opened: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HealthReport {
    /// `ok`, or `draining` while a stopping daemon finishes its calls.
    pub status: String,
    pub version: String,
    pub transport: String,
    pub pid: u32,
    pub uptime_secs: f64,
    pub started_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    pub data_dir: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_file: Option<String>,
    pub inflight_calls: usize,
    /// The daemon's connections and sessions against their caps (absent over stdio).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpLoad>,
    pub tools: Vec<String>,
    pub timeouts: Timeouts,
    pub providers: Providers,
    pub knowledge: Knowledge,
    /// The latest configuration reload's answer (absent before the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reload: Option<crate::reload::ReloadOutcome>,
}

/// Open connections and MCP sessions, each with its cap.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HttpLoad {
    pub connections_open: u64,
    pub max_connections: u64,
    pub sessions_open: u64,
    pub max_sessions: u64,
    /// Requests refused since the start, by reason (`host`, `origin`, `token`,
    /// `body_too_large`, `body_timeout`, `sessions_full`).
    #[serde(default)]
    pub refused: std::collections::BTreeMap<String, u64>,
}

impl HttpLoad {
    fn of(m: &crate::metrics::TransportMetrics) -> HttpLoad {
        HttpLoad {
            connections_open: m.connections_open.get(),
            max_connections: m.connections_max.get(),
            sessions_open: m.sessions_open.get(),
            max_sessions: m.sessions_max.get(),
            refused: m
                .refusals()
                .map(|(reason, n)| (reason.as_str().to_string(), n))
                .collect(),
        }
    }
}

impl HealthReport {
    pub fn collect(state: &AppState, tools: Vec<String>) -> Self {
        // Timeouts and providers as in force: a reload may have changed them.
        let config = state.config();
        let t = &config.timeouts;
        let p = &config.config.providers;
        Self {
            status: if state.is_draining() {
                "draining"
            } else {
                "ok"
            }
            .into(),
            version: exai_core::VERSION.into(),
            transport: state.transport.as_str().into(),
            pid: std::process::id(),
            uptime_secs: (state.started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
            started_at: state
                .started_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            listen: state.listen.map(|a| a.to_string()),
            data_dir: state.paths.root().display().to_string(),
            config_file: state.loaded.file.as_ref().map(|p| p.display().to_string()),
            inflight_calls: state.inflight(),
            http: state.listen.map(|_| HttpLoad::of(&state.metrics.transport)),
            tools,
            timeouts: Timeouts {
                simple_tool_secs: t.simple_tool,
                workflow_tool_secs: t.workflow_tool,
                expert_analysis_secs: t.expert_analysis,
                daemon_secs: t.daemon,
                shim_secs: t.shim,
                client_secs: t.client,
            },
            providers: Providers {
                kimi: p.kimi_api_key.is_set(),
                glm: p.glm_api_key.is_set(),
                openai: p.openai_api_key.is_set(),
                default_model: p.default_model.clone(),
            },
            knowledge: Knowledge {
                database: state.knowledge.describe(),
                embed_backend: state.loaded.config.embed.backend.to_string(),
                embed_model: match state.knowledge.embed_problem() {
                    Some(problem) => format!("unavailable: {problem}"),
                    None => match state.loaded.config.embed.backend {
                        EmbedBackend::None => "none: keyword search only".into(),
                        EmbedBackend::Remote => format!("{} at {}", state.loaded.config.embed.remote_model, state.loaded.config.embed.remote_url),
                        _ => exai_embed::locate_local_model(&exai_embed::EmbedSettings::from_config(&state.loaded))
                            .ok()
                            .map_or_else(
                                || "not installed yet (downloaded on first use where the hub is reachable; see scripts/install-model.sh)".into(),
                                |p| p.display().to_string(),
                            ),
                    },
                },
                opened: state.knowledge.is_open(),
            },
            last_reload: state.last_reload(),
        }
    }
}
