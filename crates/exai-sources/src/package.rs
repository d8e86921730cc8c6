//! Packages from npm, PyPI and crates.io (`npm:NAME@RANGE`, …) and git repositories at a ref:
//! resolved and fetched by [`exai_packages`] into a tree under the cache directory, then
//! indexed by the local indexer (unchanged files cost a hash, removed ones are pruned). Every
//! download goes through [`exai_fetch`]'s safe client, so the address policy
//! (`kb.fetch_allowed_hosts`) holds for registries and their mirrors as for web pages; a git
//! remote's host is checked the same way before git runs.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use exai_kb::{IndexReport, IndexRequest, Kb, KbError, Progress};
use exai_packages::{GitSpec, PackageSpec, SourceSpec};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::settings::Settings;
use crate::{Request, Result};

/// Longest a package download may take (its archive can be far larger than a page).
const DOWNLOAD_DEADLINE: Duration = Duration::from_secs(600);

/// A package at the version it was resolved to, recorded in its source's origin: a refresh
/// fetches the same version again (a newer one is indexed as a source of its own).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackageOrigin {
    /// The spec as given, e.g. `npm:react@^18`.
    pub spec: String,
    pub registry: String,
    pub name: String,
    pub version: String,
    pub checksum: String,
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// A git repository at a ref, recorded with the commit last indexed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GitOrigin {
    /// The spec as given, e.g. `https://host/repo.git#v1.0`.
    pub spec: String,
    pub commit: String,
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// Registry downloads through the safe client.
struct SafeFetcher {
    settings: Settings,
}

impl exai_packages::Fetcher for SafeFetcher {
    fn get<'a>(
        &'a self,
        url: &'a str,
        max_bytes: u64,
    ) -> BoxFuture<'a, std::result::Result<Vec<u8>, exai_packages::FetchError>> {
        Box::pin(async move {
            let parsed = url::Url::parse(url)
                .map_err(|e| exai_packages::FetchError::other(format!("{url}: {e}")))?;
            let mut policy = self.settings.fetch_policy();
            policy.max_page_bytes = max_bytes;
            policy.page_timeout = policy.page_timeout.max(DOWNLOAD_DEADLINE);
            let client = exai_fetch::SafeClient::new(policy)
                .map_err(|e| exai_packages::FetchError::other(e.to_string()))?;
            client.get_raw(&parsed).await.map_err(|e| match e {
                exai_fetch::FetchError::Http { status, .. } => exai_packages::FetchError {
                    status: Some(status),
                    message: e.to_string(),
                },
                other => exai_packages::FetchError::other(other.to_string()),
            })
        })
    }
}

/// Run `future` to its end on the caller's runtime (or one of its own), dropping it — which
/// kills a git process — when `cancel` is set.
fn block_on<T, E: std::fmt::Display>(
    future: impl Future<Output = std::result::Result<T, E>>,
    cancel: &AtomicBool,
) -> Result<T> {
    let run = async {
        let watch = async {
            while !cancel.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::select! {
            result = future => result.map_err(|e| KbError::Invalid(e.to_string())),
            () = watch => Err(KbError::Cancelled),
        }
    };
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle.block_on(run),
        // A runtime of its own is driven by `Runtime::block_on`: a current-thread runtime's
        // `Handle::block_on` drives neither its timers nor its I/O, nor reaps a git process.
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| KbError::Invalid(format!("cannot start the fetcher: {e}")))?
            .block_on(run),
    }
}

/// The spec `text` names when it is a package or a git repository (a plain directory, even one
/// that is a repository, is indexed as files).
pub fn classify(text: &str) -> Result<Option<SourceSpec>> {
    if !text.contains('#') && std::path::Path::new(text).is_dir() {
        return Ok(None);
    }
    SourceSpec::classify(text).map_err(|e| KbError::Invalid(e.to_string()))
}

/// The default source name: `NAME@VERSION` for a package (a scope's `/` as `+`), the
/// repository's name (and `@REF`) for git.
pub fn package_source_name(name: &str, version: &str) -> String {
    format!("{}@{version}", name.replace('/', "+"))
}

pub fn git_source_name(spec: &GitSpec) -> String {
    let location = match &spec.location {
        exai_packages::GitLocation::Remote(url) => url.clone(),
        exai_packages::GitLocation::Local(path) => path.display().to_string(),
    };
    let base = location
        .trim_end_matches('/')
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or("repo")
        .trim_end_matches(".git")
        .to_string();
    match &spec.reference {
        Some(r) => format!("{base}@{}", r.replace('/', "+")),
        None => base,
    }
}

fn registries(settings: &Settings) -> exai_packages::Registries {
    exai_packages::Registries::new(
        Arc::new(SafeFetcher {
            settings: settings.clone(),
        }),
        settings.registries.clone(),
    )
}

/// The version a package spec resolves to (one metadata request, nothing downloaded).
pub fn resolve(spec: &PackageSpec, settings: &Settings) -> Result<exai_packages::Resolved> {
    block_on(registries(settings).resolve(spec), &AtomicBool::new(false))
}

