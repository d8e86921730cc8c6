//! The `exai` command: wiring only. Configuration errors exit with 2, other failures with 1.

mod admin_cli;
mod kb_cli;
mod monitor_cli;
mod ops_cli;
mod upgrade_cli;
mod validate_cli;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use exai_core::activity::ActivityLog;
use exai_core::config::{Inputs, Loaded};
use exai_core::logging::{self, LogSettings};
use exai_core::paths::DataPaths;
use exai_core::settings::{NON_SETTING_ENV, SETTINGS};
use exai_server::daemon;
use exai_server::shim::{ShimOptions, ShimServer};
use exai_server::state::{AppState, Transport};

#[derive(Parser)]
#[command(
    name = "exai",
    version,
    about = "MCP server for coding agents: multi-model AI tools and a local documentation knowledge base"
)]
struct Cli {
    /// Configuration file (default: exai.toml in the data directory; also EXAI_CONFIG).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// A `.env` file to read settings from (repeatable; also EXAI_ENV_FILE). The data directory's
    /// `.env` is always read; a `.env` in the working directory never is (a project's files are
    /// not trusted).
    #[arg(long, global = true, value_name = "PATH")]
    env_file: Vec<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve MCP over stdio (for `claude mcp add exai -- exai serve`).
    Serve {
        /// Tools to list: lean, kb, ai or full (default: tools.profile, lean).
        #[arg(long, value_name = "PROFILE")]
        profile: Option<String>,
    },
    /// Run the shared HTTP daemon (Streamable HTTP at /mcp), or control a running one.
    #[command(args_conflicts_with_subcommands = true)]
    Daemon {
        /// Address to listen on (default: server.listen, 127.0.0.1:8079).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        #[command(subcommand)]
        action: Option<DaemonAction>,
    },
    /// Serve MCP over stdio, forwarding everything to a shared daemon.
    Shim {
        /// Daemon endpoint (default: shim.url, else /mcp at server.listen: http://127.0.0.1:8079/mcp).
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        /// Do not start a daemon when none answers.
        #[arg(long)]
        no_autostart: bool,
        /// Tools to list: lean, kb, ai or full (the daemon's `/mcp/PROFILE`; default: the
        /// daemon's tools.profile).
        #[arg(long, value_name = "PROFILE", value_parser = ["lean", "kb", "ai", "full"])]
        profile: Option<String>,
    },
    /// Index files or directories into the knowledge base.
    Index(kb_cli::IndexArgs),
    /// Search the knowledge base.
    Search(kb_cli::SearchArgs),
    /// Fetch and index a source again from where it came (every source without SOURCE):
    /// unchanged files cost a hash, what disappeared is removed.
    Refresh(kb_cli::RefreshArgs),
    /// Indexed sources, counts and the embedding model.
    Sources {
        #[arg(long)]
        json: bool,
    },
    /// Retrieval quality on a labeled question set (nDCG@10, MRR@10, recall@10 per mode).
    Eval(kb_cli::EvalArgs),
    /// Run the built-in mock LLM provider: an OpenAI-compatible server on loopback for tests,
    /// demos and benchmarks (prints its base URL as JSON, serves until stopped).
    MockLlm {
        /// Address to listen on.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
        listen: String,
        /// Require this bearer token, as a real provider would.
        #[arg(long, value_name = "KEY")]
        api_key: Option<String>,
    },
    /// Run every tool and variation end to end (results recorded), or show the history.
    Validate(validate_cli::ValidateArgs),
    /// The daily check: daemon, config, providers, databases, embedding model, disk, logs.
    /// Exit 0 ok, 1 warnings, 2 failures.
    Health(ops_cli::HealthArgs),
    /// Read the log and the activity log (filter, follow, archived), or prune and archive old files.
    Logs(ops_cli::LogsArgs),
    /// Calls, error rate, latency percentiles, tokens and cost per tool, provider and model.
    Stats(ops_cli::StatsArgs),
    /// Database maintenance: verify, compact, backup, restore, migrate, stats, reindex.
    Db {
        #[command(subcommand)]
        action: ops_cli::DbAction,
    },
    /// Show or check the configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// The models exai can call: providers (configured or the key to set), context windows,
    /// aliases and availability; what the `listmodels` tool shows.
    Models {
        #[arg(long)]
        json: bool,
    },
    /// Run the daemon as a systemd service: start at boot, restart after a crash.
    Service {
        #[command(subcommand)]
        action: admin_cli::ServiceAction,
    },
    /// Replace this exai binary with a new one: checks, backup, swap (the old one kept as
    /// exai.previous), migrations, daemon restart and health check; rolls back on failure.
    Upgrade(upgrade_cli::UpgradeArgs),
}

