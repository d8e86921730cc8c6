//! `exai validate`: the full test suite of a running exai, recorded in the database.
//!
//! Each tool × variation in [`cases::catalogue`] runs through the real MCP path (an rmcp client
//! over Streamable HTTP to an exai server in this process; see [`system`]) against the
//! configured providers or the built-in mock, checks what the answer says, and is stored in
//! `test_runs` / `test_results` ([`track`]). With a watcher model each output is also graded
//! ([`watcher`]). [`report`] prints the pass-rate table and the history, [`review`] a window of
//! runs per day and per tool (the weekly review).

pub mod cases;
pub mod check;
pub mod report;
pub mod review;
pub mod system;
pub mod track;
pub mod watcher;

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use exai_core::Loaded;
use futures::FutureExt;

use crate::cases::Case;
use crate::check::Problem;
pub use crate::system::ProviderMode;
use crate::system::System;
pub use crate::track::{CaseResult, Grade, Status, Totals, TrackError, TrackingStore};

#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    /// Bad filters or watcher: the operator's to fix.
    #[error("{0}")]
    Usage(String),
    #[error("cannot start the system under test: {0}")]
    Setup(String),
    #[error(transparent)]
    Track(#[from] TrackError),
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Only these tools (empty: all).
    pub tools: Vec<String>,
    /// Only these variations (empty: all).
    pub variations: Vec<String>,
    pub provider: ProviderMode,
    /// Grade each output with this model.
    pub watcher: Option<String>,
}

/// A finished run.
pub struct RunReport {
    pub run_id: i64,
    pub provider: ProviderMode,
    pub results: Vec<(CaseResult, Option<Grade>)>,
    pub totals: Totals,
    pub duration: Duration,
    pub watcher: Option<String>,
}

impl RunReport {
    /// Whether anything failed or errored.
    pub fn failed(&self) -> bool {
        self.totals.failed + self.totals.errored > 0
    }
}

/// The cases the filters select, or a usage error naming what exists.
pub fn select(options: &Options) -> Result<Vec<Case>, ValidateError> {
    let all = cases::catalogue();
    let known = |names: Vec<&'static str>, given: &[String], what: &str| {
        let mut names = names;
        names.sort_unstable();
        names.dedup();
        match given.iter().find(|g| !names.contains(&g.as_str())) {
            Some(bad) => Err(ValidateError::Usage(format!(
                "no {what} `{bad}` in the suite; {what}s: {}",
                names.join(", ")
            ))),
            None => Ok(()),
        }
    };
    known(all.iter().map(|c| c.tool).collect(), &options.tools, "tool")?;
    known(
        all.iter().map(|c| c.variation).collect(),
        &options.variations,
        "variation",
    )?;
    let chosen: Vec<Case> = all
        .into_iter()
        .filter(|c| options.tools.is_empty() || options.tools.iter().any(|t| t == c.tool))
        .filter(|c| {
            options.variations.is_empty() || options.variations.iter().any(|v| v == c.variation)
        })
        .collect();
    if chosen.is_empty() {
        return Err(ValidateError::Usage(format!(
            "no case has tool {} and variation {}; see `exai validate --list`",
            options.tools.join(" or "),
            options.variations.join(" or ")
        )));
    }
    Ok(chosen)
}

fn filter_text(values: &[String]) -> Option<String> {
    (!values.is_empty()).then(|| values.join(","))
}

