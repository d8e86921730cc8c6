//! The configuration in a backup: the configuration file the loader read (`exai.toml` in the data
//! directory, or the one `--config`/`EXAI_CONFIG` names), the data directory's `.env`, and the
//! files `ops.backup_extra` lists. They hold API keys, so inside a backup they are 0600 like the
//! databases, listed in the same manifest with a BLAKE3 checksum each.
//!
//! A restore writes them back only when asked (`--with-config`), and only to the places the
//! current configuration names: a path from the manifest is never a target unless
//! `ops.backup_extra` lists it now. Symbolic links are never written through: an extra that is a
//! link is refused at backup time (the operator lists its target instead), and a restore leaves a
//! live file that is a link alone and says where the backup's copy is.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use exai_core::Loaded;
use exai_core::private;
use serde::{Deserialize, Serialize};

use super::{DbError, Result, checksum, fault, io, sync_parent};

/// A configuration file bigger than this is not one; the cap keeps a listed log or database
/// from silently filling every backup.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// The file name the configuration file has inside a backup.
const CONFIG_NAME: &str = "exai.toml";
/// The file name the data directory's `.env` has inside a backup.
const ENV_NAME: &str = ".env";
const EXTRA_PREFIX: &str = "extra-";

/// What a configuration file in a backup is, which decides where a restore may write it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ConfigKind {
    /// The configuration file the loader read.
    Config,
    /// The data directory's `.env`.
    Env,
    /// A file `ops.backup_extra` listed.
    Extra,
}

impl ConfigKind {
    pub fn label(self) -> &'static str {
        match self {
            ConfigKind::Config => "configuration file",
            ConfigKind::Env => "data directory .env",
            ConfigKind::Extra => "ops.backup_extra file",
        }
    }
}

/// One configuration file in a backup's manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConfigEntry {
    pub kind: ConfigKind,
    /// File name inside the backup directory.
    pub file: String,
    /// The path it was read from.
    pub original: String,
    /// Where `original` pointed, when it was a symbolic link (the loader reads through links).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_target: Option<String>,
    pub bytes: u64,
    pub blake3: String,
}

/// A file to copy into a backup.
struct Source {
    kind: ConfigKind,
    file: String,
    path: PathBuf,
    link_target: Option<PathBuf>,
}

/// The configuration files this configuration was loaded from, and the listed extras. An extra
/// that is missing, a symbolic link or not a regular file stops the backup, naming the setting.
fn sources(loaded: &Loaded) -> Result<Vec<Source>> {
    let mut out = Vec::new();
    let read_by_loader = |kind: ConfigKind, file: &str, path: &Path| -> Result<Source> {
        let link = std::fs::symlink_metadata(path)
            .map_err(io(path))?
            .is_symlink();
        if !std::fs::metadata(path).map_err(io(path))?.is_file() {
            return Err(DbError::Invalid(format!(
                "{}: the {} is not a regular file; cannot back it up",
                path.display(),
                kind.label()
            )));
        }
        Ok(Source {
            kind,
            file: file.to_string(),
            path: path.to_path_buf(),
            link_target: if link {
                Some(std::fs::canonicalize(path).map_err(io(path))?)
            } else {
                None
            },
        })
    };
    if let Some(file) = &loaded.file {
        out.push(read_by_loader(ConfigKind::Config, CONFIG_NAME, file)?);
    }
    let data_env = loaded.data_dir.join(".env");
    if loaded.env_files.contains(&data_env) {
        out.push(read_by_loader(ConfigKind::Env, ENV_NAME, &data_env)?);
    }
    let mut n = 0;
    for path in &loaded.config.ops.backup_extra {
        if out.iter().any(|s| s.path == *path) {
            continue;
        }
        check_extra(path)?;
        n += 1;
        let base = path
            .file_name()
            .map(|b| b.to_string_lossy().replace(['/', '\0'], "_"))
            .unwrap_or_default();
        out.push(Source {
            kind: ConfigKind::Extra,
            file: format!("{EXTRA_PREFIX}{n}-{base}"),
            path: path.clone(),
            link_target: None,
        });
    }
    Ok(out)
}

