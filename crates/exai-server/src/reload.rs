//! Configuration reload: SIGHUP (what `exai daemon reload` sends) makes the daemon read its
//! configuration again, from the same places it started with (`exai.toml`, the data directory's
//! `.env`, `--env-file`s, its environment and flags), without dropping a session.
//!
//! A configuration that does not load, or that the running daemon cannot take, is refused with
//! the reason and the one in force stays. An accepted one puts in force the settings of
//! [`APPLIED_ON_RELOAD`]: provider keys, URLs, models and limits (the AI gateway is rebuilt;
//! calls in flight finish on the old one), timeouts for new calls, and the bearer tokens.
//! Every other setting keeps its startup value until a restart, and the answer names those
//! that changed, so nothing is ignored silently: the listener, session and body limits, hosts
//! and origins (the MCP SDK's own checks are built with them at start), logging, tools and
//! file access, threads, embedding, the knowledge base and the database.
//!
//! The answer is logged, kept for `/health` and written to `reload.json` in the data directory
//! (0600, names only, never values), where `exai daemon reload` reads it. SIGHUP rather than an
//! admin endpoint: only the daemon's own user (or root) can send it, it opens no new network
//! surface, and it keeps working while the token that would authenticate such an endpoint is
//! being rotated; service managers send it for `reload` too.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use exai_core::config::{Inputs, changed_keys};
use exai_core::paths::DataPaths;
use exai_core::{Config, Loaded};
use serde::{Deserialize, Serialize};

use crate::daemon::DaemonError;
use crate::state::AppState;

/// The settings a reload puts in force, as keys or key prefixes (ending in `.`). `shim.*` and
/// the backup settings are read by each command rather than the daemon, so their new values
/// apply as soon as the file says so. A setting not listed needs a restart, including any
/// added later until it is made reloadable here.
pub const APPLIED_ON_RELOAD: &[&str] = &[
    "providers.",
    "timeouts.",
    "server.auth_token",
    "server.tokens",
    "shim.",
    "ops.backup_dir",
    "ops.backup_keep",
];

/// Whether a reload puts a new value of `key` in force.
pub fn applies_on_reload(key: &str) -> bool {
    APPLIED_ON_RELOAD.iter().any(|p| match p.strip_suffix('.') {
        Some(section) => key
            .strip_prefix(section)
            .is_some_and(|r| r.starts_with('.')),
        None => key == *p,
    })
}

/// The daemon's answer to one reload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReloadOutcome {
    pub pid: u32,
    /// Counts this process's reloads, accepted or not, from 1.
    pub attempt: u64,
    /// RFC 3339 time of the answer.
    pub at: String,
    pub accepted: bool,
    /// Why the new configuration was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Settings this reload changed, now in force.
    #[serde(default)]
    pub applied: Vec<String>,
    /// Settings whose value differs from the one the daemon started with and that need a
    /// restart (`exai daemon restart`) to take effect.
    #[serde(default)]
    pub restart_needed: Vec<String>,
    /// What loading had to say (variables not needed, values adjusted).
    #[serde(default)]
    pub notices: Vec<String>,
}

/// What an accepted configuration changes: `(applied, restart_needed)`. Applied are the
/// reloadable settings differing from those in force; restart-needed the others differing from
/// the startup values, so a change stays reported at every reload until the restart.
pub fn plan(
    started: &Config,
    current: &Config,
    new: &Config,
) -> (Vec<&'static str>, Vec<&'static str>) {
    let applied = changed_keys(current, new)
        .into_iter()
        .filter(|k| applies_on_reload(k))
        .collect();
    let restart_needed = changed_keys(started, new)
        .into_iter()
        .filter(|k| !applies_on_reload(k))
        .collect();
    (applied, restart_needed)
}

/// Why a configuration that loads cannot go in force in a daemon bound to `bound`. Loading
/// checks the new `server.listen`, but the socket stays where it was until a restart.
pub fn refuse_for_running(bound: Option<SocketAddr>, new: &Config) -> Option<String> {
    let bound = bound?;
    let server = &new.server;
    (!bound.ip().is_loopback() && !server.auth_token.is_set() && server.tokens.is_empty()).then(
        || {
            format!(
                "the daemon listens on {bound}, not a loopback address, and the new configuration \
                 has no bearer token (EXAI_AUTH_TOKEN or server.tokens): keep one, or move the \
                 daemon to loopback with a restart"
            )
        },
    )
}

