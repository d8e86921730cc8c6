//! The AI tools that are not workflow tools: chat, thinkdeep, consensus, challenge, planner,
//! list_threads, glm_web_search and kimi_chat_with_files.

use serde_json::{Value, json};

use super::{Case, case};
use crate::check::{Problem, check, contains};
use crate::system::{Reply, System};

/// The provider the registry files a model under.
fn provider_of(s: &System, model: &str) -> Option<String> {
    s.main
        .state
        .ai()
        .gateway
        .registry()
        .get(model)
        .map(|m| m.provider.clone())
}

/// The continuation id of an answer, or a failure.
fn continuation(r: &Reply) -> Result<String, Problem> {
    let id = r.str("/continuation_id");
    check!(!id.is_empty(), "`{}` returned no continuation_id", r.tool);
    Ok(id.to_string())
}

/// A model answer's common shape: content, the model asked for, usage.
fn answered(r: &Reply, model: &str) -> Result<(), Problem> {
    check!(
        !r.str("/content").trim().is_empty(),
        "`{}` returned an empty answer",
        r.tool
    );
    check!(
        r.str("/model") == model,
        "asked for {model}, answered by {:?}",
        r.str("/model")
    );
    check!(
        r.at("/usage/prompt_tokens").as_u64().unwrap_or(0) > 0,
        "no prompt token count in {}",
        r.at("/usage")
    );
    Ok(())
}