/// An `ops.backup_extra` entry must be a regular file itself: following a link would back up,
/// and later restore over, a file the operator did not name.
fn check_extra(path: &Path) -> Result<()> {
    let refuse = |why: String| {
        Err(DbError::Invalid(format!(
            "ops.backup_extra lists {}, which {why}; fix the setting (exai.toml [ops] backup_extra, or EXAI_OPS_BACKUP_EXTRA) and run the backup again",
            path.display()
        )))
    };
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => refuse("does not exist".into()),
        Err(e) => refuse(format!("cannot be read ({e})")),
        Ok(meta) if meta.is_symlink() => {
            let target = std::fs::read_link(path)
                .map(|t| t.display().to_string())
                .unwrap_or_else(|_| "?".into());
            refuse(format!(
                "is a symbolic link (to {target}); list the file it points to instead"
            ))
        }
        Ok(meta) if !meta.is_file() => refuse("is not a regular file".into()),
        Ok(_) => Ok(()),
    }
}

/// At most [`MAX_CONFIG_BYTES`] of `path`.
fn read_capped(path: &Path) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_CONFIG_BYTES + 1).read_to_end(&mut bytes))
        .map_err(io(path))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(DbError::Invalid(format!(
            "{}: larger than {} MiB; a backup takes configuration files, not data (check ops.backup_extra)",
            path.display(),
            MAX_CONFIG_BYTES >> 20
        )));
    }
    Ok(bytes)
}

/// Copy the configuration files into the backup directory being written, 0600 and on disk.
pub(super) fn back_up(loaded: &Loaded, partial: &Path) -> Result<Vec<ConfigEntry>> {
    let mut entries = Vec::new();
    for source in sources(loaded)? {
        let bytes = read_capped(&source.path)?;
        let dest = partial.join(&source.file);
        let mut out = private::options()
            .write(true)
            .create_new(true)
            .open(&dest)
            .map_err(io(&dest))?;
        out.write_all(&bytes)
            .and_then(|()| out.sync_all())
            .map_err(io(&dest))?;
        entries.push(ConfigEntry {
            kind: source.kind,
            file: source.file,
            original: source.path.display().to_string(),
            link_target: source.link_target.map(|t| t.display().to_string()),
            bytes: bytes.len() as u64,
            blake3: blake3::hash(&bytes).to_hex().to_string(),
        });
    }
    Ok(entries)
}

/// Refuse configuration entries whose names could become paths or that repeat: the kinds have
/// fixed names, extras are `extra-<n>-<name>` with one plain path component.
pub(super) fn check_names(entries: &[ConfigEntry], backup: &Path) -> Result<()> {
    let mut seen: Vec<&str> = Vec::new();
    for e in entries {
        let ok = match e.kind {
            ConfigKind::Config => e.file == CONFIG_NAME,
            ConfigKind::Env => e.file == ENV_NAME,
            ConfigKind::Extra => plain_extra_name(&e.file) && Path::new(&e.original).is_absolute(),
        };
        if !ok {
            return Err(DbError::Invalid(format!(
                "{}: the manifest lists {:?} as a {} from {:?}, which is not a name exai writes; refusing this backup (nothing was changed): it was not written by exai or has been altered",
                backup.display(),
                e.file,
                e.kind.label(),
                e.original
            )));
        }
        let kind_taken =
            e.kind != ConfigKind::Extra && entries.iter().filter(|o| o.kind == e.kind).count() > 1;
        if seen.contains(&e.file.as_str()) || kind_taken {
            return Err(DbError::Invalid(format!(
                "{}: the manifest lists {:?} twice; refusing this backup (nothing was changed)",
                backup.display(),
                e.file
            )));
        }
        seen.push(&e.file);
    }
    Ok(())
}

fn plain_extra_name(file: &str) -> bool {
    let Some((n, base)) = file
        .strip_prefix(EXTRA_PREFIX)
        .and_then(|rest| rest.split_once('-'))
    else {
        return false;
    };
    !n.is_empty()
        && n.bytes().all(|b| b.is_ascii_digit())
        && !base.is_empty()
        && base != "."
        && base != ".."
        && !base.contains(['/', '\0'])
}

