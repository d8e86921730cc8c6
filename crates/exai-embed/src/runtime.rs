//! Finding and loading the ONNX Runtime shared library.
//!
//! exai links nothing of ONNX Runtime at build time (`ort` with `load-dynamic`): the library is
//! looked for at run time, so a machine without it still runs exai (on candle) and nothing is
//! downloaded while building. The search is a handful of `read_dir` calls (no Python process is
//! spawned), so it can run on every start.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use crate::EmbedError;

/// Subdirectory of the data directory that `scripts/install-onnxruntime.sh` installs into.
pub const RUNTIME_DIR_NAME: &str = "onnxruntime";

/// Where the library is looked for, in order, and what the search needs from the environment
/// (separated from the process environment so tests can give their own).
#[derive(Debug, Clone, Default)]
pub(crate) struct SearchEnv {
    /// `ORT_DYLIB_PATH`, when the caller's settings did not already carry it.
    pub ort_dylib_path: Option<OsString>,
    pub path: Option<OsString>,
    pub virtual_env: Option<OsString>,
    pub home: Option<OsString>,
    pub pyenv_root: Option<OsString>,
    pub ld_library_path: Option<OsString>,
    /// Prefix for the fixed system directories (`/` outside tests).
    pub root: PathBuf,
}

impl SearchEnv {
    pub(crate) fn from_process() -> SearchEnv {
        SearchEnv {
            ort_dylib_path: std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty()),
            path: std::env::var_os("PATH"),
            virtual_env: std::env::var_os("VIRTUAL_ENV").filter(|v| !v.is_empty()),
            home: std::env::var_os("HOME").filter(|v| !v.is_empty()),
            pyenv_root: std::env::var_os("PYENV_ROOT").filter(|v| !v.is_empty()),
            ld_library_path: std::env::var_os("LD_LIBRARY_PATH"),
            root: PathBuf::from("/"),
        }
    }
}

/// System library directories, relative to [`SearchEnv::root`].
const SYSTEM_DIRS: [&str; 6] = [
    "usr/local/lib",
    "usr/lib",
    "usr/lib/x86_64-linux-gnu",
    "usr/lib/aarch64-linux-gnu",
    "usr/lib64",
    "opt/onnxruntime/lib",
];

/// How to get the library, for every "not found" message.
pub(crate) const PROVIDE_RUNTIME_HINT: &str = "install ONNX Runtime with `pip install onnxruntime` \
(exai finds `onnxruntime/capi/libonnxruntime.so.*` in the site-packages of the python3 on PATH, \
a virtualenv or pyenv) or `scripts/install-onnxruntime.sh <data dir>/onnxruntime`, or set \
ORT_DYLIB_PATH (config `embed.onnx_runtime`) to the library file";

/// Finds the ONNX Runtime library: `explicit` (config `embed.onnx_runtime`, env `ORT_DYLIB_PATH`),
/// then `data_dir/onnxruntime`, then a pip-installed `onnxruntime` package, then the system's
/// library directories. An explicit setting that names nothing usable is an error rather than a
/// reason to search elsewhere: the user asked for that file.
pub fn locate_runtime(explicit: Option<&Path>, data_dir: &Path) -> Result<PathBuf, EmbedError> {
    locate_in(explicit, data_dir, &SearchEnv::from_process())
}

pub(crate) fn locate_in(
    explicit: Option<&Path>,
    data_dir: &Path,
    env: &SearchEnv,
) -> Result<PathBuf, EmbedError> {
    let explicit = explicit
        .map(Path::to_path_buf)
        .or_else(|| env.ort_dylib_path.as_ref().map(PathBuf::from));
    if let Some(path) = explicit {
        if path.is_file() {
            return Ok(path);
        }
        if path.is_dir()
            && let Some(lib) = library_in(&path)
        {
            return Ok(lib);
        }
        return Err(EmbedError::RuntimeNotFound {
            searched: vec![path],
            hint: format!(
                "ORT_DYLIB_PATH (config `embed.onnx_runtime`) names no ONNX Runtime library; \
                 {PROVIDE_RUNTIME_HINT}"
            ),
        });
    }
    let dirs = search_dirs(data_dir, env);
    for dir in &dirs {
        if let Some(lib) = library_in(dir) {
            return Ok(lib);
        }
    }
    Err(EmbedError::RuntimeNotFound {
        searched: dirs.into_iter().filter(|d| d.is_dir()).collect(),
        hint: PROVIDE_RUNTIME_HINT.to_string(),
    })
}

