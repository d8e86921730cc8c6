//! `exai validate` and `exai validate history`: wiring to exai-validate.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use exai_core::config::Loaded;
use exai_core::logging::{self, LogSettings};
use exai_validate::{Options, ProviderMode, ValidateError, report, track};

#[derive(Clone, Copy, ValueEnum)]
pub enum ProviderArg {
    /// The built-in mock provider (configured as Kimi and GLM): no keys, no cost, deterministic.
    Mock,
    /// The providers configured for this data directory.
    Live,
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ValidateArgs {
    #[command(subcommand)]
    pub action: Option<ValidateAction>,
    /// Only these tools (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', value_name = "TOOL")]
    pub tools: Vec<String>,
    /// Only these variations, e.g. basic,error_handling (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', value_name = "VARIATION")]
    pub variations: Vec<String>,
    /// Call the configured providers (live) or the built-in mock.
    #[arg(long, value_enum, default_value = "live")]
    pub provider: ProviderArg,
    /// Have this model grade each output 1–10 with reasons (stored with the results).
    #[arg(long, value_name = "MODEL")]
    pub watcher: Option<String>,
    /// Print the run as JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// List the cases (tool, variation, what each checks) and exit.
    #[arg(long)]
    pub list: bool,
}

#[derive(Subcommand)]
pub enum ValidateAction {
    /// Recorded runs, newest first, with pass rate and its trend.
    History {
        /// Most runs to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
}

/// Warnings and errors on stderr. The suite provokes refusals on purpose, which the SDK logs as
/// warnings; only its errors are shown.
fn init_logs(loaded: &Loaded) {
    let level = match loaded.config.logging.level.as_str() {
        "info" => "warn,rmcp=error".to_string(),
        other if other.contains("rmcp") => other.to_string(),
        other => format!("{other},rmcp=error"),
    };
    let _ = logging::init(LogSettings {
        level: &level,
        file: None,
        ansi: std::io::stderr().is_terminal(),
    });
}

pub async fn run(args: ValidateArgs, loaded: &Loaded) -> Result<ExitCode> {
    init_logs(loaded);
    let open = || {
        track::open(loaded).with_context(|| {
            format!(
                "cannot open the tracking tables in {}",
                track::location(loaded)
            )
        })
    };
    if let Some(ValidateAction::History { limit, json }) = args.action {
        let runs = open()?.runs(limit.saturating_add(report::TREND_LOOKBACK))?;
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(&report::history_json(&runs, limit))?
            );
        } else {
            print!("{}", report::history(&runs, limit));
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.list {
        for c in exai_validate::cases::catalogue() {
            println!("{:<22} {:<16} {}", c.tool, c.variation, c.checks);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let options = Options {
        tools: args.tools,
        variations: args.variations,
        provider: match args.provider {
            ProviderArg::Mock => ProviderMode::Mock,
            ProviderArg::Live => ProviderMode::Live,
        },
        watcher: args.watcher,
    };
    let mut store = open()?;
    let json = args.json;
    let outcome = exai_validate::run(loaded, &options, store.as_mut(), |result, grade| {
        if !json {
            println!("{}", report::case_line(result, grade));
        }
    })
    .await;
    let report = match outcome {
        Ok(r) => r,
        Err(ValidateError::Usage(message)) => {
            eprintln!("exai: {message}");
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(e.into()),
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report::run_json(&report))?
        );
    } else {
        println!("\n{}", report::table(&report));
    }
    Ok(if report.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
