//! PyPI: the JSON API (`GET {base}/pypi/{name}/json`: `releases` maps each version to its files,
//! each with `packagetype`, `filename`, `url`, `digests.sha256`, `yanked` and
//! `upload_time_iso_8601`) and PEP 440 version specifiers through `pep440_rs`.
//!
//! A range is a specifier set (`>=2.30,<3`, `~=1.4`, `==2.*`) or a bare version (meaning `==`).
//! Yanked files are left out unless the range pins their version exactly (`==1.5`, as PEP 592
//! asks of installers), and prereleases and dev releases only count when a specifier names one
//! (PEP 440). Of the chosen release, the source
//! distribution is fetched (it carries docs and tests that wheels often drop), a wheel only when
//! there is none, a pure-Python wheel first.

use std::collections::BTreeMap;
use std::str::FromStr;

use pep440_rs::{Operator, Version, VersionSpecifiers};
use serde::Deserialize;

use super::{Checksum, Choice, metadata_error, newest_listing};
use crate::Error;
use crate::archive::ArchiveFormat;
use crate::spec::RegistryKind;

#[derive(Deserialize)]
struct Project {
    #[serde(default)]
    releases: BTreeMap<String, Vec<File>>,
}

#[derive(Deserialize)]
struct File {
    packagetype: String,
    filename: String,
    url: String,
    #[serde(default)]
    digests: Digests,
    #[serde(default)]
    yanked: bool,
    upload_time_iso_8601: Option<String>,
}

#[derive(Deserialize, Default)]
struct Digests {
    sha256: Option<String>,
}

/// PEP 503's normalised project name, which the JSON API is served under.
fn normalize(name: &str) -> String {
    let mut normalized = String::with_capacity(name.len());
    for c in name.chars() {
        if "-_.".contains(c) {
            if !normalized.ends_with('-') {
                normalized.push('-');
            }
        } else {
            normalized.push(c.to_ascii_lowercase());
        }
    }
    normalized
}

pub(super) fn metadata_url(base: &str, name: &str) -> String {
    format!(
        "{}/pypi/{}/json",
        base.trim_end_matches('/'),
        normalize(name)
    )
}

fn parse_specifiers(range: Option<&str>) -> Result<VersionSpecifiers, Error> {
    let Some(range) = range.map(str::trim) else {
        return Ok(VersionSpecifiers::empty());
    };
    let text = if range.starts_with(|c: char| c.is_ascii_digit()) {
        format!("=={range}")
    } else {
        range.to_owned()
    };
    VersionSpecifiers::from_str(&text).map_err(|e| Error::UnsupportedRange {
        registry: "PyPI",
        range: range.to_owned(),
        reason: format!(
            "not a PEP 440 specifier set ({e}); use forms like `2.31.0`, `>=2.30,<3`, `~=1.4` or `==2.*`"
        ),
    })
}

pub(super) fn choose(
    name: &str,
    range: Option<&str>,
    body: &[u8],
    url: &str,
) -> Result<Choice, Error> {
    let bad = |reason: String| metadata_error(RegistryKind::Pypi, name, url, reason);
    let project: Project = serde_json::from_slice(body)
        .map_err(|e| bad(format!("not a PyPI project document: {e}")))?;
    let specifiers = parse_specifiers(range)?;
    let allow_prerelease = specifiers.iter().any(|s| s.any_prerelease());
    let releases: Vec<(Version, &String, &Vec<File>)> = project
        .releases
        .iter()
        .filter_map(|(text, files)| Some((Version::from_str(text).ok()?, text, files)))
        .collect();
    // PEP 592: a yanked file is still fair game when the user pins its exact version.
    let allow_yanked = specifiers
        .iter()
        .any(|s| matches!(s.operator(), Operator::Equal | Operator::ExactEqual));
    let chosen = releases
        .iter()
        .filter(|(version, _, files)| {
            (allow_prerelease || !version.any_prerelease())
                && specifiers.contains(version)
                && pick_file(files, allow_yanked).is_some()
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .ok_or_else(|| Error::NoMatchingVersion {
            registry: "PyPI",
            name: name.to_owned(),
            range: range.unwrap_or("any").to_owned(),
            newest: newest_listing(releases.iter().map(|r| r.0.clone()).collect(), 5),
        })?;
    let (version, text, files) = chosen;
    let (file, format, strip) = pick_file(files, allow_yanked).ok_or_else(|| {
        bad(format!(
            "version {text} has no sdist (.tar.gz or .zip) or wheel"
        ))
    })?;
    let checksum = file
        .digests
        .sha256
        .as_deref()
        .and_then(Checksum::sha256_hex)
        .ok_or_else(|| bad(format!("{} has no valid `digests.sha256`", file.filename)))?;
    Ok(Choice {
        name: name.to_owned(),
        version: (*text).clone(),
        normalized_version: version.to_string(),
        url: file.url.clone(),
        checksum,
        published: file.upload_time_iso_8601.clone(),
        format,
        strip_single_root: strip,
    })
}

/// The sdist (`.tar.gz`, then `.zip`), else a wheel (pure Python first); yanked files only
/// when `allow_yanked`.
fn pick_file(files: &[File], allow_yanked: bool) -> Option<(&File, ArchiveFormat, bool)> {
    let available = || files.iter().filter(move |f| allow_yanked || !f.yanked);
    let sdist = |suffix: &str| {
        available().find(|f| f.packagetype == "sdist" && f.filename.ends_with(suffix))
    };
    let wheel = || {
        available()
            .filter(|f| f.packagetype == "bdist_wheel" && f.filename.ends_with(".whl"))
            .max_by_key(|f| f.filename.contains("-none-any"))
    };
    sdist(".tar.gz")
        .map(|f| (f, ArchiveFormat::TarGz, true))
        .or_else(|| sdist(".zip").map(|f| (f, ArchiveFormat::Zip, true)))
        .or_else(|| wheel().map(|f| (f, ArchiveFormat::Zip, false)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_normalise_as_pep_503() {
        assert_eq!(normalize("Django_REST.framework"), "django-rest-framework");
        assert_eq!(normalize("a--b__c"), "a-b-c");
    }

    #[test]
    fn bare_versions_mean_equality_and_bad_specifiers_are_explained() {
        let exact = parse_specifiers(Some("2.31.0")).unwrap();
        assert!(exact.contains(&Version::from_str("2.31.0").unwrap()));
        assert!(!exact.contains(&Version::from_str("2.31.1").unwrap()));
        let error = parse_specifiers(Some(">>2")).unwrap_err().to_string();
        assert!(error.contains("PEP 440"), "{error}");
    }
}