/// Fetch a package and index it; returns the source it went to and its origin.
pub fn index_package(
    kb: &Kb,
    source: Option<&str>,
    spec: &PackageSpec,
    req: &Request,
    settings: &Settings,
    progress: &(dyn Fn(&Progress) + Sync),
    cancel: &AtomicBool,
) -> Result<(String, IndexReport, PackageOrigin)> {
    let registries = registries(settings);
    progress(&Progress::Fetching {
        fetched: 0,
        queued: 1,
        failed: 0,
    });
    let dest = settings.cache_dir.join("packages");
    let fetched = block_on(registries.fetch(spec, &dest), cancel)?;
    progress(&Progress::Fetching {
        fetched: 1,
        queued: 0,
        failed: 0,
    });
    let resolved = &fetched.resolved;
    let source = source.map_or_else(
        || package_source_name(&resolved.name, &resolved.version),
        str::to_string,
    );
    let include = if req.include.is_empty() {
        fetched.include.clone()
    } else {
        req.include.clone()
    };
    let exclude = [fetched.exclude.clone(), req.exclude.clone()].concat();
    let report = index_tree(
        kb,
        &source,
        fetched.root.clone(),
        &include,
        &exclude,
        req,
        progress,
        cancel,
    )?;
    let origin = PackageOrigin {
        spec: spec.to_string(),
        registry: resolved.registry.prefix().to_string(),
        name: resolved.name.clone(),
        version: resolved.version.clone(),
        checksum: resolved.checksum.clone(),
        include: req.include.clone(),
        exclude: req.exclude.clone(),
    };
    Ok((source, report, origin))
}

/// The spec that fetches exactly the version `origin` records.
pub fn pinned(origin: &PackageOrigin) -> Result<PackageSpec> {
    let text = format!("{}:{}@={}", origin.registry, origin.name, origin.version);
    match SourceSpec::classify(&text).map_err(|e| KbError::Invalid(e.to_string()))? {
        Some(SourceSpec::Package(p)) => Ok(p),
        _ => Err(KbError::Invalid(format!("`{text}` is no package spec"))),
    }
}

/// Fetch a git repository at its ref (again: only what changed is re-indexed) and index it.
pub fn index_git(
    kb: &Kb,
    source: Option<&str>,
    spec: &GitSpec,
    req: &Request,
    settings: &Settings,
    progress: &(dyn Fn(&Progress) + Sync),
    cancel: &AtomicBool,
) -> Result<(String, IndexReport, GitOrigin)> {
    let source = source.map_or_else(|| git_source_name(spec), str::to_string);
    check_git_host(spec, settings, cancel)?;
    progress(&Progress::Fetching {
        fetched: 0,
        queued: 1,
        failed: 0,
    });
    let cache = settings.cache_dir.join("git").join(&source);
    let config = exai_packages::GitConfig::default();
    let checkout = block_on(exai_packages::fetch_git(spec, &cache, &config), cancel)?;
    progress(&Progress::Fetching {
        fetched: 1,
        queued: 0,
        failed: 0,
    });
    if let Some(changes) = &checkout.changes {
        tracing::info!(source, commit = %checkout.commit, changed = changes.len(), "git source fetched");
    }
    let report = index_tree(
        kb,
        &source,
        checkout.root.clone(),
        &req.include,
        &req.exclude,
        req,
        progress,
        cancel,
    )?;
    let origin = GitOrigin {
        spec: spec.to_string(),
        commit: checkout.commit,
        include: req.include.clone(),
        exclude: req.exclude.clone(),
    };
    Ok((source, report, origin))
}

/// A remote's host must pass the same address policy as a web page.
fn check_git_host(spec: &GitSpec, settings: &Settings, cancel: &AtomicBool) -> Result<()> {
    let exai_packages::GitLocation::Remote(url) = &spec.location else {
        return Ok(());
    };
    let parsed = url::Url::parse(url).map_err(|e| KbError::Invalid(format!("`{url}`: {e}")))?;
    let Some(host) = parsed.host_str().map(str::to_string) else {
        return Ok(());
    };
    let port = parsed
        .port_or_known_default()
        .unwrap_or(match parsed.scheme() {
            "git" => 9418,
            "ssh" => 22,
            _ => 443,
        });
    let allow =
        exai_fetch::AllowList::new(&settings.allowed_hosts).map_err(crate::web::fetch_error)?;
    block_on(
        async { allow.resolve_checked(&host, port).await.map(|_| ()) },
        cancel,
    )
}

#[allow(clippy::too_many_arguments)]
fn index_tree(
    kb: &Kb,
    source: &str,
    root: PathBuf,
    include: &[String],
    exclude: &[String],
    req: &Request,
    progress: &(dyn Fn(&Progress) + Sync),
    cancel: &AtomicBool,
) -> Result<IndexReport> {
    let request = IndexRequest {
        roots: vec![root],
        source: source.to_string(),
        technology: req.technology.clone(),
        include: include.to_vec(),
        exclude: exclude.to_vec(),
        dry_run: req.dry_run,
        // The tree is the package or the commit: what is not in it is gone.
        prune: true,
        reembed: req.reembed,
        skip_embedding: req.skip_embedding,
    };
    kb.index(&request, progress, cancel)
}