/// Each configuration file present as a regular file with its size and checksum.
pub(super) fn verify(entries: &[ConfigEntry], dir: &Path) -> Result<()> {
    for e in entries {
        let path = dir.join(&e.file);
        let meta = std::fs::symlink_metadata(&path).map_err(io(&path))?;
        if !meta.is_file() {
            return Err(DbError::Invalid(format!(
                "{}: not a regular file; the backup is damaged",
                path.display()
            )));
        }
        if meta.len() != e.bytes {
            return Err(DbError::Invalid(format!(
                "{}: {} bytes, the manifest says {}; the backup is damaged",
                path.display(),
                meta.len(),
                e.bytes
            )));
        }
        if checksum(&path)? != e.blake3 {
            return Err(DbError::Invalid(format!(
                "{}: checksum mismatch; the backup is damaged (its {} cannot be trusted)",
                path.display(),
                e.kind.label()
            )));
        }
    }
    Ok(())
}

/// A configuration file a restore put back.
#[derive(Debug, Clone, Serialize)]
pub struct RestoredConfig {
    pub kind: ConfigKind,
    pub path: String,
    /// Where the replaced file was kept, if there was one.
    pub kept: Option<String>,
    /// The live file already held the backup's content; nothing was written.
    pub unchanged: bool,
}

/// A configuration file in the backup that a restore did not put back, and why.
#[derive(Debug, Clone, Serialize)]
pub struct SkippedConfig {
    pub kind: ConfigKind,
    pub original: String,
    /// Its copy in the backup, to put in place by hand.
    pub in_backup: String,
    pub reason: String,
}

/// A configuration file to restore.
pub(super) struct Planned {
    kind: ConfigKind,
    source: PathBuf,
    blake3: String,
    target: PathBuf,
}

/// Where each configuration file goes now: the configuration file the loader reads (the one it
/// read, else `exai.toml` in the data directory), the data directory's `.env`, and an extra to
/// its own path when `ops.backup_extra` still lists it. A target that is a symbolic link, or
/// anything but a regular file, is left alone.
pub(super) fn plan(
    loaded: &Loaded,
    entries: &[ConfigEntry],
    dir: &Path,
) -> (Vec<Planned>, Vec<SkippedConfig>) {
    let mut planned = Vec::new();
    let mut skipped = Vec::new();
    for e in entries {
        let source = dir.join(&e.file);
        let target = match e.kind {
            ConfigKind::Config => Some(
                loaded
                    .file
                    .clone()
                    .unwrap_or_else(|| loaded.data_dir.join(CONFIG_NAME)),
            ),
            ConfigKind::Env => Some(loaded.data_dir.join(".env")),
            ConfigKind::Extra => {
                let original = PathBuf::from(&e.original);
                loaded
                    .config
                    .ops
                    .backup_extra
                    .contains(&original)
                    .then_some(original)
            }
        };
        let reason = match &target {
            None => Some("ops.backup_extra does not list it now".to_string()),
            Some(t) => match std::fs::symlink_metadata(t) {
                Ok(m) if m.is_symlink() => Some(format!(
                    "{} is a symbolic link{}; exai does not write through links",
                    t.display(),
                    std::fs::read_link(t)
                        .map(|l| format!(" (to {})", l.display()))
                        .unwrap_or_default()
                )),
                Ok(m) if !m.is_file() => Some(format!("{} is not a regular file", t.display())),
                _ => None,
            },
        };
        match (target, reason) {
            (Some(target), None) => planned.push(Planned {
                kind: e.kind,
                source,
                blake3: e.blake3.clone(),
                target,
            }),
            (_, reason) => skipped.push(SkippedConfig {
                kind: e.kind,
                original: e.original.clone(),
                in_backup: source.display().to_string(),
                reason: reason.unwrap_or_default(),
            }),
        }
    }
    (planned, skipped)
}

/// A configuration file written, with what it takes to put the previous one back.
pub(super) struct Written {
    target: PathBuf,
    previous: Option<Vec<u8>>,
    keep: Option<PathBuf>,
}

