//! LLM providers for exai. One OpenAI-compatible client with presets (Kimi, GLM, OpenAI,
//! OpenRouter, custom servers), a model registry, `auto` routing, one retry loop, concurrency
//! limits, streaming with progress, usage and cost, per-provider metrics, and a mock provider
//! that speaks the same wire format for tests, validation and benchmarks.

pub mod client;
pub mod error;
pub mod gateway;
pub mod limits;
pub mod listing;
pub mod metrics;
pub mod mock;
pub mod models;
pub mod providers;
pub mod retry;
pub mod route;
pub mod wire;

pub use client::{Attempt, OpenAiCompatible, ProgressFn, Provider};
pub use error::LlmError;
pub use gateway::{Call, Completion, Fallback, Gateway};
pub use models::{Capabilities, ModelInfo, Registry, Tier};
pub use route::{Category, Route};
pub use wire::{Message, Usage};
