//! The OpenAI chat-completions wire format as Kimi, GLM, OpenAI, OpenRouter and local servers
//! speak it: the request body (with each flavour's extras), the JSON answer, and the SSE stream.

use std::borrow::Cow;

use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
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

/// The JSON body for `POST /chat/completions` in the provider's dialect, serialised straight from
/// the request (no intermediate [`Value`] copy of the messages).
#[derive(Debug, Serialize)]
pub struct Body<'a> {
    model: &'a str,
    messages: &'a [Message],
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u64>,
    /// Kimi and GLM put usage in the last chunk on their own; OpenAI needs asking.
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<Value>,
    /// GLM's thinking switch.
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<Value>,
    /// GLM's built-in web search tool.
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<Value>,
}

impl<'a> Body<'a> {
    pub fn new(flavor: Flavor, req: &'a ChatRequest) -> Self {
        let glm = flavor == Flavor::Glm;
        Body {
            model: &req.model,
            messages: &req.messages,
            stream: req.stream,
            temperature: req.temperature,
            max_tokens: req.max_tokens,
            stream_options: (req.stream
                && matches!(flavor, Flavor::OpenAi | Flavor::OpenRouter | Flavor::Custom))
            .then(|| json!({ "include_usage": true })),
            thinking: req.thinking.filter(|_| glm).map(|on| {
                json!({ "type": if on { "enabled" } else { "disabled" } })
            }),
            tools: (glm && req.web_search).then(|| {
                json!([{ "type": "web_search", "web_search": { "enable": true, "search_result": true } }])
            }),
        }
    }
}

/// The body as a [`Value`] (for tests and inspection).
pub fn body(flavor: Flavor, req: &ChatRequest) -> Value {
    serde_json::to_value(Body::new(flavor, req)).unwrap_or(Value::Null)
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
    /// Bytes of an unfinished line. Kept as bytes, not text, so a character split between two
    /// network reads is decoded whole once its line is complete.
    pending: Vec<u8>,
    answer: Answer,
    done: bool,
}

/// What one fed slice of the stream added.
#[derive(Debug, Default, PartialEq)]
pub struct Delta {
    pub content: usize,
    pub reasoning: usize,
}

/// One chunk as providers send it, read in place: the text fields borrow from the line when they
/// have no escapes, and nothing else is built. Anything of another shape fails this parse and
/// takes the generic [`Value`] path, which decides what it means.
#[derive(Deserialize)]
struct ChunkIn<'a> {
    #[serde(default, deserialize_with = "present")]
    error: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    usage: Option<Value>,
    #[serde(default, borrow, deserialize_with = "text_or_other")]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    web_search: Option<Value>,
    #[serde(default, borrow, deserialize_with = "first_choice")]
    choices: Option<ChoiceIn<'a>>,
}

#[derive(Deserialize)]
struct ChoiceIn<'a> {
    #[serde(default, borrow)]
    delta: Option<DeltaIn<'a>>,
    #[serde(default, borrow, deserialize_with = "text_or_other")]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct DeltaIn<'a> {
    #[serde(default, borrow, deserialize_with = "text_or_other")]
    content: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "text_or_other")]
    reasoning_content: Option<Cow<'a, str>>,
}

/// A field that is there, even as `null` (serde's default maps `null` to `None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// A string, or `None` for a value of any other type (as `Value::as_str` reads it).
fn text_or_other<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Cow<'de, str>>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(v)))
        }
        fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_string())))
        }
        fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v)))
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

/// The first element of `choices` when it is an array (the rest are not read), else `None`.
fn first_choice<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<ChoiceIn<'de>>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<ChoiceIn<'de>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array of choices")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let first = seq.next_element::<ChoiceIn<'de>>()?;
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(first)
        }
    }
    d.deserialize_seq(V)
}

impl StreamAssembler {
    /// Feed raw bytes as they arrive; returns how much text they added.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Delta, String> {
        self.pending.extend_from_slice(bytes);
        let mut delta = Delta::default();
        let mut start = 0;
        let mut outcome = Ok(());
        while let Some(n) = self.pending[start..].iter().position(|b| *b == b'\n') {
            let end = start + n;
            let line = String::from_utf8_lossy(&self.pending[start..end]);
            start = end + 1;
            outcome = apply_line(&mut self.answer, &mut self.done, &mut delta, &line);
            if outcome.is_err() {
                break;
            }
        }
        self.pending.drain(..start);
        outcome.map(|()| delta)
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

/// One line of the stream.
fn apply_line(
    answer: &mut Answer,
    done: &mut bool,
    delta: &mut Delta,
    line: &str,
) -> Result<(), String> {
    let line = line.trim_end_matches('\r');
    let Some(data) = line.strip_prefix("data:") else {
        return Ok(()); // comments (": keep-alive"), event names, blank separators
    };
    let data = data.trim();
    if data == "[DONE]" {
        *done = true;
        return Ok(());
    }
    if data.is_empty() {
        return Ok(());
    }
    match serde_json::from_str::<ChunkIn<'_>>(data) {
        Ok(chunk) => apply_chunk(answer, delta, chunk),
        Err(_) => {
            let chunk: Value =
                serde_json::from_str(data).map_err(|e| format!("invalid JSON in stream: {e}"))?;
            apply_value(answer, delta, &chunk)
        }
    }
}