impl Written {
    pub(super) fn undo(&self) -> std::result::Result<(), String> {
        let put_back = match &self.previous {
            Some(bytes) => fault().and_then(|()| private::replace(&self.target, bytes)),
            None => fault().and_then(|()| std::fs::remove_file(&self.target)),
        };
        put_back.map_err(|e| match &self.keep {
            Some(keep) => format!(
                "cannot put {} back ({e}); the previous file is kept as {}: move it back by hand",
                self.target.display(),
                keep.display()
            ),
            None => format!(
                "{} was restored but did not exist before; remove it by hand ({e})",
                self.target.display()
            ),
        })?;
        if let Some(keep) = &self.keep {
            let _ = std::fs::remove_file(keep);
        }
        Ok(())
    }
}

/// A configuration file that could not be written, and the ones written before it.
pub(super) struct Failed {
    pub(super) error: DbError,
    pub(super) written: Vec<Written>,
}

/// Write each planned file, 0600 in one rename (`private::replace`), the current one first
/// copied to `<target>.replaced-<stamp>` (0600). On a failure the caller puts back the files
/// written so far.
pub(super) fn apply(
    plan: &[Planned],
    stamp: &str,
) -> std::result::Result<Vec<RestoredConfig>, Failed> {
    let mut restored = Vec::new();
    let mut written: Vec<Written> = Vec::new();
    for p in plan {
        match apply_one(p, stamp) {
            Ok((r, w)) => {
                restored.push(r);
                written.extend(w);
            }
            Err(error) => return Err(Failed { error, written }),
        }
    }
    Ok(restored)
}

fn apply_one(p: &Planned, stamp: &str) -> Result<(RestoredConfig, Option<Written>)> {
    let bytes = read_capped(&p.source)?;
    if blake3::hash(&bytes).to_hex().as_str() != p.blake3 {
        return Err(DbError::Invalid(format!(
            "{}: checksum mismatch on reading it again; is the disk failing?",
            p.source.display()
        )));
    }
    let previous = match std::fs::symlink_metadata(&p.target) {
        Ok(_) => Some(read_capped(&p.target)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(&p.target)(e)),
    };
    if previous.as_deref() == Some(bytes.as_slice()) {
        return Ok((
            RestoredConfig {
                kind: p.kind,
                path: p.target.display().to_string(),
                kept: None,
                unchanged: true,
            },
            None,
        ));
    }
    let keep = match &previous {
        Some(old) => Some(keep_copy(&p.target, stamp, old)?),
        None => None,
    };
    let replaced = fault().and_then(|()| private::replace(&p.target, &bytes));
    if let Err(e) = replaced {
        if let Some(keep) = &keep {
            let _ = std::fs::remove_file(keep);
        }
        return Err(io(&p.target)(e));
    }
    sync_parent(&p.target);
    Ok((
        RestoredConfig {
            kind: p.kind,
            path: p.target.display().to_string(),
            kept: keep.as_ref().map(|k| k.display().to_string()),
            unchanged: false,
        },
        Some(Written {
            target: p.target.clone(),
            previous,
            keep,
        }),
    ))
}