/// Read the configuration again from `inputs` and put it in force if it is acceptable; the
/// answer is logged, kept for `/health` and written for `exai daemon reload`.
pub fn reload(state: &AppState, inputs: &Inputs) -> ReloadOutcome {
    let attempt = state.last_reload().map_or(0, |r| r.attempt) + 1;
    let mut outcome = ReloadOutcome {
        pid: std::process::id(),
        attempt,
        at: String::new(),
        accepted: false,
        error: None,
        applied: Vec::new(),
        restart_needed: Vec::new(),
        notices: Vec::new(),
    };
    match accept(state, inputs) {
        Ok((new, applied, restart_needed)) => {
            outcome.accepted = true;
            outcome.notices = new.notices.clone();
            outcome.applied = applied.iter().map(|k| k.to_string()).collect();
            outcome.restart_needed = restart_needed.iter().map(|k| k.to_string()).collect();
            state.install_config(new);
            for notice in &outcome.notices {
                tracing::warn!("configuration reload: {notice}");
            }
            tracing::info!(
                attempt,
                applied = %list(&outcome.applied),
                "configuration reloaded"
            );
            if !outcome.restart_needed.is_empty() {
                tracing::warn!(
                    settings = %list(&outcome.restart_needed),
                    "changed settings that take effect only after a restart (`exai daemon restart`)"
                );
            }
        }
        Err(reason) => {
            tracing::error!(
                attempt,
                "configuration reload refused, the configuration in force stays: {reason}"
            );
            outcome.error = Some(reason);
        }
    }
    outcome.at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let file = state.paths.reload_file();
    let written = serde_json::to_vec_pretty(&outcome)
        .map_err(std::io::Error::other)
        .and_then(|json| exai_core::private::replace(&file, json));
    if let Err(e) = written {
        tracing::warn!(
            "cannot write the reload answer to {}: {e}; `exai daemon reload` will not see it",
            file.display()
        );
    }
    state.set_last_reload(outcome.clone());
    outcome
}

type Accepted = (Loaded, Vec<&'static str>, Vec<&'static str>);

fn accept(state: &AppState, inputs: &Inputs) -> Result<Accepted, String> {
    let new = exai_core::config::load(inputs).map_err(|e| e.to_string())?;
    if new.data_dir != state.loaded.data_dir {
        return Err(format!(
            "the data directory would change from {} to {}; that needs a restart",
            state.loaded.data_dir.display(),
            new.data_dir.display()
        ));
    }
    if let Some(reason) = refuse_for_running(state.listen, &new.config) {
        return Err(reason);
    }
    let (applied, restart_needed) = plan(&state.loaded.config, &state.config().config, &new.config);
    Ok((new, applied, restart_needed))
}

fn list(keys: &[String]) -> String {
    if keys.is_empty() {
        "none".into()
    } else {
        keys.join(", ")
    }
}

/// Reload on every SIGHUP until the process ends. The signal handler is installed here, before
/// the caller announces the daemon (its pid file): SIGHUP's default action ends the process.
pub fn on_hangup(state: Arc<AppState>, inputs: Inputs) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP received: reloading the configuration");
            let (state, inputs) = (state.clone(), inputs.clone());
            // Loading reads files: off the async workers.
            if let Err(e) = tokio::task::spawn_blocking(move || reload(&state, &inputs)).await {
                tracing::error!("configuration reload failed: {e}");
            }
        }
    });
    Ok(())
}

/// The answer in `file` if it is from `pid`.
fn read_outcome(file: &Path, pid: u32) -> Option<ReloadOutcome> {
    let text = std::fs::read(file).ok()?;
    serde_json::from_slice::<ReloadOutcome>(&text)
        .ok()
        .filter(|o| o.pid == pid)
}

