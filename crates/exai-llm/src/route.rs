//! `model: "auto"`: pick a chain of models for a call from what the tool needs (fast or deep),
//! what the prompt looks like (CJK-heavy text goes to Kimi first), how much context it needs,
//! which capabilities it asks for and which providers have keys. The gateway walks the chain
//! when a provider fails. Every decision carries its reason.

use std::collections::HashSet;

use serde::Serialize;

use crate::error::LlmError;
use crate::models::{ModelInfo, Registry, Tier};

/// What kind of work a tool does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// Quick answers: chat, challenge.
    Fast,
    /// Careful reasoning: thinkdeep, consensus, code review and the other workflow tools.
    Deep,
}

/// Capabilities a call needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    pub thinking: bool,
    pub web_search: bool,
    pub files: bool,
}

/// The models to try, in order, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Route {
    pub chain: Vec<String>,
    pub reason: String,
}

const FAST: &[&str] = &[
    "glm-4.5-flash",
    "kimi-k2-turbo-preview",
    "glm-4.5-air",
    "gpt-4.1-mini",
    "moonshot-v1-32k",
    "kimi-k2-0905-preview",
    "glm-4.6",
];
const DEEP: &[&str] = &[
    "kimi-k2-0905-preview",
    "glm-4.6",
    "kimi-thinking-preview",
    "o4-mini",
    "glm-4.5",
    "gpt-4.1",
    "moonshot-v1-128k",
];

/// Longest chain tried for one call.
const CHAIN_MAX: usize = 3;

/// Share of CJK characters among letters above which Kimi is preferred.
const CJK_SHARE: f64 = 0.2;

pub fn cjk_share(text: &str) -> f64 {
    let mut letters = 0usize;
    let mut cjk = 0usize;
    for c in text.chars().filter(|c| c.is_alphabetic()) {
        letters += 1;
        let u = c as u32;
        if (0x4E00..=0x9FFF).contains(&u)
            || (0x3400..=0x4DBF).contains(&u)
            || (0x3040..=0x30FF).contains(&u)
            || (0xAC00..=0xD7AF).contains(&u)
        {
            cjk += 1;
        }
    }
    if letters == 0 {
        0.0
    } else {
        cjk as f64 / letters as f64
    }
}

fn fits(m: &ModelInfo, needed: u64, needs: Needs) -> bool {
    m.context_window >= needed
        && (!needs.thinking || m.capabilities.thinking)
        && (!needs.web_search || m.capabilities.web_search)
        && (!needs.files || m.capabilities.files)
}

/// Choose the chain for an `auto` call.
pub fn auto(
    registry: &Registry,
    configured: &HashSet<String>,
    category: Category,
    prompt: &str,
    needed_tokens: u64,
    needs: Needs,
) -> Result<Route, LlmError> {
    if configured.is_empty() {
        return Err(LlmError::NoProvider);
    }
    let preferred = match category {
        Category::Fast => FAST,
        Category::Deep => DEEP,
    };
    let mut order: Vec<&ModelInfo> = preferred.iter().filter_map(|n| registry.get(n)).collect();
    // Then every other callable model: custom servers, user-added entries.
    let tier_rank = |m: &ModelInfo| match (category, m.tier) {
        (Category::Fast, Tier::Fast) | (Category::Deep, Tier::Deep) => 0,
        (_, Tier::Balanced) => 1,
        _ => 2,
    };
    let mut rest: Vec<&ModelInfo> = registry
        .all()
        .filter(|m| !preferred.contains(&m.name.as_str()))
        .collect();
    rest.sort_by_key(|m| tier_rank(m));
    order.extend(rest);
    let available: Vec<&ModelInfo> = order
        .into_iter()
        .filter(|m| configured.contains(&m.provider))
        .collect();
    let mut why = vec![format!(
        "{} task",
        match category {
            Category::Fast => "fast",
            Category::Deep => "deep-reasoning",
        }
    )];
    let share = cjk_share(prompt);
    let mut candidates: Vec<&ModelInfo> = available
        .iter()
        .copied()
        .filter(|m| fits(m, needed_tokens, needs))
        .collect();
    if share >= CJK_SHARE && candidates.iter().any(|m| m.provider == "kimi") {
        candidates.sort_by_key(|m| m.provider != "kimi");
        why.push(format!("prompt {:.0}% CJK, Kimi first", share * 100.0));
    }
    if candidates.is_empty() {
        return Err(match available.iter().max_by_key(|m| m.context_window) {
            None => LlmError::NoProvider,
            Some(biggest) if biggest.context_window < needed_tokens => LlmError::ContextTooLong {
                model: biggest.name.clone(),
                needed: needed_tokens,
                window: biggest.context_window,
            },
            Some(first) => LlmError::Unsupported {
                model: "auto".into(),
                capability: needs_text(needs),
                hint: format!(
                    " with the configured providers (tried {} models, e.g. {})",
                    available.len(),
                    first.name
                ),
            },
        });
    }
    if needs != Needs::default() {
        why.push(format!("needs {}", needs_text(needs)));
    }
    why.push(format!("~{needed_tokens} tokens of context"));
    let providers: Vec<&str> = {
        let mut p: Vec<&str> = configured.iter().map(String::as_str).collect();
        p.sort_unstable();
        p
    };
    why.push(format!("providers with keys: {}", providers.join(", ")));
    // Prefer a chain that spans providers: a second model of the same provider often fails the
    // same way (an outage, a bad key).
    let mut chain: Vec<&ModelInfo> = Vec::new();
    for m in &candidates {
        if chain.len() < CHAIN_MAX && !chain.iter().any(|c| c.provider == m.provider) {
            chain.push(m);
        }
    }
    for m in &candidates {
        if chain.len() < CHAIN_MAX && !chain.iter().any(|c| c.name == m.name) {
            chain.push(m);
        }
    }
    Ok(Route {
        chain: chain.iter().map(|m| m.name.clone()).collect(),
        reason: why.join("; "),
    })
}

