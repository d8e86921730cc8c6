//! Entry point of the `config_load` fuzz target (`fuzz/`): [`super::load`] on an arbitrary
//! `exai.toml`, data-directory `.env` and process environment. `tests/fuzz_corpus.rs` replays
//! the committed corpus through the same function, so a finding stays fixed in every build.
//!
//! Loading must end in `Ok` or a [`ConfigError`], never a panic, and an error must not show a
//! secret: error messages reach the terminal, the log file and MCP clients' stderr.

use std::cell::RefCell;
use std::path::PathBuf;

use super::{Inputs, load};
use crate::settings::{self, SETTINGS};

/// A value given to a secret key by the harness itself, so every run has one to look for.
const MARKER: &str = "fuzz-marker-kimi-key-5e0c2a91";
/// Shorter secret values are left unchecked: "0" or "true" may well be part of any message.
const MIN_CHECKED_SECRET: usize = 8;
/// Environment names the harness owns: letting the input set them would point the loader at
/// files outside the scratch directory.
const HARNESS_ENV: &[&str] = &[
    "EXAI_HOME",
    "EXAI_CONFIG",
    "EXAI_ENV_FILE",
    "HOME",
    "XDG_DATA_HOME",
];

/// A scratch data directory per thread, removed when the thread ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

thread_local! {
    static SCRATCH: RefCell<Option<Scratch>> = const { RefCell::new(None) };
}

fn scratch_dir() -> PathBuf {
    SCRATCH.with(|cell| {
        let mut slot = cell.borrow_mut();
        if let Some(s) = slot.as_ref() {
            return s.0.clone();
        }
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("exai-fuzz-config-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        *slot = Some(Scratch(dir.clone()));
        dir
    })
}

/// The input is `exai.toml`, then the data directory's `.env`, then process environment lines
/// (`NAME=value`), separated by NUL bytes; a part left out is absent (no file, no variable).
pub fn load_config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\0');
    let toml_text = parts.next();
    let env_text = parts.next();
    let process_text = parts.next().unwrap_or("");

    let dir = scratch_dir();
    let (toml_path, env_path) = (dir.join("exai.toml"), dir.join(".env"));
    for (path, content) in [(&toml_path, toml_text), (&env_path, env_text)] {
        let written = match content {
            Some(c) if !c.is_empty() => std::fs::write(path, c),
            _ => std::fs::remove_file(path).or_else(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Ok(()),
                _ => Err(e),
            }),
        };
        written.unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }

    let mut env: Vec<(String, String)> = process_text
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(name, _)| !HARNESS_ENV.contains(name))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    let mut secrets = vec![MARKER.to_string()];
    secrets.extend(
        env.iter()
            .filter(|(n, _)| is_secret_env(n))
            .map(|(_, v)| v.clone()),
    );
    env.push(("KIMI_API_KEY".into(), MARKER.into()));
    env.push(("EXAI_HOME".into(), dir.display().to_string()));
    secrets.extend(env_file_secrets(env_text.unwrap_or("")));
    secrets.extend(toml_secrets(toml_text.unwrap_or("")));

    let inputs = Inputs {
        env,
        ..Inputs::default()
    };
    let Err(error) = load(&inputs) else {
        return;
    };
    // The scratch directory's name is in messages that name a file.
    let message = error
        .to_string()
        .replace(&dir.display().to_string(), "<data dir>");
    let given = text.as_ref();
    for (i, secret) in secrets.iter().enumerate() {
        // A value that appears in the input more often than it was given to secrets was also
        // given to something else (a name, another key), which may be shown. The harness's
        // marker is given outside the input, so any copy of it in the input is such a use.
        let given_elsewhere = if i == 0 { 0 } else { 1 };
        let checked = secret.chars().count() >= MIN_CHECKED_SECRET
            && given.matches(secret.as_str()).count() <= given_elsewhere;
        assert!(
            !checked || !message.contains(secret.as_str()),
            "the error shows the secret {secret:?}: {message}"
        );
    }
}

fn is_secret_env(name: &str) -> bool {
    settings::by_env(name).is_some_and(|s| s.secret)
}

/// Values a `.env` gives to secret variables: what parses, and on a line that does not, the
/// text after `NAME=` (an error that quotes the line shows it).
fn env_file_secrets(text: &str) -> Vec<String> {
    let mut found: Vec<String> = dotenvy::from_read_iter(text.as_bytes())
        .filter_map(Result::ok)
        .filter(|(name, _)| is_secret_env(name))
        .map(|(_, value)| value)
        .collect();
    for line in text.lines() {
        let line = line.trim_start();
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        if let Some((name, value)) = line.split_once('=')
            && is_secret_env(name.trim())
        {
            found.push(unquote(value));
        }
    }
    found
}

/// Values a TOML file gives to secret keys: from the parsed table, and line by line (a file
/// that does not parse may still have shown a line in its error).
fn toml_secrets(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    if let Ok(table) = text.parse::<toml::Table>() {
        let tree = toml::Value::Table(table);
        for setting in SETTINGS.iter().filter(|s| s.secret) {
            match super::lookup(&tree, setting.key) {
                Some(toml::Value::String(s)) => found.push(s.clone()),
                Some(toml::Value::Table(t)) => found.extend(
                    t.values()
                        .filter_map(toml::Value::as_str)
                        .map(str::to_string),
                ),
                _ => {}
            }
        }
    }
    // Line by line, following table headers, for a file that does not parse.
    let mut table = String::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(header) = line.strip_prefix('[') {
            table = dotted(
                header
                    .trim_start_matches('[')
                    .split(']')
                    .next()
                    .unwrap_or(""),
            );
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = dotted(key);
        let full = if table.is_empty() {
            key
        } else {
            format!("{table}.{key}")
        };
        let secret = full.starts_with("server.tokens.")
            || SETTINGS.iter().any(|s| s.secret && s.key == full);
        if secret {
            found.push(unquote(value));
        }
    }
    found
}

/// A TOML key as a plain dotted path: `providers . "kimi_api_key"` → `providers.kimi_api_key`.
fn dotted(key: &str) -> String {
    key.split('.')
        .map(|part| part.trim().trim_matches(|c| c == '"' || c == '\''))
        .collect::<Vec<_>>()
        .join(".")
}

fn unquote(value: &str) -> String {
    let v = value.trim();
    let v = v.split(" #").next().unwrap_or(v).trim();
    v.trim_matches(|c| c == '"' || c == '\'').to_string()
}