/// Ask the daemon of the data directory `paths` to reload (SIGHUP) and wait up to `wait` for
/// its answer.
pub fn request(paths: &DataPaths, wait: Duration) -> Result<ReloadOutcome, DaemonError> {
    let pid_path = paths.pid_file();
    let record = crate::daemon::running(&pid_path)?.ok_or(DaemonError::NotRunning {
        path: pid_path.clone(),
    })?;
    let file = paths.reload_file();
    let before = read_outcome(&file, record.pid).map_or(0, |o| o.attempt);
    let pid = nix::unistd::Pid::from_raw(i32::try_from(record.pid).unwrap_or(i32::MAX));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).map_err(|e| {
        DaemonError::Signal {
            pid: record.pid,
            reason: e.to_string(),
        }
    })?;
    let deadline = Instant::now() + wait;
    loop {
        if let Some(outcome) = read_outcome(&file, record.pid).filter(|o| o.attempt > before) {
            return Ok(outcome);
        }
        if Instant::now() >= deadline {
            return Err(DaemonError::NoReloadAnswer {
                pid: record.pid,
                file: file.clone(),
                secs: wait.as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use exai_core::Secret;

    #[test]
    fn which_settings_apply_on_reload() {
        for key in [
            "providers.kimi_api_key",
            "providers.custom",
            "providers.max_concurrent",
            "timeouts.workflow_tool_secs",
            "server.auth_token",
            "server.tokens",
            "shim.url",
            "ops.backup_keep",
        ] {
            assert!(applies_on_reload(key), "{key}");
        }
        for key in [
            "server.listen",
            "server.max_sessions",
            "server.allowed_origins",
            "server.max_body_bytes",
            "server.tokens_extra",
            "providersx.kimi_api_key",
            "logging.level",
            "tools.profile",
            "threads.ttl_hours",
            "database.url",
            "kb.database",
            "embed.model",
            "ops.something_new",
        ] {
            assert!(!applies_on_reload(key), "{key}");
        }
        // Every reloadable entry names a setting or a section of them.
        for p in APPLIED_ON_RELOAD {
            assert!(
                exai_core::settings::SETTINGS
                    .iter()
                    .any(|s| s.key == *p || s.key.starts_with(p)),
                "{p}"
            );
        }
    }

    #[test]
    fn a_plan_separates_what_applies_from_what_waits_for_a_restart() {
        let started = Config::default();
        let mut current = started.clone();
        current.server.max_sessions = 10;
        let mut new = current.clone();
        new.providers.glm_api_key = Secret::new("rotated-key");
        new.timeouts.simple_tool_secs = 12.0;
        let (applied, restart) = plan(&started, &current, &new);
        assert_eq!(
            applied,
            ["timeouts.simple_tool_secs", "providers.glm_api_key"]
        );
        // Changed by an earlier reload, still waiting for the restart.
        assert_eq!(restart, ["server.max_sessions"]);
        let (applied, restart) = plan(&started, &new, &new);
        assert!(applied.is_empty());
        assert_eq!(restart, ["server.max_sessions"]);
    }

    #[test]
    fn a_public_daemon_keeps_a_token() {
        let mut config = Config::default();
        let public: SocketAddr = "0.0.0.0:8079".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:8079".parse().unwrap();
        let refused = refuse_for_running(Some(public), &config).unwrap();
        assert!(refused.contains("0.0.0.0:8079") && refused.contains("EXAI_AUTH_TOKEN"));
        assert_eq!(refuse_for_running(Some(local), &config), None);
        assert_eq!(refuse_for_running(None, &config), None);
        config
            .server
            .tokens
            .insert("alice".into(), Secret::new("alice-token-0000"));
        assert_eq!(refuse_for_running(Some(public), &config), None);
    }

    #[test]
    fn an_answer_from_another_process_is_not_taken() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("reload.json");
        let outcome = ReloadOutcome {
            pid: 4242,
            attempt: 3,
            at: "2026-12-06T10:00:00.000Z".into(),
            accepted: false,
            error: Some("bad".into()),
            applied: vec![],
            restart_needed: vec![],
            notices: vec![],
        };
        std::fs::write(&file, serde_json::to_vec(&outcome).unwrap()).unwrap();
        assert_eq!(read_outcome(&file, 4242), Some(outcome));
        assert_eq!(read_outcome(&file, 4243), None);
        assert_eq!(read_outcome(&dir.path().join("none.json"), 4242), None);
    }
}
