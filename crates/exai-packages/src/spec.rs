//! Source specs: the text a user writes to name a package or a git repository, parsed once into
//! typed values (and displayed back in the same form).
//!
//! Accepted forms:
//! - `npm:NAME[@RANGE]` (scoped: `npm:@scope/name@^1`), `pypi:NAME[@SPECIFIERS]`
//!   (`pypi:requests@>=2.30,<3`), `crate:NAME[@REQUIREMENT]`; without a range the newest
//!   non-prerelease, non-yanked version is taken.
//! - git: `git+URL[#REF]`, any `https://`, `http://`, `ssh://` or `git://` URL whose path ends in
//!   `.git`, `git+file:///path[#REF]`, and a local path to a repository (`/path/to/repo[#REF]`).
//!   REF is a branch, a tag or a commit; without it the remote's default branch (a local
//!   repository's checked-out commit) is taken.
//!
//! Names and refs are checked here, strictly, because they end up in URLs, directory names and
//! git's command line: nothing that could be read as an option or a path step gets through.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;

const EXPECTED: &str = "Expected `npm:NAME[@RANGE]`, `pypi:NAME[@SPECIFIERS]`, \
    `crate:NAME[@REQUIREMENT]`, `git+https://host/repo.git[#REF]`, a URL ending in `.git`, \
    `git+file:///path/to/repo[#REF]` or a local repository path `/path/to/repo[#REF]`";

/// The package registries a spec can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegistryKind {
    Npm,
    Pypi,
    Crates,
}

impl RegistryKind {
    /// The prefix used in specs (`npm`, `pypi`, `crate`).
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Npm => "npm",
            Self::Pypi => "pypi",
            Self::Crates => "crate",
        }
    }

    /// The registry's name in messages.
    pub fn display_name(self) -> &'static str {
        match self {
            Self::Npm => "npm",
            Self::Pypi => "PyPI",
            Self::Crates => "crates.io",
        }
    }
}

/// A package in a registry, with an optional version range in the registry's own syntax.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageSpec {
    pub registry: RegistryKind,
    pub name: String,
    pub range: Option<String>,
}

/// Where a git repository lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GitLocation {
    /// A remote URL (`https`, `http`, `ssh` or `git` scheme), as written without `git+`.
    Remote(String),
    /// A repository on this machine (from a path or a `file://` URL).
    Local(PathBuf),
}

/// A git repository at an optional ref (branch, tag or commit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitSpec {
    pub location: GitLocation,
    pub reference: Option<String>,
}

impl GitSpec {
    /// The host of a remote repository, for the caller's address policy; `None` when local.
    pub fn host(&self) -> Option<String> {
        match &self.location {
            GitLocation::Remote(url) => reqwest::Url::parse(url)
                .ok()
                .and_then(|url| url.host_str().map(str::to_owned)),
            GitLocation::Local(_) => None,
        }
    }
}

/// Any source this crate can fetch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SourceSpec {
    Package(PackageSpec),
    Git(GitSpec),
}

impl SourceSpec {
    /// Parses `text` if it is a package or git spec; `Ok(None)` when it is neither (a plain
    /// directory or a web address, which other parts of exai handle), an error when it is meant
    /// as one (a registry prefix, `git+`, a `.git` URL, a `#REF` on a path) but malformed.
    pub fn classify(text: &str) -> Result<Option<Self>, Error> {
        let text = text.trim();
        for kind in [RegistryKind::Npm, RegistryKind::Pypi, RegistryKind::Crates] {
            if let Some(rest) = text
                .strip_prefix(kind.prefix())
                .and_then(|r| r.strip_prefix(':'))
            {
                return parse_package(text, kind, rest).map(|p| Some(Self::Package(p)));
            }
        }
        if let Some(rest) = text.strip_prefix("git+") {
            return parse_git_url(text, rest).map(|g| Some(Self::Git(g)));
        }
        if has_url_scheme(text) {
            let (url, _) = split_ref(text);
            if url.contains("::") {
                return Err(invalid(
                    text,
                    "git remote helpers (`transport::address`) are refused",
                ));
            }
            return if url.trim_end_matches('/').ends_with(".git") {
                parse_git_url(text, text).map(|g| Some(Self::Git(g)))
            } else {
                Ok(None)
            };
        }
        if is_scp_style(text) {
            return Err(invalid(
                text,
                "scp-style git addresses are not supported; write it as `ssh://USER@HOST/PATH.git`",
            ));
        }
        parse_local_path(text)
    }
}

