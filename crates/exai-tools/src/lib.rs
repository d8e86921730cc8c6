//! The AI tools' logic for exai: conversation threads, file context under the allowed roots,
//! system prompts, chat turns, consensus and the workflow-step protocol. Transport-free: the MCP
//! layer in exai-server parses arguments and renders results.

pub mod ai;
pub mod files;
pub mod planner;
pub mod prompts;
pub mod threads;
pub mod workflow;

pub use ai::{AiService, CallCtx, Grounding, ThinkingMode, ToolError, TurnInput, TurnOutput};
pub use threads::{LOCAL_PRINCIPAL, ThreadStore, ThreadsOf, TurnUsage};
