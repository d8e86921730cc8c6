//! Shared ground for every exai crate: configuration with provenance, the timeout hierarchy,
//! data paths and their lock, private file modes, logging, the activity log and lock-free
//! metrics.
//!
//! Configuration is layered one way: [`Source`] and the errors at the bottom, the typed values,
//! the registry's rules and the settings registry above them, the timeout hierarchy beside the
//! registry, and the loader (`config`) on top, using all of them. Those lower pieces are reached
//! through the names exported here; the other modules are public as they are.

pub mod access;
pub mod activity;
pub mod config;
pub mod env_import;
mod error;
pub mod lock;
pub mod logging;
pub mod metrics;
pub mod paths;
pub mod pidfile;
pub mod private;
mod rules;
pub mod settings;
mod source;
pub mod sqlite_schema;
pub mod text;
mod timeouts;
mod values;

pub use config::{Config, Loaded, Secret};
pub use error::{ConfigError, Expected};
pub use source::Source;
pub use timeouts::{HierarchyError, TimeoutConfig, TimeoutHierarchy};
pub use values::{
    EmbedBackend, EmbedPrecision, RenderMode, ToolFamily, ToolProfile,
    UNTRUSTED_PATTERN_SIZE_LIMIT, UntrustedContent, untrusted_pattern,
};

/// The exai version, from Cargo.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
