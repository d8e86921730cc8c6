//! Unpacking downloaded packages (`.tar.gz`/`.tgz`/`.crate` and zip wheels) into a directory,
//! safely and atomically.
//!
//! An archive from a registry is untrusted input: entries with absolute paths or `..` steps refuse
//! the whole archive, symlinks, hard links and device files are never created, and the entry count
//! and the total unpacked size are bounded so that a decompression bomb stops early with a clear
//! error. Unpacking goes to a hidden temporary sibling that is renamed into place only when
//! complete, so a run killed at any point leaves either the whole tree or none of it; a tree that
//! is already in place is reused by the caller.

use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Error;

/// Bounds on a download and on what it may unpack to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnpackLimits {
    /// Largest archive accepted from the registry.
    pub max_download_bytes: u64,
    /// Largest total size of the unpacked files.
    pub max_unpacked_bytes: u64,
    /// Most entries (files, directories and skipped entries) in one archive.
    pub max_entries: u64,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        Self {
            max_download_bytes: 100 * 1024 * 1024,
            max_unpacked_bytes: 512 * 1024 * 1024,
            max_entries: 50_000,
        }
    }
}

/// The container formats registries publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// gzip-compressed tar: npm tarballs, PyPI sdists, `.crate` files.
    TarGz,
    /// zip: PyPI wheels and old zip sdists.
    Zip,
}

/// Where [`unpack`] puts the tree for `dir_name` under `dest`: `dest/dir_name`.
pub fn unpacked_dir(dest: &Path, dir_name: &str) -> PathBuf {
    dest.join(dir_name)
}

/// Unpacks `bytes` into `dest/dir_name` and returns that path. With `strip_single_root`, an
/// archive whose entries all sit in one top-level directory (`package/`, `NAME-VERSION/`) has
/// that directory's contents placed at the root. If another run put the tree in place first, its
/// tree is kept.
pub fn unpack(
    bytes: &[u8],
    format: ArchiveFormat,
    label: &str,
    dest: &Path,
    dir_name: &str,
    limits: &UnpackLimits,
    strip_single_root: bool,
) -> Result<PathBuf, Error> {
    let target = unpacked_dir(dest, dir_name);
    fs::create_dir_all(dest).map_err(|e| Error::io(format!("creating {}", dest.display()), e))?;
    let prefix = format!(".partial-{dir_name}-");
    remove_stale_partials(dest, &prefix);
    let temp = tempfile::Builder::new()
        .prefix(&prefix)
        .tempdir_in(dest)
        .map_err(|e| {
            Error::io(
                format!("creating a temporary directory in {}", dest.display()),
                e,
            )
        })?;
    let mut budget = Budget::new(limits, label);
    match format {
        ArchiveFormat::TarGz => extract_tar_gz(bytes, temp.path(), &mut budget)?,
        ArchiveFormat::Zip => extract_zip(bytes, temp.path(), &mut budget)?,
    }
    let root = if strip_single_root {
        single_directory(temp.path())?.unwrap_or_else(|| temp.path().to_path_buf())
    } else {
        temp.path().to_path_buf()
    };
    match fs::rename(&root, &target) {
        Ok(()) => Ok(target),
        Err(_) if target.is_dir() => Ok(target),
        Err(e) => Err(Error::io(
            format!("moving the unpacked tree to {}", target.display()),
            e,
        )),
    }
}

/// Removes temporary trees a killed run left for the same package version.
fn remove_stale_partials(dest: &Path, prefix: &str) {
    let Ok(entries) = fs::read_dir(dest) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(prefix)
            && let Err(e) = fs::remove_dir_all(entry.path())
        {
            tracing::warn!(path = %entry.path().display(), error = %e, "could not remove a stale partial unpack");
        }
    }
}

/// The only entry of `dir` when it is a directory.
fn single_directory(dir: &Path) -> Result<Option<PathBuf>, Error> {
    let context = || format!("reading {}", dir.display());
    let mut entries = fs::read_dir(dir).map_err(|e| Error::io(context(), e))?;
    let Some(first) = entries.next() else {
        return Ok(None);
    };
    let first = first.map_err(|e| Error::io(context(), e))?;
    let is_dir = first
        .file_type()
        .map_err(|e| Error::io(context(), e))?
        .is_dir();
    Ok((is_dir && entries.next().is_none()).then(|| first.path()))
}