/// Run one case and account for it.
async fn run_case(system: &System, case: &Case) -> CaseResult {
    system.reset_tally();
    let started = Instant::now();
    // `enable_tools` is always on but listed only where a profile hides something.
    let on = case.tool == exai_server::registry::ENABLE_TOOLS
        || system.tools.iter().any(|t| t == case.tool);
    let outcome = if !on {
        Err(Problem::Skip(format!(
            "`{}` is switched off by the configuration (tools.disabled, tools.disabled_families)",
            case.tool
        )))
    } else {
        AssertUnwindSafe((case.run)(system))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| Err(Problem::Error("the case panicked".into())))
    };
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    let tally = system.take_tally();
    let (status, error) = match outcome {
        Ok(()) => (Status::Pass, None),
        Err(Problem::Fail(m)) => (Status::Fail, Some(m)),
        Err(Problem::Skip(m)) => (Status::Skip, Some(m)),
        Err(Problem::Error(m)) => (Status::Error, Some(m)),
    };
    CaseResult {
        tool: case.tool.into(),
        variation: case.variation.into(),
        status,
        provider: tally.provider,
        model: tally.model,
        duration_ms,
        tokens_in: tally.tokens_in,
        tokens_out: tally.tokens_out,
        cost_usd: tally.cost_usd,
        error,
        output: tally.output.map(|o| check::clip(&o, 4000)),
    }
}

/// Run the selected cases, recording each result as it finishes and handing it to
/// `on_result` (for progress output).
pub async fn run(
    operator: &Loaded,
    options: &Options,
    store: &mut dyn TrackingStore,
    mut on_result: impl FnMut(&CaseResult, Option<&Grade>),
) -> Result<RunReport, ValidateError> {
    let selected = select(options)?;
    let started = Instant::now();
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let system = System::start(operator, options.provider)
        .await
        .map_err(ValidateError::Setup)?;
    if let Some(model) = &options.watcher {
        let ai = system.main.state.ai();
        let problem = match ai.gateway.registry().get(model) {
            None => Some(format!(
                "watcher model `{model}` is not a known model; see `listmodels`"
            )),
            Some(info) => ai
                .gateway
                .unavailable_reason(info)
                .map(|r| format!("watcher model `{model}` is unavailable: {r}")),
        };
        if let Some(problem) = problem {
            system.stop().await;
            return Err(ValidateError::Usage(problem));
        }
    }
    let run_id = store.begin_run(&track::NewRun {
        started_at,
        provider: options.provider.as_str().into(),
        tools_filter: filter_text(&options.tools),
        variations_filter: filter_text(&options.variations),
        watcher_model: options.watcher.clone(),
    })?;
    let mut totals = Totals::default();
    let mut results = Vec::with_capacity(selected.len());
    for case in &selected {
        let result = run_case(&system, case).await;
        let result_id = store.add_result(run_id, &result)?;
        let gradable = matches!(result.status, Status::Pass | Status::Fail)
            && result.output.as_deref().is_some_and(|o| !o.is_empty());
        let grade = match (&options.watcher, gradable) {
            (Some(model), true) => {
                let ai = system.main.state.ai();
                let g = watcher::grade(
                    &ai.gateway,
                    &system.main.state.loaded.timeouts,
                    model,
                    case,
                    &result,
                    system.is_mock(),
                )
                .await;
                store.add_grade(result_id, &g)?;
                Some(g)
            }
            _ => None,
        };
        totals.add(&result);
        on_result(&result, grade.as_ref());
        results.push((result, grade));
    }
    let duration = started.elapsed();
    store.finish_run(run_id, &totals, duration)?;
    system.stop().await;
    Ok(RunReport {
        run_id,
        provider: options.provider,
        results,
        totals,
        duration,
        watcher: options.watcher.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(tools: &[&str], variations: &[&str]) -> Options {
        Options {
            tools: tools.iter().map(|s| s.to_string()).collect(),
            variations: variations.iter().map(|s| s.to_string()).collect(),
            provider: ProviderMode::Mock,
            watcher: None,
        }
    }

    #[test]
    fn filters_narrow_and_unknown_names_are_refused() {
        let all = select(&options(&[], &[])).map(|c| c.len()).unwrap_or(0);
        assert!(all > 40, "{all} cases");
        let chat = select(&options(&["chat"], &["basic"])).unwrap_or_default();
        assert_eq!(chat.len(), 1);
        assert_eq!((chat[0].tool, chat[0].variation), ("chat", "basic"));
        let e = select(&options(&["chatt"], &[]))
            .err()
            .map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.contains("`chatt`") && e.contains("chat,"))
        );
        let none = select(&options(&["version"], &["timeout"])).err();
        assert!(none.is_some());
    }
}
