//! The always-on tools: `version`, `health`, `listmodels`, `enable_tools`.

use serde_json::json;

use super::{Case, case};
use crate::check::check;

pub fn cases() -> Vec<Case> {
    vec![
        case!(
            "version",
            "basic",
            "name and version of this build, HTTP transport, and a tool list equal to tools/list",
            |s| {
                let r = s.call("version", json!({})).await?.success()?;
                check!(r.str("/name") == "exai", "name is {:?}", r.str("/name"));
                check!(
                    r.str("/version") == exai_core::VERSION,
                    "version {:?}, this build is {}",
                    r.str("/version"),
                    exai_core::VERSION
                );
                check!(
                    r.str("/transport") == "http",
                    "transport {:?}",
                    r.str("/transport")
                );
                let listed: Vec<String> = r
                    .at("/tools")
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|t| t.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                check!(
                    listed == s.tools,
                    "version lists {listed:?}, tools/list has {:?}",
                    s.tools
                );
                let config = &s.main.state.loaded.config;
                // `enable_tools` lists the tools a narrower profile hides; the full profile this
                // suite runs has nothing to hide, so it is not listed.
                for spec in exai_server::registry::TOOLS
                    .iter()
                    .filter(|s| s.name != exai_server::registry::ENABLE_TOOLS)
                {
                    let on = exai_server::registry::enabled(spec, config);
                    check!(
                        on == listed.iter().any(|t| t == spec.name),
                        "`{}` is {} by the configuration but {} listed",
                        spec.name,
                        if on { "on" } else { "off" },
                        if on { "not" } else { "is" }
                    );
                }
                Ok(())
            }
        ),
        case!(
            "health",
            "basic",
            "status ok, this server's data directory, provider flags matching the configuration, keyword-only knowledge base",
            |s| {
                let r = s.call("health", json!({})).await?.success()?;
                check!(r.str("/status") == "ok", "status {:?}", r.str("/status"));
                let data_dir = s.main.state.paths.root().display().to_string();
                check!(
                    r.str("/data_dir") == data_dir,
                    "data_dir {:?}, expected {data_dir:?}",
                    r.str("/data_dir")
                );
                let p = &s.main.state.loaded.config.providers;
                for (name, set) in [
                    ("kimi", p.kimi_api_key.is_set()),
                    ("glm", p.glm_api_key.is_set()),
                    ("openai", p.openai_api_key.is_set()),
                ] {
                    check!(
                        r.at(&format!("/providers/{name}")).as_bool() == Some(set),
                        "providers.{name} is {}, configured: {set}",
                        r.at(&format!("/providers/{name}"))
                    );
                }
                check!(
                    r.str("/knowledge/embed_backend") == "none",
                    "embed_backend {:?}",
                    r.str("/knowledge/embed_backend")
                );
                check!(
                    r.at("/uptime_secs").as_f64().is_some_and(|u| u >= 0.0),
                    "no uptime"
                );
                Ok(())
            }
        ),
        case!(
            "listmodels",
            "basic",
            "available count matches the models marked available, each unavailable model says which key to set, providers show what is configured",
            |s| {
                let r = s.call("listmodels", json!({})).await?.success()?;
                let models = r.at("/models").as_array().cloned().unwrap_or_default();
                check!(!models.is_empty(), "no models listed");
                let marked = models.iter().filter(|m| m["available"] == true).count();
                check!(
                    r.at("/available").as_u64() == Some(marked as u64),
                    "available is {} but {marked} models are marked available",
                    r.at("/available")
                );
                for m in models.iter().filter(|m| m["available"] == false) {
                    let reason = m["unavailable_reason"].as_str().unwrap_or("");
                    check!(
                        reason.contains("API_KEY") || reason.contains("api_key"),
                        "{} is unavailable without saying which key to set: {reason:?}",
                        m["name"]
                    );
                }
                let configured = |id: &str| {
                    r.at("/providers")
                        .as_array()
                        .and_then(|ps| ps.iter().find(|p| p["id"] == id))
                        .and_then(|p| p["configured"].as_bool())
                };
                if s.is_mock() {
                    check!(
                        configured("glm") == Some(true) && configured("kimi") == Some(true),
                        "the mock is configured as glm and kimi, listmodels says glm {:?}, kimi {:?}",
                        configured("glm"),
                        configured("kimi")
                    );
                    check!(
                        configured("openai") == Some(false),
                        "openai has no key but shows as configured"
                    );
                    let expected = models
                        .iter()
                        .filter(|m| m["provider"] == "glm" || m["provider"] == "kimi")
                        .count();
                    check!(
                        marked == expected,
                        "{marked} models available, the glm and kimi models are {expected}"
                    );
                }
                if let Some(primary) = s.models.primary.as_deref() {
                    check!(
                        models
                            .iter()
                            .any(|m| m["name"] == primary && m["available"] == true),
                        "{primary} is configured but not listed as available"
                    );
                }
                Ok(())
            }
        ),
        case!(
            "enable_tools",
            "basic",
            "in the full profile nothing is hidden; a made-up name is refused with the way to the list",
            |s| {
                let r = s.call("enable_tools", json!({})).await?.success()?;
                check!(
                    r.text == "Every tool is listed already.",
                    "listing with nothing hidden said {:?}",
                    r.text
                );
                let r = s
                    .call("enable_tools", json!({ "enable": ["no_such_tool"] }))
                    .await?
                    .refusal()?;
                check!(
                    r.text.contains("unknown tool `no_such_tool`")
                        && r.text.contains("enable_tools without arguments"),
                    "refusal {:?}",
                    r.text
                );
                Ok(())
            }
        ),
    ]
}