/// The text of the last user message the mock received.
fn last_user_message(s: &System) -> String {
    s.last_chat_body()["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_string()
}

fn chat_requests(s: &System) -> usize {
    s.mock_requests()
        .iter()
        .filter(|r| r.path == "/v1/chat/completions")
        .count()
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(
            "chat",
            "basic",
            "an answer from the model asked for, with usage, cost, a continuation id and the prompt reaching the model",
            |s| {
                let model = s.model()?;
                let prompt = "In one sentence: why does Rust have a borrow checker?";
                let r = s
                    .call("chat", json!({ "prompt": prompt, "model": model }))
                    .await?
                    .success()?;
                answered(&r, model)?;
                continuation(&r)?;
                check!(
                    r.at("/cost_usd").as_f64().is_some(),
                    "no cost_usd in the answer"
                );
                check!(
                    r.at("/remaining_turns").as_u64().is_some(),
                    "no remaining_turns"
                );
                contains("the text rendering", &r.text, r.str("/content"))?;
                if s.is_mock() {
                    let expected = format!("mock answer from {model} (2 messages): {prompt}");
                    check!(
                        r.str("/content").starts_with(&expected),
                        "the model did not get the prompt as sent: {:?}",
                        r.str("/content")
                    );
                }
                Ok(())
            }
        ),
        case!(
            "chat",
            "continuation",
            "a continuation id carries the history to the model and counts turns down; an unknown id is refused",
            |s| {
                let model = s.model()?;
                let first = s
                    .call(
                        "chat",
                        json!({ "prompt": "Remember the word 'lantern'.", "model": model }),
                    )
                    .await?
                    .success()?;
                let id = continuation(&first)?;
                let second = s
                    .call(
                        "chat",
                        json!({ "prompt": "Which word did I ask you to remember?", "model": model, "continuation_id": id }),
                    )
                    .await?
                    .success()?;
                check!(
                    second.str("/continuation_id") == id,
                    "the second turn moved to thread {:?}",
                    second.str("/continuation_id")
                );
                check!(
                    second.at("/history_turns").as_u64() == Some(2),
                    "history_turns {} on the second turn, expected 2",
                    second.at("/history_turns")
                );
                let (a, b) = (
                    first.at("/remaining_turns").as_u64().unwrap_or(0),
                    second.at("/remaining_turns").as_u64().unwrap_or(0),
                );
                check!(
                    a == b + 2,
                    "remaining_turns went from {a} to {b}, expected a drop of 2"
                );
                if s.is_mock() {
                    check!(
                        second.str("/content").contains("(4 messages)"),
                        "the history did not reach the model: {:?}",
                        second.str("/content")
                    );
                    let sent = s.last_chat_body().to_string();
                    contains("the second request", &sent, "lantern")?;
                }
                let unknown = s
                    .call(
                        "chat",
                        json!({ "prompt": "hello", "model": model, "continuation_id": "00000000-0000-0000-0000-000000000000" }),
                    )
                    .await?
                    .refusal()?;
                contains("the refusal", &unknown.text, "does not exist")?;
                Ok(())
            }
        ),
        case!(
            "chat",
            "model_selection",
            "an explicit model is answered by that model and its provider (one per configured provider); auto routes to an available model and says why",
            |s| {
                let mut asked = vec![s.model()?.to_string()];
                asked.extend(s.models.secondary.clone());
                for model in &asked {
                    let r = s
                        .call(
                            "chat",
                            json!({ "prompt": "Say hello in one word.", "model": model }),
                        )
                        .await?
                        .success()?;
                    answered(&r, model)?;
                    let provider = provider_of(s, model).unwrap_or_default();
                    check!(
                        r.str("/provider") == provider,
                        "{model} answered through {:?}, its provider is {provider}",
                        r.str("/provider")
                    );
                }
                let auto = s
                    .call(
                        "chat",
                        json!({ "prompt": "Say hello in one word.", "model": "auto" }),
                    )
                    .await?
                    .success()?;
                let chosen = auto.str("/model").to_string();
                let gw = s.main.state.ai().gateway.clone();
                check!(
                    gw.registry()
                        .get(&chosen)
                        .is_some_and(|m| gw.unavailable_reason(m).is_none()),
                    "auto chose {chosen:?}, which is not an available model"
                );
                check!(!auto.str("/route").is_empty(), "auto gave no route reason");
                Ok(())
            }
        ),
        case!(
            "chat",
            "file_handling",
            "a file under the allowed roots is sent with line numbers and listed as used; a path outside them is refused",
            |s| {
                let model = s.model()?;
                let file = s.write(
                    "chat/lib.rs",
                    "pub fn answer() -> u32 {\n    42 // orchid-7c1f\n}\n",
                )?;
                let path = file.display().to_string();
                let r = s
                    .call(
                        "chat",
                        json!({ "prompt": "What does answer() return?", "model": model, "files": [path] }),
                    )
                    .await?
                    .success()?;
                check!(
                    r.str("/files/used/0/path") == path,
                    "files.used is {}, expected {path}",
                    r.at("/files/used")
                );
                if s.is_mock() {
                    contains(
                        "the prompt sent to the model",
                        &last_user_message(s),
                        "42 // orchid-7c1f",
                    )?;
                }
                let outside = s
                    .call(
                        "chat",
                        json!({ "prompt": "Read this", "model": model, "files": ["/etc/hostname"] }),
                    )
                    .await?
                    .refusal()?;
                contains("the refusal", &outside.text, "outside the allowed roots")?;
                Ok(())
            }
        ),
        case!(
            "chat",
            "edge_cases",
            "non-ASCII prompts arrive intact; an over-long answer is cut with a note, not failed; a blank prompt or a temperature above 2 is refused",
            |s| {
                let model = s.model()?;
                let prompt = "用一句话解释所有权 — naïve café ☕";
                let r = s
                    .call("chat", json!({ "prompt": prompt, "model": model }))
                    .await?
                    .success()?;
                if s.is_mock() {
                    contains("the echoed prompt", r.str("/content"), prompt)?;
                    // Longer than tools.max_output_tokens (25,000 tokens ≈ 100,000 characters).
                    let long = "x".repeat(110_000);
                    let cut = s
                        .call(
                            "chat",
                            json!({ "prompt": format!("[[mock:reply={long}]]"), "model": model }),
                        )
                        .await?
                        .success()?;
                    contains("the long answer", &cut.text, "output truncated")?;
                    check!(
                        cut.text.len() < 105_000,
                        "the long answer was not cut: {} characters",
                        cut.text.len()
                    );
                } else {
                    check!(!r.str("/content").trim().is_empty(), "empty answer");
                }
                let blank = s
                    .call("chat", json!({ "prompt": "   ", "model": model }))
                    .await?
                    .refusal()?;
                contains("the refusal", &blank.text, "must not be empty")?;
                let hot = s
                    .call(
                        "chat",
                        json!({ "prompt": "hi", "model": model, "temperature": 3.5 }),
                    )
                    .await?
                    .refusal()?;
                contains("the refusal", &hot.text, "temperature")?;
                Ok(())
            }
        ),
        case!(
            "chat",
            "error_handling",
            "an unknown model points to listmodels, a model without a key names the variable (with no provider at all: the variables to set), a misspelt or missing argument is named",
            |s| {
                if s.models.primary.is_none() {
                    let none = s.call("chat", json!({ "prompt": "hi" })).await?.refusal()?;
                    contains("the refusal", &none.text, "KIMI_API_KEY")?;
                    contains("the refusal", &none.text, "GLM_API_KEY")?;
                }
                let unknown = s
                    .call(
                        "chat",
                        json!({ "prompt": "hi", "model": "no-such-model-9" }),
                    )
                    .await?
                    .refusal()?;
                contains("the refusal", &unknown.text, "listmodels")?;
                if let Some((model, reason)) = s.models.unconfigured.clone() {
                    let keyless = s
                        .call("chat", json!({ "prompt": "hi", "model": model }))
                        .await?
                        .refusal()?;
                    check!(
                        keyless.str("/error") == "provider_not_configured",
                        "error kind {:?} for {model}, expected provider_not_configured",
                        keyless.str("/error")
                    );
                    let variable = reason
                        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .find(|w| w.ends_with("_API_KEY"))
                        .unwrap_or("API_KEY");
                    contains("the refusal", &keyless.text, variable)?;
                }
                let misspelt = s.call("chat", json!({ "promt": "hi" })).await?.refusal()?;
                contains("the refusal", &misspelt.text, "`promt` is not an argument")?;
                contains("the refusal", &misspelt.text, "`prompt` is required")?;
                Ok(())
            }
        ),
        case!(
            "chat",
            "provider_faults",
            "429 and 500 are retried to an answer (attempts 2); 401 fails at once without retry; a context-length error is reported as such",
            |s| {
                s.require_mock("its directives produce the provider faults")?;
                let model = s.model()?;
                let limited = s
                    .call(
                        "chat",
                        json!({ "prompt": "busy [[mock:rate_limit=1]]", "model": model }),
                    )
                    .await?
                    .success()?;
                check!(
                    limited.at("/attempts").as_u64() == Some(2),
                    "429 then success took {} attempts, expected 2",
                    limited.at("/attempts")
                );
                let overloaded = s
                    .call(
                        "chat",
                        json!({ "prompt": "overloaded [[mock:error500=1]]", "model": model }),
                    )
                    .await?
                    .success()?;
                check!(
                    overloaded.at("/attempts").as_u64() == Some(2),
                    "500 then success took {} attempts, expected 2",
                    overloaded.at("/attempts")
                );
                let before = chat_requests(s);
                let denied = s
                    .call(
                        "chat",
                        json!({ "prompt": "who am I [[mock:unauthorized]]", "model": model }),
                    )
                    .await?
                    .refusal()?;
                check!(
                    denied.str("/error") == "auth",
                    "401 gave error kind {:?}, expected auth",
                    denied.str("/error")
                );
                check!(
                    chat_requests(s) == before + 1,
                    "a 401 was retried ({} requests)",
                    chat_requests(s) - before
                );
                let huge = s
                    .call(
                        "chat",
                        json!({ "prompt": "huge [[mock:context_length]]", "model": model }),
                    )
                    .await?
                    .refusal()?;
                check!(
                    huge.str("/error") == "context_length",
                    "error kind {:?}, expected context_length",
                    huge.str("/error")
                );
                Ok(())
            }
        ),
        case!(
            "chat",
            "timeout",
            "on a server with a 2 s tool timeout, a model slower than that ends in a timeout error within the deadline, not a hang",
            |s| {
                s.require_mock("only the mock can be made slower than the tool timeout")?;
                let model = s.model()?;
                let server = s.short_server().await?;
                let r = s
                    .call_on(
                        server,
                        "chat",
                        json!({ "prompt": "take your time [[mock:slow=6000]]", "model": model }),
                    )
                    .await?
                    .refusal()?;
                let secs = r.elapsed.as_secs_f64();
                check!(
                    (1.0..3.0).contains(&secs),
                    "the timeout tripped after {secs:.2} s; the tool deadline is 2 s"
                );
                check!(
                    r.str("/error") == "timeout" || r.text.contains("did not finish within"),
                    "not reported as a timeout: {}",
                    crate::check::clip(&r.text, 200)
                );
                Ok(())
            }
        ),
        case!(
            "chat",
            "progress",
            "a streamed answer sends progress notifications with rising character counts before the result",
            |s| {
                let model = s.model()?;
                let prompt = if s.is_mock() {
                    "Count slowly: one two three four five six seven [[mock:stream_delay=30]]"
                } else {
                    "Write four short sentences about rivers."
                };
                let r = s
                    .call("chat", json!({ "prompt": prompt, "model": model }))
                    .await?
                    .success()?;
                let wanted = if s.is_mock() { 2 } else { 1 };
                check!(
                    r.progress.len() >= wanted,
                    "{} progress notifications, expected at least {wanted}",
                    r.progress.len()
                );
                check!(
                    r.progress.windows(2).all(|w| w[0] < w[1]),
                    "progress did not rise: {:?}",
                    r.progress
                );
                let chars = r.str("/content").chars().count() as f64;
                check!(
                    r.progress.iter().all(|p| *p <= chars),
                    "progress {:?} beyond the answer's {chars} characters",
                    r.progress
                );
                Ok(())
            }
        ),
        case!(
            "chat",
            "web_search",
            "use_websearch with a GLM model asks the provider for its web search tool and returns the answer",
            |s| {
                let model = s.models.web_search.clone().ok_or_else(|| {
                    Problem::Skip("web search needs a GLM model: set GLM_API_KEY".into())
                })?;
                let r = s
                    .call(
                        "chat",
                        json!({ "prompt": "What is the newest stable Rust release? Search the web.", "model": model, "use_websearch": true }),
                    )
                    .await?
                    .success()?;
                answered(&r, &model)?;
                if s.is_mock() {
                    let tools = s.last_chat_body()["tools"].clone();
                    check!(
                        tools
                            .as_array()
                            .is_some_and(|t| t.iter().any(|t| t["type"] == "web_search")),
                        "the request carried no web_search tool: {tools}"
                    );
                    check!(
                        r.at("/web_results")
                            .as_array()
                            .is_some_and(|w| !w.is_empty()),
                        "the provider's web results were not passed on"
                    );
                }
                Ok(())
            }
        ),
        case!(
            "thinkdeep",
            "basic",
            "a deep answer with the model's reasoning; the reasoning mode is requested and the focus areas reach the model",
            |s| {
                let model = match s.models.thinking.clone() {
                    Some(m) => m,
                    None => s.model()?.to_string(),
                };
                let r = s
                    .call(
                        "thinkdeep",
                        json!({ "prompt": "Is a lock-free queue worth it for 4 producers?", "focus_areas": ["performance"], "model": model }),
                    )
                    .await?
                    .success()?;
                answered(&r, &model)?;
                if s.is_mock() {
                    check!(
                        r.str("/reasoning").starts_with("mock reasoning"),
                        "no reasoning in the answer: {:?}",
                        r.at("/reasoning")
                    );
                    let body = s.last_chat_body();
                    check!(
                        body["thinking"] == json!({ "type": "enabled" }),
                        "thinking was not requested: {}",
                        body["thinking"]
                    );
                    contains(
                        "the prompt sent",
                        &last_user_message(s),
                        "Focus on: performance",
                    )?;
                }
                Ok(())
            }
        ),
        case!(
            "consensus",
            "basic",
            "two stances answered concurrently, each ok, a synthesis, summed usage",
            |s| {
                let first = s.model()?.to_string();
                let second = s.models.secondary.clone().unwrap_or_else(|| first.clone());
                let r = s
                    .call(
                        "consensus",
                        json!({ "prompt": "Should a CLI use async Rust?", "models": [
                            { "model": first, "stance": "for" },
                            { "model": second, "stance": "against" }
                        ] }),
                    )
                    .await?
                    .success()?;
                let opinions = r.at("/opinions").as_array().cloned().unwrap_or_default();
                check!(
                    opinions.len() == 2,
                    "{} opinions, expected 2",
                    opinions.len()
                );
                for o in &opinions {
                    check!(
                        o["status"] == "ok",
                        "{} answered {}: {}",
                        o["model"],
                        o["status"],
                        o["error"]
                    );
                }
                check!(
                    !r.str("/synthesis/content").trim().is_empty(),
                    "no synthesis"
                );
                check!(
                    r.at("/usage/prompt_tokens").as_u64().unwrap_or(0) > 0,
                    "no usage"
                );
                Ok(())
            }
        ),
        case!(
            "consensus",
            "error_handling",
            "a model without a key is reported as such while the other still answers; an empty model list is refused",
            |s| {
                let model = s.model()?.to_string();
                let (keyless, _) = s.models.unconfigured.clone().ok_or_else(|| {
                    Problem::Skip("every provider is configured: no keyless model to try".into())
                })?;
                let r = s
                    .call(
                        "consensus",
                        json!({ "prompt": "Tabs or spaces?", "synthesize": false, "models": [
                            { "model": model, "stance": "for" },
                            { "model": keyless, "stance": "against" }
                        ] }),
                    )
                    .await?
                    .success()?;
                let status = |name: &str| {
                    r.at("/opinions")
                        .as_array()
                        .and_then(|o| o.iter().find(|o| o["model"] == name))
                        .map(|o| o["status"].as_str().unwrap_or("").to_string())
                };
                check!(
                    status(&model).as_deref() == Some("ok"),
                    "{model}: {:?}",
                    status(&model)
                );
                check!(
                    status(&keyless).as_deref() == Some("provider_not_configured"),
                    "{keyless}: {:?}, expected provider_not_configured",
                    status(&keyless)
                );
                let empty = s
                    .call("consensus", json!({ "prompt": "x", "models": [] }))
                    .await?
                    .refusal()?;
                check!(!empty.text.trim().is_empty(), "the refusal says nothing");
                Ok(())
            }
        ),
        case!(
            "challenge",
            "basic",
            "instructions to re-examine the statement, quoting it, without calling a model",
            |s| {
                let before = chat_requests(s);
                let statement = "The bug must be in the parser.";
                let r = s
                    .call("challenge", json!({ "prompt": statement }))
                    .await?
                    .success()?;
                check!(
                    r.str("/status") == "challenge_accepted",
                    "status {:?}",
                    r.str("/status")
                );
                contains("the challenge", r.str("/challenge_prompt"), statement)?;
                check!(chat_requests(s) == before, "challenge called a model");
                Ok(())
            }
        ),
        case!(
            "challenge",
            "error_handling",
            "a blank statement is refused",
            |s| {
                let r = s
                    .call("challenge", json!({ "prompt": "  " }))
                    .await?
                    .refusal()?;
                contains("the refusal", &r.text, "must not be empty")?;
                Ok(())
            }
        ),
        case!(
            "planner",
            "basic",
            "a one-step plan completes and returns its step",
            |s| {
                let r = s
                    .call(
                        "planner",
                        json!({ "step": "Ship the fix", "step_number": 1, "total_steps": 1, "next_step_required": false }),
                    )
                    .await?
                    .success()?;
                check!(
                    r.str("/status") == "plan_complete",
                    "status {:?}",
                    r.str("/status")
                );
                check!(
                    r.at("/steps") == &json!(["Ship the fix"]),
                    "steps {}",
                    r.at("/steps")
                );
                Ok(())
            }
        ),
        case!(
            "planner",
            "continuation",
            "steps given across calls with the continuation id come back as one plan in order",
            |s| {
                let first = s
                    .call(
                        "planner",
                        json!({ "step": "Design the schema", "step_number": 1, "total_steps": 2, "next_step_required": true }),
                    )
                    .await?
                    .success()?;
                let id = continuation(&first)?;
                let second = s
                    .call(
                        "planner",
                        json!({ "step": "Write the migration", "step_number": 2, "total_steps": 2, "next_step_required": false, "continuation_id": id }),
                    )
                    .await?
                    .success()?;
                check!(
                    second.str("/status") == "plan_complete",
                    "status {:?}",
                    second.str("/status")
                );
                check!(
                    second.at("/steps") == &json!(["Design the schema", "Write the migration"]),
                    "steps {}",
                    second.at("/steps")
                );
                Ok(())
            }
        ),
        case!(
            "planner",
            "error_handling",
            "a continuation id that does not exist and a step number of 0 are refused",
            |s| {
                let r = s
                    .call(
                        "planner",
                        json!({ "step": "x", "step_number": 2, "total_steps": 2, "next_step_required": false, "continuation_id": "no-such-plan" }),
                    )
                    .await?
                    .refusal()?;
                contains("the refusal", &r.text, "does not exist")?;
                let zero = s
                    .call(
                        "planner",
                        json!({ "step": "x", "step_number": 0, "total_steps": 1, "next_step_required": false }),
                    )
                    .await?
                    .refusal()?;
                contains("the refusal", &zero.text, "step_number")?;
                Ok(())
            }
        ),
        case!(
            "list_threads",
            "basic",
            "a new conversation is listed first with its tool, title and turn count",
            |s| {
                let model = s.model()?;
                let r = s
                    .call(
                        "chat",
                        json!({ "prompt": "Thread listing probe", "model": model }),
                    )
                    .await?
                    .success()?;
                let id = continuation(&r)?;
                let list = s
                    .call("list_threads", json!({ "limit": 5 }))
                    .await?
                    .success()?;
                let first = list.at("/threads/0").clone();
                check!(
                    first["continuation_id"] == id.as_str(),
                    "the newest thread is {}, expected {id}",
                    first["continuation_id"]
                );
                check!(
                    first["tool"] == "chat" && first["turns"] == 2,
                    "thread {first}"
                );
                contains(
                    "the thread title",
                    first["title"].as_str().unwrap_or(""),
                    "Thread listing probe",
                )?;
                Ok(())
            }
        ),
        case!(
            "list_threads",
            "search_filters",
            "the tool filter keeps only that tool's threads and the limit caps the list",
            |s| {
                let plan = s
                    .call(
                        "planner",
                        json!({ "step": "Filter probe", "step_number": 1, "total_steps": 2, "next_step_required": true }),
                    )
                    .await?
                    .success()?;
                let plan_id = continuation(&plan)?;
                // A thread of another tool, for the filter to leave out (needs a model).
                let chat_id = match s.models.primary.clone() {
                    Some(model) => Some(continuation(
                        &s.call("chat", json!({ "prompt": "Filter probe", "model": model }))
                            .await?
                            .success()?,
                    )?),
                    None => None,
                };
                let planner = s
                    .call("list_threads", json!({ "tool": "planner", "limit": 100 }))
                    .await?
                    .success()?;
                let threads = |r: &Reply| r.at("/threads").as_array().cloned().unwrap_or_default();
                check!(
                    threads(&planner).iter().all(|t| t["tool"] == "planner"),
                    "the planner filter let other tools through"
                );
                check!(
                    threads(&planner)
                        .iter()
                        .any(|t| t["continuation_id"] == plan_id.as_str()),
                    "the planner thread {plan_id} is missing"
                );
                if let Some(chat_id) = chat_id {
                    check!(
                        !threads(&planner)
                            .iter()
                            .any(|t| t["continuation_id"] == chat_id.as_str()),
                        "the chat thread {chat_id} passed the planner filter"
                    );
                }
                let one = s
                    .call("list_threads", json!({ "limit": 1 }))
                    .await?
                    .success()?;
                check!(
                    threads(&one).len() == 1,
                    "limit 1 gave {} threads",
                    threads(&one).len()
                );
                Ok(())
            }
        ),
        case!(
            "glm_web_search",
            "web_search",
            "the requested number of results, each with a title and link, for the query sent",
            |s| {
                if s.models.web_search.is_none() {
                    return Err(Problem::Skip("GLM web search needs GLM_API_KEY".into()));
                }
                let query = "rust 2024 edition";
                let r = s
                    .call("glm_web_search", json!({ "query": query, "count": 3 }))
                    .await?
                    .success()?;
                let results = r.at("/results").as_array().cloned().unwrap_or_default();
                check!(!results.is_empty(), "no results");
                check!(results.len() <= 3, "{} results for count 3", results.len());
                for x in &results {
                    check!(
                        x["link"].as_str().is_some_and(|l| l.starts_with("http"))
                            && !x["title"].as_str().unwrap_or("").is_empty(),
                        "a result without a title or link: {x}"
                    );
                }
                if s.is_mock() {
                    check!(results.len() == 3, "{} results for count 3", results.len());
                    let sent = s
                        .mock_requests()
                        .into_iter()
                        .rev()
                        .find(|r| r.path == "/v1/web_search")
                        .map(|r| r.body)
                        .unwrap_or(Value::Null);
                    check!(sent["search_query"] == query, "the provider got {sent}");
                }
                Ok(())
            }
        ),
        case!(
            "glm_web_search",
            "error_handling",
            "a blank query and a count above 10 are refused",
            |s| {
                let blank = s
                    .call("glm_web_search", json!({ "query": " " }))
                    .await?
                    .refusal()?;
                contains("the refusal", &blank.text, "must not be empty")?;
                let many = s
                    .call("glm_web_search", json!({ "query": "x", "count": 50 }))
                    .await?
                    .refusal()?;
                contains("the refusal", &many.text, "count")?;
                Ok(())
            }
        ),
        case!(
            "kimi_chat_with_files",
            "file_upload",
            "the file is uploaded for extraction and its text reaches the model with the question",
            |s| {
                let model = s.models.files.clone().ok_or_else(|| {
                    Problem::Skip("file upload needs a Kimi model: set KIMI_API_KEY".into())
                })?;
                let doc = s.write(
                    "kimi/spec.txt",
                    "The retry budget is three attempts (heron-51).",
                )?;
                let r = s
                    .call(
                        "kimi_chat_with_files",
                        json!({ "prompt": "What is the retry budget?", "files": [doc.display().to_string()], "model": model }),
                    )
                    .await?
                    .success()?;
                answered(&r, &model)?;
                if s.is_mock() {
                    check!(
                        s.mock_requests().iter().any(|r| r.path == "/v1/files"),
                        "nothing was uploaded"
                    );
                    contains(
                        "the prompt sent",
                        &last_user_message(s),
                        "three attempts (heron-51)",
                    )?;
                }
                Ok(())
            }
        ),
        case!(
            "kimi_chat_with_files",
            "error_handling",
            "a model without file extraction, an empty file list and a file outside the allowed roots are refused",
            |s| {
                let doc = s.write("kimi/other.txt", "text")?;
                let doc = doc.display().to_string();
                let wrong = s
                    .call(
                        "kimi_chat_with_files",
                        json!({ "prompt": "x", "files": [doc], "model": "glm-4.6" }),
                    )
                    .await?
                    .refusal()?;
                contains("the refusal", &wrong.text, "file extraction")?;
                let none = s
                    .call(
                        "kimi_chat_with_files",
                        json!({ "prompt": "x", "files": [] }),
                    )
                    .await?
                    .refusal()?;
                contains("the refusal", &none.text, "1 to 20 files")?;
                if s.models.files.is_some() {
                    let outside = s
                        .call(
                            "kimi_chat_with_files",
                            json!({ "prompt": "x", "files": ["/etc/hostname"] }),
                        )
                        .await?
                        .refusal()?;
                    contains("the refusal", &outside.text, "outside the allowed roots")?;
                }
                Ok(())
            }
        ),
    ]
}
