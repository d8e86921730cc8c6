//! The OpenAI chat-completions wire format as Kimi, GLM, OpenAI, OpenRouter and local servers
//! speak it: the request body (with each flavour's extras), the JSON answer, and the SSE stream.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::providers::Flavor;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: "system".into(),
            content: content.into(),
        }
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: "user".into(),
            content: content.into(),
        }
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: "assistant".into(),
            content: content.into(),
        }
    }
}

/// One chat request, provider-neutral.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatRequest {
    /// The model's name at the provider.
    pub model: String,
    pub messages: Vec<Message>,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u64>,
    /// GLM's thinking flag (`Some(false)` turns it off explicitly).
    pub thinking: Option<bool>,
    /// GLM's built-in web search tool.
    pub web_search: bool,
    pub stream: bool,
}

impl ChatRequest {
    /// Rough token count of the prompt: about four characters a token, as the providers bill.
    pub fn estimated_tokens(&self) -> u64 {
        let chars: usize = self
            .messages
            .iter()
            .map(|m| m.content.chars().count() + 4)
            .sum();
        (chars as u64).div_ceil(4)
    }
}

/// The JSON body for `POST /chat/completions` in the provider's dialect.
pub fn body(flavor: Flavor, req: &ChatRequest) -> Value {
    let mut body = json!({
        "model": req.model,
        "messages": req.messages,
        "stream": req.stream,
    });
    let obj = body.as_object_mut();
    let Some(obj) = obj else { return body };
    if let Some(t) = req.temperature {
        obj.insert("temperature".into(), json!(t));
    }
    if let Some(n) = req.max_tokens {
        obj.insert("max_tokens".into(), json!(n));
    }
    if req.stream && matches!(flavor, Flavor::OpenAi | Flavor::OpenRouter | Flavor::Custom) {
        // Kimi and GLM put usage in the last chunk on their own; OpenAI needs asking.
        obj.insert("stream_options".into(), json!({ "include_usage": true }));
    }
    if flavor == Flavor::Glm {
        if let Some(on) = req.thinking {
            let kind = if on { "enabled" } else { "disabled" };
            obj.insert("thinking".into(), json!({ "type": kind }));
        }
        if req.web_search {
            obj.insert(
                "tools".into(),
                json!([{ "type": "web_search", "web_search": { "enable": true, "search_result": true } }]),
            );
        }
    }
    body
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
}

/// What a provider answered, before the gateway adds cost and routing details.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Answer {
    pub content: String,
    pub reasoning: Option<String>,
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
    /// GLM web search results (title, link, content…), when the tool ran.
    pub web_results: Vec<Value>,
    /// The model name the provider reports.
    pub model: Option<String>,
}

/// Parse a non-streaming answer.
pub fn parse_answer(text: &str) -> Result<Answer, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let choice = v
        .get("choices")
        .and_then(|c| c.get(0))
        .ok_or("no `choices` in the answer")?;
    let message = choice.get("message").ok_or("no `message` in the choice")?;
    let content = match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    Ok(Answer {
        content,
        reasoning: message
            .get("reasoning_content")
            .and_then(Value::as_str)
            .map(str::to_string),
        finish_reason: choice
            .get("finish_reason")
            .and_then(Value::as_str)
            .map(str::to_string),
        usage: v
            .get("usage")
            .and_then(|u| serde_json::from_value(u.clone()).ok()),
        web_results: v
            .get("web_search")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        model: v.get("model").and_then(Value::as_str).map(str::to_string),
    })
}

/// Assembles an SSE stream of chat-completion chunks into an [`Answer`].
#[derive(Debug, Default)]
pub struct StreamAssembler {
    pending: String,
    answer: Answer,
    done: bool,
}

/// What one fed slice of the stream added.
#[derive(Debug, Default, PartialEq)]
pub struct Delta {
    pub content: usize,
    pub reasoning: usize,
}

