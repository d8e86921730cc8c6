//! crates.io: the crate API (`GET {base}/api/v1/crates/{name}`: `versions` with `num`, `yanked`,
//! `dl_path`, `checksum` and `created_at`) and Cargo's requirement syntax through `semver`
//! (`1.2` means `^1.2`, as in `Cargo.toml`). Yanked versions are never chosen: Cargo only keeps
//! them for existing lock files.

use semver::{Version, VersionReq};
use serde::Deserialize;

use super::{Checksum, Choice, RegistryConfig, metadata_error, newest_listing};
use crate::Error;
use crate::archive::ArchiveFormat;
use crate::spec::RegistryKind;

#[derive(Deserialize)]
struct CrateResponse {
    versions: Vec<CrateVersion>,
}

#[derive(Deserialize)]
struct CrateVersion {
    num: String,
    #[serde(default)]
    yanked: bool,
    dl_path: Option<String>,
    checksum: Option<String>,
    created_at: Option<String>,
}

pub(super) fn metadata_url(base: &str, name: &str) -> String {
    format!("{}/api/v1/crates/{name}", base.trim_end_matches('/'))
}

fn parse_requirement(range: Option<&str>) -> Result<VersionReq, Error> {
    let range = range.unwrap_or("*");
    VersionReq::parse(range).map_err(|e| Error::UnsupportedRange {
        registry: "crates.io",
        range: range.to_owned(),
        reason: format!(
            "not a Cargo version requirement ({e}); use forms like `1.2`, `=1.2.3`, `>=1, <2` or `~1.4`"
        ),
    })
}

pub(super) fn choose(
    config: &RegistryConfig,
    name: &str,
    range: Option<&str>,
    body: &[u8],
    url: &str,
) -> Result<Choice, Error> {
    let bad = |reason: String| metadata_error(RegistryKind::Crates, name, url, reason);
    let response: CrateResponse =
        serde_json::from_slice(body).map_err(|e| bad(format!("not a crate document: {e}")))?;
    let requirement = parse_requirement(range)?;
    let versions: Vec<(Version, &CrateVersion)> = response
        .versions
        .iter()
        .filter_map(|v| Some((Version::parse(&v.num).ok()?, v)))
        .collect();
    let (version, entry) = versions
        .iter()
        .filter(|(version, entry)| !entry.yanked && requirement.matches(version))
        .max_by(|a, b| a.0.cmp(&b.0))
        .ok_or_else(|| Error::NoMatchingVersion {
            registry: "crates.io",
            name: name.to_owned(),
            range: range.unwrap_or("*").to_owned(),
            newest: newest_listing(versions.iter().map(|v| v.0.clone()).collect(), 5),
        })?;
    let checksum = entry
        .checksum
        .as_deref()
        .and_then(Checksum::sha256_hex)
        .ok_or_else(|| bad(format!("version {version} has no valid `checksum`")))?;
    Ok(Choice {
        name: name.to_owned(),
        version: entry.num.clone(),
        normalized_version: version.to_string(),
        url: download_url(config, name, version, entry.dl_path.as_deref())
            .ok_or_else(|| bad(format!("version {version} has no `dl_path`")))?,
        checksum,
        published: entry.created_at.clone(),
        format: ArchiveFormat::TarGz,
        strip_single_root: true,
    })
}

fn download_url(
    config: &RegistryConfig,
    name: &str,
    version: &Version,
    dl_path: Option<&str>,
) -> Option<String> {
    match &config.crates_download_url {
        Some(base) => Some(format!(
            "{}/{name}/{name}-{version}.crate",
            base.trim_end_matches('/')
        )),
        None => dl_path.map(|path| format!("{}{path}", config.crates_url.trim_end_matches('/'))),
    }
}