/// Counts entries and bytes against the limits.
struct Budget<'a> {
    limits: &'a UnpackLimits,
    label: &'a str,
    entries: u64,
    bytes: u64,
}

impl<'a> Budget<'a> {
    fn new(limits: &'a UnpackLimits, label: &'a str) -> Self {
        Self {
            limits,
            label,
            entries: 0,
            bytes: 0,
        }
    }

    fn refuse(&self, reason: String) -> Error {
        Error::UnsafeArchive {
            archive: self.label.to_owned(),
            reason,
        }
    }

    fn add_entry(&mut self) -> Result<(), Error> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(self.refuse(format!(
                "it has more than {} entries (the `max_entries` unpack limit)",
                self.limits.max_entries
            )));
        }
        Ok(())
    }

    fn remaining(&self) -> u64 {
        self.limits.max_unpacked_bytes.saturating_sub(self.bytes)
    }

    fn add_bytes(&mut self, count: u64) -> Result<(), Error> {
        self.bytes = self.bytes.saturating_add(count);
        if self.bytes > self.limits.max_unpacked_bytes {
            return Err(self.refuse(format!(
                "it unpacks to more than {} bytes (the `max_unpacked_bytes` unpack limit)",
                self.limits.max_unpacked_bytes
            )));
        }
        Ok(())
    }

    /// Copies one file's content from `reader` to `root/relative`, within the byte budget.
    fn write_file(
        &mut self,
        root: &Path,
        relative: &Path,
        reader: &mut dyn Read,
    ) -> Result<(), Error> {
        let path = root.join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
        }
        let mut file = fs::File::create(&path)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        let allowed = self.remaining();
        let copied = io::copy(&mut reader.take(allowed.saturating_add(1)), &mut file)
            .map_err(|e| self.refuse(format!("reading {} failed: {e}", relative.display())))?;
        self.add_bytes(copied)
    }
}

/// The entry's path as a relative path with only normal steps; absolute paths and `..` refuse
/// the archive.
fn safe_relative(path: &Path, budget: &Budget<'_>) -> Result<PathBuf, Error> {
    let mut relative = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => relative.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(budget.refuse(format!(
                    "entry `{}` points outside the unpack directory (absolute path or `..`)",
                    path.display()
                )));
            }
        }
    }
    Ok(relative)
}

