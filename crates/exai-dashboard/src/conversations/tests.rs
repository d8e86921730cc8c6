//! Conversations as the page reads them: only the principal's own threads, each with its turns'
//! models, tokens and cost; another principal's thread is a 404 like one that never existed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::http::{Method, StatusCode};
use exai_server::http::Principal;
use exai_tools::threads::{NewThread, NewTurn, ThreadStore};
use exai_tools::{LOCAL_PRINCIPAL, TurnUsage};
use serde_json::json;

use crate::kb::tests::{Fixture, call};

/// A thread of `owner` with one question and one priced answer; its id.
fn chat(fx: &Fixture, owner: &str, prompt: &str, model: &str, usage: TurnUsage) -> String {
    let id = ThreadStore::new_id();
    let new = NewThread {
        parent: None,
        tool: "chat".into(),
        title: prompt.into(),
    };
    let turns = [
        NewTurn {
            role: "user",
            content: prompt,
            files: &[],
            tool: "chat",
            model: None,
            usage: None,
        },
        NewTurn {
            role: "assistant",
            content: "an answer",
            files: &[],
            tool: "chat",
            model: Some(model),
            usage: Some(usage),
        },
    ];
    let ai = fx.state.ai();
    ai.threads()
        .unwrap()
        .of(owner)
        .record(&id, Some(&new), &turns)
        .unwrap();
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_principal_sees_only_its_own_conversations() {
    let fx = Fixture::new();
    let usage = TurnUsage {
        tokens_in: 120,
        tokens_out: 30,
        cost_usd: 0.002,
    };
    let mine = chat(&fx, LOCAL_PRINCIPAL, "What is a monad?", "glm-4.6", usage);
    let theirs = chat(&fx, "alice", "Alice's secret plan", "kimi-k2", usage);
    let app = fx.app(Principal::local());

    let (status, listed) = call(&app, Method::GET, "/conversations", None).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let threads = listed["threads"].as_array().unwrap();
    assert_eq!(threads.len(), 1, "{listed}");
    let t = &threads[0];
    assert_eq!(t["continuation_id"], mine.as_str());
    assert_eq!(t["first_prompt"], "What is a monad?");
    assert_eq!(t["tool"], "chat");
    assert_eq!(t["turns"], 2);
    assert_eq!(t["models"], json!(["glm-4.6"]));
    assert_eq!(
        (t["tokens_in"].as_u64(), t["tokens_out"].as_u64()),
        (Some(120), Some(30))
    );
    assert!(
        (t["cost_usd"].as_f64().unwrap() - 0.002).abs() < 1e-9,
        "{t}"
    );

    let (status, shown) = call(&app, Method::GET, &format!("/conversations/{mine}"), None).await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    let turns = shown["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 2);
    assert_eq!(
        (turns[0]["role"].as_str(), turns[0]["text"].as_str()),
        (Some("user"), Some("What is a monad?"))
    );
    assert!(turns[0].get("tokens_in").is_none(), "{shown}");
    assert_eq!(turns[1]["model"], "glm-4.6");
    assert_eq!(turns[1]["tokens_in"], 120);
    assert!(turns[1]["time"].as_str().unwrap().ends_with('Z'), "{shown}");

    // Alice's thread does not exist for this principal; her own view shows it.
    let (status, refused) =
        call(&app, Method::GET, &format!("/conversations/{theirs}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{refused}");
    assert!(!refused.to_string().contains("secret"), "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("does not exist"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_list_arguments_are_a_400() {
    let fx = Fixture::new();
    let app = fx.app(Principal::local());
    for (uri, says) in [
        ("/conversations?limit=0", "give 1 to 200"),
        ("/conversations?limit=many", "limit"),
        ("/conversations?owner=alice", "owner"),
    ] {
        let (status, answer) = call(&app, Method::GET, uri, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(says),
            "{uri}: {answer}"
        );
    }
}
