//! The activity log: `logs/activity.jsonl` (0600, like every log), one JSON line per tool call.
//! Operators read it with `exai logs` and `exai stats`; it never holds arguments or secrets,
//! only what happened — except the text of knowledge-base queries, and only when the operator
//! turned `logging.log_queries` on (`exai stats --queries` lists them).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::logging::{RotatingFile, SharedFile};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivityRecord {
    /// RFC 3339 time the call finished.
    pub time: String,
    pub tool: String,
    /// MCP session (HTTP) or `stdio`.
    pub session: String,
    pub request_id: String,
    pub duration_ms: f64,
    /// `ok`, `error`, `timeout` or `cancelled`.
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_in: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_out: Option<u64>,
    /// USD, from the model registry's prices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// Why this model was chosen (`auto` routing), when a model was called.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// The MCP client's name and version as its `initialize` gave them (`clientInfo`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_version: Option<String>,
    /// Who the call acted for: the name of the bearer token of `server.tokens` it carried, or
    /// `local` (stdio, no token, the unnamed `server.auth_token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// A knowledge-base search's mode, hits and (with `logging.log_queries`) text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<SearchActivity>,
}

/// What a `search_docs` call searched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchActivity {
    /// The mode that ran (`hybrid`, `keyword`, `semantic`).
    pub mode: String,
    pub hits: u64,
    /// The query, only when `logging.log_queries` is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}

/// Appends records; cheap to clone and share between sessions.
#[derive(Debug, Clone)]
pub struct ActivityLog {
    file: SharedFile,
}

impl ActivityLog {
    pub fn open(path: &Path, max_bytes: u64, keep: u32) -> std::io::Result<Self> {
        Ok(Self {
            file: SharedFile::new(RotatingFile::open(path, max_bytes, keep)?),
        })
    }

    pub fn record(&self, record: &ActivityRecord) {
        match serde_json::to_vec(record) {
            Ok(mut line) => {
                line.push(b'\n');
                if let Err(e) = self.file.append(&line) {
                    tracing::warn!("cannot write activity record: {e}");
                }
            }
            Err(e) => tracing::warn!("cannot encode activity record: {e}"),
        }
    }
}
