//! The workflow tools: analyze, codereview, debug, refactor, secaudit, testgen, tracer, docgen
//! (the step protocol, then an expert model) and precommit (the same with the git diff).

use serde_json::json;

use super::{Case, case};
use crate::check::{Outcome, Problem, check, contains};
use crate::system::System;

/// Step 1 pauses for investigation with required actions; step 2, given the continuation id,
/// completes with the expert model's analysis of both steps' findings and the relevant file.
async fn two_steps(s: &System, tool: &str) -> Outcome {
    let model = s.model()?.to_string();
    let file = s.write(
        &format!("{tool}/service.py"),
        "def handle(request):\n    return request.args['q']  # kestrel-{tool}\n",
    )?;
    let file = file.display().to_string();
    let first = s
        .call(
            tool,
            json!({ "step": format!("{tool}: look at service.py"), "step_number": 1, "total_steps": 2,
                    "next_step_required": true, "findings": "handle() reads a query parameter",
                    "relevant_files": [file] }),
        )
        .await?
        .success()?;
    check!(
        first.str("/status") == "pause_for_investigation",
        "step 1 status {:?}",
        first.str("/status")
    );
    check!(
        first
            .at("/required_actions")
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "step 1 gave no required actions"
    );
    let id = first.str("/continuation_id").to_string();
    check!(!id.is_empty(), "step 1 gave no continuation id");
    let second = s
        .call(
            tool,
            json!({ "step": "Conclude", "step_number": 2, "total_steps": 2, "next_step_required": false,
                    "findings": "the parameter is returned unchecked", "relevant_files": [file],
                    "confidence": "high", "continuation_id": id, "model": model }),
        )
        .await?
        .success()?;
    check!(
        second.str("/status") == "complete",
        "final status {:?}",
        second.str("/status")
    );
    check!(
        second.str("/tool") == tool,
        "tool {:?}",
        second.str("/tool")
    );
    check!(
        !second.str("/expert_analysis/content").trim().is_empty(),
        "no expert analysis"
    );
    check!(
        second.str("/model") == model,
        "expert model {:?}, asked for {model}",
        second.str("/model")
    );
    check!(
        second
            .at("/consolidated/relevant_files")
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f == file.as_str())),
        "the relevant file is missing from the consolidated steps: {}",
        second.at("/consolidated")
    );
    if s.is_mock() {
        let sent = s.last_chat_body()["messages"].to_string();
        contains(
            "the expert's prompt",
            &sent,
            "handle() reads a query parameter",
        )?;
        contains("the expert's prompt", &sent, "returned unchecked")?;
    }
    Ok(())
}

macro_rules! two_step_case {
    ($tool:literal) => {
        case!(
            $tool,
            "basic",
            "step 1 pauses with required actions; step 2 with the continuation id completes with the expert model's analysis of both steps",
            |s| { two_steps(s, $tool).await }
        )
    };
}

