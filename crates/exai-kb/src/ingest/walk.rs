//! Finding files to index: .gitignore/.ignore rules, include/exclude globs, and the reasons a
//! file is skipped (binary, oversized, minified, generated, unsupported).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Serialize;

use crate::error::{KbError, Result};
use crate::model::Format;

#[derive(Debug, Clone)]
pub struct WalkOptions {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub max_file_bytes: u64,
    /// Private entries (dot-files, keys, credentials, the data directory) are never walked into.
    pub access: exai_core::access::PathPolicy,
}

/// A file that will be read.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub path: PathBuf,
    /// Path relative to its root, with `/` separators: the document's identity in its source.
    pub rel: String,
    pub format: Format,
    pub bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    Unsupported,
    Excluded,
    TooLarge,
    Binary,
    Minified,
    Generated,
    Redirect,
    Empty,
    Unreadable,
    Malformed,
    /// A PDF that needs a password.
    Encrypted,
    /// A PDF its parsers cannot read (damaged, or a structure they fail on).
    Corrupt,
    /// A PDF whose compressed streams inflate past [`super::pdf::MAX_INFLATED_BYTES`].
    Inflates,
    /// A file that took longer than its parser's deadline ([`super::pdf::DEADLINE`]).
    TimedOut,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Unsupported => "unsupported type",
            SkipReason::Excluded => "excluded by --include/--exclude",
            SkipReason::TooLarge => "larger than kb.max_file_bytes",
            SkipReason::Binary => "binary",
            SkipReason::Minified => "minified",
            SkipReason::Generated => "generated",
            SkipReason::Redirect => "redirect page",
            SkipReason::Empty => "no text",
            SkipReason::Unreadable => "unreadable",
            SkipReason::Malformed => {
                "malformed markup (would build more elements than it has bytes)"
            }
            SkipReason::Encrypted => "encrypted PDF (needs a password)",
            SkipReason::Corrupt => "damaged or unsupported PDF",
            SkipReason::Inflates => "PDF streams inflate past the decompression limit",
            SkipReason::TimedOut => "took longer than the parse deadline",
        }
    }
}

/// Files found and files skipped, by reason.
#[derive(Debug, Default)]
pub struct Discovery {
    pub candidates: Vec<Candidate>,
    pub skipped: BTreeMap<SkipReason, Vec<PathBuf>>,
}

const CODE_EXTENSIONS: &[&str] = &[
    "rs",
    "py",
    "js",
    "mjs",
    "cjs",
    "ts",
    "tsx",
    "jsx",
    "go",
    "java",
    "kt",
    "kts",
    "scala",
    "c",
    "h",
    "cc",
    "cpp",
    "cxx",
    "hpp",
    "hh",
    "cs",
    "rb",
    "php",
    "swift",
    "m",
    "mm",
    "sh",
    "bash",
    "zsh",
    "fish",
    "ps1",
    "toml",
    "yaml",
    "yml",
    "json",
    "sql",
    "css",
    "scss",
    "sass",
    "less",
    "vue",
    "svelte",
    "lua",
    "zig",
    "ex",
    "exs",
    "erl",
    "hs",
    "ml",
    "mli",
    "fs",
    "r",
    "jl",
    "dart",
    "proto",
    "graphql",
    "gql",
    "tf",
    "nix",
    "cmake",
    "gradle",
    "dockerfile",
    "mk",
];

/// The format a path is read as, from its extension.
pub fn format_of(path: &Path) -> Option<Format> {
    let name = path.file_name()?.to_str()?.to_ascii_lowercase();
    if name == "dockerfile" || name == "makefile" {
        return Some(Format::Code);
    }
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "md" | "mdx" | "markdown" => Some(Format::Markdown),
        "html" | "htm" | "xhtml" => Some(Format::Html),
        "pdf" => Some(Format::Pdf),
        "txt" | "rst" | "adoc" | "asciidoc" | "org" | "text" => Some(Format::Text),
        e if CODE_EXTENSIONS.contains(&e) => Some(Format::Code),
        _ => None,
    }
}

fn globs(patterns: &[String]) -> Result<Option<GlobSet>> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        // A bare pattern like `*.md` matches at any depth.
        let pattern = if p.contains('/') {
            p.clone()
        } else {
            format!("**/{p}")
        };
        b.add(Glob::new(&pattern).map_err(|e| KbError::Invalid(format!("bad glob `{p}`: {e}")))?);
    }
    b.build()
        .map(Some)
        .map_err(|e| KbError::Invalid(format!("bad globs: {e}")))
}

