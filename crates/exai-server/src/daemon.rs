//! Daemon life: the pid file, running until a signal (SIGHUP reloads the configuration, see
//! `reload`), and `exai daemon status|stop|restart|reload`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use exai_core::Loaded;
use exai_core::activity::ActivityLog;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use exai_core::pidfile::write_pid;
pub use exai_core::pidfile::{
    Identity, PidFileError, PidRecord, alive, base_url, identify, read_pid, running,
};

use crate::http::{self, ServeError};
use crate::state::{AppState, Transport};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(
        "an exai daemon is already running (pid {pid}, listening on {listen}); stop it with `exai daemon stop` or use another EXAI_HOME"
    )]
    AlreadyRunning { pid: u32, listen: String },
    #[error("no exai daemon is running (no live process in {})", path.display())]
    NotRunning { path: PathBuf },
    #[error(transparent)]
    PidFile(#[from] PidFileError),
    #[error(
        "no exai daemon is running: the pid file {} named a process that is not the daemon ({what}); it was not signalled, and the stale pid file was removed",
        path.display()
    )]
    NotOurs { path: PathBuf, what: String },
    #[error(
        "pid {pid} may not be an exai daemon ({why}); not signalling it. If it is, stop it with `kill {pid}`"
    )]
    Unidentified { pid: u32, why: String },
    #[error("daemon (pid {pid}) did not stop within {secs} s even after SIGKILL")]
    WouldNotStop { pid: u32, secs: u64 },
    #[error("cannot start the daemon: {0}")]
    Spawn(String),
    #[error("cannot signal the daemon (pid {pid}): {reason}")]
    Signal { pid: u32, reason: String },
    #[error(
        "the daemon (pid {pid}) did not answer the reload within {secs} s (no new answer in {}); see its log (`exai logs`)",
        file.display()
    )]
    NoReloadAnswer { pid: u32, file: PathBuf, secs: u64 },
    #[error("cannot watch for SIGHUP (configuration reload): {0}")]
    Hangup(std::io::Error),
    #[error(transparent)]
    Serve(#[from] ServeError),
}

struct PidFileGuard(PathBuf);

