//! The planner: the agent builds a plan step by step, revising steps and branching, and exai keeps
//! the plan in a conversation thread so it survives restarts and can be resumed. No model call:
//! the planning is the agent's own; exai keeps it straight and hands the whole plan back.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ai::{AiService, ToolError};
use crate::threads::{NewThread, NewTurn};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanStep {
    pub step: String,
    pub step_number: u32,
    pub total_steps: u32,
    pub next_step_required: bool,
    #[serde(default)]
    pub is_step_revision: bool,
    #[serde(default)]
    pub revises_step_number: Option<u32>,
    #[serde(default)]
    pub is_branch_point: bool,
    #[serde(default)]
    pub branch_from_step: Option<u32>,
    #[serde(default)]
    pub branch_id: Option<String>,
}

/// Alternative lines by branch id: (branched from step, steps).
pub type Branches = BTreeMap<String, (u32, Vec<String>)>;

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub continuation_id: String,
    pub status: String,
    pub step_number: u32,
    pub total_steps: u32,
    pub next_step_required: bool,
    /// The main line, revisions applied, in step order.
    pub steps: Vec<String>,
    pub branches: Branches,
    pub guidance: String,
}

/// Fold recorded steps into the plan.
pub fn assemble(steps: &[PlanStep]) -> (Vec<String>, Branches) {
    let mut main: BTreeMap<u32, String> = BTreeMap::new();
    let mut branches = Branches::new();
    for s in steps {
        match (&s.branch_id, s.branch_from_step) {
            (Some(id), from) => {
                let entry = branches
                    .entry(id.clone())
                    .or_insert_with(|| (from.unwrap_or(s.step_number), Vec::new()));
                entry.1.push(s.step.clone());
            }
            (None, _) => {
                let n = if s.is_step_revision {
                    s.revises_step_number.unwrap_or(s.step_number)
                } else {
                    s.step_number
                };
                main.insert(n, s.step.clone());
            }
        }
    }
    (main.into_values().collect(), branches)
}

impl AiService {
    /// Record a plan step in `owner`'s thread and return the plan so far.
    pub async fn plan_step(
        &self,
        step: PlanStep,
        continuation_id: Option<String>,
        owner: &str,
    ) -> Result<Plan, ToolError> {
        if step.step.trim().is_empty() || step.step_number == 0 || step.total_steps == 0 {
            return Err(ToolError::Invalid(
                "`step` must describe the step; step_number and total_steps start at 1".into(),
            ));
        }
        if step.is_step_revision && step.revises_step_number.is_none() {
            return Err(ToolError::Invalid(
                "a revision needs revises_step_number".into(),
            ));
        }
        if step.branch_id.is_some() && step.branch_from_step.is_none() {
            return Err(ToolError::Invalid("a branch needs branch_from_step".into()));
        }
        let json = serde_json::to_string(&step).map_err(|e| ToolError::Invalid(e.to_string()))?;
        let title = step.step.clone();
        if let Some(given) = &continuation_id {
            self.settled(owner, given).await?;
        }
        let (id, steps) = self
            .in_threads(owner, move |t| {
                let (id, new) = NewThread::or_continue(continuation_id, "planner", &title);
                let turn = NewTurn {
                    role: "user",
                    content: &json,
                    files: &[],
                    tool: "planner",
                    model: None,
                    usage: None,
                };
                t.record(&id, new.as_ref(), &[turn])?;
                let steps: Vec<PlanStep> = t
                    .history(&id)?
                    .into_iter()
                    .filter(|turn| turn.tool == "planner")
                    .filter_map(|turn| serde_json::from_str(&turn.content).ok())
                    .collect();
                Ok((id, steps))
            })
            .await?;
        let (main, branches) = assemble(&steps);
        let done = !step.next_step_required;
        Ok(Plan {
            continuation_id: id,
            status: if done { "plan_complete" } else { "planning" }.into(),
            step_number: step.step_number,
            total_steps: step.total_steps.max(step.step_number),
            next_step_required: step.next_step_required,
            steps: main,
            branches,
            guidance: if done {
                "The plan is complete: present it to the user, then carry it out step by step."
                    .into()
            } else {
                format!(
                    "Think through step {} before calling planner again with this continuation_id; revise earlier steps (is_step_revision) or branch (branch_id, branch_from_step) when you learn something that changes them.",
                    step.step_number + 1
                )
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u32, text: &str) -> PlanStep {
        PlanStep {
            step: text.into(),
            step_number: n,
            total_steps: 3,
            next_step_required: true,
            is_step_revision: false,
            revises_step_number: None,
            is_branch_point: false,
            branch_from_step: None,
            branch_id: None,
        }
    }

    #[test]
    fn revisions_replace_and_branches_stand_apart() {
        let mut rev = s(3, "better step 2");
        rev.is_step_revision = true;
        rev.revises_step_number = Some(2);
        let mut branch = s(4, "alternative");
        branch.branch_id = Some("b".into());
        branch.branch_from_step = Some(1);
        let (main, branches) = assemble(&[s(1, "one"), s(2, "two"), rev, branch]);
        assert_eq!(main, ["one", "better step 2"]);
        assert_eq!(branches["b"], (1, vec!["alternative".to_string()]));
    }
}
