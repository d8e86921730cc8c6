#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Every tool definition a client lists sits in its agent's context for the whole session. The
//! budgets hold `tools/list` per profile to a size, in tokens of the `cl100k_base` encoding (a
//! stand-in for the clients' own tokenizers), so a new tool or a longer description that would
//! push a profile over fails here instead of in users' contexts.

use exai_server::registry::Profile;
use exai_server::{AppState, ExaiServer, Transport};

fn server(profile: Option<Profile>, env: &[(&str, &str)]) -> (tempfile::TempDir, ExaiServer) {
    let home = tempfile::tempdir().unwrap();
    let mut vars = vec![("EXAI_HOME".to_string(), home.path().display().to_string())];
    vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let loaded = exai_core::config::load(&exai_core::config::Inputs {
        env: vars,
        ..Default::default()
    })
    .unwrap();
    let state = AppState::new(loaded, Transport::Stdio, None);
    let server = match profile {
        Some(p) => ExaiServer::with_profile(state, p),
        None => ExaiServer::new(state),
    };
    (home, server)
}

/// Tools listed and tokens of `tools/list`'s `tools` array as sent (compact JSON).
fn tokens(profile: Profile) -> (usize, usize) {
    // Every tool on, the diagnostics family too.
    let (_home, server) = server(Some(profile), &[("EXAI_TOOLS_DIAGNOSTICS", "1")]);
    let tools = server.listed_tools();
    let json = serde_json::to_string(&tools).unwrap();
    let bpe = tiktoken_rs::cl100k_base().unwrap();
    (tools.len(), bpe.encode_with_special_tokens(&json).len())
}

#[test]
fn tool_lists_stay_within_their_token_budgets() {
    let budgets = [
        (Profile::Lean, 2_500),
        (Profile::Kb, 2_500),
        (Profile::Ai, 6_000),
        (Profile::Full, 6_000),
    ];
    let mut report = Vec::new();
    for (profile, budget) in budgets {
        let (n, used) = tokens(profile);
        report.push(format!("{}: {n} tools, {used} tokens", profile.as_str()));
        assert!(
            used <= budget,
            "tools/list for the `{}` profile is {used} tokens, over its budget of {budget}: shorten \
             descriptions (say what a tool is for in a sentence or two) or leave the tool out of \
             the profile",
            profile.as_str()
        );
    }
    // `cargo test -- --nocapture` shows the figures the closing notes quote.
    println!("{}", report.join("; "));
}

#[test]
fn lean_is_the_default_and_lists_the_everyday_tools_and_the_way_to_the_rest() {
    let (_home, lean) = server(None, &[]);
    let mut names: Vec<String> = lean
        .listed_tools()
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "chat",
            "consensus",
            "enable_tools",
            "get_document",
            "search_docs"
        ]
    );
    // Switched off stays off in every profile.
    let (_home2, full) = server(
        Some(Profile::Full),
        &[("DISABLED_TOOLS", "chat,codereview")],
    );
    let names: Vec<String> = full
        .listed_tools()
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n == "chat" || n == "codereview" || n == "enable_tools")
    );
    assert!(names.iter().any(|n| n == "consensus"));
}

/// A search answer cut to a budget stays within it in `cl100k_base` tokens, whatever the text:
/// English, code, CJK, emoji.
#[test]
fn budgeted_search_answers_never_exceed_the_budget() {
    use exai_kb::{Mode, SearchHit, SearchResponse};
    let bpe = tiktoken_rs::cl100k_base().unwrap();
    let texts = [
        "The borrow checker ensures references never outlive the data they point to. ".repeat(12),
        "fn main() { let v: Vec<u8> = (0..=255).collect(); println!(\"{:?}\", &v[..4]); }\n"
            .repeat(8),
        "所有権はRustの最も特徴的な機能であり、ガベージコレクタなしでメモリ安全性を保証します。"
            .repeat(6),
        "🦀 ✨ → ≤ ≥ ∞ ".repeat(30),
    ];
    let hits: Vec<SearchHit> = (0..40)
        .map(|i| {
            serde_json::from_value(serde_json::json!({
                "chunk_id": i, "doc_id": i / 3, "score": 0.5, "title": format!("Chapter {i}"),
                "section": "Section", "source": "book", "path": format!("ch{i:02}.html"),
                "technology": "rust", "category": "guide", "doc_type": "text", "position": i,
                "snippet": texts[i as usize % texts.len()], "before": [], "after": []
            }))
            .unwrap()
        })
        .collect();
    let response = SearchResponse {
        query: "ownership and borrowing".into(),
        mode: Mode::Hybrid,
        hits,
        notes: vec![],
        chunks_without_vectors: 0,
        took_ms: 3.2,
    };
    for budget in [150, 300, 1_000, 2_500, 5_000, 25_000] {
        let answer = exai_server::answer::search_answer(&response, budget);
        let used = bpe.encode_with_special_tokens(&answer.text).len();
        assert!(used <= budget, "budget {budget}: {used} tokens");
    }
}