/// `git@host:owner/repo.git`, git's shorthand for ssh.
fn is_scp_style(text: &str) -> bool {
    let (address, _) = split_ref(text);
    address.split_once(':').is_some_and(|(host, path)| {
        !host.is_empty() && !host.contains('/') && path.trim_end_matches('/').ends_with(".git")
    })
}

impl FromStr for SourceSpec {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        Self::classify(text)?
            .ok_or_else(|| invalid(text, "this is neither a package nor a git repository"))
    }
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Package(package) => package.fmt(f),
            Self::Git(git) => git.fmt(f),
        }
    }
}

impl fmt::Display for PackageSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.registry.prefix(), self.name)?;
        match &self.range {
            Some(range) => write!(f, "@{range}"),
            None => Ok(()),
        }
    }
}

impl fmt::Display for GitSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            GitLocation::Remote(url) if url.trim_end_matches('/').ends_with(".git") => {
                write!(f, "{url}")?
            }
            GitLocation::Remote(url) => write!(f, "git+{url}")?,
            GitLocation::Local(path) => write!(f, "git+file://{}", path.display())?,
        }
        match &self.reference {
            Some(reference) => write!(f, "#{reference}"),
            None => Ok(()),
        }
    }
}

fn invalid(spec: &str, reason: impl Into<String>) -> Error {
    Error::InvalidSpec {
        spec: spec.to_owned(),
        reason: reason.into(),
        expected: EXPECTED,
    }
}

fn parse_package(spec: &str, registry: RegistryKind, rest: &str) -> Result<PackageSpec, Error> {
    // A scoped npm name starts with `@`, so the version separator is the first `@` after it.
    let search_from = usize::from(registry == RegistryKind::Npm && rest.starts_with('@'));
    let (name, range) = match rest[search_from..].find('@') {
        Some(at) => {
            let at = at + search_from;
            (&rest[..at], Some(rest[at + 1..].trim()))
        }
        None => (rest, None),
    };
    check_package_name(spec, registry, name)?;
    let range = match range {
        Some("") => return Err(invalid(spec, "the version range after `@` is empty")),
        Some(range) if range.chars().any(char::is_control) => {
            return Err(invalid(spec, "the version range holds control characters"));
        }
        other => other.map(str::to_owned),
    };
    Ok(PackageSpec {
        registry,
        name: name.to_owned(),
        range,
    })
}

fn check_package_name(spec: &str, registry: RegistryKind, name: &str) -> Result<(), Error> {
    if name.is_empty() {
        return Err(invalid(spec, "the package name is empty"));
    }
    if name.len() > 214 {
        return Err(invalid(
            spec,
            "the package name is longer than 214 characters",
        ));
    }
    let plain = |part: &str, extra: &[char]| {
        !part.is_empty()
            && part.starts_with(|c: char| c.is_ascii_alphanumeric())
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || extra.contains(&c))
    };
    let valid = match registry {
        RegistryKind::Npm => match name.strip_prefix('@') {
            Some(scoped) => scoped.split_once('/').is_some_and(|(scope, base)| {
                plain(scope, &['-', '.', '_', '~']) && plain(base, &['-', '.', '_', '~'])
            }),
            None => plain(name, &['-', '.', '_', '~']),
        },
        RegistryKind::Pypi => plain(name, &['-', '.', '_']),
        RegistryKind::Crates => plain(name, &['-', '_']),
    };
    if valid {
        Ok(())
    } else {
        Err(invalid(
            spec,
            format!(
                "`{name}` is not a valid {} package name (letters, digits and `-._`{})",
                registry.display_name(),
                if registry == RegistryKind::Npm {
                    ", scoped as `@scope/name`"
                } else {
                    ""
                }
            ),
        ))
    }
}

