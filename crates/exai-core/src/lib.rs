//! Shared ground for every exai crate: configuration with provenance, the timeout hierarchy,
//! data paths and their lock, private file modes, logging, the activity log and lock-free
//! metrics.

pub mod access;
pub mod activity;
pub mod config;
pub mod env_import;
pub mod error;
pub mod lock;
pub mod logging;
pub mod metrics;
pub mod paths;
pub mod private;
pub mod settings;
pub mod text;
pub mod timeouts;

pub use config::{Config, Loaded, Secret, Source};
pub use error::ConfigError;
pub use timeouts::TimeoutHierarchy;

/// The exai version, from Cargo.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
