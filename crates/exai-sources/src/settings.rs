//! The settings fetching runs under (`kb.fetch_*`, `kb.crawl_*`, `kb.render`), from the
//! configuration.

use std::path::{Path, PathBuf};
use std::time::Duration;

use exai_core::RenderMode;

/// What every fetch and crawl of one process is bound by.
#[derive(Debug, Clone)]
pub struct Settings {
    pub allowed_hosts: Vec<String>,
    pub max_page_bytes: u64,
    pub page_timeout: Duration,
    pub max_pages: usize,
    pub max_depth: u32,
    pub concurrency: usize,
    pub delay: Duration,
    pub render: RenderMode,
    /// Where fetched trees (git checkouts, unpacked packages) are kept between runs.
    pub cache_dir: PathBuf,
    pub registries: exai_packages::RegistryConfig,
}

impl Settings {
    /// The settings of `config`, caching fetched trees under `data_dir/sources`.
    pub fn from_config(config: &exai_core::Config, data_dir: &Path) -> Self {
        let kb = &config.kb;
        let registries = exai_packages::RegistryConfig {
            npm_url: kb.npm_registry_url.clone(),
            pypi_url: kb.pypi_url.clone(),
            crates_url: kb.crates_api_url.clone(),
            crates_download_url: Some(kb.crates_download_url.clone()).filter(|u| !u.is_empty()),
            ..exai_packages::RegistryConfig::default()
        };
        Self {
            allowed_hosts: kb.fetch_allowed_hosts.clone(),
            max_page_bytes: kb.fetch_max_page_bytes,
            page_timeout: Duration::from_secs_f64(kb.fetch_page_timeout_secs),
            max_pages: usize::try_from(kb.crawl_max_pages).unwrap_or(usize::MAX),
            max_depth: u32::try_from(kb.crawl_max_depth).unwrap_or(u32::MAX),
            concurrency: usize::try_from(kb.crawl_concurrency).unwrap_or(1),
            delay: Duration::from_millis(kb.crawl_delay_ms),
            render: kb.render,
            cache_dir: data_dir.join(exai_core::access::FETCHED_SOURCES),
            registries,
        }
    }

    pub fn from_loaded(loaded: &exai_core::Loaded) -> Self {
        Self::from_config(&loaded.config, &loaded.data_dir)
    }

    pub(crate) fn fetch_policy(&self) -> exai_fetch::FetchPolicy {
        exai_fetch::FetchPolicy {
            allowed_hosts: self.allowed_hosts.clone(),
            max_page_bytes: self.max_page_bytes,
            page_timeout: self.page_timeout,
            ..exai_fetch::FetchPolicy::default()
        }
    }
}
