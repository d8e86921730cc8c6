//! What exai may read on a caller's behalf. MCP clients name paths for `index_path` and for
//! files sent to a model; those names are untrusted. A path is readable when it lies, after
//! following symlinks, under an allowed root, and is not private: a dot-file or dot-directory
//! below the root, a well-known secret (keys, credentials, `.netrc`, cloud and CLI logins), or the
//! exai data directory (conversations, keys, backups). `tools.allowed_private_paths` lets an
//! operator open a private path on purpose.
//!
//! With no configured root, the working directory is the root — unless it is `/` or the home
//! directory, where an MCP client started from a desktop would expose every file the user has.

use std::path::{Component, Path, PathBuf};

/// Directories that hold credentials wherever they appear in a path.
const SECRET_DIRS: &[&str] = &[
    ".ssh",
    ".gnupg",
    ".aws",
    ".azure",
    ".kube",
    ".docker",
    ".config",
    ".password-store",
    ".pki",
    "keyrings",
];

/// File names that hold credentials.
const SECRET_NAMES: &[&str] = &[
    "id_rsa",
    "id_dsa",
    "id_ecdsa",
    "id_ed25519",
    "id_ecdsa_sk",
    "id_ed25519_sk",
    "identity",
    "_netrc",
    "credentials",
    "credentials.json",
    "credentials.toml",
    "credentials.db",
    "credentials.xml",
    "kubeconfig",
    "terraform.tfstate",
    "secrets.json",
    "secrets.yaml",
    "secrets.yml",
    "secrets.toml",
    "client_secret.json",
    "service-account.json",
    "htpasswd",
];

/// Extensions of key stores, certificates with keys, password databases and state with secrets.
const SECRET_EXTENSIONS: &[&str] = &[
    "pem", "key", "p12", "pfx", "jks", "keystore", "kdbx", "ppk", "gpg", "tfstate", "tfvars",
];

/// Why a single path component (a file or directory name) is private, if it is.
pub fn private_name(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    if SECRET_DIRS.contains(&lower.as_str()) {
        return Some("a directory that holds credentials");
    }
    if name.starts_with('.') && name != "." && name != ".." {
        return Some("a dot-file or dot-directory");
    }
    if SECRET_NAMES.contains(&lower.as_str()) {
        return Some("a file that holds credentials");
    }
    let extension = lower.rsplit_once('.').map(|(_, e)| e);
    if extension.is_some_and(|e| SECRET_EXTENSIONS.contains(&e)) {
        return Some("a key, certificate or secrets file");
    }
    None
}

/// The data directory's folder for fetched sources (git checkouts, unpacked packages), which
/// indexing reads although it is inside the data directory.
pub const FETCHED_SOURCES: &str = "sources";

/// The rules for one server, built once from the configuration.
#[derive(Debug, Clone, Default)]
pub struct PathPolicy {
    /// Canonical allowed roots; empty when none is usable (see `no_root`).
    roots: Vec<PathBuf>,
    /// Why there is no root, for the error every read then gets.
    no_root: Option<String>,
    /// Canonical private paths the operator opened.
    allowed_private: Vec<PathBuf>,
    /// The canonical data directory.
    data_dir: Option<PathBuf>,
}

