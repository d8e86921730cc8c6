//! Package sources for the knowledge base: git repositories and npm, PyPI and crates.io packages,
//! turned into a directory of files on local disk plus their provenance (resolved version,
//! checksum, commit).
//!
//! The crate stops at the file tree on purpose: the knowledge base's local indexer already walks
//! directories with include/exclude rules, incremental hashing and pruning, so a package or a
//! repository only has to become a directory for all of that to apply. Network access goes
//! through the [`Fetcher`] trait so that the caller decides which addresses may be reached; git
//! remotes expose their host ([`GitSpec::host`]) for the same check.
//!
//! One fetch per destination at a time: the caller serialises fetches of the same source (a
//! second git fetch into one cache meets git's own locks; a second unpack of one package version
//! clears the first one's partial tree).
//!
//! - [`spec`]: parsing and display of `npm:NAME@RANGE`, `pypi:…`, `crate:…` and git sources.
//! - [`registry`]: version resolution from each registry's API, verified download, unpacking.
//! - [`git`]: shallow fetches of remote or local repositories at a ref, with the changed paths.
//! - [`archive`]: bounded, path-safe unpacking of tar.gz and zip archives.

pub mod archive;
mod error;
pub mod fetcher;
pub mod git;
pub mod registry;
pub mod spec;

pub use archive::UnpackLimits;
pub use error::Error;
pub use fetcher::{FetchError, Fetcher, ReqwestFetcher};
pub use git::{Change, ChangeKind, GitCheckout, GitConfig, fetch_git};
pub use registry::{FetchedPackage, Registries, RegistryConfig, Resolved};
pub use spec::{GitLocation, GitSpec, PackageSpec, RegistryKind, SourceSpec};
