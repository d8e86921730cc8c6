//! Package registries: resolve a [`PackageSpec`] to one published version from the registry's own
//! JSON API, download its archive through the caller's [`Fetcher`], verify the checksum the
//! registry publishes, and unpack it to `dest/NAME@VERSION/` for the local indexer.
//!
//! Version choice is the registry's own: npm ranges and cargo requirements through `semver`
//! (see [`npm`] for the npm range forms accepted), PyPI specifiers through `pep440_rs`. The newest
//! matching version wins; yanked versions and prereleases are left out unless the range names a
//! prerelease. Each registry module turns its API's shape into a [`Choice`]; download, checksum
//! and unpacking are shared here.

mod checksum;
mod crates;
pub mod npm;
mod pypi;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub(crate) use checksum::Checksum;

use crate::Error;
use crate::archive::{self, ArchiveFormat, UnpackLimits};
use crate::fetcher::Fetcher;
use crate::spec::{PackageSpec, RegistryKind};

/// Where the registries are and how much may be downloaded from them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryConfig {
    /// npm registry base (`GET {npm_url}/{name}` is the packument).
    pub npm_url: String,
    /// PyPI base (`GET {pypi_url}/pypi/{name}/json`).
    pub pypi_url: String,
    /// crates.io base (`GET {crates_url}/api/v1/crates/{name}`).
    pub crates_url: String,
    /// Where `.crate` files are served as `{crates_download_url}/{name}/{name}-{version}.crate`;
    /// `None` uses the API's `dl_path` under `crates_url`.
    pub crates_download_url: Option<String>,
    /// Largest metadata document accepted (npm packuments of popular packages run to tens of MB).
    pub max_metadata_bytes: u64,
    pub limits: UnpackLimits,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            npm_url: "https://registry.npmjs.org".into(),
            pypi_url: "https://pypi.org".into(),
            crates_url: "https://crates.io".into(),
            crates_download_url: Some("https://static.crates.io/crates".into()),
            max_metadata_bytes: 64 * 1024 * 1024,
            limits: UnpackLimits::default(),
        }
    }
}

/// The provenance of a fetched package, for the caller to store with the indexed source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolved {
    pub registry: RegistryKind,
    pub name: String,
    pub version: String,
    /// The archive's download URL.
    pub url: String,
    /// The verified checksum, as `ALGORITHM:HEX` (`sha512:…`, `sha256:…`, `sha1:…`).
    pub checksum: String,
    /// When the version was published, as the registry gives it (RFC 3339).
    pub published: Option<String>,
}

/// A package unpacked on disk, ready for the local indexer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchedPackage {
    pub resolved: Resolved,
    /// `dest/NAME@VERSION`: the package's files, its top-level `package/` or `NAME-VERSION/`
    /// directory removed.
    pub root: PathBuf,
    /// True when the tree was already unpacked by an earlier run and nothing was downloaded.
    pub reused: bool,
    /// Suggested include globs (relative to `root`): READMEs, changelogs, docs folders and the
    /// source files whose comments document the API.
    pub include: Vec<String>,
    /// Suggested exclude globs: bundled dependencies, minified code and source maps.
    pub exclude: Vec<String>,
}

/// One version chosen by a registry module: what to download and how to check it.
#[derive(Debug, Clone)]
pub(crate) struct Choice {
    pub name: String,
    /// The version as the registry spells it (provenance and download).
    pub version: String,
    /// The version normalised by its parser: safe as a directory name.
    pub normalized_version: String,
    pub url: String,
    pub checksum: Checksum,
    pub published: Option<String>,
    pub format: ArchiveFormat,
    pub strip_single_root: bool,
}

/// Resolves and fetches packages from npm, PyPI and crates.io.
#[derive(Clone)]
pub struct Registries {
    fetcher: Arc<dyn Fetcher>,
    config: RegistryConfig,
}