impl Drop for PidFileGuard {
    fn drop(&mut self) {
        // Only remove our own record: a restarted daemon may already have written its own.
        if let Ok(Some(record)) = read_pid(&self.0)
            && record.pid == std::process::id()
        {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn termination_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the daemon with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

/// Routes the binary adds to the daemon (its dashboard), built once the state exists.
pub type Mount = Box<dyn FnOnce(Arc<AppState>) -> axum::Router + Send>;

/// Run the HTTP daemon in the foreground until SIGTERM/SIGINT; SIGHUP reloads the
/// configuration from `inputs`, what `loaded` was loaded from.
pub async fn run(
    loaded: Loaded,
    inputs: exai_core::config::Inputs,
    listen: SocketAddr,
    activity: Option<ActivityLog>,
    mount: Option<Mount>,
) -> Result<(), DaemonError> {
    let pid_path = exai_core::paths::DataPaths::new(loaded.data_dir.clone()).pid_file();
    if let Some(record) = running(&pid_path)?
        && record.pid != std::process::id()
    {
        return Err(DaemonError::AlreadyRunning {
            pid: record.pid,
            listen: record.listen,
        });
    }
    let listener = http::bind(listen).await?;
    let bound = listener.local_addr().map_err(ServeError::Io)?;
    let state = AppState::new(loaded, Transport::Http, activity).with_listen(bound);
    crate::reload::on_hangup(state.clone(), inputs).map_err(DaemonError::Hangup)?;
    write_pid(
        &pid_path,
        &PidRecord {
            pid: std::process::id(),
            listen: bound.to_string(),
            started_at: state
                .started_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            version: exai_core::VERSION.into(),
        },
    )?;
    let _pid_guard = PidFileGuard(pid_path);
    tracing::info!(
        listen = %bound,
        pid = std::process::id(),
        data_dir = %state.paths.root().display(),
        "exai daemon serving MCP at http://{bound}/mcp"
    );
    if mount.is_some() {
        tracing::info!("dashboard at http://{bound}/");
    }
    tokio::spawn(crate::knowledge::embed_in_background(state.clone()));
    tokio::spawn(crate::sampler::run(state.clone()));
    tokio::spawn(crate::knowledge::refresh_on_schedule(state.clone()));
    let extra = mount.map_or_else(axum::Router::new, |mount| mount(state.clone()));
    http::serve_with(state.clone(), listener, termination_signal(), extra).await?;
    // Calls in flight have finished or had their grace period; jobs still running would hold
    // the process until their blocking work ends.
    let cancelled = state.knowledge.jobs.cancel_running();
    if cancelled > 0 {
        tracing::info!(
            cancelled,
            "stopping the jobs still running; a re-run resumes them"
        );
    }
    tracing::info!("exai daemon stopped");
    Ok(())
}

/// How a daemon stopped.
#[derive(Debug, Clone)]
pub struct Stopped {
    pub record: PidRecord,
    /// It outlived the grace period and was killed (SIGKILL); its pid file was removed.
    pub killed: bool,
}

/// Send SIGTERM, wait for the grace period, then SIGKILL. The process is signalled only after
/// checking it is still the daemon the pid file names (`pidfile::identify`): a pid file left
/// naming another process is removed as stale, and that process is left alone.
pub async fn stop(pid_path: &Path, grace: Duration) -> Result<Stopped, DaemonError> {
    let record = running(pid_path)?.ok_or_else(|| DaemonError::NotRunning {
        path: pid_path.to_path_buf(),
    })?;
    match identify(&record) {
        Identity::Daemon => {}
        Identity::Other(what) => {
            let _ = std::fs::remove_file(pid_path);
            return Err(DaemonError::NotOurs {
                path: pid_path.to_path_buf(),
                what,
            });
        }
        Identity::Unknown(why) => {
            return Err(DaemonError::Unidentified {
                pid: record.pid,
                why,
            });
        }
    }
    let pid = Pid::from_raw(i32::try_from(record.pid).unwrap_or(i32::MAX));
    let _ = signal::kill(pid, Signal::SIGTERM);
    if wait_gone(record.pid, grace).await {
        return Ok(Stopped {
            record,
            killed: false,
        });
    }
    tracing::warn!(
        pid = record.pid,
        "daemon still running after {} s; sending SIGKILL",
        grace.as_secs()
    );
    let _ = signal::kill(pid, Signal::SIGKILL);
    if wait_gone(record.pid, Duration::from_secs(5)).await {
        let _ = std::fs::remove_file(pid_path);
        return Ok(Stopped {
            record,
            killed: true,
        });
    }
    Err(DaemonError::WouldNotStop {
        pid: record.pid,
        secs: grace.as_secs() + 5,
    })
}

async fn wait_gone(pid: u32, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if !alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    !alive(pid)
}

/// Start `exe daemon --listen ADDR` detached from this process, its output in the log file only.
pub fn spawn_detached(
    exe: &Path,
    listen: &str,
    extra_env: &[(String, String)],
) -> Result<u32, DaemonError> {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("daemon")
        .arg("--listen")
        .arg(listen)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .envs(extra_env.iter().map(|(k, v)| (k, v)));
    // A new process group: the daemon outlives the shell or shim that started it.
    cmd.process_group(0);
    let child = cmd
        .spawn()
        .map_err(|e| DaemonError::Spawn(format!("{}: {e}", exe.display())))?;
    Ok(child.id())
}

/// Poll `GET {base}/ready` until it answers 200 or `limit` passes.
pub async fn wait_ready(base: &str, token: Option<&str>, limit: Duration) -> bool {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build();
    let Ok(client) = client else { return false };
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        let mut req = client.get(format!("{base}/ready"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Ok(resp) = req.send().await
            && resp.status().is_success()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}