/// The directories searched when nothing is configured, in order (existing or not).
fn search_dirs(data_dir: &Path, env: &SearchEnv) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let installed = data_dir.join(RUNTIME_DIR_NAME);
    dirs.push(installed.join("onnxruntime").join("capi"));
    dirs.push(installed);

    // Python environments, most specific first: the active virtualenv, the Python installations
    // whose `bin` is on PATH (a venv's bin/python3 sits beside its lib/python3.X), the user's
    // site, pyenv's versions, the distribution's packages.
    let mut prefixes: Vec<PathBuf> = Vec::new();
    if let Some(venv) = &env.virtual_env {
        prefixes.push(PathBuf::from(venv));
    }
    if let Some(path) = &env.path {
        for bin in std::env::split_paths(path) {
            if bin.join("python3").exists()
                && let Some(prefix) = bin.parent()
            {
                prefixes.push(prefix.to_path_buf());
            }
        }
    }
    if let Some(home) = &env.home {
        prefixes.push(Path::new(home).join(".local"));
    }
    let pyenv_root = env
        .pyenv_root
        .as_ref()
        .map(PathBuf::from)
        .or_else(|| env.home.as_ref().map(|h| Path::new(h).join(".pyenv")));
    if let Some(root) = pyenv_root {
        prefixes.extend(
            sorted_entries(&root.join("versions"), |_| true)
                .into_iter()
                .rev(),
        );
    }
    prefixes.push(env.root.join("usr/local"));
    prefixes.push(env.root.join("usr"));
    let mut seen = std::collections::HashSet::new();
    for prefix in prefixes {
        if !seen.insert(prefix.clone()) {
            continue;
        }
        let lib = prefix.join("lib");
        // Newest Python first, so a fresh install wins over a stale one.
        for python in sorted_entries(&lib, |n| n.starts_with("python3"))
            .into_iter()
            .rev()
        {
            for packages in ["site-packages", "dist-packages"] {
                dirs.push(python.join(packages).join("onnxruntime").join("capi"));
            }
        }
        if prefix == env.root.join("usr") {
            // Debian's python3-* packages.
            dirs.push(lib.join("python3/dist-packages/onnxruntime/capi"));
        }
    }

    if let Some(paths) = &env.ld_library_path {
        dirs.extend(std::env::split_paths(paths).filter(|p| !p.as_os_str().is_empty()));
    }
    dirs.extend(SYSTEM_DIRS.iter().map(|d| env.root.join(d)));
    dirs
}