impl Registries {
    pub fn new(fetcher: Arc<dyn Fetcher>, config: RegistryConfig) -> Self {
        Self { fetcher, config }
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// The version `spec` resolves to now, without downloading the package.
    pub async fn resolve(&self, spec: &PackageSpec) -> Result<Resolved, Error> {
        let choice = self.choose(spec).await?;
        Ok(resolved(spec.registry, &choice))
    }

    /// Resolves `spec`, then downloads, verifies and unpacks it to `dest/NAME@VERSION/`, or
    /// reuses that directory when an earlier run completed it.
    pub async fn fetch(&self, spec: &PackageSpec, dest: &Path) -> Result<FetchedPackage, Error> {
        let choice = self.choose(spec).await?;
        let dir_name = format!(
            "{}@{}",
            choice.name.replace('/', "+"),
            choice.normalized_version
        );
        let (include, exclude) = suggested_globs(spec.registry);
        let target = archive::unpacked_dir(dest, &dir_name);
        if target.is_dir() {
            return Ok(FetchedPackage {
                resolved: resolved(spec.registry, &choice),
                root: target,
                reused: true,
                include,
                exclude,
            });
        }
        let bytes = self
            .download(&choice.url, self.config.limits.max_download_bytes)
            .await?;
        choice.checksum.verify(&choice.url, &bytes)?;
        let root = self
            .unpack(bytes, &choice, dest.to_path_buf(), dir_name)
            .await?;
        Ok(FetchedPackage {
            resolved: resolved(spec.registry, &choice),
            root,
            reused: false,
            include,
            exclude,
        })
    }

    async fn choose(&self, spec: &PackageSpec) -> Result<Choice, Error> {
        let url = match spec.registry {
            RegistryKind::Npm => npm::metadata_url(&self.config.npm_url, &spec.name),
            RegistryKind::Pypi => pypi::metadata_url(&self.config.pypi_url, &spec.name),
            RegistryKind::Crates => crates::metadata_url(&self.config.crates_url, &spec.name),
        };
        let body = self
            .fetcher
            .get(&url, self.config.max_metadata_bytes)
            .await
            .map_err(|error| {
                if error.is_not_found() {
                    Error::PackageNotFound {
                        registry: spec.registry.display_name(),
                        name: spec.name.clone(),
                        url: url.clone(),
                    }
                } else {
                    Error::Fetch {
                        url: url.clone(),
                        reason: error.message,
                    }
                }
            })?;
        let range = spec.range.as_deref();
        match spec.registry {
            RegistryKind::Npm => npm::choose(&spec.name, range, &body, &url),
            RegistryKind::Pypi => pypi::choose(&spec.name, range, &body, &url),
            RegistryKind::Crates => crates::choose(&self.config, &spec.name, range, &body, &url),
        }
    }

    async fn download(&self, url: &str, max_bytes: u64) -> Result<Vec<u8>, Error> {
        self.fetcher
            .get(url, max_bytes)
            .await
            .map_err(|error| Error::Fetch {
                url: url.to_owned(),
                reason: error.message,
            })
    }

    async fn unpack(
        &self,
        bytes: Vec<u8>,
        choice: &Choice,
        dest: PathBuf,
        dir_name: String,
    ) -> Result<PathBuf, Error> {
        let limits = self.config.limits;
        let (format, strip) = (choice.format, choice.strip_single_root);
        let label = choice.url.clone();
        tokio::task::spawn_blocking(move || {
            archive::unpack(&bytes, format, &label, &dest, &dir_name, &limits, strip)
        })
        .await
        .map_err(|e| Error::io("unpacking the package", std::io::Error::other(e)))?
    }
}

fn resolved(registry: RegistryKind, choice: &Choice) -> Resolved {
    Resolved {
        registry,
        name: choice.name.clone(),
        version: choice.version.clone(),
        url: choice.url.clone(),
        checksum: choice.checksum.to_string(),
        published: choice.published.clone(),
    }
}

/// What to index in a package: docs everywhere, plus the source files whose comments and type
/// declarations document the API in that ecosystem. Changelogs are kept: "what changed in this
/// version" is a question agents ask.
fn suggested_globs(registry: RegistryKind) -> (Vec<String>, Vec<String>) {
    let mut include = vec!["README*", "CHANGELOG*", "docs/**", "doc/**", "**/*.md"];
    let mut exclude = vec!["node_modules/**"];
    match registry {
        RegistryKind::Npm => {
            include.extend(["**/*.d.ts", "**/*.ts", "**/*.js", "**/*.mjs", "**/*.cjs"]);
            exclude.extend(["**/*.min.js", "**/*.map"]);
        }
        RegistryKind::Pypi => include.extend(["**/*.rst", "**/*.py", "**/*.pyi"]),
        RegistryKind::Crates => include.push("**/*.rs"),
    }
    let own = |globs: Vec<&str>| globs.into_iter().map(str::to_owned).collect();
    (own(include), own(exclude))
}

/// The newest `count` versions, newest first, for "no version matches" errors.
pub(crate) fn newest_listing<V: Ord + std::fmt::Display>(
    mut versions: Vec<V>,
    count: usize,
) -> String {
    if versions.is_empty() {
        return "none published".into();
    }
    versions.sort_unstable_by(|a, b| b.cmp(a));
    versions
        .iter()
        .take(count)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn metadata_error(
    registry: RegistryKind,
    name: &str,
    url: &str,
    reason: impl Into<String>,
) -> Error {
    Error::Metadata {
        registry: registry.display_name(),
        name: name.to_owned(),
        url: url.to_owned(),
        reason: reason.into(),
    }
}
