//! Versions of a library side by side: a source named `NAME@VERSION` (`react@18.2.0`,
//! `serde@1.0.210`, `mylib@v2.0`) is one version of the library `NAME`. A search, or a lookup
//! by library name, picks the version asked for (exact, or a semver range such as `^18` or
//! `>=1.2, <2`) or by default the newest.
//!
//! "Newest" orders by semantic version where the version reads as one (a leading `v` and missing
//! minor/patch parts are tolerated: `v2`, `1.4`); versions that do not read as one (a commit,
//! a branch) come after every semantic version, newest indexed first.

use serde::Serialize;

use crate::error::{KbError, Result};

/// A source name split into its library and version: `react@18.2.0` → (`react`, `18.2.0`). The
/// `@` opening a scoped name (`@types/node`) is part of the name, not a separator.
pub fn split(source: &str) -> (&str, Option<&str>) {
    match source.rfind('@') {
        Some(at) if at > 0 && at + 1 < source.len() => (&source[..at], Some(&source[at + 1..])),
        _ => (source, None),
    }
}

/// A version string read as a semantic version, leniently: `v1.2.3`, `1.2`, `1`, `2.0.0-rc.1`.
pub fn semantic(version: &str) -> Option<semver::Version> {
    let v = version.trim();
    let v = v.strip_prefix(['v', 'V']).unwrap_or(v);
    if let Ok(parsed) = semver::Version::parse(v) {
        return Some(parsed);
    }
    // Pad a short core (`1.4` → `1.4.0`), keeping any pre-release or build suffix.
    let split_at = v.find(['-', '+']).unwrap_or(v.len());
    let (core, rest) = v.split_at(split_at);
    let parts = core.split('.').count();
    if parts == 0 || parts > 2 || !core.split('.').all(|p| p.parse::<u64>().is_ok()) {
        return None;
    }
    let padded = format!("{core}{}{rest}", ".0".repeat(3 - parts));
    semver::Version::parse(&padded).ok()
}

/// One library's indexed versions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Library {
    pub name: String,
    /// Newest first (see the module documentation for the order).
    pub versions: Vec<String>,
    /// Whether a source of this name without a version exists too.
    pub unversioned: bool,
}

/// Every library among `sources` (name, last update), each with its versions newest first.
pub fn libraries(sources: &[(String, String)]) -> Vec<Library> {
    // Library name → ((version, last update) pairs, whether an unversioned source exists).
    type Versions<'a> = (Vec<(&'a str, &'a str)>, bool);
    let mut by_name: std::collections::BTreeMap<&str, Versions<'_>> = Default::default();
    for (source, updated) in sources {
        let (name, version) = split(source);
        let entry = by_name.entry(name).or_default();
        match version {
            Some(v) => entry.0.push((v, updated.as_str())),
            None => entry.1 = true,
        }
    }
    by_name
        .into_iter()
        .map(|(name, (mut versions, unversioned))| {
            versions.sort_by(newest_first);
            Library {
                name: name.to_string(),
                versions: versions.into_iter().map(|(v, _)| v.to_string()).collect(),
                unversioned,
            }
        })
        .collect()
}

/// Order of two (version, last update) pairs, newest first.
fn newest_first(a: &(&str, &str), b: &(&str, &str)) -> std::cmp::Ordering {
    match (semantic(a.0), semantic(b.0)) {
        (Some(x), Some(y)) => y.cmp(&x),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => b.1.cmp(a.1),
    }
}

/// What a library name and an optional version resolve to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resolved {
    /// The source to search.
    pub source: String,
    pub library: String,
    pub version: Option<String>,
    /// Every indexed version of the library, newest first.
    pub versions: Vec<String>,
    /// How the version was chosen: `exact`, `range`, `newest` or `unversioned`.
    pub chosen_by: &'static str,
}

/// Resolve `wanted` (a source name, a library name, or `NAME@RANGE`) and an optional version
/// or range against the indexed `sources` (name, last update).
pub fn resolve(
    sources: &[(String, String)],
    wanted: &str,
    version: Option<&str>,
) -> Result<Resolved> {
    let version = version.map(str::trim).filter(|v| !v.is_empty());
    if version.is_none() && sources.iter().any(|(s, _)| s == wanted) {
        let (library, v) = split(wanted);
        let versions = library_versions(sources, library);
        return Ok(Resolved {
            source: wanted.to_string(),
            library: library.to_string(),
            version: v.map(str::to_string),
            versions,
            chosen_by: if v.is_some() { "exact" } else { "unversioned" },
        });
    }
    let (library, inline) = match split(wanted) {
        (lib, Some(v)) if version.is_none() => (lib, Some(v)),
        (lib, Some(_)) => {
            return Err(KbError::Invalid(format!(
                "`{wanted}` names a version and `version` gives another; give one of them (e.g. source `{lib}` and version `{}`)",
                version.unwrap_or_default()
            )));
        }
        (lib, None) => (lib, version),
    };
    let versions = library_versions(sources, library);
    if versions.is_empty() {
        let names: Vec<String> = libraries(sources).into_iter().map(|l| l.name).collect();
        return Err(KbError::UnknownValue {
            kind: "library",
            value: library.to_string(),
            hint: crate::closest(library, &names),
            valid: names,
        });
    }
    let (version, chosen_by) = match inline {
        None => (versions[0].clone(), "newest"),
        Some(asked) => pick(&versions, library, asked)?,
    };
    Ok(Resolved {
        source: format!("{library}@{version}"),
        library: library.to_string(),
        version: Some(version),
        versions,
        chosen_by,
    })
}

