//! `exai validate` and `exai validate history`: wiring to exai-validate.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use exai_core::config::Loaded;
use exai_core::logging::{self, LogSettings};
use exai_validate::{Options, ProviderMode, TrackingStore, ValidateError, report, review, track};

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
    /// Recorded runs, newest first, with pass rate and its trend; with --since, --by-day or
    /// --by-tool the review of a window against the window before it.
    History(HistoryArgs),
}

#[derive(Args)]
pub struct HistoryArgs {
    /// Most runs to show.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Only runs from this long ago on (1h, 24h, 7d…), summed up and compared with the window
    /// of the same length before it.
    #[arg(long, value_name = "DURATION")]
    since: Option<String>,
    /// Runs, cases and pass rate per day of the window (7d unless --since says otherwise).
    #[arg(long)]
    by_day: bool,
    /// Pass rate, failures and failing variations per tool across the window's runs (7d unless
    /// --since says otherwise).
    #[arg(long)]
    by_tool: bool,
    #[arg(long)]
    json: bool,
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
    if let Some(ValidateAction::History(h)) = args.action {
        let store = open()?;
        if h.since.is_some() || h.by_day || h.by_tool {
            return review(&h, store.as_ref());
        }
        let runs = store.runs(h.limit.saturating_add(report::TREND_LOOKBACK))?;
        if h.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&report::history_json(&runs, h.limit))?
            );
        } else {
            print!("{}", report::history(&runs, h.limit));
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

/// `exai validate history --since D [--by-day] [--by-tool]`: the window's summary, its runs
/// (at most --limit), and the tables asked for.
fn review(h: &HistoryArgs, store: &dyn TrackingStore) -> Result<ExitCode> {
    let label = h.since.as_deref().unwrap_or("7d");
    let length = exai_ops::logs::parse_duration(label)
        .map_err(|e| anyhow::anyhow!("--since: {e}"))
        .and_then(|d| chrono::Duration::from_std(d).context("--since is too long"))?;
    let window = review::Window::last(length);
    let runs = store.runs_since(window.previous_start())?;
    let summary = review::summary(&runs, &window);
    let in_window = runs
        .iter()
        .filter(|r| window.contains(&r.started_at))
        .count();
    let days = h.by_day.then(|| review::by_day(&runs, &window));
    let tools = if h.by_tool {
        Some(review::by_tool(
            &store.results_since(window.previous_start())?,
            &window,
        ))
    } else {
        None
    };
    if h.json {
        let mut out = serde_json::json!({
            "since": exai_validate::track::stored_time(window.since),
            "window": label,
            "summary": summary,
            "runs": report::history_json(&runs, h.limit.min(in_window))["runs"],
        });
        if let Some(days) = &days {
            out["days"] = serde_json::to_value(days)?;
        }
        if let Some(tools) = &tools {
            out["tools"] = serde_json::to_value(tools)?;
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", review::summary_text(&summary, &window, label));
    if in_window == 0 {
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(days) = &days {
        print!("\n{}", review::days_text(days));
    }
    if let Some(tools) = &tools {
        print!("\n{}", review::tools_text(tools));
    }
    if h.since.is_some() {
        print!("\n{}", report::history(&runs, h.limit.min(in_window)));
        if in_window > h.limit {
            println!(
                "({} of the window's {} runs shown; --limit N shows more)",
                h.limit, in_window
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