/// Entries of `dir` whose names pass `keep`, sorted by name (missing directory: none).
fn sorted_entries(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| keep(&e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}

/// The ONNX Runtime library in `dir`: `libonnxruntime.so`, or the newest versioned
/// `libonnxruntime.so.1.x.y` (pip wheels ship only that one), or the macOS `.dylib`.
fn library_in(dir: &Path) -> Option<PathBuf> {
    let mut candidates: Vec<(Vec<u64>, PathBuf)> = sorted_entries(dir, |name| {
        name == "libonnxruntime.so"
            || name.starts_with("libonnxruntime.so.")
            || (name.starts_with("libonnxruntime") && name.ends_with(".dylib"))
    })
    .into_iter()
    .filter(|p| p.is_file())
    .map(|p| {
        let version = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
            .split('.')
            .filter_map(|part| part.parse::<u64>().ok())
            .collect();
        (version, p)
    })
    .collect();
    candidates.sort();
    candidates.pop().map(|(_, p)| p)
}

/// The process's one ONNX Runtime environment. `ort` allows a single environment and a single
/// loaded library per process, so the first library loaded is the one used from then on.
struct Loaded {
    path: PathBuf,
    environment: ort::environment::Environment,
}

/// Set once a library has loaded; a failed attempt leaves it empty so another file can be tried.
static RUNTIME: Mutex<Option<Loaded>> = Mutex::new(None);

/// Loads the library at `path` (once per process) and returns the environment sessions are
/// created in. A later call with another path gets the first library, with a debug note.
pub(crate) fn environment(path: &Path) -> Result<ort::environment::Environment, EmbedError> {
    // A poisoned lock only means another thread panicked while loading; the slot is still valid.
    let mut slot = RUNTIME.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(loaded) = slot.as_ref() {
        if loaded.path != path {
            tracing::debug!(
                loaded = %loaded.path.display(),
                requested = %path.display(),
                "ONNX Runtime is already loaded from another file; using that one"
            );
        }
        return Ok(loaded.environment.clone());
    }
    let failed = |reason: String| EmbedError::RuntimeLoad {
        path: path.to_path_buf(),
        reason,
    };
    let environment = ort::init_from(path)
        .map_err(|e| failed(e.to_string()))?
        .with_name("exai")
        .build()
        .map_err(|e| failed(e.to_string()))?;
    tracing::info!(library = %path.display(), "loaded ONNX Runtime");
    *slot = Some(Loaded {
        path: path.to_path_buf(),
        environment: environment.clone(),
    });
    Ok(environment)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"not really a library").unwrap();
    }

    fn env_at(root: &Path) -> SearchEnv {
        SearchEnv {
            root: root.to_path_buf(),
            ..SearchEnv::default()
        }
    }

    #[test]
    fn nothing_installed_says_how_to_get_it() {
        let tmp = tempfile::tempdir().unwrap();
        let err = locate_in(None, &tmp.path().join("data"), &env_at(tmp.path())).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, EmbedError::RuntimeNotFound { .. }), "{msg}");
        assert!(msg.contains("pip install onnxruntime"), "{msg}");
        assert!(msg.contains("ORT_DYLIB_PATH"), "{msg}");
    }

    #[test]
    fn explicit_file_or_directory_wins_and_a_wrong_one_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let system = tmp.path().join("usr/lib/libonnxruntime.so");
        touch(&system);
        let lib = tmp.path().join("custom/libonnxruntime.so.1.32.0");
        touch(&lib);
        let env = env_at(tmp.path());
        assert_eq!(locate_in(Some(&lib), &data, &env).unwrap(), lib);
        assert_eq!(
            locate_in(Some(&tmp.path().join("custom")), &data, &env).unwrap(),
            lib
        );
        // ORT_DYLIB_PATH from the environment counts as explicit too.
        let with_var = SearchEnv {
            ort_dylib_path: Some(lib.clone().into_os_string()),
            ..env.clone()
        };
        assert_eq!(locate_in(None, &data, &with_var).unwrap(), lib);
        let missing = tmp.path().join("nope.so");
        let msg = locate_in(Some(&missing), &data, &env)
            .unwrap_err()
            .to_string();
        assert!(msg.contains(&missing.display().to_string()), "{msg}");
        assert!(msg.contains("embed.onnx_runtime"), "{msg}");
        // Without an explicit path the system copy is found.
        assert_eq!(locate_in(None, &data, &env).unwrap(), system);
    }

    #[test]
    fn search_order_data_dir_then_python_then_system() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let data = root.join("data");
        let system = root.join("usr/lib/x86_64-linux-gnu/libonnxruntime.so.1.20.0");
        touch(&system);
        let mut env = env_at(root);
        assert_eq!(locate_in(None, &data, &env).unwrap(), system);

        // pyenv's newest Python wins over the system library.
        let pyenv = root.join("home/.pyenv/versions");
        touch(
            &pyenv.join(
                "3.10.1/lib/python3.10/site-packages/onnxruntime/capi/libonnxruntime.so.1.18.0",
            ),
        );
        let newest = pyenv
            .join("3.11.7/lib/python3.11/site-packages/onnxruntime/capi/libonnxruntime.so.1.32.0");
        touch(&newest);
        env.home = Some(root.join("home").into_os_string());
        assert_eq!(locate_in(None, &data, &env).unwrap(), newest);

        // A virtualenv whose bin is on PATH wins over pyenv.
        let venv = root.join("venv");
        touch(&venv.join("bin/python3"));
        let in_venv =
            venv.join("lib/python3.12/site-packages/onnxruntime/capi/libonnxruntime.so.1.31.1");
        touch(&in_venv);
        env.path = Some(std::env::join_paths([root.join("nothing"), venv.join("bin")]).unwrap());
        assert_eq!(locate_in(None, &data, &env).unwrap(), in_venv);

        // What scripts/install-onnxruntime.sh put in the data directory wins over everything.
        let installed = data.join("onnxruntime/onnxruntime/capi/libonnxruntime.so.1.32.0");
        touch(&installed);
        // The providers' helper library beside it is not the runtime.
        touch(&data.join("onnxruntime/onnxruntime/capi/libonnxruntime_providers_shared.so"));
        assert_eq!(locate_in(None, &data, &env).unwrap(), installed);
    }

    #[test]
    fn the_newest_versioned_library_in_a_directory_is_chosen() {
        let tmp = tempfile::tempdir().unwrap();
        for name in [
            "libonnxruntime.so.1.9.0",
            "libonnxruntime.so.1.17.3",
            "libonnxruntime_providers_shared.so",
        ] {
            touch(&tmp.path().join(name));
        }
        assert_eq!(
            library_in(tmp.path()).unwrap(),
            tmp.path().join("libonnxruntime.so.1.17.3")
        );
        assert!(library_in(&tmp.path().join("absent")).is_none());
    }

    #[test]
    fn a_file_that_is_not_onnx_runtime_fails_to_load_with_its_path() {
        let tmp = tempfile::tempdir().unwrap();
        let fake = tmp.path().join("libonnxruntime.so");
        touch(&fake);
        // A failed load leaves nothing behind, so a real library can still be loaded later.
        let msg = environment(&fake).unwrap_err().to_string();
        assert!(msg.contains(&fake.display().to_string()), "{msg}");
    }
}
