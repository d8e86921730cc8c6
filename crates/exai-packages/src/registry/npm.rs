//! npm: the packument (`GET {registry}/{name}`: `versions`, `dist-tags`, `time`, and per version
//! `dist.tarball` with `dist.integrity` or the legacy `dist.shasum`) and npm's range syntax.
//!
//! Ranges accepted ([`NpmRange::parse`]): exact versions (`1.2.3`, `v1.2.3`, `=1.2.3`), partial
//! versions and X-ranges (`1`, `1.2`, `1.x`, `1.2.*`, `*`, `x`), comparators (`>=1.2 <2`,
//! `>1`, `<=2.0.0`), caret and tilde (`^1.2`, `~1.2.3`), hyphen ranges (`1.2 - 2.3.4`), unions
//! with `||`, and dist-tags (`latest`, `next`, …). Refused with a message: aliases (`npm:…`),
//! URLs, git, `file:`, `link:` and `workspace:` specifiers, which name no registry version.
//!
//! Like npm, an unqualified request takes the `latest` dist-tag, and a range that the `latest`
//! version satisfies resolves to it even when a newer matching version exists.

use std::collections::{BTreeMap, HashMap};

use semver::{Version, VersionReq};
use serde::Deserialize;

use super::{Checksum, Choice, metadata_error, newest_listing};
use crate::Error;
use crate::archive::ArchiveFormat;
use crate::spec::RegistryKind;

#[derive(Deserialize)]
struct Packument {
    #[serde(default)]
    versions: BTreeMap<String, Manifest>,
    #[serde(default, rename = "dist-tags")]
    dist_tags: HashMap<String, String>,
    #[serde(default)]
    time: HashMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct Manifest {
    dist: Dist,
}

#[derive(Deserialize)]
struct Dist {
    tarball: String,
    integrity: Option<String>,
    shasum: Option<String>,
}

/// A parsed npm range: a dist-tag, or a union of semver requirements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NpmRange {
    Tag(String),
    AnyOf(Vec<VersionReq>),
}