impl PathPolicy {
    /// `roots` and `allowed_private` from the configuration; `home` is `$HOME`.
    pub fn new(
        roots: &[String],
        allowed_private: &[String],
        data_dir: &Path,
        cwd: Option<&Path>,
        home: Option<&Path>,
    ) -> Self {
        let canonical = |p: &Path| std::fs::canonicalize(p).ok();
        let (roots, no_root) = if roots.is_empty() {
            let home = home.and_then(canonical);
            match cwd.and_then(canonical) {
                Some(dir) if dir.parent().is_none() => (
                    vec![],
                    Some(format!(
                        "exai was started in `{}`, which is too wide to be the implicit root",
                        dir.display()
                    )),
                ),
                Some(dir) if Some(&dir) == home.as_ref() => (
                    vec![],
                    Some(format!(
                        "exai was started in the home directory (`{}`), which is too wide to be the implicit root",
                        dir.display()
                    )),
                ),
                Some(dir) => (vec![dir], None),
                None => (vec![], Some("exai has no working directory".to_string())),
            }
        } else {
            let found: Vec<PathBuf> = roots
                .iter()
                .filter_map(|r| canonical(Path::new(r)))
                .collect();
            let none = found
                .is_empty()
                .then(|| format!("none of tools.allowed_roots exists ({})", roots.join(", ")));
            (found, none)
        };
        PathPolicy {
            roots,
            no_root,
            allowed_private: allowed_private
                .iter()
                .filter_map(|p| canonical(Path::new(p)))
                .collect(),
            data_dir: canonical(data_dir),
        }
    }

    /// The policy of this process: the working directory and `$HOME` from the environment.
    pub fn for_process(roots: &[String], allowed_private: &[String], data_dir: &Path) -> Self {
        let cwd = std::env::current_dir().ok();
        let home = std::env::var_os("HOME").map(PathBuf::from);
        Self::new(
            roots,
            allowed_private,
            data_dir,
            cwd.as_deref(),
            home.as_deref(),
        )
    }

    /// Resolve `given` (absolute, or relative to the first root) to a real file or directory
    /// that tools may read, or say why not and what to configure.
    pub fn resolve(&self, given: &str) -> Result<PathBuf, String> {
        let Some(first) = self.roots.first() else {
            return Err(format!(
                "no directory is open to tools: {}; set tools.allowed_roots \
                 (EXAI_TOOLS_ALLOWED_ROOTS) to the directories tools may read",
                self.no_root.as_deref().unwrap_or("no allowed root")
            ));
        };
        let candidate = if Path::new(given).is_absolute() {
            PathBuf::from(given)
        } else {
            first.join(given)
        };
        let real = std::fs::canonicalize(&candidate).map_err(|e| format!("`{given}`: {e}"))?;
        let meta = std::fs::metadata(&real).map_err(|e| format!("`{given}`: {e}"))?;
        if !(meta.is_dir() || meta.is_file()) {
            return Err(format!("`{given}` is not a regular file or directory"));
        }
        let Some(root) = self.roots.iter().find(|root| real.starts_with(root)) else {
            return Err(format!(
                "`{given}` is outside the allowed roots ({}); add its directory to \
                 tools.allowed_roots (EXAI_TOOLS_ALLOWED_ROOTS)",
                self.roots
                    .iter()
                    .map(|r| r.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        };
        match self.private_reason(&real, root) {
            Some(reason) => Err(format!(
                "`{given}` is private ({reason}) and is never read for tools; an operator can \
                 open it with tools.allowed_private_paths"
            )),
            None => Ok(real),
        }
    }

    /// Why `real` (canonical, under `root`) is private, if it is. Names above the root are the
    /// operator's choice and only checked against the credential directories.
    pub fn private_reason(&self, real: &Path, root: &Path) -> Option<String> {
        if self.opened(real) {
            return None;
        }
        if self.in_data_dir(real) {
            return Some("inside the exai data directory".into());
        }
        let below = real.strip_prefix(root).unwrap_or(real);
        let above = root.components().filter_map(normal);
        if let Some(name) = above
            .into_iter()
            .find(|n| SECRET_DIRS.contains(&n.as_str()))
        {
            return Some(format!("`{name}` is a directory that holds credentials"));
        }
        below
            .components()
            .filter_map(normal)
            .find_map(|name| private_name(&name).map(|why| format!("`{name}` is {why}")))
    }

    /// For a walker: whether an entry found inside a readable directory is to be left out.
    pub fn skips(&self, path: &Path) -> bool {
        if self.opened(path) {
            return false;
        }
        self.in_data_dir(path)
            || path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| private_name(n).is_some())
    }

    /// Why a root the user named on the command line is private, if it is: the data directory,
    /// a credential directory anywhere in it, or a private name of its own.
    pub fn named_root_reason(&self, real: &Path) -> Option<String> {
        if self.opened(real) {
            return None;
        }
        if self.in_data_dir(real) {
            return Some("inside the exai data directory".into());
        }
        let names: Vec<String> = real.components().filter_map(normal).collect();
        if let Some(name) = names.iter().find(|n| SECRET_DIRS.contains(&n.as_str())) {
            return Some(format!("`{name}` is a directory that holds credentials"));
        }
        let last = names.last()?;
        private_name(last).map(|why| format!("`{last}` is {why}"))
    }

    fn opened(&self, path: &Path) -> bool {
        self.allowed_private.iter().any(|p| path.starts_with(p))
    }

    /// Inside the data directory, except its cache of fetched sources ([`FETCHED_SOURCES`]):
    /// the trees of packages and repositories the operator asked to index.
    fn in_data_dir(&self, path: &Path) -> bool {
        self.data_dir
            .as_ref()
            .is_some_and(|d| path.starts_with(d) && !path.starts_with(d.join(FETCHED_SOURCES)))
    }
}

/// The bytes of `path` when it holds at most `cap` of them, `None` when it holds more. Read
/// through a bounded reader: a file that grows while read, or reports no size (`/proc`), cannot
/// bring more than the cap into memory.
pub fn read_capped(path: &Path, cap: u64) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    if file.metadata()?.len() > cap {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    file.take(cap.saturating_add(1)).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= cap).then_some(bytes))
}

