//! Files a tool call sends to a model: only under the allowed roots (no `..` or symlink escapes,
//! no device files), no binaries, each under the size cap, all together within a token budget
//! taken from the chosen model's window. Directories expand to the text files inside them.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use exai_core::access::PathPolicy;
use serde::Serialize;

/// About four characters a token, as the providers bill.
pub const CHARS_PER_TOKEN: u64 = 4;

/// Directories never worth sending to a model.
const SKIP_DIRS: &[&str] = &[
    "target",
    "node_modules",
    ".git",
    "dist",
    "build",
    "__pycache__",
    ".venv",
    "venv",
];

/// Files expanded from one directory argument, at most.
const MAX_FILES_PER_DIR: usize = 200;

/// Entries one call may name in `files`; more is a mistake or an attempt to make exai stat the
/// whole disk.
pub const MAX_FILE_ARGS: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{0}")]
    Refused(String),
    #[error(
        "`{path}` is {size} bytes, over the {cap}-byte limit for files sent to a model (providers.max_file_bytes)"
    )]
    TooLarge { path: String, size: u64, cap: u64 },
    #[error("`{0}` is a binary file; only text files can be sent to a model")]
    Binary(String),
}

/// A file that went into the prompt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileUse {
    pub path: String,
    pub bytes: u64,
    pub tokens: u64,
}

/// A file left out, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileSkip {
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct FileContext {
    /// The files, each between BEGIN/END markers with numbered lines.
    #[serde(skip)]
    pub text: String,
    pub used: Vec<FileUse>,
    pub skipped: Vec<FileSkip>,
    pub tokens: u64,
}

/// Read `paths` (newest reference first, duplicates dropped) within `token_budget`.
pub fn gather(
    paths: &[String],
    access: &PathPolicy,
    max_file_bytes: u64,
    token_budget: u64,
) -> Result<FileContext, FileError> {
    if paths.len() > MAX_FILE_ARGS {
        return Err(FileError::Refused(format!(
            "`files` names {} entries; at most {MAX_FILE_ARGS} (name a directory to send the files in it)",
            paths.len()
        )));
    }
    let mut ctx = FileContext::default();
    let mut seen: HashSet<PathBuf> = HashSet::new();
    for given in paths {
        let real = access.resolve(given).map_err(FileError::Refused)?;
        if real.is_dir() {
            let mut files = Vec::new();
            walk(&real, access, &mut files);
            files.sort();
            for file in files {
                let shown = file.display().to_string();
                if !seen.insert(file.clone()) {
                    continue;
                }
                // Inside a directory, unsuitable files are skipped rather than failing the call.
                match read_text(&file, &shown, max_file_bytes) {
                    Ok(text) => add(&mut ctx, &shown, &text, token_budget),
                    Err(e) => ctx.skipped.push(FileSkip {
                        path: shown,
                        reason: e.to_string(),
                    }),
                }
            }
        } else {
            if !seen.insert(real.clone()) {
                continue;
            }
            let text = read_text(&real, given, max_file_bytes)?;
            add(&mut ctx, given, &text, token_budget);
        }
    }
    Ok(ctx)
}

fn walk(dir: &Path, access: &PathPolicy, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        if out.len() >= MAX_FILES_PER_DIR {
            return;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if access.skips(&entry.path()) {
            continue;
        }
        // file_type does not follow symlinks: links are left out of directory expansion.
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() && !SKIP_DIRS.contains(&name.as_str()) {
            walk(&entry.path(), access, out);
        } else if kind.is_file() {
            out.push(entry.path());
        }
    }
}

fn read_text(path: &Path, shown: &str, cap: u64) -> Result<String, FileError> {
    let refused = |e: std::io::Error| FileError::Refused(format!("`{shown}`: {e}"));
    let Some(bytes) = exai_core::access::read_capped(path, cap).map_err(refused)? else {
        return Err(FileError::TooLarge {
            path: shown.to_string(),
            size: std::fs::metadata(path).map_or(0, |m| m.len()),
            cap,
        });
    };
    if bytes.iter().take(8192).any(|b| *b == 0) {
        return Err(FileError::Binary(shown.to_string()));
    }
    String::from_utf8(bytes).map_err(|_| FileError::Binary(shown.to_string()))
}