fn apply_chunk(answer: &mut Answer, delta: &mut Delta, chunk: ChunkIn<'_>) -> Result<(), String> {
    if let Some(err) = chunk.error {
        return Err(format!("error in stream: {err}"));
    }
    if let Some(u) = chunk.usage.filter(|u| !u.is_null()) {
        answer.usage = serde_json::from_value(u).ok();
    }
    if let Some(m) = chunk.model {
        answer.model = Some(m.into_owned());
    }
    if let Some(Value::Array(results)) = chunk.web_search {
        answer.web_results.extend(results);
    }
    let Some(choice) = chunk.choices else {
        return Ok(());
    };
    if let Some(d) = choice.delta {
        if let Some(s) = d.content {
            answer.content.push_str(&s);
            delta.content += s.len();
        }
        if let Some(s) = d.reasoning_content {
            answer
                .reasoning
                .get_or_insert_with(String::new)
                .push_str(&s);
            delta.reasoning += s.len();
        }
    }
    if let Some(f) = choice.finish_reason {
        answer.finish_reason = Some(f.into_owned());
    }
    Ok(())
}

/// A chunk of unusual shape, read field by field and leniently.
fn apply_value(answer: &mut Answer, delta: &mut Delta, chunk: &Value) -> Result<(), String> {
    if let Some(err) = chunk.get("error") {
        return Err(format!("error in stream: {err}"));
    }
    if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
        answer.usage = serde_json::from_value(u.clone()).ok();
    }
    if let Some(m) = chunk.get("model").and_then(Value::as_str) {
        answer.model = Some(m.to_string());
    }
    if let Some(results) = chunk.get("web_search").and_then(Value::as_array) {
        answer.web_results.extend(results.iter().cloned());
    }
    let Some(choice) = chunk.get("choices").and_then(|c| c.get(0)) else {
        return Ok(());
    };
    if let Some(d) = choice.get("delta") {
        if let Some(s) = d.get("content").and_then(Value::as_str) {
            answer.content.push_str(s);
            delta.content += s.len();
        }
        if let Some(s) = d.get("reasoning_content").and_then(Value::as_str) {
            answer.reasoning.get_or_insert_with(String::new).push_str(s);
            delta.reasoning += s.len();
        }
    }
    if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
        answer.finish_reason = Some(f.to_string());
    }
    Ok(())
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
    fn characters_split_between_reads_arrive_whole() {
        let stream = "data: {\"model\":\"m\",\"choices\":[{\"delta\":{\"content\":\"中文 café \\\"q\\\"\\n\"},\"finish_reason\":\"stop\"}]}\n\n";
        let mut a = StreamAssembler::default();
        for byte in stream.as_bytes().chunks(1) {
            a.feed(byte).unwrap();
        }
        let answer = a.finish().unwrap();
        assert_eq!(answer.content, "中文 café \"q\"\n");
        assert_eq!(answer.model.as_deref(), Some("m"));
    }

    #[test]
    fn chunks_of_unusual_shape_are_read_leniently() {
        let mut a = StreamAssembler::default();
        // Not a string, not an array, not an object where one is expected: ignored, as before.
        a.feed(b"data: {\"model\":5,\"choices\":null,\"web_search\":{}}\n")
            .unwrap();
        a.feed(b"data: {\"choices\":[{\"delta\":\"x\",\"finish_reason\":7}]}\n")
            .unwrap();
        a.feed(b"data: {\"choices\":[{\"delta\":{\"content\":[1]}},{\"delta\":7}]}\n")
            .unwrap();
        a.feed(b"data: {\"choices\":[{\"delta\":{\"content\":\"ok\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":\"x\"}}\n")
            .unwrap();
        let answer = a.finish().unwrap();
        assert_eq!(answer.content, "ok");
        assert_eq!(answer.model, None);
        assert_eq!(answer.usage, None, "malformed usage is dropped");
        assert_eq!(answer.finish_reason.as_deref(), Some("stop"));
        // An `error` member fails the stream even when it is null.
        let mut b = StreamAssembler::default();
        let e = b.feed(b"data: {\"error\":null}\n").unwrap_err();
        assert!(e.contains("error in stream"), "{e}");
        let mut c = StreamAssembler::default();
        let e = c
            .feed(b"data: {\"choices\":[],\"error\":{\"message\":\"overloaded\"}}\n")
            .unwrap_err();
        assert!(e.contains("overloaded"), "{e}");
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
