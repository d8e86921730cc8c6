//! Where each provider lives and how to authenticate: the presets exai knows (Kimi, GLM, OpenAI,
//! OpenRouter) and the user's OpenAI-compatible servers, resolved from the configuration.

use exai_core::Secret;
use exai_core::config::ProvidersConfig;
use serde::Serialize;

/// The dialect of an OpenAI-compatible API: decides the extra headers and body fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    /// Moonshot: context-cache token headers, file upload with `file-extract`.
    Kimi,
    /// ZhipuAI / Z.ai: `thinking` flag, `web_search` tool, `/web_search` endpoint.
    Glm,
    OpenAi,
    OpenRouter,
    Custom,
}

/// One provider as configured.
#[derive(Clone, Serialize)]
pub struct Endpoint {
    pub id: String,
    pub flavor: Flavor,
    pub base_url: String,
    #[serde(skip)]
    pub api_key: Secret,
    /// Variables that set the key, for error messages.
    pub key_variables: String,
    /// Custom servers may need no key (a local Ollama).
    pub key_required: bool,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("id", &self.id)
            .field("flavor", &self.flavor)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key)
            .finish()
    }
}

impl Endpoint {
    /// Has what it needs to be called.
    pub fn is_configured(&self) -> bool {
        self.api_key.is_set() || !self.key_required
    }

    /// `{base}/{path}` without doubled slashes.
    pub fn url(&self, path: &str) -> String {
        format!(
            "{}/{}",
            self.base_url.trim_end_matches('/'),
            path.trim_start_matches('/')
        )
    }
}

/// Every provider, configured or not (so errors can say what to set).
pub fn endpoints(config: &ProvidersConfig, env: &dyn Fn(&str) -> Option<String>) -> Vec<Endpoint> {
    let preset = |id: &str, flavor, url: &str, key: &Secret, vars: &str| Endpoint {
        id: id.into(),
        flavor,
        base_url: url.into(),
        api_key: key.clone(),
        key_variables: vars.into(),
        key_required: true,
    };
    let mut all = vec![
        preset(
            "kimi",
            Flavor::Kimi,
            &config.kimi_api_url,
            &config.kimi_api_key,
            "KIMI_API_KEY (or MOONSHOT_API_KEY)",
        ),
        preset(
            "glm",
            Flavor::Glm,
            &config.glm_api_url,
            &config.glm_api_key,
            "GLM_API_KEY (or ZHIPUAI_API_KEY)",
        ),
        preset(
            "openai",
            Flavor::OpenAi,
            &config.openai_api_url,
            &config.openai_api_key,
            "OPENAI_API_KEY",
        ),
        preset(
            "openrouter",
            Flavor::OpenRouter,
            &config.openrouter_api_url,
            &config.openrouter_api_key,
            "OPENROUTER_API_KEY",
        ),
    ];
    for (name, server) in &config.custom {
        let key_env = server.api_key_env.trim();
        let key = if key_env.is_empty() {
            Secret::default()
        } else {
            Secret::new(env(key_env).unwrap_or_default())
        };
        all.push(Endpoint {
            id: name.clone(),
            flavor: Flavor::Custom,
            base_url: server.url.clone(),
            api_key: key,
            key_variables: if key_env.is_empty() {
                format!("providers.custom.{name}.api_key_env")
            } else {
                key_env.to_string()
            },
            key_required: !key_env.is_empty(),
        });
    }
    all
}