fn normal(component: Component<'_>) -> Option<String> {
    match component {
        Component::Normal(name) => Some(name.to_string_lossy().to_ascii_lowercase()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Tree {
        _dir: tempfile::TempDir,
        base: PathBuf,
    }

    fn tree() -> Tree {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        for d in [
            "home/u/proj/docs",
            "home/u/proj/.github",
            "home/u/.ssh",
            "data",
            "outside",
        ] {
            std::fs::create_dir_all(base.join(d)).unwrap();
        }
        for f in [
            "home/u/proj/docs/a.md",
            "home/u/proj/.env",
            "home/u/proj/.github/x.md",
            "home/u/proj/docs/server.pem",
            "home/u/proj/id_ed25519",
            "home/u/.ssh/id_rsa",
            "data/state.sqlite",
        ] {
            std::fs::write(base.join(f), "x").unwrap();
        }
        std::os::unix::fs::symlink(base.join("outside"), base.join("home/u/proj/escape")).unwrap();
        Tree { _dir: dir, base }
    }

    fn policy(t: &Tree, roots: &[&str], cwd: &str, opened: &[&str]) -> PathPolicy {
        let s = |v: &[&str]| -> Vec<String> {
            v.iter()
                .map(|p| t.base.join(p).display().to_string())
                .collect()
        };
        PathPolicy::new(
            &s(roots),
            &s(opened),
            &t.base.join("data"),
            Some(&t.base.join(cwd)),
            Some(&t.base.join("home/u")),
        )
    }

    #[test]
    fn roots_symlinks_and_devices() {
        let t = tree();
        let p = policy(&t, &["home/u/proj"], "", &[]);
        assert!(p.resolve("docs").is_ok());
        assert!(p.resolve("docs/../docs/a.md").is_ok());
        let e = p
            .resolve(&t.base.join("outside").display().to_string())
            .unwrap_err();
        assert!(e.contains("outside the allowed roots"), "{e}");
        assert!(p.resolve("escape").unwrap_err().contains("outside"));
        assert!(p.resolve("../../../outside").is_err());
        assert!(p.resolve("missing").is_err());
        let dev = PathPolicy::new(&["/dev".into()], &[], &t.base.join("data"), None, None);
        assert!(
            dev.resolve("/dev/null")
                .unwrap_err()
                .contains("not a regular file")
        );
    }

    #[test]
    fn private_paths_are_refused_even_when_named() {
        let t = tree();
        let p = policy(&t, &["home/u/proj", "home/u", "data"], "", &[]);
        for (given, why) in [
            ("home/u/proj/.env", "dot-file"),
            ("home/u/proj/.github", "dot-file"),
            ("home/u/proj/.github/x.md", "dot-file"),
            ("home/u/proj/docs/server.pem", "key, certificate"),
            ("home/u/proj/id_ed25519", "credentials"),
            ("home/u/.ssh", "credentials"),
            ("home/u/.ssh/id_rsa", "credentials"),
            ("data/state.sqlite", "data directory"),
        ] {
            let e = p
                .resolve(&t.base.join(given).display().to_string())
                .unwrap_err();
            assert!(e.contains("is private") && e.contains(why), "{given}: {e}");
            assert!(e.contains("tools.allowed_private_paths"), "{e}");
        }
        // Relative names resolve against the first root.
        assert!(p.resolve(".env").unwrap_err().contains("private"));
        // An operator can open one on purpose, and only that one.
        let p = policy(&t, &["home/u/proj"], "", &["home/u/proj/.github"]);
        assert!(p.resolve(".github/x.md").is_ok());
        assert!(p.resolve(".env").is_err());
    }

    #[test]
    fn the_root_and_home_are_never_implicit_roots() {
        let t = tree();
        let at_home = policy(&t, &[], "home/u", &[]);
        let e = at_home.resolve("proj/docs").unwrap_err();
        assert!(
            e.contains("home directory") && e.contains("tools.allowed_roots"),
            "{e}"
        );
        let at_root = PathPolicy::new(&[], &[], &t.base.join("data"), Some(Path::new("/")), None);
        assert!(at_root.resolve("etc").unwrap_err().contains("too wide"));
        let in_project = policy(&t, &[], "home/u/proj", &[]);
        assert!(in_project.resolve("docs/a.md").is_ok());
        // Configured explicitly, the home directory is the operator's choice.
        let explicit = policy(&t, &["home/u"], "", &[]);
        assert!(explicit.resolve("proj/docs").is_ok());
        assert!(explicit.resolve(".ssh").is_err());
    }

    #[test]
    fn reads_are_capped_even_without_a_size() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, "12345").unwrap();
        assert_eq!(read_capped(&f, 5).unwrap().unwrap(), b"12345");
        assert!(read_capped(&f, 4).unwrap().is_none());
        // /proc files report size 0 whatever they hold.
        let proc_file = Path::new("/proc/self/status");
        if proc_file.exists() {
            assert!(read_capped(proc_file, 16).unwrap().is_none());
            assert!(read_capped(proc_file, 1 << 20).unwrap().is_some());
        }
    }

    #[test]
    fn walkers_and_named_roots() {
        let t = tree();
        let p = policy(&t, &["home/u/proj"], "", &[]);
        assert!(p.skips(&t.base.join("home/u/proj/.env")));
        assert!(p.skips(&t.base.join("home/u/proj/docs/server.pem")));
        assert!(p.skips(&t.base.join("data/state.sqlite")));
        assert!(!p.skips(&t.base.join("home/u/proj/docs/a.md")));
        assert!(p.named_root_reason(&t.base.join("home/u/.ssh")).is_some());
        assert!(p.named_root_reason(&t.base.join("data")).is_some());
        assert!(
            p.named_root_reason(&t.base.join("home/u/proj/docs"))
                .is_none()
        );
        // A toolchain's docs under a dot-directory stay indexable when named.
        assert!(
            p.named_root_reason(Path::new("/root/.rustup/toolchains/x/share/doc/rust/html"))
                .is_none()
        );
        assert!(
            p.named_root_reason(Path::new("/home/u/.config/gh"))
                .is_some()
        );
    }
}
