//! The model registry: what each model can read and write, what it can do, how slow it may be and
//! what it costs. Built-in entries for the providers exai knows, plus the user's additions and
//! overrides from `providers.models` and the models of `providers.custom` servers.

use std::collections::BTreeMap;

use exai_core::config::{CustomProvider, ModelOverride};
use serde::Serialize;

/// What a model can do beyond plain chat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// A reasoning mode (GLM's `thinking` flag; Kimi's thinking model).
    pub thinking: bool,
    pub vision: bool,
    /// The provider's built-in web search tool.
    pub web_search: bool,
    /// File upload with server-side text extraction.
    pub files: bool,
}

/// How a model is meant to be used, for `auto` routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Quick, cheap answers.
    Fast,
    /// Strong general models.
    Balanced,
    /// Slow, careful reasoning.
    Deep,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelInfo {
    pub name: String,
    /// Provider id: `kimi`, `glm`, `openai`, `openrouter` or a `providers.custom` name.
    pub provider: String,
    pub context_window: u64,
    pub max_output: u64,
    pub capabilities: Capabilities,
    pub tier: Tier,
    /// From `timeouts.model_multipliers` (the one place multipliers live), 1 when unset.
    pub timeout_multiplier: f64,
    /// USD per million input tokens.
    pub price_in: f64,
    /// USD per million output tokens.
    pub price_out: f64,
    pub aliases: Vec<String>,
}

impl ModelInfo {
    /// Cost in USD of one call.
    pub fn cost(&self, tokens_in: u64, tokens_out: u64) -> f64 {
        (tokens_in as f64 * self.price_in + tokens_out as f64 * self.price_out) / 1_000_000.0
    }
}

struct Builtin {
    name: &'static str,
    provider: &'static str,
    context: u64,
    max_output: u64,
    caps: Capabilities,
    tier: Tier,
    price_in: f64,
    price_out: f64,
}

const NONE: Capabilities = Capabilities {
    thinking: false,
    vision: false,
    web_search: false,
    files: false,
};
const KIMI: Capabilities = Capabilities {
    files: true,
    ..NONE
};
const KIMI_THINK: Capabilities = Capabilities {
    thinking: true,
    files: true,
    ..NONE
};
const GLM: Capabilities = Capabilities {
    thinking: true,
    web_search: true,
    ..NONE
};
const GLM_FLASH: Capabilities = Capabilities {
    web_search: true,
    ..NONE
};
const GLM_VISION: Capabilities = Capabilities {
    thinking: true,
    vision: true,
    ..NONE
};
const OPENAI_REASONING: Capabilities = Capabilities {
    thinking: true,
    vision: true,
    ..NONE
};
const OPENAI_VISION: Capabilities = Capabilities {
    vision: true,
    ..NONE
};

#[allow(clippy::too_many_arguments)] // one row of the table below
const fn m(
    name: &'static str,
    provider: &'static str,
    context: u64,
    max_output: u64,
    caps: Capabilities,
    tier: Tier,
    price_in: f64,
    price_out: f64,
) -> Builtin {
    Builtin {
        name,
        provider,
        context,
        max_output,
        caps,
        tier,
        price_in,
        price_out,
    }
}

/// Built-in entries. Prices are list prices in USD per million tokens at the time of writing;
/// override them in `providers.models` when they change.
#[rustfmt::skip]
const BUILTIN: &[Builtin] = &[
    m("kimi-k2-0905-preview", "kimi", 262_144, 32_768, KIMI, Tier::Balanced, 0.60, 2.50),
    m("kimi-k2-turbo-preview", "kimi", 262_144, 32_768, KIMI, Tier::Fast, 1.15, 8.00),
    m("kimi-thinking-preview", "kimi", 131_072, 32_768, KIMI_THINK, Tier::Deep, 30.0, 30.0),
    m("moonshot-v1-8k", "kimi", 8_192, 4_096, KIMI, Tier::Fast, 0.20, 2.00),
    m("moonshot-v1-32k", "kimi", 32_768, 8_192, KIMI, Tier::Fast, 1.00, 3.00),
    m("moonshot-v1-128k", "kimi", 131_072, 8_192, KIMI, Tier::Balanced, 2.00, 5.00),
    m("glm-4.6", "glm", 200_000, 128_000, GLM, Tier::Deep, 0.60, 2.20),
    m("glm-4.5", "glm", 131_072, 98_304, GLM, Tier::Balanced, 0.60, 2.20),
    m("glm-4.5-air", "glm", 131_072, 98_304, GLM, Tier::Fast, 0.20, 1.10),
    m("glm-4.5-flash", "glm", 131_072, 98_304, GLM_FLASH, Tier::Fast, 0.0, 0.0),
    m("glm-4.5v", "glm", 65_536, 16_384, GLM_VISION, Tier::Balanced, 0.60, 1.80),
    m("gpt-4.1", "openai", 1_047_576, 32_768, OPENAI_VISION, Tier::Balanced, 2.00, 8.00),
    m("gpt-4.1-mini", "openai", 1_047_576, 32_768, OPENAI_VISION, Tier::Fast, 0.40, 1.60),
    m("o4-mini", "openai", 200_000, 100_000, OPENAI_REASONING, Tier::Deep, 1.10, 4.40),
];

/// Context window assumed for a model the registry does not describe (a custom server's).
const UNKNOWN_CONTEXT: u64 = 32_768;

/// Every model exai can call, by name.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    models: BTreeMap<String, ModelInfo>,
}