#[derive(Subcommand)]
enum DaemonAction {
    /// Is a daemon running, and what does its /health say? Exit 0 running, 1 not running.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Stop the daemon gracefully (SIGTERM), killing it (SIGKILL) after the grace period. The
    /// pid file's process is checked to be the daemon first; another process is never signalled.
    Stop {
        /// Give it only a short grace (2 s) before SIGKILL: for a daemon that hangs.
        #[arg(long)]
        force: bool,
    },
    /// Stop the running daemon and start a new one in the background.
    Restart {
        /// Address for the new daemon (default: the old one's).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
    },
    /// Start a daemon in the background and wait until it is ready.
    Start {
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
    },
    /// Make the running daemon read its configuration again (SIGHUP) without dropping sessions:
    /// keys, tokens, provider limits and timeouts apply; other changed settings are named as
    /// needing a restart. Exit 0 accepted, 2 refused (the old configuration stays), 1 no answer.
    Reload {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Every setting with its value (secrets redacted) and where it came from.
    Show {
        #[arg(long)]
        json: bool,
    },
    /// Validate the configuration and print the timeout hierarchy. Exit 2 when invalid.
    Check,
    /// Print the configuration table in Markdown (docs/CONFIGURATION.md's table is this output).
    Docs,
    /// Where exai keeps its files (data dir, database, model, logs) as JSON.
    Paths,
    /// Copy exai's settings from a `.env` (e.g. the one beside the Python server) into the data
    /// directory's `.env`, which exai reads wherever it is started. Checked before it is written.
    Import {
        /// The `.env` file to import.
        path: PathBuf,
        /// Show what would be imported without writing anything.
        #[arg(long)]
        dry_run: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut env_files = cli.env_file.clone();
    if let Some(paths) = std::env::var_os("EXAI_ENV_FILE") {
        let named = std::env::split_paths(&paths).filter(|p| !p.as_os_str().is_empty());
        env_files.splice(0..0, named);
    }
    let mut inputs = Inputs::from_process(cli.config.clone(), env_files);
    match &cli.command {
        Command::Daemon {
            listen: Some(l), ..
        }
        | Command::Daemon {
            action:
                Some(
                    DaemonAction::Restart { listen: Some(l) }
                    | DaemonAction::Start { listen: Some(l) },
                ),
            ..
        } => {
            inputs = inputs.with_flag("server.listen", "--listen", l.clone());
        }
        Command::Shim { url: Some(u), .. } => {
            inputs = inputs.with_flag("shim.url", "--url", u.clone())
        }
        Command::Serve { profile: Some(p) } => {
            inputs = inputs.with_flag("tools.profile", "--profile", p.clone())
        }
        _ => {}
    }
    if let Command::Config {
        action: ConfigAction::Docs,
    } = &cli.command
    {
        print!("{}", settings_table());
        return ExitCode::SUCCESS;
    }
    if let Command::MockLlm { listen, api_key } = &cli.command {
        return mock_llm(listen, api_key.clone());
    }
    // Before loading: the daemon judges the new configuration itself (from its own environment),
    // and a configuration this command cannot load is exactly what it must report.
    if let Command::Daemon {
        action: Some(DaemonAction::Reload { json }),
        ..
    } = &cli.command
    {
        return daemon_reload(*json);
    }
    let loaded = match exai_core::config::load(&inputs) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("exai: {e}");
            return ExitCode::from(2);
        }
    };
    let importing = matches!(
        &cli.command,
        Command::Config {
            action: ConfigAction::Import { .. }
        }
    );
    if let Some(ignored) = loaded.ignored_project_env.as_ref().filter(|_| !importing) {
        eprintln!("exai: warning: {ignored}");
    }
    for notice in &loaded.notices {
        eprintln!("exai: notice: {notice}");
    }
    // Held until the process exits, so `exai db restore` never swaps a database in use here.
    let _data_lock = match ops_cli::hold_data_lock(&cli.command, &loaded) {
        Ok(lock) => lock,
        Err(e) => {
            eprintln!("exai: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    match runtime.block_on(run(cli, loaded, inputs)) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("exai: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("exai: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        })
}

fn mock_llm(listen: &str, api_key: Option<String>) -> ExitCode {
    let addr: std::net::SocketAddr = match listen.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("exai: --listen {listen}: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        match exai_llm::mock::MockServer::bind(addr, api_key).await {
            Ok(server) => {
                println!("{}", serde_json::json!({ "url": server.url }));
                tokio::select! {
                    () = server.wait() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("exai: cannot listen on {addr}: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Logs to stderr and the rotating file; returns the activity log for servers.
fn init_logs(loaded: &Loaded) -> Result<Option<ActivityLog>> {
    let paths = DataPaths::new(loaded.data_dir.clone());
    let log = &loaded.config.logging;
    let max_bytes = log.file_max_mb * 1024 * 1024;
    let keep = u32::try_from(log.file_count).unwrap_or(5);
    let log_file = paths.log_file();
    logging::init(LogSettings {
        level: &log.level,
        file: Some((&log_file, max_bytes, keep)),
        ansi: std::io::stderr().is_terminal(),
    })
    .with_context(|| format!("cannot open the log file {}", log_file.display()))?;
    let activity = ActivityLog::open(&paths.activity_file(), max_bytes, keep)
        .with_context(|| format!("cannot open {}", paths.activity_file().display()))?;
    Ok(Some(activity))
}

/// Warnings and errors on stderr only, for one-shot commands.
fn init_cli_logs(loaded: &Loaded) {
    let level = if loaded.config.logging.level == "info" {
        "warn"
    } else {
        loaded.config.logging.level.as_str()
    };
    let _ = logging::init(LogSettings {
        level,
        file: None,
        ansi: std::io::stderr().is_terminal(),
    });
}

fn warn_unknown_disabled(loaded: &Loaded) {
    for name in exai_server::registry::unknown_disabled(&loaded.config) {
        tracing::warn!(tool = %name, "tools.disabled names a tool this version does not have; ignored");
    }
}

async fn run(cli: Cli, loaded: Loaded, inputs: Inputs) -> Result<ExitCode> {
    match cli.command {
        Command::Serve { .. } => {
            let activity = init_logs(&loaded)?;
            warn_unknown_disabled(&loaded);
            let state = AppState::new(loaded, Transport::Stdio, activity);
            let server = exai_server::ExaiServer::new(state.clone());
            tracing::debug!("serving MCP on stdio");
            let (input, output) = exai_server::stdio::standard_streams();
            exai_server::stdio::serve(server, state, input, output, daemon::termination_signal())
                .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Daemon { action: None, .. } => {
            let activity = init_logs(&loaded)?;
            warn_unknown_disabled(&loaded);
            let listen = loaded.config.server.listen;
            let dashboard: daemon::Mount = Box::new(exai_dashboard::router);
            daemon::run(loaded, inputs, listen, activity, Some(dashboard)).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Daemon {
            action: Some(action),
            ..
        } => daemon_action(action, loaded).await,
        Command::Shim {
            no_autostart,
            profile,
            ..
        } => {
            let activity = init_logs(&loaded)?;
            let token = loaded
                .config
                .server
                .auth_token
                .is_set()
                .then(|| loaded.config.server.auth_token.expose().to_string());
            let url = match &profile {
                Some(p) => format!("{}/{p}", loaded.config.shim.url.trim_end_matches('/')),
                None => loaded.config.shim.url.clone(),
            };
            let options = ShimOptions {
                url,
                token,
                autostart: loaded.config.shim.autostart && !no_autostart,
                timeout: loaded.timeouts.shim_timeout(),
                exe: std::env::current_exe()
                    .context("cannot find the exai executable to start a daemon")?,
            };
            let state = AppState::new(loaded, Transport::Stdio, activity);
            let shim = ShimServer::new(state.clone(), options);
            let (input, output) = exai_server::stdio::standard_streams();
            exai_server::stdio::serve(shim, state, input, output, daemon::termination_signal())
                .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::MockLlm { .. } => Ok(ExitCode::SUCCESS),
        Command::Config { action } => config_action(action, &loaded, &inputs),
        Command::Index(args) => {
            init_cli_logs(&loaded);
            tokio::task::block_in_place(|| kb_cli::index(args, &loaded))
        }
        Command::Refresh(args) => {
            init_cli_logs(&loaded);
            tokio::task::block_in_place(|| kb_cli::refresh(args, &loaded))
        }
        Command::Search(args) => {
            init_cli_logs(&loaded);
            tokio::task::block_in_place(|| kb_cli::search(args, &loaded))
        }
        Command::Sources { json } => {
            init_cli_logs(&loaded);
            tokio::task::block_in_place(|| kb_cli::sources(json, &loaded))
        }
        Command::Eval(args) => {
            init_cli_logs(&loaded);
            tokio::task::block_in_place(|| kb_cli::eval(args, &loaded))
        }
        Command::Validate(args) => validate_cli::run(args, &loaded).await,
        Command::Health(args) => {
            init_cli_logs(&loaded);
            ops_cli::health(args, &loaded).await
        }
        Command::Logs(args) => ops_cli::logs(args, &loaded).await,
        Command::Stats(args) => tokio::task::block_in_place(|| ops_cli::stats(args, &loaded)),
        Command::Db { action } => {
            init_cli_logs(&loaded);
            tokio::task::block_in_place(|| ops_cli::db(action, &loaded))
        }
        Command::Models { json } => admin_cli::models(json, &loaded),
        Command::Service { action } => admin_cli::service(action, &loaded),
        Command::Upgrade(args) => upgrade_cli::upgrade(args, &loaded).await,
    }
}

/// `exai config import`: plan, check the result loads, then write the data directory's `.env`.
fn config_import(inputs: &Inputs, loaded: &Loaded, source: &Path, dry_run: bool) -> ExitCode {
    use exai_core::env_import;
    let target = env_import::target(&loaded.data_dir);
    let plan = match env_import::plan(source, &target) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("exai: {e}");
            return ExitCode::from(2);
        }
    };
    // Load the configuration as it would be after the import, so a bad value is refused now,
    // naming the imported file, instead of stopping every later command.
    let check = loaded
        .data_dir
        .join(format!(".env.import-{}", std::process::id()));
    let checked = exai_core::private::replace(&check, &plan.text)
        .map_err(|e| format!("cannot write {}: {e}", check.display()))
        .and_then(|()| {
            let mut trial = inputs.clone();
            trial.env_files.insert(0, check.clone());
            exai_core::config::load(&trial).map(drop).map_err(|e| {
                e.to_string()
                    .replace(&check.display().to_string(), &source.display().to_string())
            })
        });
    let _ = std::fs::remove_file(&check);
    if let Err(e) = checked {
        eprintln!("exai: nothing imported: {e}");
        return ExitCode::from(2);
    }
    for (name, value) in &plan.imported {
        println!(
            "{} {name}={value}",
            if dry_run { "would import" } else { "imported" }
        );
    }
    for name in &plan.unknown {
        println!("skipped {name}: not an exai setting");
    }
    if plan.foreign > 0 {
        println!("left out {} other programs' variables", plan.foreign);
    }
    if plan.imported.is_empty() {
        println!("no exai settings in {}", source.display());
        return ExitCode::SUCCESS;
    }
    if dry_run {
        println!("dry run: {} unchanged", target.display());
        return ExitCode::SUCCESS;
    }
    match exai_core::private::replace(&target, &plan.text) {
        Ok(()) => {
            println!("wrote {} (private to you: 0600)", target.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("exai: cannot write {}: {e}", target.display());
            ExitCode::FAILURE
        }
    }
}

fn config_action(action: ConfigAction, loaded: &Loaded, inputs: &Inputs) -> Result<ExitCode> {
    match action {
        ConfigAction::Import { path, dry_run } => Ok(config_import(inputs, loaded, &path, dry_run)),
        ConfigAction::Show { json } => {
            let rows = loaded.rows();
            if json {
                let map: serde_json::Map<String, serde_json::Value> = rows
                    .iter()
                    .map(|(k, v, s)| {
                        (
                            k.to_string(),
                            serde_json::json!({ "value": v, "source": s.to_string() }),
                        )
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&map)?);
            } else {
                let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(10);
                let vwidth = rows.iter().map(|r| r.1.len()).max().unwrap_or(10).min(40);
                println!("data dir: {}", loaded.data_dir.display());
                match &loaded.file {
                    Some(f) => println!("config file: {}", f.display()),
                    None => println!("config file: none (defaults)"),
                }
                println!();
                for (key, value, source) in rows {
                    println!("{key:width$}  {value:vwidth$}  {source}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ConfigAction::Check => {
            println!("configuration OK");
            println!("data dir: {}", loaded.data_dir.display());
            if let Some(f) = &loaded.file {
                println!("config file: {}", f.display());
            }
            println!("timeout hierarchy (tool < daemon < shim < client):");
            println!("{}", loaded.timeouts);
            Ok(ExitCode::SUCCESS)
        }
        ConfigAction::Docs => {
            print!("{}", settings_table());
            Ok(ExitCode::SUCCESS)
        }
        ConfigAction::Paths => {
            let paths = DataPaths::new(loaded.data_dir.clone());
            let settings = exai_embed::EmbedSettings::from_config(loaded);
            let model = exai_embed::locate_local_model(&settings)
                .ok()
                .map(|p| p.display().to_string());
            let default_model = loaded
                .data_dir
                .join("models")
                .join(exai_embed::DEFAULT_MODEL_DIR_NAME);
            println!(
                "{}",
                serde_json::json!({
                    "data_dir": loaded.data_dir,
                    "config_file": loaded.file,
                    "database": exai_kb::config::describe(loaded),
                    "model_dir": model,
                    "default_model_dir": default_model,
                    "log_file": paths.log_file(),
                    "activity_file": paths.activity_file(),
                    "pid_file": paths.pid_file(),
                })
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The Markdown configuration table, generated from the settings registry and the defaults.
fn settings_table() -> String {
    let defaults = exai_core::config::load(&Inputs {
        env: vec![("EXAI_HOME".into(), "/nonexistent-exai-home".into())],
        ..Inputs::default()
    });
    let rows = defaults.map(|l| l.rows()).unwrap_or_default();
    let mut out = String::from(
        "| key (`exai.toml`) | environment | default | meaning |\n|---|---|---|---|\n",
    );
    for s in SETTINGS {
        let default = rows
            .iter()
            .find(|r| r.0 == s.key)
            .map(|r| r.1.clone())
            .unwrap_or_default();
        let default = if default.is_empty() || default == "<unset>" {
            String::from("—")
        } else {
            format!("`{default}`")
        };
        let env = s
            .env_names()
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ");
        out.push_str(&format!(
            "| `{}` | {env} | {default} | {} |\n",
            s.key, s.doc
        ));
    }
    for (name, doc) in NON_SETTING_ENV {
        out.push_str(&format!("| — | `{name}` | — | {doc} |\n"));
    }
    out
}

async fn daemon_action(action: DaemonAction, loaded: Loaded) -> Result<ExitCode> {
    let paths = DataPaths::new(loaded.data_dir.clone());
    let pid_path = paths.pid_file();
    let token = loaded
        .config
        .server
        .auth_token
        .is_set()
        .then(|| loaded.config.server.auth_token.expose().to_string());
    let grace = loaded.timeouts.shutdown_grace() + Duration::from_secs(2);
    match action {
        DaemonAction::Status { json } => {
            let Some(record) = daemon::running(&pid_path)? else {
                if json {
                    println!("{}", serde_json::json!({ "running": false }));
                } else {
                    println!(
                        "not running (no live daemon for {})",
                        loaded.data_dir.display()
                    );
                }
                return Ok(ExitCode::FAILURE);
            };
            let health =
                exai_ops::health::fetch_health(&daemon::base_url(&record.listen), token.as_deref())
                    .await;
            if json {
                let health = health.unwrap_or_else(|e| serde_json::json!({ "error": e }));
                println!(
                    "{}",
                    serde_json::json!({ "running": true, "pid": record.pid, "listen": record.listen, "started_at": record.started_at, "health": health })
                );
            } else {
                println!(
                    "running: pid {} on {} since {}",
                    record.pid, record.listen, record.started_at
                );
                match health {
                    Ok(h) => {
                        println!(
                            "health: {} (version {}, uptime {} s, {} call(s) in flight)",
                            h["status"].as_str().unwrap_or("?"),
                            h["version"].as_str().unwrap_or("?"),
                            h["uptime_secs"],
                            h["inflight_calls"]
                        );
                        let load = &h["http"];
                        if load.is_object() {
                            println!(
                                "load: {} of {} connections, {} of {} MCP sessions",
                                load["connections_open"],
                                load["max_connections"],
                                load["sessions_open"],
                                load["max_sessions"]
                            );
                        }
                    }
                    Err(e) => println!("health: not answering: {e}"),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        DaemonAction::Stop { force } => {
            let grace = if force { FORCE_GRACE.min(grace) } else { grace };
            let stopped = daemon::stop(&pid_path, grace).await?;
            report_stopped(&stopped, grace, &pid_path);
            Ok(ExitCode::SUCCESS)
        }
        DaemonAction::Restart { listen } => {
            let old = daemon::running(&pid_path)?;
            let listen = listen
                .or_else(|| old.as_ref().map(|r| r.listen.clone()))
                .unwrap_or_else(|| loaded.config.server.listen.to_string());
            if old.is_some() {
                let stopped = daemon::stop(&pid_path, grace).await?;
                report_stopped(&stopped, grace, &pid_path);
            }
            start_background(&loaded, &listen, token.as_deref()).await
        }
        DaemonAction::Reload { json } => Ok(daemon_reload(json)),
        DaemonAction::Start { listen } => {
            if let Some(r) = daemon::running(&pid_path)? {
                bail!(
                    "a daemon is already running (pid {}, listening on {})",
                    r.pid,
                    r.listen
                );
            }
            let listen = listen.unwrap_or_else(|| loaded.config.server.listen.to_string());
            start_background(&loaded, &listen, token.as_deref()).await
        }
    }
}

/// `exai daemon reload`: signal the daemon of this data directory and print its answer.
fn daemon_reload(json: bool) -> ExitCode {
    let var = |name: &str| std::env::var(name).ok();
    let Some(dir) = exai_core::paths::data_dir(
        var("EXAI_HOME").as_deref(),
        var("XDG_DATA_HOME").as_deref(),
        var("HOME").as_deref(),
    ) else {
        eprintln!("exai: {}", exai_core::ConfigError::NoDataDir);
        return ExitCode::from(2);
    };
    let outcome = match exai_server::reload::request(&DataPaths::new(dir), Duration::from_secs(15))
    {
        Ok(o) => o,
        Err(e) => {
            eprintln!("exai: {e}");
            return ExitCode::FAILURE;
        }
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&outcome).unwrap_or_default()
        );
    } else if let Some(error) = &outcome.error {
        eprintln!(
            "exai: reload refused by the daemon (pid {}); it keeps its configuration: {error}",
            outcome.pid
        );
    } else {
        let list = |keys: &[String]| {
            if keys.is_empty() {
                "nothing changed".to_string()
            } else {
                keys.join(", ")
            }
        };
        println!(
            "reloaded (daemon pid {}): applied: {}",
            outcome.pid,
            list(&outcome.applied)
        );
        for notice in &outcome.notices {
            println!("notice: {notice}");
        }
        if !outcome.restart_needed.is_empty() {
            println!(
                "needs a restart to take effect (`exai daemon restart`): {}",
                outcome.restart_needed.join(", ")
            );
        }
    }
    if outcome.accepted {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

/// How long `exai daemon stop --force` lets the daemon finish before SIGKILL.
const FORCE_GRACE: Duration = Duration::from_secs(2);

fn report_stopped(stopped: &daemon::Stopped, grace: Duration, pid_path: &Path) {
    let r = &stopped.record;
    if stopped.killed {
        println!(
            "daemon pid {} ({}) did not stop within {} s of SIGTERM: killed it (SIGKILL) and removed its pid file {}",
            r.pid,
            r.listen,
            grace.as_secs(),
            pid_path.display()
        );
    } else {
        println!("stopped daemon pid {} ({})", r.pid, r.listen);
    }
}

async fn start_background(loaded: &Loaded, listen: &str, token: Option<&str>) -> Result<ExitCode> {
    let exe = std::env::current_exe().context("cannot find the exai executable")?;
    let pid = daemon::spawn_detached(&exe, listen, &loaded.child_env())?;
    let base = daemon::base_url(listen);
    if daemon::wait_ready(&base, token, Duration::from_secs(15)).await {
        println!("daemon started: pid {pid}, MCP at {base}/mcp");
        Ok(ExitCode::SUCCESS)
    } else {
        bail!(
            "started the daemon (pid {pid}) but {base}/ready did not answer within 15 s; see `exai daemon status` and the log in the data directory"
        )
    }
}