/// The current file's content under `<target>.replaced-<stamp>[-n]`, 0600 and on disk.
fn keep_copy(target: &Path, stamp: &str, bytes: &[u8]) -> Result<PathBuf> {
    let mut n = 0;
    loop {
        let suffix = if n == 0 {
            format!(".replaced-{stamp}")
        } else {
            format!(".replaced-{stamp}-{n}")
        };
        let keep = super::with_suffix(target, &suffix);
        fault().map_err(io(&keep))?;
        match private::options().write(true).create_new(true).open(&keep) {
            Ok(mut f) => {
                f.write_all(bytes)
                    .and_then(|()| f.sync_all())
                    .map_err(|e| {
                        let _ = std::fs::remove_file(&keep);
                        io(&keep)(e)
                    })?;
                return Ok(keep);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
            Err(e) => return Err(io(&keep)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{
        KNOWN_DATABASES, Manifest, backup, faults, read_manifest, restore_with_config,
        verify_backup,
    };
    use super::*;
    use exai_core::config::{Inputs, load};
    use rusqlite::Connection;

    struct Home {
        _tmp: tempfile::TempDir,
        root: PathBuf,
        home: PathBuf,
        extra: PathBuf,
    }

    const TOML: &str = "[ops]\nbackup_keep = 3\n";
    const ENV: &str = "EXAI_LOGGING_LEVEL=warn\n";

    fn home() -> Home {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let home = root.join("home");
        std::fs::create_dir_all(&home).unwrap();
        for (name, file) in KNOWN_DATABASES {
            let conn = Connection::open(home.join(file)).unwrap();
            conn.execute_batch(&format!(
                "CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('{name}');"
            ))
            .unwrap();
        }
        std::fs::write(home.join("exai.toml"), TOML).unwrap();
        std::fs::write(home.join(".env"), ENV).unwrap();
        let extra = root.join("etc/extra.env");
        std::fs::create_dir_all(extra.parent().unwrap()).unwrap();
        std::fs::write(&extra, "SECRET=1\n").unwrap();
        Home {
            _tmp: tmp,
            root,
            home,
            extra,
        }
    }

    fn loaded(h: &Home, extras: &[&Path]) -> Loaded {
        let list: Vec<String> = extras.iter().map(|p| p.display().to_string()).collect();
        load(&Inputs {
            env: vec![
                ("EXAI_HOME".into(), h.home.display().to_string()),
                ("EXAI_OPS_BACKUP_EXTRA".into(), list.join(",")),
            ],
            ..Default::default()
        })
        .unwrap()
    }

    fn backup_of(h: &Home, loaded: &Loaded) -> PathBuf {
        PathBuf::from(backup(loaded, &h.root.join("backups"), 5).unwrap().path)
    }

    fn rows(path: &Path) -> Vec<String> {
        let conn = Connection::open(path).unwrap();
        let mut stmt = conn.prepare("SELECT v FROM t").unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<std::result::Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn a_backup_holds_the_configuration_private_with_checksums() {
        let h = home();
        let loaded = loaded(&h, &[&h.extra]);
        let dir = backup_of(&h, &loaded);
        let m = read_manifest(&dir).unwrap();
        assert_eq!(m.format, 2);
        let files: Vec<(ConfigKind, &str, &str)> = m
            .config
            .iter()
            .map(|c| (c.kind, c.file.as_str(), c.original.as_str()))
            .collect();
        let toml = h.home.join("exai.toml").display().to_string();
        let env = h.home.join(".env").display().to_string();
        let extra = h.extra.display().to_string();
        assert_eq!(
            files,
            [
                (ConfigKind::Config, "exai.toml", toml.as_str()),
                (ConfigKind::Env, ".env", env.as_str()),
                (ConfigKind::Extra, "extra-1-extra.env", extra.as_str()),
            ]
        );
        for c in &m.config {
            let copy = dir.join(&c.file);
            assert_eq!(private::mode(&copy).unwrap(), 0o600, "{}", c.file);
            let bytes = std::fs::read(&copy).unwrap();
            assert_eq!(bytes, std::fs::read(&c.original).unwrap());
            assert_eq!(c.blake3, blake3::hash(&bytes).to_hex().to_string());
            assert_eq!(c.bytes, bytes.len() as u64);
        }
        verify_backup(&dir).unwrap();
    }

    #[test]
    fn wrong_extras_are_refused_naming_the_setting_before_anything_is_written() {
        let h = home();
        let link = h.root.join("etc/link.env");
        std::os::unix::fs::symlink(&h.extra, &link).unwrap();
        let missing = h.root.join("etc/missing.env");
        let directory = h.root.join("etc");
        for (path, says) in [
            (&missing, "does not exist"),
            (&link, "symbolic link"),
            (&directory, "not a regular file"),
        ] {
            let err = backup(&loaded(&h, &[path]), &h.root.join("backups"), 5)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("ops.backup_extra") && err.contains(says),
                "{says}: {err}"
            );
        }
        let left: Vec<_> = std::fs::read_dir(h.root.join("backups")).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn restore_puts_the_configuration_back_only_when_asked_and_keeps_the_current_one() {
        let h = home();
        let loaded = loaded(&h, &[&h.extra]);
        let dir = backup_of(&h, &loaded);
        let toml = h.home.join("exai.toml");
        let env = h.home.join(".env");
        std::fs::write(&toml, "[ops]\nbackup_keep = 9\n").unwrap();
        std::fs::remove_file(&env).unwrap();
        std::fs::write(&h.extra, "SECRET=2\n").unwrap();

        let r = restore_with_config(&loaded, &dir, false).unwrap();
        assert!(r.config.is_empty() && r.config_skipped.is_empty());
        assert_eq!(
            std::fs::read_to_string(&toml).unwrap(),
            "[ops]\nbackup_keep = 9\n"
        );

        let r = restore_with_config(&loaded, &dir, true).unwrap();
        assert!(r.config_skipped.is_empty(), "{:?}", r.config_skipped);
        assert_eq!(r.config.len(), 3);
        for (path, content) in [(&toml, TOML), (&env, ENV), (&h.extra, "SECRET=1\n")] {
            assert_eq!(std::fs::read_to_string(path).unwrap(), content);
            assert_eq!(private::mode(path).unwrap(), 0o600);
        }
        let kept = PathBuf::from(r.config[0].kept.as_deref().unwrap());
        assert_eq!(
            std::fs::read_to_string(&kept).unwrap(),
            "[ops]\nbackup_keep = 9\n"
        );
        assert_eq!(private::mode(&kept).unwrap(), 0o600);
        // The .env did not exist: nothing to keep.
        assert_eq!(r.config[1].kept, None);
        // Restoring again changes nothing and keeps nothing more.
        let again = restore_with_config(&loaded, &dir, true).unwrap();
        assert!(again.config.iter().all(|c| c.unchanged && c.kept.is_none()));
    }

    #[test]
    fn a_corrupt_configuration_file_fails_the_checksum_and_nothing_changes() {
        let h = home();
        let loaded = loaded(&h, &[]);
        let dir = backup_of(&h, &loaded);
        std::fs::write(dir.join("exai.toml"), "[ops]\nbackup_keep = 4\n").unwrap();
        std::fs::write(h.home.join("exai.toml"), "# live\n").unwrap();
        let err = verify_backup(&dir).unwrap_err().to_string();
        assert!(err.contains("checksum mismatch"), "{err}");
        let err = restore_with_config(&loaded, &dir, true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("checksum mismatch"), "{err}");
        assert_eq!(
            std::fs::read_to_string(h.home.join("exai.toml")).unwrap(),
            "# live\n"
        );
    }

    #[test]
    fn hostile_configuration_entries_are_refused() {
        let h = home();
        let loaded = loaded(&h, &[&h.extra]);
        let dir = backup_of(&h, &loaded);
        let pristine = read_manifest(&dir).unwrap();
        let edit = |f: &dyn Fn(&mut Manifest)| {
            let mut m = pristine.clone();
            f(&mut m);
            std::fs::write(
                dir.join(super::super::MANIFEST),
                serde_json::to_string(&m).unwrap(),
            )
            .unwrap();
        };
        type Edit = Box<dyn Fn(&mut Manifest)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("escape", Box::new(|m| m.config[0].file = "../../x".into())),
            (
                "extra escape",
                Box::new(|m| m.config[2].file = "extra-1-../x".into()),
            ),
            (
                "extra path",
                Box::new(|m| m.config[2].file = "extra-1-a/b".into()),
            ),
            (
                "env as config",
                Box::new(|m| m.config[1].kind = ConfigKind::Config),
            ),
            (
                "relative original",
                Box::new(|m| m.config[2].original = "x.env".into()),
            ),
            ("twice", Box::new(|m| m.config.push(m.config[2].clone()))),
            ("newer format", Box::new(|m| m.format = 3)),
        ];
        for (what, change) in cases {
            edit(&*change);
            let err = restore_with_config(&loaded, &dir, true)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("nothing was changed") || err.contains("newer exai"),
                "{what}: {err}"
            );
        }
    }

    #[test]
    fn a_backup_of_the_previous_format_still_restores() {
        let h = home();
        let loaded = loaded(&h, &[]);
        let dir = backup_of(&h, &loaded);
        let mut m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap())
                .unwrap();
        m["format"] = 1.into();
        m.as_object_mut().unwrap().remove("config");
        std::fs::write(dir.join("manifest.json"), m.to_string()).unwrap();
        std::fs::remove_file(dir.join("exai.toml")).unwrap();
        std::fs::remove_file(dir.join(".env")).unwrap();
        let r = restore_with_config(&loaded, &dir, true).unwrap();
        assert_eq!(r.databases.len(), 2);
        assert!(r.config.is_empty() && r.config_skipped.is_empty());
    }

    #[test]
    fn links_and_unlisted_extras_are_left_alone_and_named() {
        let h = home();
        let dir = backup_of(&h, &loaded(&h, &[&h.extra]));
        // The live exai.toml is now a link into a dotfiles checkout.
        let dotfiles = h.root.join("dotfiles.toml");
        std::fs::write(&dotfiles, "# dotfiles\n").unwrap();
        let toml = h.home.join("exai.toml");
        std::fs::remove_file(&toml).unwrap();
        std::os::unix::fs::symlink(&dotfiles, &toml).unwrap();
        std::fs::write(&h.extra, "SECRET=2\n").unwrap();
        let r = restore_with_config(&loaded(&h, &[]), &dir, true).unwrap();
        let skipped: Vec<(ConfigKind, &str)> = r
            .config_skipped
            .iter()
            .map(|s| (s.kind, s.reason.as_str()))
            .collect();
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert!(skipped[0].1.contains("symbolic link"), "{skipped:?}");
        assert!(skipped[1].1.contains("ops.backup_extra"), "{skipped:?}");
        assert_eq!(std::fs::read_to_string(&dotfiles).unwrap(), "# dotfiles\n");
        assert!(std::fs::symlink_metadata(&toml).unwrap().is_symlink());
        assert_eq!(std::fs::read_to_string(&h.extra).unwrap(), "SECRET=2\n");
    }

    /// A failure at any step of writing the configuration puts it and the databases back.
    #[test]
    fn a_failed_configuration_write_puts_everything_back() {
        let h = home();
        let loaded = loaded(&h, &[&h.extra]);
        let dir = backup_of(&h, &loaded);
        faults::fail_at(&[usize::MAX]);
        restore_with_config(&loaded, &dir, false).unwrap();
        let database_steps = faults::steps();
        faults::fail_at(&[usize::MAX]);
        restore_with_config(&loaded, &dir, false).unwrap();
        assert_eq!(faults::steps(), database_steps);
        let mut tried = 0;
        for step in database_steps.. {
            let toml = h.home.join("exai.toml");
            std::fs::write(&toml, "# changed\n").unwrap();
            std::fs::write(&h.extra, "SECRET=2\n").unwrap();
            let conn = Connection::open(h.home.join("kb.sqlite")).unwrap();
            conn.execute("UPDATE t SET v = 'changed'", []).unwrap();
            drop(conn);
            faults::fail_at(&[step]);
            let result = restore_with_config(&loaded, &dir, true);
            let asked = faults::steps();
            faults::fail_at(&[]);
            let Err(err) = result else {
                assert_eq!(step, asked, "succeeded with a fault at step {step}");
                break;
            };
            tried += 1;
            let err = err.to_string();
            assert!(err.contains("nothing changed"), "step {step}: {err}");
            assert_eq!(std::fs::read_to_string(&toml).unwrap(), "# changed\n");
            assert_eq!(std::fs::read_to_string(&h.extra).unwrap(), "SECRET=2\n");
            assert_eq!(rows(&h.home.join("kb.sqlite")), ["changed"]);
            let strays: Vec<String> = std::fs::read_dir(h.root.join("etc"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains("replaced") || n.contains(".tmp"))
                .collect();
            assert!(strays.is_empty(), "step {step}: {strays:?}");
        }
        // Two changed files (the .env is unchanged): a keep copy and a replace each.
        assert_eq!(tried, 4);
    }
}
