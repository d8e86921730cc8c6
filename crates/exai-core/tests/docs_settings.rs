#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Every setting and environment variable the docs name exists in the code: an operator who
//! copies `logging.keep` or `EXAI_FOO` from the runbook gets a setting, not an error.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use exai_core::settings::{self, SETTINGS};

fn repo() -> PathBuf {
    // The crate's directory when the test runs, not where it was compiled (a shared build
    // directory may have compiled it in another clone).
    let dir: PathBuf = std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf(),
        Into::into,
    );
    dir.join("../..")
}

/// README.md and every page of docs/, with their names.
fn pages() -> Vec<(String, String)> {
    let root = repo();
    let mut pages = vec![(
        "README.md".to_string(),
        std::fs::read_to_string(root.join("README.md")).unwrap(),
    )];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            let name = format!("docs/{}", path.file_name().unwrap().to_string_lossy());
            pages.push((name, std::fs::read_to_string(&path).unwrap()));
        }
    }
    assert!(
        pages.len() >= 5,
        "README and docs/ not found under {root:?}"
    );
    pages
}

/// Text between backticks, a line at a time.
fn code_spans(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .flat_map(|line| line.split('`').skip(1).step_by(2))
        .map(str::trim)
}

/// A name in the docs is a setting when it starts with a section of the registry.
fn is_known_key(name: &str) -> bool {
    // `providers.custom.NAME` and similar: a key of a table-shaped setting.
    settings::find(name).is_some()
        || SETTINGS
            .iter()
            .any(|s| name.starts_with(&format!("{}.", s.key)))
}

#[test]
fn every_setting_the_docs_name_exists() {
    let sections: BTreeSet<&str> = SETTINGS
        .iter()
        .filter_map(|s| s.key.split_once('.').map(|(section, _)| section))
        .collect();
    let mut unknown = Vec::new();
    let mut checked = 0;
    for (page, text) in pages() {
        for span in code_spans(&text) {
            // `kb.max_file_bytes`, also `kb.max_file_bytes = 1000` or `[kb] max_file_bytes`.
            let name = span.split([' ', '=']).next().unwrap_or("");
            let Some((section, rest)) = name.split_once('.') else {
                continue;
            };
            let plain = |s: &str| {
                !s.is_empty()
                    && s.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.'
                    })
            };
            // File names such as `kb.sqlite` or `kb.sqlite.ann` share a section's name.
            let file = [".sqlite", ".ann", ".json", ".jsonl", ".toml", ".env"]
                .iter()
                .any(|ext| name.ends_with(ext) || name.contains(&format!("{ext}.")));
            if !sections.contains(section) || !plain(rest) || rest.ends_with('.') || file {
                continue;
            }
            checked += 1;
            if !is_known_key(name) {
                unknown.push(format!("{page}: `{name}`"));
            }
        }
    }
    assert!(
        checked >= 20,
        "only {checked} setting names found in the docs"
    );
    assert!(
        unknown.is_empty(),
        "the docs name settings that do not exist (see `exai config docs`):\n{}",
        unknown.join("\n")
    );
}

/// Named in the docs as an example of a variable that is not exai's (and stops nothing).
const NOT_EXAIS: &[&str] = &["EXAI_BIN"];

#[test]
fn every_exai_variable_the_docs_name_exists() {
    let mut unknown = Vec::new();
    for (page, text) in pages() {
        for (at, _) in text.match_indices("EXAI_") {
            let raw: String = text[at..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            let name = raw.trim_end_matches('_');
            // `EXAI_*`, `EXAI_WS_*` and `EXAI_<SECTION>_<KEY>` describe a family, not a variable;
            // the configuration page names one variable that is deliberately not exai's.
            if name == "EXAI"
                || text[at + raw.len()..].starts_with(['*', '<'])
                || NOT_EXAIS.contains(&name)
            {
                continue;
            }
            let known = settings::by_env(name).is_some()
                || settings::NON_SETTING_ENV.iter().any(|(n, _)| *n == name)
                || settings::retired(name).is_some()
                || settings::LEGACY_COMBINED.iter().any(|(n, _)| *n == name);
            if !known {
                unknown.push(format!("{page}: {name}"));
            }
        }
    }
    unknown.sort();
    unknown.dedup();
    assert!(
        unknown.is_empty(),
        "the docs name EXAI_ variables exai does not read (see `exai config docs`):\n{}",
        unknown.join("\n")
    );
}