fn needs_text(needs: Needs) -> String {
    let mut parts = Vec::new();
    if needs.thinking {
        parts.push("thinking");
    }
    if needs.web_search {
        parts.push("web search");
    }
    if needs.files {
        parts.push("file extraction");
    }
    parts.join(" and ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn registry() -> Registry {
        Registry::build(&BTreeMap::new(), &BTreeMap::new(), &BTreeMap::new())
    }

    fn set(names: &[&str]) -> HashSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn picks_by_category_keys_and_language() {
        let r = registry();
        let both = set(&["kimi", "glm"]);
        let fast = auto(&r, &both, Category::Fast, "hello", 100, Needs::default()).unwrap();
        assert_eq!(fast.chain[0], "glm-4.5-flash");
        assert_eq!(
            fast.chain[1], "kimi-k2-turbo-preview",
            "second provider next"
        );
        let deep = auto(&r, &both, Category::Deep, "hello", 100, Needs::default()).unwrap();
        assert_eq!(deep.chain[0], "kimi-k2-0905-preview");
        let cjk = auto(
            &r,
            &both,
            Category::Fast,
            "请解释这个函数的作用",
            100,
            Needs::default(),
        )
        .unwrap();
        assert_eq!(r.get(&cjk.chain[0]).unwrap().provider, "kimi");
        assert!(cjk.reason.contains("CJK"), "{}", cjk.reason);
        let glm_only = auto(
            &r,
            &set(&["glm"]),
            Category::Deep,
            "x",
            100,
            Needs::default(),
        )
        .unwrap();
        assert!(glm_only.chain.iter().all(|m| m.starts_with("glm")));
    }

    #[test]
    fn context_and_capabilities_filter() {
        let r = registry();
        let both = set(&["kimi", "glm"]);
        let big = auto(&r, &both, Category::Fast, "x", 150_000, Needs::default()).unwrap();
        assert!(
            big.chain
                .iter()
                .all(|m| r.get(m).unwrap().context_window >= 150_000)
        );
        let err = auto(&r, &both, Category::Fast, "x", 5_000_000, Needs::default()).unwrap_err();
        assert_eq!(err.kind(), "context_too_long");
        let web = Needs {
            web_search: true,
            ..Needs::default()
        };
        let routed = auto(&r, &both, Category::Deep, "x", 10, web).unwrap();
        assert!(routed.chain.iter().all(|m| m.starts_with("glm")));
        let err = auto(&r, &set(&["kimi"]), Category::Deep, "x", 10, web).unwrap_err();
        assert_eq!(err.kind(), "unsupported");
        assert_eq!(
            auto(
                &r,
                &HashSet::new(),
                Category::Fast,
                "x",
                1,
                Needs::default()
            )
            .unwrap_err()
            .kind(),
            "no_provider"
        );
    }
}