fn add(ctx: &mut FileContext, shown: &str, text: &str, budget: u64) {
    let lines = text.lines().count();
    let width = lines.to_string().len();
    let mut block = format!("--- BEGIN FILE: {shown} ({lines} lines) ---\n");
    for (i, line) in text.lines().enumerate() {
        block.push_str(&format!("{:>width$}│ {line}\n", i + 1));
    }
    block.push_str(&format!("--- END FILE: {shown} ---\n\n"));
    let tokens = (block.chars().count() as u64).div_ceil(CHARS_PER_TOKEN);
    if ctx.tokens + tokens > budget {
        ctx.skipped.push(FileSkip {
            path: shown.to_string(),
            reason: format!(
                "about {tokens} tokens; the model's remaining budget for files was {}",
                budget.saturating_sub(ctx.tokens)
            ),
        });
        return;
    }
    ctx.tokens += tokens;
    ctx.text.push_str(&block);
    ctx.used.push(FileUse {
        path: shown.to_string(),
        bytes: text.len() as u64,
        tokens,
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn files_are_checked_numbered_and_budgeted() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_string_lossy().into_owned();
        std::fs::write(dir.path().join("a.rs"), "fn a() {}\nfn b() {}\n").unwrap();
        std::fs::write(dir.path().join("bin.dat"), [0u8, 1, 2]).unwrap();
        std::fs::write(dir.path().join("big.txt"), "x".repeat(5000)).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/c.md"), "# c\n").unwrap();
        let a = dir.path().join("a.rs").to_string_lossy().into_owned();
        std::fs::write(dir.path().join(".env"), "KIMI_API_KEY=sk-secret\n").unwrap();
        std::fs::write(
            dir.path().join("deploy.pem"),
            "-----BEGIN PRIVATE KEY-----\n",
        )
        .unwrap();
        let roots = PathPolicy::new(
            std::slice::from_ref(&root),
            &[],
            Path::new("/nonexistent"),
            None,
            None,
        );
        let ctx = gather(&[a.clone(), a.clone()], &roots, 4096, 10_000).unwrap();
        assert_eq!(ctx.used.len(), 1, "duplicates dropped");
        assert!(ctx.text.contains("1│ fn a() {}"), "{}", ctx.text);
        let bin = dir.path().join("bin.dat").to_string_lossy().into_owned();
        assert!(matches!(
            gather(&[bin], &roots, 4096, 10_000),
            Err(FileError::Binary(_))
        ));
        let big = dir.path().join("big.txt").to_string_lossy().into_owned();
        assert!(matches!(
            gather(&[big], &roots, 4096, 10_000),
            Err(FileError::TooLarge { .. })
        ));
        let all = gather(std::slice::from_ref(&root), &roots, 4096, 10_000).unwrap();
        assert_eq!(all.used.len(), 2, "{:?}", all.used);
        assert_eq!(
            all.skipped.len(),
            2,
            "binary and oversized skipped in a directory"
        );
        let tight = gather(&[root], &roots, 4096, 10).unwrap();
        assert!(tight.used.is_empty() && tight.skipped.iter().any(|s| s.reason.contains("budget")));
        // Secrets are refused when named, and left out of directories.
        for secret in [".env", "deploy.pem"] {
            let named = dir.path().join(secret).to_string_lossy().into_owned();
            let e = gather(&[named], &roots, 4096, 10_000).unwrap_err();
            assert!(e.to_string().contains("private"), "{e}");
        }
        assert!(
            !all.used
                .iter()
                .any(|u| u.path.contains(".env") || u.path.contains(".pem"))
        );
        let many = vec![a.clone(); MAX_FILE_ARGS + 1];
        let e = gather(&many, &roots, 4096, 10_000).unwrap_err();
        assert!(e.to_string().contains("at most 100"), "{e}");
        let outside = gather(&["/etc/hostname".into()], &roots, 4096, 10_000).unwrap_err();
        assert!(
            outside.to_string().contains("outside the allowed roots"),
            "{outside}"
        );
    }
}
