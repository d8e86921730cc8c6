//! Tool answers sized for a model: a compact text for the agent's context and the structured
//! JSON for programs, both holding the same whole items within a token budget.
//!
//! Tokens are estimated, not counted: a client's tokenizer is its own. The estimate errs high —
//! a token per three ASCII bytes (English prose and code run near four) and one and a half per
//! other character (CJK text runs near one) — so an answer cut to a budget stays inside it for
//! the tokenizers clients use (`tests/answer_tokens.rs` checks it against `cl100k_base`).

use exai_kb::{SearchHit, SearchResponse};
use serde_json::{Value, json};

/// Tokens `text` may take, erring high.
pub fn estimate_tokens(text: &str) -> usize {
    let (ascii, other) = text.chars().fold((0usize, 0usize), |(a, o), c| {
        if c.is_ascii() { (a + 1, o) } else { (a, o + 1) }
    });
    ascii.div_ceil(3) + (other * 3).div_ceil(2)
}

/// A search answer: hits in rank order while they fit `budget` tokens, each whole.
pub struct SearchAnswer {
    pub text: String,
    pub structured: Value,
}

/// Lay out `response` for a model within `budget` tokens: a header line, then each hit as its
/// title, section, where it is, the ids a follow-up call needs, and the snippet (with any context
/// chunks). Hits that do not fit whole are left out and counted, and the header says so.
pub fn search_answer(response: &SearchResponse, budget: usize) -> SearchAnswer {
    let mut blocks = Vec::new();
    let mut used = 0;
    for (rank, hit) in response.hits.iter().enumerate() {
        let block = hit_block(rank + 1, hit);
        let cost = estimate_tokens(&block);
        // Room for the header, whatever it says.
        if used + cost + HEADER_TOKENS > budget {
            break;
        }
        used += cost;
        blocks.push(block);
    }
    let kept = blocks.len();
    let omitted = response.hits.len() - kept;
    let mut text = header(response, kept, omitted);
    for note in &response.notes {
        text.push_str(&format!("\nNote: {note}"));
    }
    for block in blocks {
        text.push_str("\n\n");
        text.push_str(&block);
    }
    let mut structured = serde_json::to_value(response).unwrap_or(Value::Null);
    if let Some(hits) = structured.get_mut("hits").and_then(Value::as_array_mut) {
        hits.truncate(kept);
    }
    if let Some(map) = structured.as_object_mut() {
        map.insert("omitted".into(), json!(omitted));
    }
    SearchAnswer { text, structured }
}

/// The header's share of a budget: a query at its longest (4 KiB) is cut in the header.
const HEADER_TOKENS: usize = 120;

fn header(response: &SearchResponse, kept: usize, omitted: usize) -> String {
    let query = exai_core::text::clip_with_ellipsis(&response.query, 200);
    let mut line = format!(
        "{kept} hit{} for \"{query}\" ({} search, {:.1} ms)",
        if kept == 1 { "" } else { "s" },
        response.mode.as_str(),
        response.took_ms
    );
    if omitted > 0 {
        line.push_str(&format!(
            "; {omitted} more left out to stay within max_tokens (raise it, or lower limit)"
        ));
    }
    line.push('.');
    line
}

fn hit_block(rank: usize, hit: &SearchHit) -> String {
    let mut title = hit.title.clone();
    if !hit.section.is_empty() && hit.section != hit.title {
        title.push_str(" › ");
        title.push_str(&hit.section);
    }
    let location = hit.uri.as_deref().unwrap_or(&hit.path);
    let mut block = format!(
        "{rank}. {title}\n   {}: {location} (chunk_id {}, doc_id {})",
        hit.source, hit.chunk_id, hit.doc_id
    );
    if let Some(more) = hit.more_in_document.filter(|n| *n > 0) {
        block.push_str(&format!("; {more} more matching chunk(s) in this document"));
    }
    for chunk in hit.before.iter().map(|c| c.text.as_str()) {
        block.push_str("\n   ");
        block.push_str(&indent(chunk));
    }
    block.push_str("\n   ");
    block.push_str(&indent(&hit.snippet));
    for chunk in hit.after.iter().map(|c| c.text.as_str()) {
        block.push_str("\n   ");
        block.push_str(&indent(chunk));
    }
    block
}

fn indent(text: &str) -> String {
    text.trim().replace('\n', "\n   ")
}

/// The JSON schema of [`search_answer`]'s structured form (the tool's `outputSchema`).
pub fn search_output_schema() -> std::sync::Arc<serde_json::Map<String, Value>> {
    let string = json!({ "type": "string" });
    let integer = json!({ "type": "integer" });
    // The fields a program relies on; the others (scores by mode, notes, timing) come along
    // without being promised here, which keeps the listed definition short.
    let schema = json!({
        "type": "object",
        "properties": {
            "query": string,
            "mode": string,
            "hits": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "chunk_id": integer,
                        "doc_id": integer,
                        "title": string,
                        "path": string,
                        "snippet": string
                    },
                    "required": ["chunk_id", "doc_id", "title", "path", "snippet"]
                }
            },
            "omitted": integer
        },
        "required": ["query", "mode", "hits", "omitted"]
    });
    match schema {
        Value::Object(map) => std::sync::Arc::new(map),
        _ => std::sync::Arc::default(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn hit(n: i64, snippet: &str) -> SearchHit {
        serde_json::from_value(json!({
            "chunk_id": n, "doc_id": n * 10, "score": 0.5, "title": format!("Title {n}"),
            "section": "Usage", "source": "docs", "path": format!("p/{n}.md"),
            "technology": "docs", "category": "guide", "doc_type": "text", "position": 0,
            "snippet": snippet, "before": [], "after": []
        }))
        .unwrap()
    }

    fn response(hits: Vec<SearchHit>) -> SearchResponse {
        SearchResponse {
            query: "how to".into(),
            mode: exai_kb::Mode::Hybrid,
            hits,
            notes: vec![],
            chunks_without_vectors: 0,
            took_ms: 1.25,
        }
    }

    #[test]
    fn whole_hits_fill_the_budget_and_the_rest_is_counted() {
        let r = response((1..=10).map(|n| hit(n, &"word ".repeat(100))).collect());
        let all = search_answer(&r, 100_000);
        assert!(
            all.text
                .starts_with("10 hits for \"how to\" (hybrid search, 1.2 ms).")
        );
        assert!(
            all.text
                .contains("1. Title 1 › Usage\n   docs: p/1.md (chunk_id 1, doc_id 10)")
        );
        assert_eq!(all.structured["omitted"], 0);
        let cut = search_answer(&r, 700);
        assert!(
            estimate_tokens(&cut.text) <= 700,
            "{}",
            estimate_tokens(&cut.text)
        );
        let kept = cut.structured["hits"].as_array().unwrap().len();
        assert!((1..10).contains(&kept), "{kept}");
        assert_eq!(cut.structured["omitted"], 10 - kept);
        assert!(cut.text.contains(&format!("; {} more left out", 10 - kept)));
        // Whole hits only: the last one kept ends with its snippet.
        assert!(cut.text.trim_end().ends_with("word"));
        // A budget below one hit keeps none, and still answers.
        let none = search_answer(&r, 130);
        assert!(none.text.starts_with("0 hits for"), "{}", none.text);
    }

    #[test]
    fn the_estimate_errs_high() {
        assert_eq!(estimate_tokens("abcdef"), 2);
        assert_eq!(estimate_tokens("日本語"), 5);
    }
}