fn git_available() -> bool {
    std::process::Command::new("git")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn git(dir: &std::path::Path, args: &[&str]) -> Result<(), Problem> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "exai validate")
        .env("GIT_AUTHOR_EMAIL", "validate@exai.invalid")
        .env("GIT_COMMITTER_NAME", "exai validate")
        .env("GIT_COMMITTER_EMAIL", "validate@exai.invalid")
        .output()
        .map_err(|e| Problem::Error(format!("cannot run git: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Problem::Error(format!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

pub fn cases() -> Vec<Case> {
    vec![
        two_step_case!("analyze"),
        two_step_case!("codereview"),
        two_step_case!("debug"),
        two_step_case!("refactor"),
        two_step_case!("secaudit"),
        two_step_case!("testgen"),
        two_step_case!("tracer"),
        two_step_case!("docgen"),
        case!(
            "codereview",
            "file_handling",
            "the relevant file's content and the recorded issues go to the expert model; the issues come back consolidated",
            |s| {
                let model = s.model()?;
                let file = s.write(
                    "review/auth.py",
                    "def check(pw):\n    return pw == 'admin'  # magpie-3\n",
                )?;
                let file = file.display().to_string();
                let r = s
                    .call(
                        "codereview",
                        json!({ "step": "Review auth.py", "step_number": 1, "total_steps": 1, "next_step_required": false,
                                "findings": "check() compares to a literal", "relevant_files": [file], "confidence": "high",
                                "issues_found": [{ "severity": "critical", "description": "hard-coded password" }],
                                "model": model }),
                    )
                    .await?
                    .success()?;
                check!(
                    r.str("/status") == "complete",
                    "status {:?}",
                    r.str("/status")
                );
                check!(
                    r.at("/consolidated/issues_found/0/severity") == "critical",
                    "issues not consolidated: {}",
                    r.at("/consolidated/issues_found")
                );
                if s.is_mock() {
                    let sent = s.last_chat_body()["messages"].to_string();
                    contains(
                        "the expert's prompt",
                        &sent,
                        "return pw == 'admin'  # magpie-3",
                    )?;
                    contains("the expert's prompt", &sent, "hard-coded password")?;
                }
                Ok(())
            }
        ),
        case!(
            "debug",
            "edge_cases",
            "confidence `certain` on the final step completes without calling the expert model",
            |s| {
                let before = s.mock_requests().len();
                let r = s
                    .call(
                        "debug",
                        json!({ "step": "Found it", "step_number": 1, "total_steps": 1, "next_step_required": false,
                                "findings": "off by one in the loop bound", "confidence": "certain" }),
                    )
                    .await?
                    .success()?;
                check!(
                    r.str("/status") == "complete_without_expert",
                    "status {:?}",
                    r.str("/status")
                );
                check!(
                    r.at("/expert_analysis").is_null(),
                    "an expert was consulted"
                );
                check!(
                    s.mock_requests().len() == before,
                    "a model was called although confidence was certain"
                );
                Ok(())
            }
        ),
        case!(
            "analyze",
            "error_handling",
            "a step number of 0, an unknown confidence and a blank step are refused with the argument named",
            |s| {
                let zero = s
                    .call(
                        "analyze",
                        json!({ "step": "x", "step_number": 0, "total_steps": 1, "next_step_required": false, "findings": "" }),
                    )
                    .await?
                    .refusal()?;
                contains("the refusal", &zero.text, "step_number")?;
                let unsure = s
                    .call(
                        "analyze",
                        json!({ "step": "x", "step_number": 1, "total_steps": 1, "next_step_required": false,
                                "findings": "", "confidence": "sure" }),
                    )
                    .await?
                    .refusal()?;
                contains("the refusal", &unsure.text, "sure")?;
                let blank = s
                    .call(
                        "analyze",
                        json!({ "step": "  ", "step_number": 1, "total_steps": 1, "next_step_required": true, "findings": "" }),
                    )
                    .await?
                    .refusal()?;
                contains("the refusal", &blank.text, "step")?;
                Ok(())
            }
        ),
        case!(
            "precommit",
            "basic",
            "the final step sends the repository's uncommitted diff to the expert model",
            |s| {
                if !git_available() {
                    return Err(Problem::Skip("git is not installed".into()));
                }
                let model = s.model()?;
                let file = s.write("repo/notes.txt", "one\n")?;
                let repo = file
                    .parent()
                    .map(std::path::Path::to_path_buf)
                    .unwrap_or_default();
                git(&repo, &["init", "-q"])?;
                git(&repo, &["add", "notes.txt"])?;
                git(&repo, &["commit", "-qm", "init"])?;
                s.write("repo/notes.txt", "one\ntwo-osprey\n")?;
                let r = s
                    .call(
                        "precommit",
                        json!({ "step": "Validate the change", "step_number": 1, "total_steps": 1,
                                "next_step_required": false, "findings": "adds a line",
                                "path": repo.display().to_string(), "model": model }),
                    )
                    .await?
                    .success()?;
                check!(
                    r.str("/status") == "complete",
                    "status {:?}",
                    r.str("/status")
                );
                check!(
                    !r.str("/expert_analysis/content").trim().is_empty(),
                    "no expert analysis"
                );
                if s.is_mock() {
                    let sent = s.last_chat_body()["messages"].to_string();
                    contains("the expert's prompt", &sent, "+two-osprey")?;
                }
                Ok(())
            }
        ),
        case!(
            "precommit",
            "error_handling",
            "a directory that is no git repository, and one outside the allowed roots, are refused",
            |s| {
                if !git_available() {
                    return Err(Problem::Skip("git is not installed".into()));
                }
                let plain = s.write("not-a-repo/readme.txt", "x\n")?;
                let dir = plain
                    .parent()
                    .map(std::path::Path::to_path_buf)
                    .unwrap_or_default();
                let r = s
                    .call(
                        "precommit",
                        json!({ "step": "Validate", "step_number": 1, "total_steps": 1, "next_step_required": false,
                                "findings": "x", "path": dir.display().to_string() }),
                    )
                    .await?
                    .refusal()?;
                contains("the refusal", &r.text, "not inside a git repository")?;
                let outside = s
                    .call(
                        "precommit",
                        json!({ "step": "Validate", "step_number": 1, "total_steps": 1, "next_step_required": false,
                                "findings": "x", "path": "/" }),
                    )
                    .await?
                    .refusal()?;
                contains("the refusal", &outside.text, "outside the allowed roots")?;
                Ok(())
            }
        ),
    ]
}