/// Names that mark a file as machine-written.
fn generated_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".lock")
        || lower == "package-lock.json"
        || lower == "pnpm-lock.yaml"
        || lower == "yarn.lock"
        || lower.contains(".min.")
        || lower.ends_with(".pb.go")
        || lower.contains("_generated.")
        || lower.ends_with(".map")
}

/// The deepest directory holding every root: with several roots, documents are named relative
/// to it, so `a/README.md` and `b/README.md` stay two documents.
fn common_base(roots: &[PathBuf]) -> Option<PathBuf> {
    let (first, rest) = roots.split_first()?;
    let mut base: Vec<_> = first.components().collect();
    for root in rest {
        let shared = base
            .iter()
            .zip(root.components())
            .take_while(|(a, b)| **a == *b)
            .count();
        base.truncate(shared);
    }
    let base: PathBuf = base.into_iter().collect();
    // A single file given among the roots: its directory, not the file itself.
    if roots.contains(&base) && base.is_file() {
        return base.parent().map(Path::to_path_buf);
    }
    Some(base)
}

/// Walk `roots`, honouring .gitignore/.ignore files, and sort what is found. One root names its
/// documents relative to itself (a file root by its file name); several name them relative to
/// the directory they share, and a file under two of them is found once.
pub fn discover(roots: &[PathBuf], opts: &WalkOptions) -> Result<Discovery> {
    let include = globs(&opts.include)?;
    let exclude = globs(&opts.exclude)?;
    let mut out = Discovery::default();
    let base = if roots.len() > 1 {
        common_base(roots)
    } else {
        None
    };
    let mut found = std::collections::HashSet::new();
    for root in roots {
        let meta = std::fs::metadata(root).map_err(|source| KbError::Io {
            path: root.clone(),
            source,
        })?;
        let single_file = meta.is_file();
        let access = opts.access.clone();
        let walker = ignore::WalkBuilder::new(root)
            .hidden(true)
            .git_ignore(true)
            .git_global(false)
            .git_exclude(true)
            .ignore(true)
            .require_git(false)
            .follow_links(false)
            .sort_by_file_path(|a, b| a.cmp(b))
            .filter_entry(move |e| e.depth() == 0 || !access.skips(e.path()))
            .build();
        for entry in walker {
            let Ok(entry) = entry else { continue };
            if !entry.file_type().is_some_and(|t| t.is_file()) {
                continue;
            }
            let path = entry.path().to_path_buf();
            if !found.insert(path.clone()) {
                continue;
            }
            let rel = if let Some(base) = &base {
                path.strip_prefix(base)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .replace('\\', "/")
            } else if single_file {
                path.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            } else {
                path.strip_prefix(root)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .replace('\\', "/")
            };
            let skip = |reason: SkipReason, out: &mut Discovery| {
                out.skipped.entry(reason).or_default().push(path.clone())
            };
            if include.as_ref().is_some_and(|g| !g.is_match(&rel))
                || exclude.as_ref().is_some_and(|g| g.is_match(&rel))
            {
                skip(SkipReason::Excluded, &mut out);
                continue;
            }
            let Some(format) = format_of(&path) else {
                skip(SkipReason::Unsupported, &mut out);
                continue;
            };
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if generated_name(&name) {
                skip(SkipReason::Generated, &mut out);
                continue;
            }
            let bytes = entry.metadata().map(|m| m.len()).unwrap_or(0);
            if bytes > opts.max_file_bytes {
                skip(SkipReason::TooLarge, &mut out);
                continue;
            }
            if bytes == 0 {
                skip(SkipReason::Empty, &mut out);
                continue;
            }
            out.candidates.push(Candidate {
                path,
                rel,
                format,
                bytes,
            });
        }
    }
    Ok(out)
}