fn has_url_scheme(text: &str) -> bool {
    text.split_once("://").is_some_and(|(scheme, _)| {
        !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    }) || text.contains("::")
}

/// Splits `URL#REF` at the last `#`.
fn split_ref(text: &str) -> (&str, Option<&str>) {
    match text.rsplit_once('#') {
        Some((url, reference)) => (url, Some(reference)),
        None => (text, None),
    }
}

fn parse_git_url(spec: &str, url_and_ref: &str) -> Result<GitSpec, Error> {
    let (url, reference) = split_ref(url_and_ref);
    let reference = parse_ref(spec, reference)?;
    if url.contains("::") {
        return Err(invalid(
            spec,
            "git remote helpers (`transport::address`) are refused",
        ));
    }
    if let Some(path) = url.strip_prefix("file://") {
        let path = Path::new(path);
        if !path.is_absolute() {
            return Err(invalid(
                spec,
                "a `file://` URL needs an absolute path (`file:///path`)",
            ));
        }
        return Ok(GitSpec {
            location: GitLocation::Local(path.to_path_buf()),
            reference,
        });
    }
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| invalid(spec, format!("`{url}` is not a valid URL ({e})")))?;
    if !matches!(parsed.scheme(), "https" | "http" | "ssh" | "git") {
        return Err(invalid(
            spec,
            format!(
                "git over `{}` is not supported (use https, http, ssh, git or file)",
                parsed.scheme()
            ),
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid(spec, "the URL has no host"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            spec,
            "the URL holds whitespace or control characters",
        ));
    }
    Ok(GitSpec {
        location: GitLocation::Remote(url.to_owned()),
        reference,
    })
}

fn parse_local_path(text: &str) -> Result<Option<SourceSpec>, Error> {
    let (path, reference) = split_ref(text);
    let path = Path::new(path);
    let is_repository = path.join(".git").exists() || is_bare_repository(path);
    match (is_repository, reference) {
        (false, None) => Ok(None),
        (false, Some(_)) => Err(Error::NotARepository {
            path: path.to_path_buf(),
        }),
        (true, reference) => {
            let reference = parse_ref(text, reference)?;
            let path = std::path::absolute(path)
                .map_err(|e| Error::io(format!("resolving {}", path.display()), e))?;
            Ok(Some(SourceSpec::Git(GitSpec {
                location: GitLocation::Local(path),
                reference,
            })))
        }
    }
}

fn is_bare_repository(path: &Path) -> bool {
    path.join("HEAD").is_file() && path.join("objects").is_dir() && path.join("refs").is_dir()
}