fn extract_tar_gz(bytes: &[u8], root: &Path, budget: &mut Budget<'_>) -> Result<(), Error> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let entries = archive
        .entries()
        .map_err(|e| budget.refuse(format!("it is not a readable tar.gz: {e}")))?;
    for entry in entries {
        let mut entry =
            entry.map_err(|e| budget.refuse(format!("it is not a readable tar.gz: {e}")))?;
        budget.add_entry()?;
        let path = entry
            .path()
            .map_err(|e| budget.refuse(format!("an entry has an unreadable path: {e}")))?
            .into_owned();
        let relative = safe_relative(&path, budget)?;
        let kind = entry.header().entry_type();
        if relative.as_os_str().is_empty() {
            continue;
        }
        if kind.is_file() || kind.is_contiguous() {
            budget.write_file(root, &relative, &mut entry)?;
        } else if kind.is_dir() {
            let dir = root.join(&relative);
            fs::create_dir_all(&dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        } else {
            // Links, devices, FIFOs and global headers are not created; their declared size still
            // counts, since skipping them still decompresses it.
            budget.add_bytes(entry.size())?;
            tracing::debug!(entry = %path.display(), "skipped a non-regular archive entry");
        }
    }
    Ok(())
}

fn extract_zip(bytes: &[u8], root: &Path, budget: &mut Budget<'_>) -> Result<(), Error> {
    let mut archive = zip::ZipArchive::new(io::Cursor::new(bytes))
        .map_err(|e| budget.refuse(format!("it is not a readable zip: {e}")))?;
    if archive.len() as u64 > budget.limits.max_entries {
        return Err(budget.refuse(format!(
            "it has {} entries, more than the `max_entries` unpack limit of {}",
            archive.len(),
            budget.limits.max_entries
        )));
    }
    for index in 0..archive.len() {
        let mut file = archive
            .by_index(index)
            .map_err(|e| budget.refuse(format!("entry {index} is unreadable: {e}")))?;
        budget.add_entry()?;
        let name = file
            .name()
            .map_err(|e| budget.refuse(format!("entry {index} has an unreadable name: {e}")))?
            .into_owned();
        let relative = safe_relative(Path::new(&name), budget)?;
        if relative.as_os_str().is_empty() || file.is_symlink() {
            continue;
        }
        if file.is_dir() {
            let dir = root.join(&relative);
            fs::create_dir_all(&dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        } else {
            budget.write_file(root, &relative, &mut file)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn zip_of(build: impl FnOnce(&mut zip::ZipWriter<io::Cursor<Vec<u8>>>)) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        build(&mut writer);
        writer.finish().unwrap().into_inner()
    }

    fn stored() -> zip::write::SimpleFileOptions {
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored)
    }

    fn unpack_zip(bytes: &[u8], dest: &Path, limits: &UnpackLimits) -> Result<PathBuf, Error> {
        unpack(
            bytes,
            ArchiveFormat::Zip,
            "test.whl",
            dest,
            "pkg@1.0",
            limits,
            false,
        )
    }

    #[test]
    fn zip_entries_outside_the_tree_are_refused() {
        let bytes = zip_of(|w| {
            w.start_file("pkg/__init__.py", stored()).unwrap();
            w.write_all(b"ok").unwrap();
            w.start_file("../../escape.py", stored()).unwrap();
            w.write_all(b"owned").unwrap();
        });
        let dest = tempfile::tempdir().unwrap();
        let error =
            unpack_zip(&bytes, &dest.path().join("out"), &UnpackLimits::default()).unwrap_err();
        assert!(error.to_string().contains("points outside"), "{error}");
        assert_eq!(fs::read_dir(dest.path().join("out")).unwrap().count(), 0);
        assert!(!dest.path().join("escape.py").exists());
    }

    #[test]
    fn zip_symlinks_are_skipped_and_bounds_hold() {
        let bytes = zip_of(|w| {
            w.add_directory("pkg/", stored()).unwrap();
            w.start_file("pkg/__init__.py", stored()).unwrap();
            w.write_all(&[b'x'; 4096]).unwrap();
            w.add_symlink("pkg/passwd", "/etc/passwd", stored())
                .unwrap();
        });
        let dest = tempfile::tempdir().unwrap();
        let root = unpack_zip(&bytes, dest.path(), &UnpackLimits::default()).unwrap();
        assert_eq!(root, dest.path().join("pkg@1.0"));
        assert!(root.join("pkg/__init__.py").is_file());
        assert!(root.join("pkg/passwd").symlink_metadata().is_err());

        let tight = UnpackLimits {
            max_unpacked_bytes: 1000,
            ..UnpackLimits::default()
        };
        let other = tempfile::tempdir().unwrap();
        let error = unpack_zip(&bytes, other.path(), &tight).unwrap_err();
        assert!(
            error.to_string().contains("more than 1000 bytes"),
            "{error}"
        );
        let few = UnpackLimits {
            max_entries: 2,
            ..UnpackLimits::default()
        };
        let error = unpack_zip(&bytes, other.path(), &few).unwrap_err();
        assert!(error.to_string().contains("3 entries"), "{error}");
    }

    #[test]
    fn a_stale_partial_tree_is_cleared_and_a_finished_one_kept() {
        let dest = tempfile::tempdir().unwrap();
        let stale = dest.path().join(".partial-pkg@1.0-killed");
        fs::create_dir_all(stale.join("half")).unwrap();
        let bytes = zip_of(|w| {
            w.start_file("a.py", stored()).unwrap();
            w.write_all(b"a").unwrap();
        });
        let root = unpack_zip(&bytes, dest.path(), &UnpackLimits::default()).unwrap();
        assert!(!stale.exists(), "the killed run's leftovers are removed");
        assert_eq!(fs::read_to_string(root.join("a.py")).unwrap(), "a");
        let names: Vec<_> = fs::read_dir(dest.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["pkg@1.0"]);
    }
}