impl NpmRange {
    /// Parses npm's range syntax into `semver` requirements (see the module header).
    pub fn parse(range: &str) -> Result<Self, Error> {
        let range = range.trim();
        let unsupported = |reason: &str| Error::UnsupportedRange {
            registry: "npm",
            range: range.to_owned(),
            reason: reason.to_owned(),
        };
        if [
            "npm:",
            "file:",
            "link:",
            "workspace:",
            "git",
            "http:",
            "https:",
            "github:",
        ]
        .iter()
        .any(|prefix| range.starts_with(prefix))
            || range.contains('/')
        {
            return Err(unsupported(
                "aliases, URLs, git, file, link and workspace specifiers name no registry version; \
                 give a version, a range such as `^1.2` or `>=1 <2`, or a dist-tag such as `latest`",
            ));
        }
        if is_dist_tag(range) {
            return Ok(Self::Tag(range.to_owned()));
        }
        range
            .split("||")
            .map(|alternative| {
                let translated = translate_alternative(alternative);
                VersionReq::parse(&translated).map_err(|e| {
                    unsupported(&format!(
                        "`{}` is not a range npm and exai both understand ({e}); use forms like \
                         `1.2.3`, `^1.2`, `~1.2`, `1.x`, `>=1 <2`, `1 - 2` or a dist-tag",
                        alternative.trim()
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self::AnyOf)
    }

    fn matches(&self, version: &Version) -> bool {
        match self {
            Self::Tag(_) => false,
            Self::AnyOf(requirements) => requirements.iter().any(|req| req.matches(version)),
        }
    }
}

/// A dist-tag is a name that is not a version: it does not start with a digit, an operator or
/// `v` followed by a digit, and is not an X-range.
fn is_dist_tag(range: &str) -> bool {
    let mut chars = range.chars();
    let starts_like_version = match chars.next() {
        Some('v') => chars.next().is_some_and(|c| c.is_ascii_digit()),
        Some(c) => !c.is_ascii_alphabetic(),
        None => true,
    };
    !starts_like_version
        && !matches!(range, "x" | "X")
        && range
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
}

/// Turns one `||` alternative into a comma-separated `semver` requirement: npm's space-joined
/// comparators become commas, hyphen ranges become two bounds, and a bare version becomes `=`
/// (npm's `1.2.3` is exact, `semver`'s would be a caret).
fn translate_alternative(alternative: &str) -> String {
    let tokens = join_operators(alternative.replace(',', " ").split_whitespace());
    if tokens.is_empty() {
        return "*".into();
    }
    if let [low, dash, high] = tokens.as_slice()
        && dash == "-"
    {
        return format!(">={}, {}", strip_v(low), hyphen_upper(strip_v(high)));
    }
    tokens
        .iter()
        .map(|token| translate_comparator(token))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Joins an operator written apart from its version (`>= 1.2`) to the version.
fn join_operators<'a>(tokens: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut joined: Vec<String> = Vec::new();
    for token in tokens {
        match joined.last_mut() {
            Some(last) if is_operator(last) => last.push_str(token),
            _ => joined.push(token.to_owned()),
        }
    }
    joined
}

fn is_operator(token: &str) -> bool {
    matches!(token, "<" | "<=" | ">" | ">=" | "=" | "~" | "^" | "~>")
}

fn translate_comparator(token: &str) -> String {
    let split = token
        .find(|c: char| !"<>=~^".contains(c))
        .unwrap_or(token.len());
    let (operator, version) = token.split_at(split);
    let version = strip_v(version);
    match operator {
        "" if matches!(version, "*" | "x" | "X" | "") => "*".into(),
        "" | "=" => format!("={version}"),
        "~>" => format!("~{version}"),
        _ => format!("{operator}{version}"),
    }
}

fn strip_v(version: &str) -> &str {
    version
        .strip_prefix(['v', 'V'])
        .filter(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        .unwrap_or(version)
}

/// The upper bound of a hyphen range: a full version is inclusive, a partial one covers its
/// whole minor or major (`1 - 2.3` means `< 2.4.0`).
fn hyphen_upper(high: &str) -> String {
    let parts: Vec<&str> = high.split('.').collect();
    let number = |i: usize| parts.get(i).and_then(|p| p.parse::<u64>().ok());
    match (parts.len(), number(0), number(1)) {
        (1, Some(major), _) => format!("<{}.0.0", major + 1),
        (2, Some(major), Some(minor)) => format!("<{major}.{}.0", minor + 1),
        _ => format!("<={high}"),
    }
}

pub(super) fn metadata_url(base: &str, name: &str) -> String {
    // Scoped names keep their `@` and escape the slash, as the npm client does.
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        name.replace('/', "%2F")
    )
}

pub(super) fn choose(
    name: &str,
    range: Option<&str>,
    body: &[u8],
    url: &str,
) -> Result<Choice, Error> {
    let bad = |reason: String| metadata_error(RegistryKind::Npm, name, url, reason);
    let packument: Packument =
        serde_json::from_slice(body).map_err(|e| bad(format!("not a packument: {e}")))?;
    let range = NpmRange::parse(range.unwrap_or("latest"))?;
    let versions: Vec<Version> = packument
        .versions
        .keys()
        .filter_map(|v| Version::parse(v).ok())
        .collect();
    let version = pick(&packument, &range, &versions).ok_or_else(|| Error::NoMatchingVersion {
        registry: "npm",
        name: name.to_owned(),
        range: range_text(&range),
        newest: newest_listing(versions.clone(), 5),
    })?;
    let text = version.to_string();
    // `semver` accepts only canonical spellings, so a parsed key displays as itself.
    let manifest = packument
        .versions
        .get(&text)
        .ok_or_else(|| bad(format!("version {text} has no manifest")))?;
    let checksum = checksum_of(&manifest.dist).ok_or_else(|| {
        bad(format!(
            "version {text} has neither `dist.integrity` nor `dist.shasum`"
        ))
    })?;
    Ok(Choice {
        name: name.to_owned(),
        version: text.clone(),
        normalized_version: text.clone(),
        url: manifest.dist.tarball.clone(),
        checksum,
        published: packument
            .time
            .get(&text)
            .and_then(|t| t.as_str())
            .map(str::to_owned),
        format: ArchiveFormat::TarGz,
        strip_single_root: true,
    })
}

fn range_text(range: &NpmRange) -> String {
    match range {
        NpmRange::Tag(tag) => format!("dist-tag {tag}"),
        NpmRange::AnyOf(reqs) => reqs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" || "),
    }
}

/// The version a range resolves to: a dist-tag's target, else `latest` when it satisfies the
/// range, else the newest matching version (prereleases only where the range names one).
fn pick(packument: &Packument, range: &NpmRange, versions: &[Version]) -> Option<Version> {
    let tagged = |tag: &str| {
        packument
            .dist_tags
            .get(tag)
            .and_then(|v| Version::parse(v).ok())
    };
    if let NpmRange::Tag(tag) = range {
        return tagged(tag).filter(|v| versions.contains(v));
    }
    if let Some(latest) = tagged("latest").filter(|v| versions.contains(v) && range.matches(v)) {
        return Some(latest);
    }
    versions.iter().filter(|v| range.matches(v)).max().cloned()
}

fn checksum_of(dist: &Dist) -> Option<Checksum> {
    dist.integrity
        .as_deref()
        .and_then(Checksum::from_integrity)
        .or_else(|| dist.shasum.as_deref().and_then(Checksum::sha1_hex))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reqs(range: &str) -> Vec<String> {
        match NpmRange::parse(range).unwrap() {
            NpmRange::AnyOf(reqs) => reqs.iter().map(ToString::to_string).collect(),
            NpmRange::Tag(tag) => vec![format!("tag:{tag}")],
        }
    }

    fn matches(range: &str, version: &str) -> bool {
        NpmRange::parse(range)
            .unwrap()
            .matches(&Version::parse(version).unwrap())
    }

    #[test]
    fn npm_ranges_translate_to_semver_requirements() {
        assert_eq!(reqs("1.2.3"), ["=1.2.3"]);
        assert_eq!(reqs("v1.2.3"), ["=1.2.3"]);
        assert_eq!(reqs(">=1 <2"), [">=1, <2"]);
        assert_eq!(reqs(">= 1.2, < 2"), [">=1.2, <2"]);
        assert_eq!(reqs("^1.2 || ~2.1"), ["^1.2", "~2.1"]);
        assert_eq!(reqs("latest"), ["tag:latest"]);
        assert_eq!(reqs("next"), ["tag:next"]);
        assert_eq!(reqs("*"), ["*"]);
        assert_eq!(reqs("x"), ["*"]);
    }

    #[test]
    fn npm_range_semantics_match_npm() {
        assert!(matches("1.x", "1.9.0") && !matches("1.x", "2.0.0"));
        assert!(matches("1.2", "1.2.9") && !matches("1.2", "1.3.0"));
        assert!(matches("1.2.3", "1.2.3") && !matches("1.2.3", "1.2.4"));
        assert!(matches("^1.2", "1.9.0") && !matches("^1.2", "2.0.0"));
        assert!(matches(">=1 <2", "1.5.0") && !matches(">=1 <2", "2.0.0"));
        assert!(matches("1 - 2.3", "2.3.9") && !matches("1 - 2.3", "2.4.0"));
        assert!(matches("1.0.0 - 2.0.0", "2.0.0") && !matches("1.0.0 - 2.0.0", "2.0.1"));
        assert!(matches("<1 || >=3", "3.1.0") && !matches("<1 || >=3", "2.0.0"));
        assert!(!matches("^1", "1.5.0-beta.1"));
        assert!(matches("^1.5.0-beta.0", "1.5.0-beta.1"));
    }

    #[test]
    fn unsupported_npm_specifiers_are_explained() {
        for range in [
            "npm:other@1",
            "file:../x",
            "github:o/r",
            "workspace:*",
            ">=1 <<2",
        ] {
            let error = NpmRange::parse(range).unwrap_err().to_string();
            assert!(
                error.contains("unsupported version range"),
                "{range}: {error}"
            );
        }
    }
}
