//! `exai stats --resources | --slo | --queries` and `exai db stats --history`: printing over
//! exai-ops' monitoring (`monitor`, `slo`, `queries`).

use std::process::ExitCode;

use anyhow::Result;
use chrono::{DateTime, Utc};
use exai_core::config::Loaded;
use exai_core::paths::DataPaths;
use exai_ops::health::human_bytes;
use exai_ops::resources::series::Series;
use exai_ops::{logs, monitor, queries};

/// The start of the window `--since` names, else `default` ago.
pub fn since(given: Option<&str>, default: chrono::Duration) -> Result<DateTime<Utc>> {
    let span = match given {
        Some(s) => {
            chrono::Duration::from_std(logs::parse_duration(s).map_err(anyhow::Error::msg)?)?
        }
        None => default,
    };
    Ok(Utc::now() - span)
}

/// Whether a tool runs under the workflow timeout (the server's registry decides).
pub fn is_workflow(tool: &str) -> bool {
    exai_server::registry::spec(tool)
        .is_some_and(|s| s.timeout == exai_server::registry::TimeoutClass::Workflow)
}

fn value(unit: &str, v: f64) -> String {
    match unit {
        "bytes" => human_bytes(v.max(0.0) as u64),
        "percent" => format!("{v:.1} %"),
        _ => format!("{v:.0}"),
    }
}

fn trend(s: &Series) -> String {
    match s.trend_per_hour {
        None => "-".into(),
        Some(t) if s.unit == "bytes" => {
            let sign = if t < 0.0 { "-" } else { "+" };
            format!("{sign}{}/h", human_bytes(t.abs() as u64))
        }
        Some(t) if s.unit == "percent" => format!("{t:+.2} %/h"),
        Some(t) => format!("{t:+.1}/h"),
    }
}

pub fn resources(since_arg: Option<&str>, json: bool, loaded: &Loaded) -> Result<ExitCode> {
    let since = since(since_arg, chrono::Duration::hours(24))?;
    let report = monitor::resource_report(loaded, since)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    if report.instances.is_empty() {
        println!(
            "no resource samples since {} (the daemon records one every ops.sample_interval_secs = {} s while it runs)",
            report.since, loaded.config.ops.sample_interval_secs
        );
        return Ok(ExitCode::SUCCESS);
    }
    for i in &report.instances {
        println!(
            "{}{}: {} sample(s) from {} to {}",
            i.instance,
            if i.own { " (this data directory)" } else { "" },
            i.samples,
            i.first,
            i.last
        );
        let width = i
            .series
            .iter()
            .map(|s| s.name.len())
            .max()
            .unwrap_or(6)
            .max(6);
        println!(
            "  {:<width$}  {:>11} {:>11} {:>11} {:>13}",
            "series", "min", "max", "latest", "trend"
        );
        for s in &i.series {
            println!(
                "  {:<width$}  {:>11} {:>11} {:>11} {:>13}",
                s.name,
                value(s.unit, s.min),
                value(s.unit, s.max),
                value(s.unit, s.latest),
                trend(s)
            );
        }
    }
    if let Some(note) = report.note {
        println!("note: {note}");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn slo(since_arg: Option<&str>, json: bool, loaded: &Loaded) -> Result<ExitCode> {
    let since = since(since_arg, chrono::Duration::hours(24))?;
    let report = monitor::slo_report(loaded, since, Utc::now(), &is_workflow)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("service targets from {} to {}", report.since, report.until);
        for o in &report.objectives {
            let label = match o.met {
                Some(true) => "ok",
                Some(false) => "MISSED",
                None => "-",
            };
            println!("{label:<6}  {}  ({})", o.describe(), o.setting);
        }
        println!(
            "overall: {}",
            if report.met {
                "every target met"
            } else {
                "targets missed (exit 1)"
            }
        );
    }
    Ok(if report.met {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub fn queries(
    since_arg: Option<&str>,
    limit: usize,
    json: bool,
    loaded: &Loaded,
) -> Result<ExitCode> {
    let since = since_arg
        .map(|s| since(Some(s), chrono::Duration::zero()))
        .transpose()?;
    let records = logs::activity_records(&DataPaths::new(loaded.data_dir.clone()));
    let report = queries::compute(&records, since, limit);
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    if report.with_text == 0 {
        println!(
            "{} search(es), none with its text recorded: set logging.log_queries = true (EXAI_LOGGING_LOG_QUERIES=true) and restart the daemon to record what users search for",
            report.searches
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} search(es), {} with their text (logging.log_queries)",
        report.searches, report.with_text
    );
    println!(
        "\nmost frequent:\n  {:>6} {:>9} {:>9} {:>7}  query",
        "count", "p50 ms", "max ms", "no hit"
    );
    for f in &report.most_frequent {
        println!(
            "  {:>6} {:>9.1} {:>9.1} {:>7}  {}",
            f.count, f.p50_ms, f.max_ms, f.no_hits, f.query
        );
    }
    println!(
        "\nslowest:\n  {:>9} {:>8} {:>5}  {:<20}  query",
        "ms", "mode", "hits", "time"
    );
    for s in &report.slowest {
        println!(
            "  {:>9.1} {:>8} {:>5}  {:<20}  {}",
            s.duration_ms, s.mode, s.hits, s.time, s.query
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn db_history(since_arg: Option<&str>, json: bool, loaded: &Loaded) -> Result<ExitCode> {
    let since = since(since_arg, chrono::Duration::days(30))?;
    let days = monitor::db_history(loaded, since)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&days)?);
        return Ok(ExitCode::SUCCESS);
    }
    if days.is_empty() {
        println!(
            "no resource samples since {} (the daemon records database sizes every ops.sample_interval_secs while it runs)",
            since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<10}  {:<10} {:>11} {:>12}",
        "date", "database", "size", "growth"
    );
    for d in &days {
        let growth = match d.growth_bytes {
            None => "-".to_string(),
            Some(g) => format!(
                "{}{}",
                if g < 0 { "-" } else { "+" },
                human_bytes(g.unsigned_abs())
            ),
        };
        println!(
            "{:<10}  {:<10} {:>11} {:>12}",
            d.date.to_string(),
            d.db,
            human_bytes(d.bytes),
            growth
        );
    }
    Ok(ExitCode::SUCCESS)
}
