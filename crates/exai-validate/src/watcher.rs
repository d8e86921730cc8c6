//! `--watcher MODEL`: a model grades each case's output 1–10 with reasons, through the same
//! gateway the server under test uses.
//!
//! With the mock provider there is no model to judge anything, so the request carries the
//! mock's `reply` directive and the mock answers with a fixed grade whose reasons say so: that
//! run checks the watcher's request, parsing and storage, not the outputs' quality.

use std::time::Instant;

use exai_core::TimeoutHierarchy;
use exai_llm::{Call, Category, Gateway, Message};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::cases::Case;
use crate::check::clip;
use crate::track::{CaseResult, Grade};

const SYSTEM: &str = "You review one test of an MCP server's tool as a coding agent would use it. \
Grade the tool's output from 1 (useless or wrong) to 10 (correct, clear, complete and well formed). \
When the test expects a refusal, grade whether the error message is clear and says what to do. \
Answer with JSON only: {\"grade\": <integer 1-10>, \"reasons\": \"<one to three sentences>\"}";

const MOCK_REPLY: &str = "{\"grade\": 7, \"reasons\": \"scripted reply of the mock provider: no model judged this output\"}";

/// Longest output sent for grading.
const MAX_OUTPUT: usize = 6000;

/// The grading request's user message.
fn prompt(case: &Case, result: &CaseResult, scripted: bool) -> String {
    let output = result.output.as_deref().unwrap_or("");
    // Outputs can quote the mock's directives (a prompt echoed back); they must not steer the
    // grading request.
    let output = clip(output, MAX_OUTPUT).replace("[[mock:", "[ [mock:");
    let mut text = format!(
        "Tool: {}\nVariation: {}\nWhat the test checks: {}\nTest status: {}{}\n\nOutput:\n{output}",
        case.tool,
        case.variation,
        case.checks,
        result.status.as_str(),
        result
            .error
            .as_deref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default()
    );
    if scripted {
        text.push_str(&format!("\n\n[[mock:reply={MOCK_REPLY}]]"));
    }
    text
}

/// The grade and reasons in a reply, which may wrap its JSON in prose or a code fence.
pub fn parse(reply: &str) -> Option<(u8, String)> {
    let start = reply.find('{')?;
    let end = reply.rfind('}')?;
    let v: Value = serde_json::from_str(reply.get(start..=end)?).ok()?;
    let grade = v["grade"]
        .as_f64()
        .or_else(|| v["grade"].as_str().and_then(|s| s.trim().parse().ok()))?;
    if !(1.0..=10.0).contains(&grade) {
        return None;
    }
    let reasons = match &v["reasons"] {
        Value::String(s) => s.clone(),
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    };
    Some((grade.round() as u8, reasons))
}

/// Ask `model` to grade one result.
pub async fn grade(
    gateway: &Gateway,
    timeouts: &TimeoutHierarchy,
    model: &str,
    case: &Case,
    result: &CaseResult,
    scripted: bool,
) -> Grade {
    let call = Call {
        model: model.to_string(),
        category: Category::Fast,
        messages: vec![
            Message::system(SYSTEM),
            Message::user(prompt(case, result, scripted)),
        ],
        temperature: Some(0.0),
        max_tokens: Some(400),
        thinking: false,
        web_search: false,
        session: "exai-validate-watcher".into(),
        deadline: Instant::now() + timeouts.simple_tool_for(Some(model)),
        progress: None,
        cancel: CancellationToken::new(),
        cache_key: None,
    };
    match gateway.complete(call).await {
        Ok(c) => {
            let parsed = parse(&c.content);
            Grade {
                watcher_model: c.model.clone(),
                grade: parsed.as_ref().map(|p| p.0),
                reasons: parsed
                    .as_ref()
                    .map_or_else(|| clip(&c.content, 500), |p| p.1.clone()),
                tokens_in: c.usage.prompt_tokens,
                tokens_out: c.usage.completion_tokens,
                cost_usd: c.cost_usd,
                error: parsed
                    .is_none()
                    .then(|| "the watcher did not answer with the JSON grade asked for".into()),
            }
        }
        Err(e) => Grade {
            watcher_model: model.to_string(),
            grade: None,
            reasons: String::new(),
            tokens_in: 0,
            tokens_out: 0,
            cost_usd: 0.0,
            error: Some(e.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_fenced_and_prose_wrapped_json() {
        assert_eq!(
            parse("{\"grade\": 8, \"reasons\": \"clear\"}"),
            Some((8, "clear".into()))
        );
        assert_eq!(
            parse("Here:\n```json\n{\"grade\": \"6\", \"reasons\": [\"a\", \"b\"]}\n```"),
            Some((6, "a b".into()))
        );
        assert_eq!(
            parse("{\"grade\": 7.6, \"reasons\": \"x\"}"),
            Some((8, "x".into()))
        );
        assert_eq!(parse("{\"grade\": 0, \"reasons\": \"x\"}"), None);
        assert_eq!(parse("{\"grade\": 11}"), None);
        assert_eq!(parse("mock answer from glm-4.6"), None);
        assert_eq!(parse("{not json}"), None);
    }

    #[test]
    fn the_mock_reply_parses() {
        let (grade, reasons) = parse(MOCK_REPLY).unwrap_or_default();
        assert_eq!(grade, 7);
        assert!(reasons.contains("no model judged"));
    }
}
