//! The workflow-step protocol of analyze, codereview, debug, precommit, refactor, secaudit,
//! testgen, tracer and docgen. The calling agent investigates in steps; each intermediate step is
//! recorded in the conversation thread and answered with guidance for the next one. The final
//! step hands the consolidated findings (and the relevant files) to an expert model, unless the
//! agent is certain or asked for no expert.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::ai::{AiService, CallCtx, ThinkingMode, ToolError, TurnInput, TurnOutput};
use crate::prompts;
use crate::threads::{NewThread, NewTurn};

pub const WORKFLOW_TOOLS: &[&str] = &[
    "analyze",
    "codereview",
    "debug",
    "precommit",
    "refactor",
    "secaudit",
    "testgen",
    "tracer",
    "docgen",
];

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    Exploring,
    Low,
    Medium,
    High,
    VeryHigh,
    AlmostCertain,
    Certain,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Issue {
    pub severity: String,
    pub description: String,
}

/// One step as the agent reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Step {
    pub step: String,
    pub step_number: u32,
    pub total_steps: u32,
    pub next_step_required: bool,
    pub findings: String,
    #[serde(default)]
    pub files_checked: Vec<String>,
    #[serde(default)]
    pub relevant_files: Vec<String>,
    #[serde(default)]
    pub issues_found: Vec<Issue>,
    #[serde(default)]
    pub hypothesis: Option<String>,
    #[serde(default)]
    pub confidence: Option<Confidence>,
    #[serde(default)]
    pub backtrack_from_step: Option<u32>,
}