impl StreamAssembler {
    /// Feed raw bytes as they arrive; returns how much text they added.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Delta, String> {
        self.pending.push_str(&String::from_utf8_lossy(bytes));
        let mut delta = Delta::default();
        while let Some(end) = self.pending.find('\n') {
            let line: String = self.pending.drain(..=end).collect();
            let line = line.trim_end_matches(['\n', '\r']);
            let Some(data) = line.strip_prefix("data:") else {
                continue; // comments (": keep-alive"), event names, blank separators
            };
            let data = data.trim();
            if data == "[DONE]" {
                self.done = true;
                continue;
            }
            if data.is_empty() {
                continue;
            }
            let chunk: Value =
                serde_json::from_str(data).map_err(|e| format!("invalid JSON in stream: {e}"))?;
            if let Some(err) = chunk.get("error") {
                return Err(format!("error in stream: {err}"));
            }
            if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
                self.answer.usage = serde_json::from_value(u.clone()).ok();
            }
            if let Some(m) = chunk.get("model").and_then(Value::as_str) {
                self.answer.model = Some(m.to_string());
            }
            if let Some(results) = chunk.get("web_search").and_then(Value::as_array) {
                self.answer.web_results.extend(results.iter().cloned());
            }
            let Some(choice) = chunk.get("choices").and_then(|c| c.get(0)) else {
                continue;
            };
            if let Some(d) = choice.get("delta") {
                if let Some(s) = d.get("content").and_then(Value::as_str) {
                    self.answer.content.push_str(s);
                    delta.content += s.len();
                }
                if let Some(s) = d.get("reasoning_content").and_then(Value::as_str) {
                    self.answer
                        .reasoning
                        .get_or_insert_with(String::new)
                        .push_str(s);
                    delta.reasoning += s.len();
                }
            }
            if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
                self.answer.finish_reason = Some(f.to_string());
            }
        }
        Ok(delta)
    }

    /// Characters of answer so far.
    pub fn chars(&self) -> usize {
        self.answer.content.len() + self.answer.reasoning.as_ref().map_or(0, String::len)
    }

    /// The whole answer; `None` when the stream was cut short.
    pub fn finish(self) -> Option<Answer> {
        (self.done || self.answer.finish_reason.is_some()).then_some(self.answer)
    }
}

/// The provider's error text: `error.message` when it sent one, else the body's start.
pub fn error_message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| {
            v.get("error")
                .and_then(|e| e.get("message").or(Some(e)))
                .or_else(|| v.get("message"))
                .map(|m| m.as_str().map_or_else(|| m.to_string(), str::to_string))
        })
        .unwrap_or_else(|| body.chars().take(300).collect())
}

/// Whether a 400 says the prompt was longer than the model's window.
pub fn is_context_length(body: &str) -> bool {
    let b = body.to_ascii_lowercase();
    b.contains("context_length_exceeded")
        || b.contains("context length")
        || b.contains("maximum context")
        || b.contains("too many tokens")
        || b.contains("exceeded model token limit")
        || (b.contains("token") && b.contains("exceed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(stream: bool) -> ChatRequest {
        ChatRequest {
            model: "glm-4.6".into(),
            messages: vec![Message::user("hi")],
            temperature: Some(0.3),
            max_tokens: None,
            thinking: Some(true),
            web_search: true,
            stream,
        }
    }

    #[test]
    fn bodies_follow_each_dialect() {
        let glm = body(Flavor::Glm, &req(true));
        assert_eq!(glm["thinking"]["type"], "enabled");
        assert_eq!(glm["tools"][0]["type"], "web_search");
        assert!(glm.get("stream_options").is_none());
        let openai = body(Flavor::OpenAi, &req(true));
        assert!(openai.get("thinking").is_none() && openai.get("tools").is_none());
        assert_eq!(openai["stream_options"]["include_usage"], true);
        assert_eq!(openai["temperature"], 0.3);
    }

    #[test]
    fn stream_is_assembled_across_split_chunks() {
        let stream = concat!(
            ": keep-alive\n\n",
            "data: {\"choices\":[{\"delta\":{\"reasoning_content\":\"think \"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}\n\n",
            "data: [DONE]\n\n"
        );
        let mut a = StreamAssembler::default();
        for piece in stream.as_bytes().chunks(7) {
            a.feed(piece).unwrap();
        }
        let answer = a.finish().unwrap();
        assert_eq!(answer.content, "Hello");
        assert_eq!(answer.reasoning.as_deref(), Some("think "));
        assert_eq!(answer.usage.unwrap().completion_tokens, 2);
    }

    #[test]
    fn truncated_and_malformed_streams_are_errors() {
        let mut a = StreamAssembler::default();
        a.feed(b"data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n")
            .unwrap();
        assert!(a.finish().is_none());
        let mut b = StreamAssembler::default();
        assert!(b.feed(b"data: {not json\n\n").is_err());
    }

    #[test]
    fn answers_and_errors_parse() {
        let a = parse_answer(
            r#"{"model":"m","choices":[{"message":{"role":"assistant","content":"ok","reasoning_content":"r"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#,
        )
        .unwrap();
        assert_eq!(a.content, "ok");
        assert_eq!(a.usage.unwrap().prompt_tokens, 3);
        assert!(parse_answer("{\"choices\":[]}").is_err());
        assert_eq!(
            error_message(r#"{"error":{"message":"bad key","type":"x"}}"#),
            "bad key"
        );
        assert!(is_context_length(
            r#"{"error":{"code":"context_length_exceeded"}}"#
        ));
        assert!(!is_context_length(
            r#"{"error":{"message":"bad temperature"}}"#
        ));
    }
}
