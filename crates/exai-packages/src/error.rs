//! The crate's one error type: every variant names what failed and, where the user can act, how.

use std::path::PathBuf;
use std::time::Duration;

/// Errors from parsing specs, resolving versions, downloading, unpacking and running git.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid source `{spec}`: {reason}. {expected}")]
    InvalidSpec {
        spec: String,
        reason: String,
        expected: &'static str,
    },
    #[error("unsupported version range `{range}` for {registry}: {reason}")]
    UnsupportedRange {
        registry: &'static str,
        range: String,
        reason: String,
    },
    #[error("{registry} has no package named `{name}` ({url})")]
    PackageNotFound {
        registry: &'static str,
        name: String,
        url: String,
    },
    #[error(
        "{registry} package `{name}`: no version matches `{range}` (yanked and prerelease versions \
         are left out unless the range names one); newest versions: {newest}"
    )]
    NoMatchingVersion {
        registry: &'static str,
        name: String,
        range: String,
        newest: String,
    },
    #[error(
        "{registry} metadata for `{name}` ({url}) is not what the registry API returns: {reason}"
    )]
    Metadata {
        registry: &'static str,
        name: String,
        url: String,
        reason: String,
    },
    #[error("downloading {url} failed: {reason}")]
    Fetch { url: String, reason: String },
    #[error(
        "checksum mismatch for {url}: the registry says {expected}, the download is {actual}; \
         the file was refused (retry later, or report it to the registry if it persists)"
    )]
    ChecksumMismatch {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("refusing archive {archive}: {reason}")]
    UnsafeArchive { archive: String, reason: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the `git` program was not found on PATH ({reason}); install git (e.g. `apt-get install \
         git`) or set PATH so that it can be found"
    )]
    GitMissing { reason: String },
    #[error(
        "`{command}` did not finish within {timeout:?} and was stopped (a slow or unreachable \
         server, or a very large repository: raise the git timeout if it is genuine)"
    )]
    GitTimeout { command: String, timeout: Duration },
    #[error(
        "ref `{reference}` was not found in {repository}; give a branch, tag or commit that \
         exists there (list them with `git ls-remote {repository}`). git said: {detail}"
    )]
    RefNotFound {
        reference: String,
        repository: String,
        detail: String,
    },
    #[error("`{command}` failed: {detail}")]
    Git { command: String, detail: String },
    #[error("{path} is not a git repository (no .git directory, and not a bare repository)")]
    NotARepository { path: PathBuf },
}

impl Error {
    /// Whether trying again later may succeed (network trouble, a deadline, a corrupted
    /// download); spec, range, metadata and archive errors will fail the same way again.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Fetch { .. } | Self::GitTimeout { .. } | Self::ChecksumMismatch { .. }
        )
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}
