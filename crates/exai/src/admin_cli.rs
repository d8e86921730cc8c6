//! `exai models` and `exai service install|uninstall`: argument parsing and printing over the
//! gateway's listing and exai-ops' service unit.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use exai_core::config::Loaded;
use exai_ops::service;
use serde_json::Value;

/// `exai models`: what the `listmodels` tool shows, from the same listing.
pub fn models(json: bool, loaded: &Loaded) -> Result<ExitCode> {
    let env = |name: &str| std::env::var(name).ok();
    let listing = exai_llm::Gateway::from_config(&loaded.config, &env).listing();
    if json {
        println!("{}", serde_json::to_string_pretty(&listing.json)?);
        return Ok(ExitCode::SUCCESS);
    }
    let j = &listing.json;
    let empty = Vec::new();
    let list = |key: &str| j[key].as_array().unwrap_or(&empty);
    println!("providers:");
    for p in list("providers") {
        let state = if p["configured"] == true {
            "configured".to_string()
        } else {
            format!("no key: set {}", p["key_variables"].as_str().unwrap_or("?"))
        };
        println!(
            "  {:<12} {:<40} {}",
            p["id"].as_str().unwrap_or(""),
            state,
            p["base_url"].as_str().unwrap_or("")
        );
    }
    let models = list("models");
    println!(
        "\nmodels: {} of {} available; default model: {}",
        j["available"],
        models.len(),
        j["default_model"].as_str().unwrap_or("")
    );
    let width = models
        .iter()
        .filter_map(|m| m["name"].as_str())
        .map(str::len)
        .max()
        .unwrap_or(4);
    println!(
        "  {:<width$}  {:<12} {:>9}  {:<11} aliases",
        "name", "provider", "window", "available"
    );
    for m in models {
        let aliases: Vec<&str> = m["aliases"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        println!(
            "  {:<width$}  {:<12} {:>9}  {:<11} {}",
            m["name"].as_str().unwrap_or(""),
            m["provider"].as_str().unwrap_or(""),
            m["context_window"].as_u64().unwrap_or(0),
            if m["available"] == true { "yes" } else { "no" },
            aliases.join(", ")
        );
    }
    if j["available"] == 0 {
        println!("\n{}", exai_llm::LlmError::NoProvider);
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Subcommand)]
pub enum ServiceAction {
    /// Write a systemd unit that runs the daemon (`exai daemon`) for this data directory,
    /// restarts it after a crash and sandboxes it; prints the systemctl commands to enable it.
    Install {
        /// A per-user unit in ~/.config/systemd/user (no root needed) instead of
        /// /etc/systemd/system.
        #[arg(long)]
        user: bool,
        /// Print the unit (on stdout) and where it would go; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also run `systemctl [--user] daemon-reload` after writing it.
        #[arg(long)]
        systemctl: bool,
    },
    /// Remove the unit `exai service install` wrote.
    Uninstall {
        #[arg(long)]
        user: bool,
        /// Also run `systemctl [--user] disable --now exai.service` first and `daemon-reload`
        /// after.
        #[arg(long)]
        systemctl: bool,
    },
}

pub fn service(action: ServiceAction, loaded: &Loaded) -> Result<ExitCode> {
    match action {
        ServiceAction::Install {
            user,
            dry_run,
            systemctl,
        } => install(user, dry_run, systemctl, loaded),
        ServiceAction::Uninstall { user, systemctl } => {
            if systemctl && service::unit_path(user)?.exists() {
                run_systemctl(user, &["disable", "--now", service::UNIT_NAME])?;
            }
            let (path, removed) = service::uninstall(user)?;
            if !removed {
                println!("no unit at {}: nothing to remove", path.display());
                return Ok(ExitCode::SUCCESS);
            }
            println!("removed {}", path.display());
            if systemctl {
                run_systemctl(user, &["daemon-reload"])?;
            } else {
                println!("then run:");
                println!(
                    "  {}",
                    service::systemctl(user, &["disable", "--now", service::UNIT_NAME]).join(" ")
                );
                println!(
                    "  {}",
                    service::systemctl(user, &["daemon-reload"]).join(" ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn install(user: bool, dry_run: bool, systemctl: bool, loaded: &Loaded) -> Result<ExitCode> {
    let exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .context("cannot find the exai executable for the unit's ExecStart")?;
    let plan = service::plan(loaded, &exe, user)?;
    if dry_run {
        print!("{}", service::unit_text(&plan.spec)?);
        eprintln!(
            "dry run: would write {}; nothing written",
            plan.path.display()
        );
        warn_shell_only(&plan);
        return Ok(ExitCode::SUCCESS);
    }
    service::install(&plan)?;
    println!(
        "wrote {} (runs {} daemon for {})",
        plan.path.display(),
        exe.display(),
        loaded.data_dir.display()
    );
    warn_shell_only(&plan);
    if systemctl {
        run_systemctl(user, &["daemon-reload"])?;
    }
    println!(
        "to start it now and at every boot{}:",
        if user { " (your login)" } else { "" }
    );
    if !systemctl {
        println!(
            "  {}",
            service::systemctl(user, &["daemon-reload"]).join(" ")
        );
    }
    println!("  exai daemon stop   # a daemon started by hand holds the data directory");
    println!(
        "  {}",
        service::systemctl(user, &["enable", "--now", service::UNIT_NAME]).join(" ")
    );
    println!(
        "  {}",
        service::systemctl(user, &["status", service::UNIT_NAME]).join(" ")
    );
    if user {
        println!("  loginctl enable-linger \"$USER\"   # start at boot, before you log in");
    }
    Ok(ExitCode::SUCCESS)
}

fn warn_shell_only(plan: &service::Plan) {
    if !plan.shell_only.is_empty() {
        eprintln!(
            "exai: warning: these settings come from this shell's environment, which the service does not see: {}; put them in {} or the configuration file",
            plan.shell_only.join(", "),
            plan.spec.data_dir.join(".env").display()
        );
    }
}

fn run_systemctl(user: bool, args: &[&str]) -> Result<()> {
    if !service::have_systemctl() {
        anyhow::bail!("systemctl is not on the PATH; run the commands printed above by hand");
    }
    let cmd = service::systemctl(user, args);
    println!("running: {}", cmd.join(" "));
    let status = std::process::Command::new(&cmd[0])
        .args(&cmd[1..])
        .status()
        .with_context(|| format!("cannot run {}", cmd.join(" ")))?;
    if !status.success() {
        anyhow::bail!("{} failed ({status})", cmd.join(" "));
    }
    Ok(())
}
