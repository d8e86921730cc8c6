//! Fetching documentation from the web for the knowledge base, safely.
//!
//! - [`client`]: one GET under the address policy, size cap, deadline, redirect and retry
//!   bounds, decoded to text.
//! - [`crawl`]: a polite crawler within a scope (robots.txt, sitemaps, llms.txt, canonical
//!   links, duplicate bodies, conditional refresh, resumable), reporting by events.
//! - [`render`]: headless Chromium for pages whose content only scripts add.
//!
//! The crate knows nothing of the knowledge base: it yields pages and failure records, and the
//! caller parses, chunks and stores them.

pub mod charset;
pub mod client;
pub mod crawl;
mod error;
mod html;
pub mod policy;
pub mod render;

pub use client::{Body, Content, FetchPolicy, Fetched, Format, SafeClient, Validators};
pub use crawl::{
    CrawlEvent, CrawlOptions, CrawlProgress, CrawlSummary, FrontierEntry, KnownPage, Page, crawl,
};
pub use error::FetchError;
pub use policy::{ALLOWED_HOSTS_SETTING, AllowList};
pub use render::{RenderMode, Renderer, needs_rendering};