fn library_versions(sources: &[(String, String)], library: &str) -> Vec<String> {
    libraries(sources)
        .into_iter()
        .find(|l| l.name == library)
        .map(|l| l.versions)
        .unwrap_or_default()
}

/// The version `asked` names among `versions` (newest first): an exact match (with or without a
/// leading `v`), else the newest that a semver requirement accepts.
fn pick(versions: &[String], library: &str, asked: &str) -> Result<(String, &'static str)> {
    let bare = |v: &str| v.trim_start_matches(['v', 'V']).to_string();
    if let Some(v) = versions
        .iter()
        .find(|v| *v == asked || bare(v) == bare(asked))
    {
        return Ok((v.clone(), "exact"));
    }
    let listed = versions.join(", ");
    let req = semver::VersionReq::parse(asked.trim_start_matches(['v', 'V'])).map_err(|e| {
        KbError::Invalid(format!(
            "version `{asked}` of `{library}` is neither an indexed version nor a semver range ({e}); indexed: {listed}"
        ))
    })?;
    versions
        .iter()
        .find(|v| semantic(v).is_some_and(|s| req.matches(&s)))
        .map(|v| (v.clone(), "range"))
        .ok_or_else(|| {
            KbError::NotFound(format!(
                "no indexed version of `{library}` matches `{asked}`; indexed: {listed} (index another with `exai index npm:{library}@{asked}` or the like)"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(names: &[&str]) -> Vec<(String, String)> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.to_string(), format!("2026-01-0{}", i + 1)))
            .collect()
    }

    #[test]
    fn splits_at_the_last_at_but_not_a_scope() {
        assert_eq!(split("react@18.2.0"), ("react", Some("18.2.0")));
        assert_eq!(split("@types/node"), ("@types/node", None));
        assert_eq!(split("@types/node@20.1.0"), ("@types/node", Some("20.1.0")));
        assert_eq!(split("book"), ("book", None));
        assert_eq!(split("odd@"), ("odd@", None));
    }

    #[test]
    fn reads_versions_leniently() {
        assert_eq!(semantic("v1.2.3"), semver::Version::parse("1.2.3").ok());
        assert_eq!(semantic("1.4"), semver::Version::parse("1.4.0").ok());
        assert_eq!(semantic("2"), semver::Version::parse("2.0.0").ok());
        assert_eq!(
            semantic("2.0-rc.1"),
            semver::Version::parse("2.0.0-rc.1").ok()
        );
        assert_eq!(semantic("main"), None);
        assert_eq!(semantic("3f2a9c1"), None);
    }

    #[test]
    fn orders_newest_first_semver_before_refs() {
        let libs = libraries(&s(&[
            "react@17.0.2",
            "react@18.2.0",
            "react@9.0.0",
            "react@main",
            "react@v18.10.1",
            "book",
        ]));
        assert_eq!(libs.len(), 2);
        assert_eq!(libs[0].name, "book");
        assert!(libs[0].unversioned && libs[0].versions.is_empty());
        assert_eq!(
            libs[1].versions,
            ["v18.10.1", "18.2.0", "17.0.2", "9.0.0", "main"]
        );
    }

    #[test]
    fn resolves_exact_range_and_newest() {
        let src = s(&["react@17.0.2", "react@18.2.0", "react@18.3.1", "book"]);
        let r = resolve(&src, "react", None).unwrap();
        assert_eq!((r.source.as_str(), r.chosen_by), ("react@18.3.1", "newest"));
        let r = resolve(&src, "react", Some("^17")).unwrap();
        assert_eq!((r.source.as_str(), r.chosen_by), ("react@17.0.2", "range"));
        let r = resolve(&src, "react", Some("18.2.0")).unwrap();
        assert_eq!((r.source.as_str(), r.chosen_by), ("react@18.2.0", "exact"));
        let r = resolve(&src, "react@>=18, <18.3", None).unwrap();
        assert_eq!(r.source, "react@18.2.0");
        let r = resolve(&src, "react@17.0.2", None).unwrap();
        assert_eq!((r.source.as_str(), r.chosen_by), ("react@17.0.2", "exact"));
        let r = resolve(&src, "book", None).unwrap();
        assert_eq!((r.source.as_str(), r.chosen_by), ("book", "unversioned"));
        assert_eq!(r.versions, Vec::<String>::new());
    }

    #[test]
    fn explains_what_does_not_resolve() {
        let src = s(&["react@17.0.2", "react@18.2.0"]);
        let e = resolve(&src, "react", Some("^19")).unwrap_err().to_string();
        assert!(
            e.contains("no indexed version of `react` matches `^19`"),
            "{e}"
        );
        assert!(e.contains("18.2.0, 17.0.2"), "{e}");
        let e = resolve(&src, "React", None).unwrap_err().to_string();
        assert!(e.contains("did you mean `react`"), "{e}");
        let e = resolve(&src, "react", Some("not a range!"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("neither an indexed version nor a semver range"),
            "{e}"
        );
        let e = resolve(&src, "react@17", Some("18"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("give one of them"), "{e}");
    }
}
