//! The one tool registry: every tool's family and timeout class, and which tools each profile
//! lists. The server builds its router from the `#[tool]` methods and keeps only the tools this
//! table and the configuration allow; a profile only decides what `tools/list` shows (every tool
//! kept stays callable), so a client's context holds the definitions it uses.

use exai_core::Config;

/// A group of tools that can be switched off together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `version`, `health`, `listmodels`: always on.
    Core,
    /// Diagnostics for clients, shims and timeouts; off unless `tools.diagnostics`.
    Diag,
    Ai,
    Kb,
    Ops,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Core => "core",
            Family::Diag => "diag",
            Family::Ai => "ai",
            Family::Kb => "kb",
            Family::Ops => "ops",
        }
    }
}

/// Which timeout bounds a tool call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutClass {
    Simple,
    Workflow,
}

#[derive(Debug, Clone, Copy)]
pub struct ToolSpec {
    pub name: &'static str,
    pub family: Family,
    pub timeout: TimeoutClass,
}

const fn t(name: &'static str, family: Family, timeout: TimeoutClass) -> ToolSpec {
    ToolSpec {
        name,
        family,
        timeout,
    }
}

use Family::{Ai, Core, Diag, Kb};
use TimeoutClass::{Simple, Workflow};

pub const TOOLS: &[ToolSpec] = &[
    t("version", Core, Simple),
    t(ENABLE_TOOLS, Core, Simple),
    t("health", Core, Simple),
    t("ping", Diag, Simple),
    t("search_docs", Kb, Simple),
    t("get_chunk", Kb, Simple),
    t("get_document", Kb, Simple),
    t("list_sources", Kb, Simple),
    t("resolve_library", Kb, Simple),
    t("get_technologies", Kb, Simple),
    t("get_categories", Kb, Simple),
    t("index_path", Kb, Workflow),
    t("job_status", Kb, Simple),
    t("cancel_job", Kb, Simple),
    t("remove_source", Kb, Simple),
    t("chat", Ai, Workflow),
    t("thinkdeep", Ai, Workflow),
    t("consensus", Ai, Workflow),
    t("challenge", Ai, Simple),
    t("planner", Ai, Simple),
    t("analyze", Ai, Workflow),
    t("codereview", Ai, Workflow),
    t("debug", Ai, Workflow),
    t("precommit", Ai, Workflow),
    t("refactor", Ai, Workflow),
    t("secaudit", Ai, Workflow),
    t("testgen", Ai, Workflow),
    t("tracer", Ai, Workflow),
    t("docgen", Ai, Workflow),
    t("listmodels", Core, Simple),
    t("list_threads", Ai, Simple),
    t("glm_web_search", Ai, Simple),
    t("kimi_chat_with_files", Ai, Workflow),
];

/// The entry point of the narrower profiles: lists the tools a profile hides and shows them on
/// request.
pub const ENABLE_TOOLS: &str = "enable_tools";

/// The tools the `lean` profile lists: the everyday ones and the entry point to the rest.
const LEAN: &[&str] = &[
    "search_docs",
    "get_document",
    "chat",
    "consensus",
    ENABLE_TOOLS,
];

/// What `tools/list` shows (`tools.profile`).
pub use exai_core::ToolProfile as Profile;

/// Whether `profile` lists `spec` before the client asks for more.
pub fn lists(profile: Profile, spec: &ToolSpec) -> bool {
    match profile {
        Profile::Full => spec.name != ENABLE_TOOLS,
        Profile::Lean => LEAN.contains(&spec.name),
        Profile::Kb => matches!(spec.family, Family::Kb | Family::Core | Family::Diag),
        Profile::Ai => matches!(spec.family, Family::Ai | Family::Core | Family::Diag),
    }
}

pub fn spec(name: &str) -> Option<&'static ToolSpec> {
    TOOLS.iter().find(|t| t.name == name)
}

/// Whether the configuration keeps this tool on.
pub fn enabled(spec: &ToolSpec, config: &Config) -> bool {
    let tools = &config.tools;
    match spec.family {
        Family::Core => true,
        Family::Diag => tools.diagnostics && !tools.disabled.iter().any(|d| d == spec.name),
        family => {
            !tools
                .disabled_families
                .iter()
                .any(|f| f.as_str() == family.as_str())
                && !tools.disabled.iter().any(|d| d == spec.name)
        }
    }
}

/// Names in `tools.disabled` that are no tool of this build (kept as a warning, not an error:
/// a `.env` carried over from the Python server may name tools that arrive later).
pub fn unknown_disabled(config: &Config) -> Vec<String> {
    config
        .tools
        .disabled
        .iter()
        .filter(|d| spec(d).is_none())
        .cloned()
        .collect()
}
