//! Private files. The data directory holds conversations, keys, logs of what agents asked and
//! backups of all of it, so it is 0700 and every file exai writes there is 0600 — set when the
//! file is created, so there is never a moment when another local user could open it. Files
//! exai writes elsewhere (a `kb.database` outside the data directory, a backups directory of the
//! operator's choosing) are created 0600 as well; directories exai did not create are left as
//! they are, except the data directory itself, which [`tighten`] narrows at start.
//!
//! Modes are explicit (`OpenOptionsExt::mode`) rather than a process-wide umask: setting the
//! umask needs `unsafe` libc calls, and it would also change files the tools create for the user.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of the data directory and of every directory exai creates.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file exai creates.
pub const FILE_MODE: u32 = 0o600;

/// How deep [`tighten`] looks inside exai's subdirectories (`backups/exai-backup-…/kb.sqlite`
/// and a downloaded model's `models/<name>/onnx/model.onnx` are the deepest files exai writes).
const TIGHTEN_DEPTH: usize = 3;

/// Subdirectories of the data directory that exai manages whole.
const OWN_DIRS: [&str; 3] = ["logs", "backups", "models"];

/// Files at the top of the data directory that are exai's: the databases with everything SQLite
/// and exai keep beside them (`-wal`, `-shm`, `.ann`, `.replaced-…`, `.restoring`), the pid and
/// lock files, and the configuration, which may hold keys.
fn own_file(name: &str) -> bool {
    ["kb.sqlite", "state.sqlite", "exai.pid", "exai.lock"]
        .iter()
        .any(|prefix| name.starts_with(prefix))
        || name == "exai.toml"
        || name == ".env"
}

/// Create `dir` and its missing parents, each new one 0700; existing directories keep their mode.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
}

/// Open options whose newly created file is 0600. Add `write`, `create`, … as usual.
pub fn options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.mode(FILE_MODE);
    options
}

/// Narrow an open file to 0600 (for files that may predate this version).
pub fn restrict(file: &File) -> io::Result<()> {
    file.set_permissions(Permissions::from_mode(FILE_MODE))
}

/// Narrow the file at `path` to 0600.
pub fn restrict_path(path: &Path) -> io::Result<()> {
    fs::set_permissions(path, Permissions::from_mode(FILE_MODE))
}

/// `std::fs::write`, but the file is 0600 whether it is new or not.
pub fn write(path: &Path, contents: impl AsRef<[u8]>) -> io::Result<()> {
    let mut file = options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    restrict(&file)?;
    file.write_all(contents.as_ref())
}

/// Replace the file at `path` with `contents`, 0600, in one rename: a crash leaves the old file
/// or the new one, never half of either. Missing directories are created 0700.
pub fn replace(path: &Path, contents: impl AsRef<[u8]>) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let written = write(&tmp, contents)
        .and_then(|()| File::open(&tmp)?.sync_all())
        .and_then(|()| fs::rename(&tmp, path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Create a missing SQLite database file empty and 0600 before SQLite opens it. SQLite creates
/// a new database 0644 but gives its `-wal`, `-shm` and `-journal` files the database file's own
/// mode, so this one step keeps the whole set private. An existing file is left as it is.
pub fn prepare_sqlite(path: &Path) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_dir_all(dir)?;
    }
    match options().write(true).create_new(true).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Remove group and other permissions from the data directory and from what exai keeps in it,
/// fixing what earlier versions created world-readable. Only exai's own entries are touched
/// (the data directory may be one the user also keeps other things in), symbolic links are not
/// followed and owner bits never change. Returns one line per path that could not be changed;
/// the caller decides how loudly to say so. A missing directory is not an error.
pub fn tighten(data_dir: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    match fs::symlink_metadata(data_dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return problems,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return problems,
        Err(e) => {
            problems.push(format!("{}: {e}", data_dir.display()));
            return problems;
        }
    }
    narrow(data_dir, &mut problems);
    let entries = match fs::read_dir(data_dir) {
        Ok(rd) => rd,
        Err(e) => {
            problems.push(format!("{}: {e}", data_dir.display()));
            return problems;
        }
    };
    for entry in entries.flatten() {
        let (Ok(kind), name) = (entry.file_type(), entry.file_name()) else {
            continue;
        };
        let name = name.to_string_lossy();
        if kind.is_dir() && OWN_DIRS.contains(&name.as_ref()) {
            tighten_tree(&entry.path(), TIGHTEN_DEPTH, &mut problems);
        } else if kind.is_file() && own_file(&name) {
            narrow(&entry.path(), &mut problems);
        }
    }
    problems
}

fn tighten_tree(dir: &Path, depth: usize, problems: &mut Vec<String>) {
    narrow(dir, problems);
    if depth == 0 {
        return;
    }
    let entries = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => {
            problems.push(format!("{}: {e}", dir.display()));
            return;
        }
    };
    let mut dirs: Vec<PathBuf> = Vec::new();
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            dirs.push(entry.path());
        } else if kind.is_file() {
            narrow(&entry.path(), problems);
        }
    }
    for sub in dirs {
        tighten_tree(&sub, depth - 1, problems);
    }
}