/// Checks a branch, tag or commit name against git's ref-name rules (enough of them that the
/// name can never be read as an option, a revision expression or a path outside `refs/`).
fn parse_ref(spec: &str, reference: Option<&str>) -> Result<Option<String>, Error> {
    let Some(reference) = reference else {
        return Ok(None);
    };
    let problem = if reference.is_empty() {
        Some("the ref after `#` is empty")
    } else if reference.starts_with('-') {
        Some("a ref cannot start with `-`")
    } else if reference.contains("..") || reference.contains("@{") || reference.contains("//") {
        Some("a ref cannot contain `..`, `@{` or `//`")
    } else if reference.starts_with('/') || reference.ends_with('/') || reference.ends_with(".lock")
    {
        Some("a ref cannot start or end with `/` or end with `.lock`")
    } else if reference
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "~^:?*[\\".contains(c))
    {
        Some("a ref cannot contain spaces, control characters or any of ~ ^ : ? * [ \\")
    } else {
        None
    };
    match problem {
        Some(reason) => Err(invalid(spec, reason)),
        None => Ok(Some(reference.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(text: &str) -> PackageSpec {
        match text.parse::<SourceSpec>() {
            Ok(SourceSpec::Package(p)) => p,
            other => panic!("{text}: {other:?}"),
        }
    }

    fn git(text: &str) -> GitSpec {
        match text.parse::<SourceSpec>() {
            Ok(SourceSpec::Git(g)) => g,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn registry_specs_parse_and_display_back() {
        for text in [
            "npm:react",
            "npm:react@^18.2",
            "npm:@types/node@>=20 <21",
            "npm:@scope/name",
            "pypi:requests@>=2.30,<3",
            "crate:serde@1",
            "crate:tokio-util",
        ] {
            assert_eq!(package(text).to_string(), text);
        }
        let scoped = package("npm:@scope/name@^1");
        assert_eq!(scoped.name, "@scope/name");
        assert_eq!(scoped.range.as_deref(), Some("^1"));
        let pypi = package("pypi:requests@>=2.30,<3");
        assert_eq!(
            (pypi.registry, pypi.name.as_str()),
            (RegistryKind::Pypi, "requests")
        );
        assert_eq!(pypi.range.as_deref(), Some(">=2.30,<3"));
        assert_eq!(package("crate:serde").range, None);
    }

    #[test]
    fn malformed_registry_specs_say_what_is_valid() {
        for text in [
            "npm:",
            "npm:react@",
            "npm:@scope",
            "npm:../etc",
            "npm:a/b",
            "crate:serde.json",
            "pypi:req uests",
            "crate:-x",
        ] {
            let error = text.parse::<SourceSpec>().expect_err(text).to_string();
            assert!(
                error.contains("Expected `npm:NAME[@RANGE]`"),
                "{text}: {error}"
            );
        }
    }

    #[test]
    fn git_urls_parse_with_refs_and_hosts() {
        let spec = git("git+https://example.org/team/repo.git#v1.0");
        assert_eq!(
            spec.location,
            GitLocation::Remote("https://example.org/team/repo.git".into())
        );
        assert_eq!(spec.reference.as_deref(), Some("v1.0"));
        assert_eq!(spec.host().as_deref(), Some("example.org"));
        assert_eq!(spec.to_string(), "https://example.org/team/repo.git#v1.0");

        let plain = git("https://github.com/o/r.git");
        assert_eq!(plain.reference, None);
        assert_eq!(plain.host().as_deref(), Some("github.com"));

        let no_suffix = git("git+https://example.org/o/r#main");
        assert_eq!(no_suffix.to_string(), "git+https://example.org/o/r#main");
        assert_eq!(git(&no_suffix.to_string()), no_suffix);

        let file = git("git+file:///srv/repo#abc123");
        assert_eq!(file.location, GitLocation::Local("/srv/repo".into()));
        assert_eq!(file.host(), None);
        assert_eq!(git(&file.to_string()), file);
    }

    #[test]
    fn web_addresses_and_plain_directories_are_not_ours() {
        assert!(matches!(
            SourceSpec::classify("https://docs.rs/serde"),
            Ok(None)
        ));
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let text = dir.path().display().to_string();
        assert!(matches!(SourceSpec::classify(&text), Ok(None)));
        assert!(matches!(
            SourceSpec::classify(&format!("{text}#main")),
            Err(Error::NotARepository { .. })
        ));
        std::fs::create_dir(dir.path().join(".git")).unwrap_or_else(|e| panic!("{e}"));
        let spec = git(&format!("{text}#main"));
        assert_eq!(spec.location, GitLocation::Local(dir.path().to_path_buf()));
    }

    #[test]
    fn dangerous_git_specs_are_refused() {
        for text in [
            "ext::sh -c touch% /tmp/pwned",
            "git+ext::sh -c x",
            "git+https://example.org/r.git#--upload-pack=x",
            "git+https://example.org/r.git#a..b",
            "git+https://example.org/r.git#HEAD~1",
            "git+ftp://example.org/r.git",
            "git+file://relative/r",
            "fd::17/r.git",
            "git@github.com:o/r.git",
        ] {
            let error = text.parse::<SourceSpec>().expect_err(text).to_string();
            assert!(error.contains("Expected"), "{text}: {error}");
        }
    }
}