/// Content checks that need the bytes: binary, minified, generated markers.
pub fn content_skip(format: Format, bytes: &[u8]) -> Option<SkipReason> {
    let head = &bytes[..bytes.len().min(8192)];
    // A PDF is binary by design; its parser checks it instead.
    if format == Format::Pdf {
        return None;
    }
    if head.contains(&0) {
        return Some(SkipReason::Binary);
    }
    if format == Format::Code {
        let text = String::from_utf8_lossy(head);
        let first_lines: String = text
            .lines()
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
            .to_ascii_lowercase();
        if first_lines.contains("@generated")
            || first_lines.contains("do not edit")
            || first_lines.contains("auto-generated")
        {
            return Some(SkipReason::Generated);
        }
        let lines = bytes.iter().filter(|b| **b == b'\n').count().max(1);
        if bytes.len() / lines > 400 {
            return Some(SkipReason::Minified);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two roots with the same relative paths stay apart; a root nested in another and a file
    /// root are found once each.
    #[test]
    fn several_roots_keep_their_files_apart() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        for d in ["x/docs", "y/docs"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
            std::fs::write(root.join(d).join("README.md"), format!("# {d}\ntext")).unwrap();
        }
        std::fs::write(root.join("y/notes.md"), "# notes\ntext").unwrap();
        let opts = WalkOptions {
            include: vec![],
            exclude: vec![],
            max_file_bytes: 1000,
            access: exai_core::access::PathPolicy::default(),
        };
        let rels = |roots: &[&str]| -> Vec<String> {
            let roots: Vec<PathBuf> = roots.iter().map(|r| root.join(r)).collect();
            let d = discover(&roots, &opts).unwrap();
            d.candidates.into_iter().map(|c| c.rel).collect()
        };
        assert_eq!(
            rels(&["x/docs", "y/docs"]),
            ["x/docs/README.md", "y/docs/README.md"]
        );
        assert_eq!(
            rels(&["y", "y/docs", "x/docs/README.md"]),
            ["y/docs/README.md", "y/notes.md", "x/docs/README.md"]
        );
        // One root keeps the names it always had.
        assert_eq!(rels(&["x/docs"]), ["README.md"]);
        assert_eq!(rels(&["y/notes.md"]), ["notes.md"]);
        assert_eq!(
            common_base(&[root.join("y/notes.md"), root.join("y/notes.md")]),
            Some(root.join("y"))
        );
    }

    #[test]
    fn walks_with_ignore_rules_and_reasons() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("docs/sub")).unwrap();
        std::fs::create_dir_all(root.join("node_modules/x")).unwrap();
        std::fs::write(root.join(".gitignore"), "node_modules/\n").unwrap();
        std::fs::write(root.join("docs/a.md"), "# A\ntext").unwrap();
        std::fs::write(root.join("docs/sub/b.html"), "<p>b</p>").unwrap();
        std::fs::write(root.join("docs/c.png"), [0u8, 1, 2]).unwrap();
        std::fs::write(root.join("docs/app.min.js"), "x").unwrap();
        std::fs::write(root.join("docs/big.txt"), "x".repeat(5000)).unwrap();
        std::fs::write(root.join("node_modules/x/y.md"), "# no").unwrap();
        let opts = WalkOptions {
            include: vec![],
            exclude: vec![],
            max_file_bytes: 1000,
            access: exai_core::access::PathPolicy::default(),
        };
        let d = discover(&[root.to_path_buf()], &opts).unwrap();
        let rels: Vec<&str> = d.candidates.iter().map(|c| c.rel.as_str()).collect();
        assert_eq!(rels, vec!["docs/a.md", "docs/sub/b.html"]);
        assert_eq!(d.skipped[&SkipReason::Unsupported].len(), 1);
        assert_eq!(d.skipped[&SkipReason::Generated].len(), 1);
        assert_eq!(d.skipped[&SkipReason::TooLarge].len(), 1);
        let opts = WalkOptions {
            include: vec!["*.html".into()],
            exclude: vec![],
            max_file_bytes: 1000,
            access: exai_core::access::PathPolicy::default(),
        };
        let d = discover(&[root.to_path_buf()], &opts).unwrap();
        assert_eq!(d.candidates.len(), 1);
        let opts = WalkOptions {
            include: vec![],
            exclude: vec!["docs/sub/**".into()],
            max_file_bytes: 1000,
            access: exai_core::access::PathPolicy::default(),
        };
        assert_eq!(
            discover(&[root.to_path_buf()], &opts)
                .unwrap()
                .candidates
                .len(),
            1
        );
    }

    #[test]
    fn content_checks() {
        assert_eq!(
            content_skip(Format::Text, b"ab\0cd"),
            Some(SkipReason::Binary)
        );
        assert_eq!(
            content_skip(Format::Code, b"// @generated by x\nfn a() {}\n"),
            Some(SkipReason::Generated)
        );
        assert_eq!(
            content_skip(Format::Code, "x".repeat(2000).as_bytes()),
            Some(SkipReason::Minified)
        );
        assert_eq!(content_skip(Format::Code, b"fn main() {}\n"), None);
    }
}