/// Clear the group and other bits of one file or directory, if any are set.
fn narrow(path: &Path, problems: &mut Vec<String>) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return;
    }
    if let Err(e) = fs::set_permissions(path, Permissions::from_mode(mode & !0o077)) {
        problems.push(format!(
            "{} is readable by other users (mode {:o}) and cannot be made private: {e}",
            path.display(),
            mode
        ));
    }
}

/// The permission bits of `path` (tests and checks).
pub fn mode(path: &Path) -> io::Result<u32> {
    Ok(fs::symlink_metadata(path)?.permissions().mode() & 0o7777)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_directories_and_files_are_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        create_dir_all(&dir).unwrap();
        assert_eq!(mode(&tmp.path().join("a")).unwrap(), 0o700);
        assert_eq!(mode(&dir).unwrap(), 0o700);

        let file = dir.join("f");
        write(&file, "x").unwrap();
        assert_eq!(mode(&file).unwrap(), 0o600);

        // An existing readable file is narrowed when rewritten.
        fs::set_permissions(&file, Permissions::from_mode(0o644)).unwrap();
        write(&file, "y").unwrap();
        assert_eq!(mode(&file).unwrap(), 0o600);
        assert_eq!(fs::read_to_string(&file).unwrap(), "y");

        let db = tmp.path().join("new/kb.sqlite");
        prepare_sqlite(&db).unwrap();
        assert_eq!(mode(&db).unwrap(), 0o600);
        assert_eq!(fs::metadata(&db).unwrap().len(), 0);
        // An existing database is not touched.
        fs::write(&db, "content").unwrap();
        fs::set_permissions(&db, Permissions::from_mode(0o640)).unwrap();
        prepare_sqlite(&db).unwrap();
        assert_eq!(mode(&db).unwrap(), 0o640);
        assert_eq!(fs::read_to_string(&db).unwrap(), "content");
    }

    #[test]
    fn tighten_removes_group_and_other_bits_without_following_links() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let outside = tmp.path().join("outside");
        fs::create_dir_all(home.join("logs")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(home.join("kb.sqlite"), "").unwrap();
        fs::write(home.join("logs/exai.log"), "").unwrap();
        fs::create_dir_all(home.join("backups/exai-backup-1")).unwrap();
        fs::create_dir_all(home.join("projects")).unwrap();
        fs::write(home.join("backups/exai-backup-1/kb.sqlite"), "").unwrap();
        fs::write(home.join("kb.sqlite-wal"), "").unwrap();
        fs::write(home.join(".env"), "").unwrap();
        fs::write(home.join("notes.txt"), "").unwrap();
        fs::write(home.join("projects/readme"), "").unwrap();
        fs::write(outside.join("mine"), "").unwrap();
        fs::create_dir_all(outside.join("sub")).unwrap();
        for (path, m) in [
            (home.clone(), 0o755),
            (home.join("logs"), 0o775),
            (home.join("backups"), 0o755),
            (home.join("backups/exai-backup-1"), 0o755),
            (home.join("backups/exai-backup-1/kb.sqlite"), 0o644),
            (home.join("kb.sqlite"), 0o744),
            (home.join("kb.sqlite-wal"), 0o644),
            (home.join(".env"), 0o644),
            (home.join("logs/exai.log"), 0o666),
            (home.join("notes.txt"), 0o644),
            (home.join("projects"), 0o755),
            (home.join("projects/readme"), 0o644),
            (outside.clone(), 0o755),
            (outside.join("mine"), 0o644),
        ] {
            fs::set_permissions(&path, Permissions::from_mode(m)).unwrap();
        }
        std::os::unix::fs::symlink(&outside, home.join("models")).unwrap();
        std::os::unix::fs::symlink(outside.join("mine"), home.join("exai.toml")).unwrap();

        assert!(tighten(&home).is_empty());
        for (path, m) in [
            (home.clone(), 0o700),
            (home.join("logs"), 0o700),
            (home.join("logs/exai.log"), 0o600),
            (home.join("backups/exai-backup-1"), 0o700),
            (home.join("backups/exai-backup-1/kb.sqlite"), 0o600),
            // Owner bits stay: only what others could do is taken away.
            (home.join("kb.sqlite"), 0o700),
            (home.join("kb.sqlite-wal"), 0o600),
            (home.join(".env"), 0o600),
            // Not exai's: left alone.
            (home.join("notes.txt"), 0o644),
            (home.join("projects"), 0o755),
            (home.join("projects/readme"), 0o644),
            // Nothing behind a symbolic link changed.
            (outside.clone(), 0o755),
            (outside.join("mine"), 0o644),
        ] {
            assert_eq!(mode(&path).unwrap(), m, "{}", path.display());
        }

        assert!(tighten(&tmp.path().join("missing")).is_empty());
    }
}