/// Everything a workflow call carries besides the step itself.
#[derive(Debug, Clone, Default)]
pub struct StepOptions {
    pub continuation_id: Option<String>,
    pub model: Option<String>,
    pub thinking: Option<ThinkingMode>,
    pub use_assistant_model: bool,
    pub temperature: Option<f64>,
    /// Extra context for the expert (precommit's git diff).
    pub context: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Consolidated {
    pub steps_recorded: usize,
    pub files_checked: Vec<String>,
    pub relevant_files: Vec<String>,
    pub issues_found: Vec<Issue>,
    pub hypothesis: Option<String>,
    pub confidence: Option<Confidence>,
    pub findings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepOutput {
    /// `pause_for_investigation`, `complete` (expert consulted) or `complete_without_expert`.
    pub status: String,
    pub tool: String,
    pub continuation_id: String,
    pub step_number: u32,
    pub total_steps: u32,
    pub next_step_required: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub required_actions: Vec<String>,
    pub guidance: String,
    pub consolidated: Consolidated,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expert_analysis: Option<TurnOutput>,
}

/// What to do before the next step; the first step's answer also explains the protocol, which
/// the tools' schemas leave undescribed (they would repeat it in every definition).
fn step_guidance(tool: &str, step_number: u32) -> String {
    let next = format!(
        "Investigate before calling {tool} again with step_number {} and this continuation_id. \
         Report what you actually found in `findings`, the files you read in `files_checked`, \
         those that matter in `relevant_files`, and set next_step_required to false on the last step.",
        step_number + 1
    );
    if step_number > 1 {
        return next;
    }
    format!(
        "{next}\n\nThe step protocol: `step` says what you do in this step (on step 1 the task and \
         its scope); `total_steps` is your estimate and may change; `findings` what this step found; \
         `issues_found` the problems, each with a `severity` (critical, high, medium, low) and a \
         `description`; `hypothesis` your current explanation; `confidence` one of exploring, low, \
         medium, high, very_high, almost_certain, certain; `backtrack_from_step` discards the steps \
         from that number on. The final step (next_step_required false) sends the consolidated \
         findings and the `relevant_files` to an expert model (`model`, `thinking_mode`, \
         `temperature`) unless confidence is `certain` or `use_assistant_model` is false."
    )
}

/// Fold the recorded steps (oldest first) into one picture; a backtrack drops the steps it
/// revisits.
pub fn consolidate(steps: &[Step]) -> Consolidated {
    let mut live: Vec<&Step> = Vec::new();
    for s in steps {
        if let Some(from) = s.backtrack_from_step {
            live.retain(|k| k.step_number < from);
        }
        live.retain(|k| k.step_number != s.step_number);
        live.push(s);
    }
    let mut checked = BTreeSet::new();
    let mut relevant = BTreeSet::new();
    let mut issues: Vec<Issue> = Vec::new();
    for s in &live {
        checked.extend(s.files_checked.iter().cloned());
        relevant.extend(s.relevant_files.iter().cloned());
        for i in &s.issues_found {
            if !issues.contains(i) {
                issues.push(i.clone());
            }
        }
    }
    Consolidated {
        steps_recorded: live.len(),
        files_checked: checked.into_iter().collect(),
        relevant_files: relevant.into_iter().collect(),
        issues_found: issues,
        hypothesis: live.iter().rev().find_map(|s| s.hypothesis.clone()),
        confidence: live.last().and_then(|s| s.confidence),
        findings: live
            .iter()
            .map(|s| format!("Step {}: {} — {}", s.step_number, s.step, s.findings))
            .collect(),
    }
}

impl AiService {
    /// Record a step; on the final one, consult the expert model unless told not to.
    pub async fn workflow_step(
        &self,
        tool: &str,
        step: Step,
        options: StepOptions,
        ctx: &CallCtx,
    ) -> Result<StepOutput, ToolError> {
        check_step(tool, &step)?;
        let (id, steps) = self.record_step(tool, &step, &options, ctx).await?;
        let consolidated = consolidate(&steps);
        if step.next_step_required {
            let actions: Vec<String> = prompts::required_actions(tool, step.step_number)
                .into_iter()
                .map(str::to_string)
                .collect();
            return Ok(StepOutput {
                status: "pause_for_investigation".into(),
                required_actions: actions,
                guidance: step_guidance(tool, step.step_number),
                ..reply(tool, id, &step, consolidated)
            });
        }
        let certain = consolidated.confidence == Some(Confidence::Certain);
        if certain || !options.use_assistant_model {
            let why = if certain {
                "confidence is `certain`"
            } else {
                "use_assistant_model is false"
            };
            return Ok(StepOutput {
                status: "complete_without_expert".into(),
                guidance: format!(
                    "The investigation is complete and no expert model was consulted ({why}). Present the consolidated findings to the user."
                ),
                ..reply(tool, id, &step, consolidated)
            });
        }
        let expert = self
            .consult_expert(tool, &id, &consolidated, &options, ctx)
            .await?;
        Ok(StepOutput {
            status: "complete".into(),
            guidance: "Weigh the expert analysis against your own findings; verify its claims in the code before acting on them.".into(),
            expert_analysis: Some(expert),
            ..reply(tool, id, &step, consolidated)
        })
    }

    /// Record the step as a user turn of the tool's thread (a new one without a continuation)
    /// and read back every step recorded there, oldest first; returns the thread's id too.
    async fn record_step(
        &self,
        tool: &str,
        step: &Step,
        options: &StepOptions,
        ctx: &CallCtx,
    ) -> Result<(String, Vec<Step>), ToolError> {
        let recorded =
            serde_json::to_string(step).map_err(|e| ToolError::Invalid(e.to_string()))?;
        if let Some(given) = &options.continuation_id {
            self.settled(&ctx.principal, given).await?;
        }
        let (given, tool, title, files) = (
            options.continuation_id.clone(),
            tool.to_string(),
            step.step.clone(),
            step.relevant_files.clone(),
        );
        self.in_threads(&ctx.principal, move |t| {
            let (id, new) = NewThread::or_continue(given, &tool, &title);
            let turn = NewTurn {
                role: "user",
                content: &recorded,
                files: &files,
                tool: &tool,
                model: None,
                usage: None,
            };
            t.record(&id, new.as_ref(), &[turn])?;
            let steps: Vec<Step> = t
                .history(&id)?
                .into_iter()
                .filter(|turn| turn.role == "user" && turn.tool == tool)
                .filter_map(|turn| serde_json::from_str(&turn.content).ok())
                .collect();
            Ok((id, steps))
        })
        .await
    }

    /// Hand the consolidated findings and the relevant files to the expert model in a turn of
    /// its own, and record its answer in the workflow's thread `id`.
    async fn consult_expert(
        &self,
        tool: &str,
        id: &str,
        consolidated: &Consolidated,
        options: &StepOptions,
        ctx: &CallCtx,
    ) -> Result<TurnOutput, ToolError> {
        let expert = self
            .turn(
                TurnInput {
                    max_tokens: None,
                    tool: tool.into(),
                    prompt: expert_prompt(tool, consolidated),
                    files: consolidated.relevant_files.clone(),
                    model: options.model.clone(),
                    temperature: options.temperature,
                    thinking: options.thinking,
                    web_search: false,
                    continuation_id: None,
                    grounding: Vec::new(),
                    deep: true,
                    context: options.context.clone(),
                },
                ctx,
                true,
            )
            .await?;
        let (id, tool) = (id.to_string(), tool.to_string());
        let (answer, model) = (
            expert.completion.content.clone(),
            expert.completion.model.clone(),
        );
        self.in_threads(&ctx.principal, move |t| {
            Ok(t.add_turn(&id, "assistant", &answer, &[], &tool, Some(&model))?)
        })
        .await?;
        Ok(expert)
    }
}

/// Refuse a step before anything is recorded: an unknown tool, steps numbered from 0, an empty
/// description.
fn check_step(tool: &str, step: &Step) -> Result<(), ToolError> {
    if !WORKFLOW_TOOLS.contains(&tool) {
        return Err(ToolError::Invalid(format!(
            "`{tool}` is not a workflow tool"
        )));
    }
    if step.step_number == 0 || step.total_steps == 0 {
        return Err(ToolError::Invalid(
            "step_number and total_steps start at 1".into(),
        ));
    }
    if step.step.trim().is_empty() {
        return Err(ToolError::Invalid(
            "`step` must describe what this step does".into(),
        ));
    }
    Ok(())
}

/// The answer to `step` in thread `id`, before its outcome sets the status and guidance.
fn reply(tool: &str, id: String, step: &Step, consolidated: Consolidated) -> StepOutput {
    StepOutput {
        status: String::new(),
        tool: tool.into(),
        continuation_id: id,
        step_number: step.step_number,
        total_steps: step.total_steps.max(step.step_number),
        next_step_required: step.next_step_required,
        required_actions: Vec::new(),
        guidance: String::new(),
        consolidated,
        expert_analysis: None,
    }
}

/// What the expert is asked: the findings, issues, hypothesis and confidence of the
/// investigation.
fn expert_prompt(tool: &str, consolidated: &Consolidated) -> String {
    let mut summary = format!(
        "The agent finished a {tool} investigation in {} steps.\n\nFindings:\n",
        consolidated.steps_recorded
    );
    for f in &consolidated.findings {
        summary.push_str(&format!("- {f}\n"));
    }
    if !consolidated.issues_found.is_empty() {
        summary.push_str("\nIssues found:\n");
        for i in &consolidated.issues_found {
            summary.push_str(&format!("- [{}] {}\n", i.severity, i.description));
        }
    }
    if let Some(h) = &consolidated.hypothesis {
        summary.push_str(&format!("\nCurrent hypothesis: {h}\n"));
    }
    if let Some(c) = consolidated.confidence {
        summary.push_str(&format!("Agent's confidence: {c:?}\n"));
    }
    summary.push_str("\nGive your expert analysis.");
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(n: u32, files: &[&str], backtrack: Option<u32>) -> Step {
        Step {
            step: format!("step {n}"),
            step_number: n,
            total_steps: 3,
            next_step_required: true,
            findings: format!("found {n}"),
            files_checked: files.iter().map(|s| s.to_string()).collect(),
            relevant_files: files.iter().map(|s| s.to_string()).collect(),
            issues_found: vec![],
            hypothesis: Some(format!("h{n}")),
            confidence: Some(Confidence::Medium),
            backtrack_from_step: backtrack,
        }
    }

    #[test]
    fn backtracking_drops_revisited_steps() {
        let steps = vec![
            step(1, &["a"], None),
            step(2, &["b"], None),
            step(2, &["c"], Some(2)),
        ];
        let c = consolidate(&steps);
        assert_eq!(c.steps_recorded, 2);
        assert_eq!(c.relevant_files, ["a", "c"]);
        assert_eq!(c.hypothesis.as_deref(), Some("h2"));
    }
}