impl Registry {
    /// The built-in models, the custom servers' models, then the user's overrides.
    pub fn build(
        custom: &BTreeMap<String, CustomProvider>,
        overrides: &BTreeMap<String, ModelOverride>,
        multipliers: &BTreeMap<String, f64>,
    ) -> Registry {
        let mut models = BTreeMap::new();
        for b in BUILTIN {
            models.insert(
                b.name.to_string(),
                ModelInfo {
                    name: b.name.into(),
                    provider: b.provider.into(),
                    context_window: b.context,
                    max_output: b.max_output,
                    capabilities: b.caps,
                    tier: b.tier,
                    timeout_multiplier: 1.0,
                    price_in: b.price_in,
                    price_out: b.price_out,
                    aliases: Vec::new(),
                },
            );
        }
        for (provider, server) in custom {
            for name in &server.models {
                let window = server.context_window.unwrap_or(UNKNOWN_CONTEXT);
                models.insert(
                    name.clone(),
                    ModelInfo {
                        name: name.clone(),
                        provider: provider.clone(),
                        context_window: window,
                        max_output: (window / 4).clamp(1024, 32_768),
                        capabilities: NONE,
                        tier: Tier::Balanced,
                        timeout_multiplier: 1.0,
                        price_in: 0.0,
                        price_out: 0.0,
                        aliases: Vec::new(),
                    },
                );
            }
        }
        for (name, o) in overrides {
            let entry = models.entry(name.clone()).or_insert_with(|| ModelInfo {
                name: name.clone(),
                provider: String::new(),
                context_window: UNKNOWN_CONTEXT,
                max_output: 4096,
                capabilities: NONE,
                tier: Tier::Balanced,
                timeout_multiplier: 1.0,
                price_in: 0.0,
                price_out: 0.0,
                aliases: Vec::new(),
            });
            if let Some(v) = &o.provider {
                entry.provider.clone_from(v);
            }
            if let Some(v) = o.context_window {
                entry.context_window = v;
            }
            if let Some(v) = o.max_output {
                entry.max_output = v;
            }
            let caps = &mut entry.capabilities;
            caps.thinking = o.thinking.unwrap_or(caps.thinking);
            caps.vision = o.vision.unwrap_or(caps.vision);
            caps.web_search = o.web_search.unwrap_or(caps.web_search);
            caps.files = o.files.unwrap_or(caps.files);
            if let Some(v) = o.price_in {
                entry.price_in = v;
            }
            if let Some(v) = o.price_out {
                entry.price_out = v;
            }
            if let Some(v) = &o.aliases {
                entry.aliases.clone_from(v);
            }
        }
        // An override naming no provider for a model nobody serves cannot be called.
        models.retain(|_, m| !m.provider.is_empty());
        for m in models.values_mut() {
            if let Some(x) = multipliers.get(&m.name) {
                m.timeout_multiplier = *x;
            }
        }
        Registry { models }
    }

    /// The model with this name or alias (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&ModelInfo> {
        let wanted = name.trim();
        self.models.get(wanted).or_else(|| {
            self.models.values().find(|m| {
                m.name.eq_ignore_ascii_case(wanted)
                    || m.aliases.iter().any(|a| a.eq_ignore_ascii_case(wanted))
            })
        })
    }

    pub fn all(&self) -> impl Iterator<Item = &ModelInfo> {
        self.models.values()
    }

    /// The closest model names to a wrong one, for error messages.
    pub fn suggest(&self, wrong: &str) -> Vec<String> {
        let w = wrong.to_ascii_lowercase();
        let mut hits: Vec<String> = self
            .models
            .keys()
            .filter(|k| {
                let k = k.to_ascii_lowercase();
                k.contains(&w) || w.contains(&k) || shared_prefix(&k, &w) >= 4
            })
            .cloned()
            .collect();
        hits.truncate(5);
        hits
    }
}

fn shared_prefix(a: &str, b: &str) -> usize {
    a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_overrides_and_custom_models() {
        let mut custom = BTreeMap::new();
        custom.insert(
            "local".to_string(),
            CustomProvider {
                url: "http://127.0.0.1:11434/v1".into(),
                models: vec!["llama3.1:8b".into()],
                api_key_env: String::new(),
                context_window: Some(131_072),
            },
        );
        let mut overrides = BTreeMap::new();
        overrides.insert(
            "glm-4.6".to_string(),
            ModelOverride {
                price_in: Some(1.0),
                aliases: Some(vec!["glm".into()]),
                ..ModelOverride::default()
            },
        );
        overrides.insert("orphan".to_string(), ModelOverride::default());
        let mut multipliers = BTreeMap::new();
        multipliers.insert("glm-4.6".to_string(), 1.5);
        let r = Registry::build(&custom, &overrides, &multipliers);
        let kimi = r.get("kimi-k2-0905-preview").unwrap();
        assert_eq!(kimi.context_window, 262_144);
        assert!(kimi.capabilities.files);
        let glm = r.get("GLM").unwrap();
        assert_eq!(glm.name, "glm-4.6");
        assert_eq!(glm.context_window, 200_000);
        assert!((glm.timeout_multiplier - 1.5).abs() < 1e-9);
        assert!((glm.price_in - 1.0).abs() < 1e-9);
        assert!((glm.cost(1_000_000, 1_000_000) - 3.2).abs() < 1e-9);
        assert_eq!(r.get("llama3.1:8b").unwrap().provider, "local");
        assert!(r.get("orphan").is_none());
        assert!(
            r.suggest("kimi-k2")
                .contains(&"kimi-k2-0905-preview".to_string())
        );
        for name in [
            "kimi-k2-turbo-preview",
            "kimi-thinking-preview",
            "moonshot-v1-8k",
            "moonshot-v1-32k",
            "moonshot-v1-128k",
            "glm-4.5",
            "glm-4.5-air",
            "glm-4.5-flash",
            "glm-4.5v",
        ] {
            assert!(r.get(name).is_some(), "{name}");
        }
    }
}
