//! What the gateway can call, for the `listmodels` tool and `exai models`: one listing, so the
//! command line and MCP clients see the same models, availability and reasons.

use serde_json::{Value, json};

use crate::{Gateway, LlmError};

/// The models and providers, as text for a reader and as JSON.
pub struct Listing {
    pub text: String,
    /// `default_model`, `available` (a count), `models` (each model with `available` and, when
    /// it cannot be called, `unavailable_reason`) and `providers` (with `configured`).
    pub json: Value,
}

impl Gateway {
    pub fn listing(&self) -> Listing {
        let models: Vec<Value> = self
            .registry()
            .all()
            .map(|m| {
                let mut v = serde_json::to_value(m).unwrap_or(Value::Null);
                let reason = self.unavailable_reason(m);
                v["available"] = json!(reason.is_none());
                if let Some(reason) = reason {
                    v["unavailable_reason"] = json!(reason);
                }
                v
            })
            .collect();
        let providers: Vec<Value> = self
            .endpoints()
            .iter()
            .map(|e| {
                json!({
                    "id": e.id,
                    "flavor": e.flavor,
                    "base_url": e.base_url,
                    "configured": e.is_configured(),
                    "key_variables": e.key_variables,
                })
            })
            .collect();
        let available = models.iter().filter(|m| m["available"] == true).count();
        let mut text = format!(
            "{available} of {} models available; default model: {}\n",
            models.len(),
            self.default_model()
        );
        for m in &models {
            text.push_str(&format!(
                "- {} ({}; {} tokens){}\n",
                m["name"].as_str().unwrap_or(""),
                m["provider"].as_str().unwrap_or(""),
                m["context_window"],
                m["unavailable_reason"]
                    .as_str()
                    .map(|r| format!(": unavailable, {r}"))
                    .unwrap_or_default()
            ));
        }
        if available == 0 {
            text.push_str(&LlmError::NoProvider.to_string());
        }
        Listing {
            json: json!({ "default_model": self.default_model(), "available": available, "models": models, "providers": providers }),
            text,
        }
    }
}
