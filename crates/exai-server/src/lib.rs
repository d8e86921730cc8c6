//! exai's MCP server: the tool handler, stdio and Streamable HTTP transports, the stdio shim,
//! daemon life (pid file, signals, graceful drain, configuration reload) and the HTTP guard
//! (Host, Origin, bearer).

mod ai_tools;
pub mod answer;
mod argcheck;
pub mod daemon;
pub mod events;
pub mod handler;
pub mod health;
pub mod http;
pub mod jobs;
pub mod kb_tools;
pub mod knowledge;
pub mod metrics;
pub mod registry;
pub mod reload;
pub mod sampler;
mod schema;
pub mod shim;
pub mod state;
pub mod stdio;

pub use handler::ExaiServer;
pub use state::{AppState, Transport};
