//! `exai config import PATH`: adopt the settings of a `.env` kept beside an older server (the
//! Python servers' operators have one) into the data directory's `.env`, the one `.env` exai
//! trusts without being told. Only exai's own variables are copied; the file's other lines, and
//! the data directory's existing entries for other variables, are kept as they were.

use std::path::{Path, PathBuf};

use crate::error::ConfigError;
use crate::settings;

/// What an import would write, and what it leaves out.
#[derive(Debug, Clone, Default)]
pub struct ImportPlan {
    /// The data directory's `.env` after the import.
    pub text: String,
    /// Variables copied: (name, value as shown — secrets redacted).
    pub imported: Vec<(String, String)>,
    /// `EXAI_*` variables that are not exai settings (e.g. the Python daemon's `EXAI_WS_*`).
    pub unknown: Vec<String>,
    /// Other programs' variables, left out.
    pub foreign: usize,
}

/// Plan importing `source` into `target` (which may not exist yet).
pub fn plan(source: &Path, target: &Path) -> Result<ImportPlan, ConfigError> {
    let read_error = |path: &Path, reason: String| ConfigError::Read {
        path: path.to_path_buf(),
        reason,
    };
    let mut plan = ImportPlan::default();
    let mut wanted: Vec<(String, String)> = Vec::new();
    let text = std::fs::read_to_string(source).map_err(|e| read_error(source, e.to_string()))?;
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        let (name, value) =
            item.map_err(|e| read_error(source, crate::config::env_syntax_error(&text, e)))?;
        // The Python daemon's address and limits set exai's keys too (combined at load).
        let legacy = settings::LEGACY_COMBINED.iter().any(|(n, _)| *n == name);
        match settings::by_env(&name) {
            None if legacy => {
                wanted.retain(|(n, _)| n != &name);
                plan.imported.retain(|(n, _)| n != &name);
                plan.imported.push((name.clone(), value.clone()));
                wanted.push((name, value));
            }
            Some(setting) => {
                let shown = if setting.secret {
                    "<redacted>".to_string()
                } else {
                    value.clone()
                };
                wanted.retain(|(n, _)| n != &name);
                plan.imported.retain(|(n, _)| n != &name);
                plan.imported.push((name.clone(), shown));
                wanted.push((name, value));
            }
            None if name.starts_with("EXAI_") => plan.unknown.push(name),
            None => plan.foreign += 1,
        }
    }
    let existing = match std::fs::read_to_string(target) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(read_error(target, e.to_string())),
    };
    plan.text = merge(&existing, &wanted);
    Ok(plan)
}

/// `existing` with each of `vars` replacing its old line, or appended.
fn merge(existing: &str, vars: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut written: Vec<&str> = Vec::new();
    for line in existing.lines() {
        match defined_name(line).and_then(|n| vars.iter().find(|(name, _)| name == n)) {
            Some((name, value)) if !written.contains(&name.as_str()) => {
                out.push_str(&format!("{name}={}\n", quote(value)));
                written.push(name);
            }
            // A later duplicate of a replaced variable would override the import: drop it.
            Some(_) => {}
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    for (name, value) in vars {
        if !written.contains(&name.as_str()) {
            out.push_str(&format!("{name}={}\n", quote(value)));
        }
    }
    out
}

/// The variable a `.env` line defines (`NAME=…` or `export NAME=…`), if any.
fn defined_name(line: &str) -> Option<&str> {
    let line = line.trim_start();
    let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
    let (name, _) = line.split_once('=')?;
    let name = name.trim_end();
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    valid.then_some(name)
}

/// The variable whose line in `text` holds `value` as written (what a dotenv parse error
/// quotes), if exactly one line does.
pub(crate) fn name_of_value<'a>(text: &'a str, value: &str) -> Option<&'a str> {
    let value = value.trim();
    let mut names = text.lines().filter_map(|line| {
        let name = defined_name(line)?;
        let (_, written) = line.split_once('=')?;
        (!value.is_empty() && written.trim() == value).then_some(name)
    });
    let name = names.next()?;
    names.next().is_none().then_some(name)
}

/// A value written so that dotenv parsers read it back unchanged.
fn quote(value: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./:@,+=%".contains(c);
    if !value.is_empty() && value.chars().all(plain) {
        return value.to_string();
    }
    if !value.contains(['\'', '\n', '\r']) {
        return format!("'{value}'");
    }
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '"' | '\\' | '$' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The data directory's `.env`, the file an import writes.
pub fn target(data_dir: &Path) -> PathBuf {
    data_dir.join(".env")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Same leak as the loader's (`config_load` fuzzing): dotenvy's message quotes the line it
    /// cannot parse, key and all.
    #[test]
    fn a_line_that_does_not_parse_is_not_quoted() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("python.env");
        std::fs::write(
            &source,
            "LOG_FORMAT=json\nKIMI_API_KEY=sk-leak-0123456789 x\n",
        )
        .unwrap();
        let message = plan(&source, &dir.path().join("data.env"))
            .unwrap_err()
            .to_string();
        assert!(!message.contains("sk-leak"), "{message}");
        assert!(message.contains("line 2, column 33"), "{message}");
    }

    #[test]
    fn imports_only_our_variables_and_keeps_the_rest_of_the_target() {
        // EXAI_WS_PORT is the Python daemon's port: it sets server.listen, so it comes along.
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("python.env");
        std::fs::write(
            &source,
            "# the Python server's file\nKIMI_API_KEY=sk-abc\nEXAI_WS_PORT=8765\nLOG_FORMAT=json\n\
             SIMPLE_TOOL_TIMEOUT_SECS=20\nDEFAULT_MODEL=glm-4.5\nSIMPLE_TOOL_TIMEOUT_SECS=25\n",
        )
        .unwrap();
        let target = dir.path().join("data.env");
        std::fs::write(
            &target,
            "# mine\nOTHER=1\nSIMPLE_TOOL_TIMEOUT_SECS=10\nSIMPLE_TOOL_TIMEOUT_SECS=11\n",
        )
        .unwrap();
        let plan = plan(&source, &target).unwrap();
        assert_eq!(
            plan.imported,
            [
                ("KIMI_API_KEY".to_string(), "<redacted>".to_string()),
                ("EXAI_WS_PORT".to_string(), "8765".to_string()),
                ("DEFAULT_MODEL".to_string(), "glm-4.5".to_string()),
                ("SIMPLE_TOOL_TIMEOUT_SECS".to_string(), "25".to_string()),
            ]
        );
        assert!(plan.unknown.is_empty());
        assert_eq!(plan.foreign, 1);
        assert_eq!(
            plan.text,
            "# mine\nOTHER=1\nSIMPLE_TOOL_TIMEOUT_SECS=25\nKIMI_API_KEY=sk-abc\nEXAI_WS_PORT=8765\nDEFAULT_MODEL=glm-4.5\n"
        );
    }

    #[test]
    fn quoted_values_read_back_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let values = [
            "plain-value_1.2",
            "with space # and hash",
            "it's \"quoted\" $HOME \\ back",
            "two\nlines",
            "",
            "{\"local\":{\"url\":\"http://127.0.0.1:11434/v1\"}}",
        ];
        let text: String = values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("V{i}={}\n", quote(v)))
            .collect();
        let file = dir.path().join(".env");
        std::fs::write(&file, text).unwrap();
        let read: Vec<(String, String)> = dotenvy::from_path_iter(&file)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for (i, v) in values.iter().enumerate() {
            assert_eq!(read[i], (format!("V{i}"), v.to_string()));
        }
    }
}
