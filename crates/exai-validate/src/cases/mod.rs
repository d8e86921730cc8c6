//! The catalogue: every tool × variation the suite runs, each with what it checks.
//!
//! Variations: `basic` (the normal call and the shape of its answer), `edge_cases` (unusual but
//! valid input), `error_handling` (bad input gets a clear refusal), `provider_faults` (429, 5xx,
//! auth and context-length answers from the provider; mock only), `file_handling`,
//! `model_selection`, `continuation`, `timeout` (mock only), `progress`, `web_search`,
//! `file_upload` and `search_filters`.

use futures::future::BoxFuture;

use crate::check::Outcome;
use crate::system::System;

pub mod ai;
pub mod kb;
pub mod status;
pub mod workflow;

pub type Run = for<'a> fn(&'a System) -> BoxFuture<'a, Outcome>;

/// One tool × variation.
pub struct Case {
    pub tool: &'static str,
    pub variation: &'static str,
    /// What the case checks, for `--list` and the watcher.
    pub checks: &'static str,
    /// Searches the knowledge-base fixture (indexed once, before the first such case).
    pub kb: bool,
    pub run: Run,
}

/// Define a case: `case!("tool", "variation", "what it checks", |s| { … })`.
macro_rules! case {
    ($tool:literal, $variation:literal, $checks:literal, |$s:ident| $body:block) => {
        $crate::cases::case!(@ $tool, $variation, $checks, false, |$s| $body)
    };
    (kb $tool:literal, $variation:literal, $checks:literal, |$s:ident| $body:block) => {
        $crate::cases::case!(@ $tool, $variation, $checks, true, |$s| $body)
    };
    (@ $tool:literal, $variation:literal, $checks:literal, $kb:expr, |$s:ident| $body:block) => {
        $crate::cases::Case {
            tool: $tool,
            variation: $variation,
            checks: $checks,
            kb: $kb,
            run: {
                fn run(
                    $s: &$crate::system::System,
                ) -> futures::future::BoxFuture<'_, $crate::check::Outcome> {
                    Box::pin(async move { $body })
                }
                run
            },
        }
    };
}
pub(crate) use case;

/// Every case, in the order they run.
pub fn catalogue() -> Vec<Case> {
    let mut all = status::cases();
    all.extend(ai::cases());
    all.extend(workflow::cases());
    all.extend(kb::cases());
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_case_is_unique_and_names_a_real_tool() {
        let mut seen = HashSet::new();
        for c in catalogue() {
            assert!(
                seen.insert((c.tool, c.variation)),
                "{}/{} twice",
                c.tool,
                c.variation
            );
            assert!(
                exai_server::registry::spec(c.tool).is_some(),
                "{} is no tool",
                c.tool
            );
            assert!(!c.checks.is_empty());
        }
    }

    #[test]
    fn every_tool_but_the_diagnostics_has_a_case() {
        let cases = catalogue();
        for spec in exai_server::registry::TOOLS {
            if spec.family == exai_server::registry::Family::Diag {
                continue;
            }
            assert!(
                cases.iter().any(|c| c.tool == spec.name),
                "no validation case for `{}`",
                spec.name
            );
        }
    }
}
