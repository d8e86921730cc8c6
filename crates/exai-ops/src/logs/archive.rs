//! `exai logs archive`: the rotated log and activity files (`exai.log.1` …, never the live
//! ones) compressed with gzip into `logs/archives/<stream>.<first day>-<last day>.gz`, and
//! archives older than `logging.archive_keep_days` deleted.
//!
//! A running daemon may rotate while this runs, renumbering the files. So the files are opened
//! once, and afterwards each is found again by its inode (a rotated file is never written to
//! again), not by its number. The originals are removed only once the archive is complete and on
//! disk; a run killed before that leaves the originals and a `.partial` file the next run
//! removes. A run killed between the two would leave the same entries in an archive and in a
//! rotated file (read twice by `--archived`), never none.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use exai_core::activity::ActivityRecord;
use exai_core::paths::DataPaths;
use exai_core::private;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde::Serialize;

use super::{Entry, Origin, push_activity_text, push_log_text, rotated_set};

/// Below the log directory.
pub const ARCHIVES_DIR: &str = "archives";
const GZ: &str = ".gz";
const PARTIAL: &str = ".partial";

pub fn archives_dir(paths: &DataPaths) -> PathBuf {
    paths.logs().join(ARCHIVES_DIR)
}

/// The live file of each stream, and what its lines are.
fn streams(paths: &DataPaths) -> [(PathBuf, Origin); 2] {
    [
        (paths.log_file(), Origin::Log),
        (paths.activity_file(), Origin::Activity),
    ]
}

/// One archive written (or, on a dry run, that would be).
#[derive(Debug, Clone, Serialize)]
pub struct NewArchive {
    pub path: PathBuf,
    /// The rotated files it holds, oldest first.
    pub files: Vec<PathBuf>,
    /// Their size, and the archive's (0 on a dry run).
    pub bytes_in: u64,
    pub bytes_out: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ArchiveReport {
    pub archived: Vec<NewArchive>,
    /// Archives past the retention, with their size.
    pub expired: Vec<(PathBuf, u64)>,
    /// Unfinished archives that killed runs left behind, removed.
    pub abandoned: Vec<PathBuf>,
    pub dry_run: bool,
}

/// Archive the rotated files of both logs, then delete archives whose newest entry is older
/// than `keep`. With `dry_run`, only say what would happen.
pub fn archive(paths: &DataPaths, keep: Duration, dry_run: bool) -> std::io::Result<ArchiveReport> {
    let dir = archives_dir(paths);
    let mut report = ArchiveReport {
        dry_run,
        ..ArchiveReport::default()
    };
    if !dry_run {
        report.abandoned = remove_abandoned(&dir);
    }
    for (live, origin) in streams(paths) {
        let rotated: Vec<PathBuf> = rotated_set(&live)
            .into_iter()
            .filter(|p| *p != live)
            .collect();
        if rotated.is_empty() {
            continue;
        }
        let stream = live
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let archived = if dry_run {
            plan_one(&dir, &stream, &rotated, origin)?
        } else {
            archive_one(&dir, &live, &stream, &rotated, origin)?
        };
        report.archived.push(archived);
    }
    report.expired = expired(&dir, keep, dry_run, &report.archived)?;
    Ok(report)
}

/// The first and last day the files hold: the oldest file's first entry and the newest file's
/// last write.
fn date_range(files: &[PathBuf], origin: Origin) -> std::io::Result<(SystemTime, SystemTime)> {
    let newest = files.last().map(std::fs::metadata).transpose()?;
    let last = match newest {
        Some(m) => m.modified()?,
        None => SystemTime::now(),
    };
    let first = files
        .first()
        .and_then(|f| first_time(f, origin))
        .map_or_else(
            || {
                files
                    .first()
                    .map(|f| std::fs::metadata(f).and_then(|m| m.modified()))
                    .transpose()
                    .map(|t| t.unwrap_or(last))
            },
            |t| Ok(SystemTime::from(t)),
        )?;
    Ok((first.min(last), last))
}

/// The time of the first entry in `path` that has one (a file may start with the continuation
/// lines of an entry rotated out).
fn first_time(path: &Path, origin: Origin) -> Option<DateTime<Utc>> {
    let file = std::fs::File::open(path).ok()?;
    BufReader::new(file)
        .lines()
        .take(100)
        .map_while(Result::ok)
        .find_map(|line| match origin {
            Origin::Log => super::parse_log_line(&line).and_then(|e| e.time),
            Origin::Activity => serde_json::from_str::<ActivityRecord>(&line)
                .ok()
                .and_then(|r| DateTime::parse_from_rfc3339(&r.time).ok())
                .map(|t| t.with_timezone(&Utc)),
        })
}

/// `<stream>.<first>-<last>.gz`, with `-2`, `-3` … when an earlier run took that name.
fn archive_name(dir: &Path, stream: &str, first: SystemTime, last: SystemTime) -> PathBuf {
    let day = |t: SystemTime| DateTime::<Utc>::from(t).format("%Y%m%d").to_string();
    let base = format!("{stream}.{}-{}", day(first), day(last));
    let mut path = dir.join(format!("{base}{GZ}"));
    let mut n = 2;
    while path.symlink_metadata().is_ok() {
        path = dir.join(format!("{base}-{n}{GZ}"));
        n += 1;
    }
    path
}

fn plan_one(
    dir: &Path,
    stream: &str,
    rotated: &[PathBuf],
    origin: Origin,
) -> std::io::Result<NewArchive> {
    let (first, last) = date_range(rotated, origin)?;
    let mut bytes_in = 0;
    for f in rotated {
        bytes_in += std::fs::metadata(f)?.len();
    }
    Ok(NewArchive {
        path: archive_name(dir, stream, first, last),
        files: rotated.to_vec(),
        bytes_in,
        bytes_out: 0,
    })
}

fn archive_one(
    dir: &Path,
    live: &Path,
    stream: &str,
    rotated: &[PathBuf],
    origin: Origin,
) -> std::io::Result<NewArchive> {
    // Open every file first: what is compressed is what these handles read, whatever a
    // rotation renames meanwhile.
    let mut opened = Vec::new();
    for path in rotated {
        let file = std::fs::File::open(path)?;
        let meta = file.metadata()?;
        opened.push((path.clone(), file, meta));
    }
    let (first, last) = date_range(rotated, origin)?;
    private::create_dir_all(dir)?;
    let path = archive_name(dir, stream, first, last);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let partial = dir.join(format!(".{name}.{}{PARTIAL}", std::process::id()));
    let out = private::options()
        .write(true)
        .create_new(true)
        .open(&partial)?;
    let written = (|| {
        let mut gz = GzEncoder::new(out, Compression::default());
        let mut bytes_in = 0;
        for (_, file, _) in &mut opened {
            bytes_in += std::io::copy(file, &mut gz)?;
        }
        let out = gz.finish()?;
        out.sync_all()?;
        // The archive's age is its content's: retention counts from the newest entry.
        out.set_modified(last)?;
        let bytes_out = out.metadata()?.len();
        std::fs::rename(&partial, &path)?;
        std::fs::File::open(dir)?.sync_all()?;
        Ok::<_, std::io::Error>((bytes_in, bytes_out))
    })();
    let (bytes_in, bytes_out) = match written {
        Ok(sizes) => sizes,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    remove_archived(live, &opened)?;
    Ok(NewArchive {
        path,
        files: rotated.to_vec(),
        bytes_in,
        bytes_out,
    })
}

/// Remove each archived file wherever rotation has moved it since (found by its inode); one
/// the daemon already dropped as over `logging.file_count` is gone anyway.
fn remove_archived(
    live: &Path,
    opened: &[(PathBuf, std::fs::File, std::fs::Metadata)],
) -> std::io::Result<()> {
    let now: Vec<(PathBuf, (u64, u64))> = rotated_set(live)
        .into_iter()
        .filter(|p| p != live)
        .filter_map(|p| {
            let m = std::fs::symlink_metadata(&p).ok()?;
            Some((p, (m.dev(), m.ino())))
        })
        .collect();
    for (_, _, meta) in opened {
        let id = (meta.dev(), meta.ino());
        if let Some((path, _)) = now.iter().find(|(_, i)| *i == id) {
            std::fs::remove_file(path)?;
        }
    }
    if let Some(dir) = live.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The archives in `dir`, oldest name first (not the unfinished ones).
pub fn list(dir: &Path) -> Vec<(PathBuf, std::fs::Metadata)> {
    let mut out: Vec<(PathBuf, std::fs::Metadata)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    !name.starts_with('.') && name.ends_with(GZ)
                })
                .filter_map(|e| {
                    let meta = e.metadata().ok()?;
                    meta.is_file().then(|| (e.path(), meta))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Delete (or, on a dry run, list) the archives whose newest entry is older than `keep`; on a
/// dry run the archives this run would write count too.
fn expired(
    dir: &Path,
    keep: Duration,
    dry_run: bool,
    new: &[NewArchive],
) -> std::io::Result<Vec<(PathBuf, u64)>> {
    let cutoff = SystemTime::now()
        .checked_sub(keep)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut out = Vec::new();
    for (path, meta) in list(dir) {
        if meta.modified()? < cutoff {
            if !dry_run {
                std::fs::remove_file(&path)?;
            }
            out.push((path, meta.len()));
        }
    }
    if dry_run {
        for a in new {
            let newest = a.files.last().map(std::fs::metadata).transpose()?;
            if let Some(m) = newest
                && m.modified()? < cutoff
            {
                out.push((a.path.clone(), 0));
            }
        }
    }
    Ok(out)
}

/// `.partial` archives whose run is gone (the name carries its pid).
fn remove_abandoned(dir: &Path) -> Vec<PathBuf> {
    exai_core::pidfile::abandoned(dir, "", PARTIAL)
        .into_iter()
        .filter(|path| std::fs::remove_file(path).is_ok())
        .collect()
}

/// The entries of every archive, for `exai logs --archived` (an unreadable archive is skipped
/// and named in the second list).
pub fn read_archives(paths: &DataPaths) -> (Vec<Entry>, Vec<String>) {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for (path, _) in list(&archives_dir(paths)) {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let origin = streams(paths).into_iter().find_map(|(live, origin)| {
            let stream = live.file_name()?.to_string_lossy().into_owned();
            name.starts_with(&format!("{stream}.")).then_some(origin)
        });
        let Some(origin) = origin else {
            continue;
        };
        let mut text = String::new();
        let read =
            std::fs::File::open(&path).and_then(|f| GzDecoder::new(f).read_to_string(&mut text));
        match read {
            Ok(_) => match origin {
                Origin::Log => push_log_text(&mut out, &text),
                Origin::Activity => push_activity_text(&mut out, &text),
            },
            Err(e) => problems.push(format!("{}: {e}", path.display())),
        }
    }
    (out, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rotated(live: &Path, n: u32) -> PathBuf {
        let mut name = live.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn set_age(path: &Path, days: u64) {
        let t = SystemTime::now() - Duration::from_secs(days * 86_400);
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }

    #[test]
    fn archives_rotated_files_keeps_the_live_one_and_expires_old_archives() {
        let dir = tempfile::tempdir().unwrap();
        let paths = DataPaths::new(dir.path());
        std::fs::create_dir_all(paths.logs()).unwrap();
        let live = paths.log_file();
        std::fs::write(&live, "2026-12-03T10:00:00Z  INFO live\n").unwrap();
        std::fs::write(
            rotated(&live, 2),
            "  continued\n2026-12-01T10:00:00Z  INFO oldest\n",
        )
        .unwrap();
        std::fs::write(rotated(&live, 1), "2026-12-02T10:00:00Z  WARN newer\n").unwrap();
        let archives = archives_dir(&paths);
        std::fs::create_dir_all(&archives).unwrap();
        let old = archives.join("exai.log.20250101-20250102.gz");
        let recent = archives.join("exai.log.20261101-20261102.gz");
        std::fs::write(&old, b"").unwrap();
        std::fs::write(&recent, b"").unwrap();
        set_age(&old, 100);
        set_age(&recent, 30);
        let before = std::fs::read_dir(paths.logs()).unwrap().count();

        let plan = archive(&paths, Duration::from_secs(90 * 86_400), true).unwrap();
        assert_eq!(plan.archived.len(), 1);
        assert_eq!(
            plan.archived[0].files,
            [rotated(&live, 2), rotated(&live, 1)]
        );
        let name = plan.archived[0]
            .path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        // From the oldest file's first entry (the continuation line has no time) to the newest
        // file's last write.
        let today = chrono::Utc::now().format("%Y%m%d");
        assert_eq!(name, format!("exai.log.20261201-{today}.gz"));
        assert_eq!(
            plan.expired.iter().map(|e| &e.0).collect::<Vec<_>>(),
            [&old]
        );
        assert_eq!(std::fs::read_dir(paths.logs()).unwrap().count(), before);
        assert!(old.exists() && rotated(&live, 1).exists());

        let done = archive(&paths, Duration::from_secs(90 * 86_400), false).unwrap();
        let written = &done.archived[0].path;
        assert_eq!(*written, plan.archived[0].path);
        assert!(!rotated(&live, 1).exists() && !rotated(&live, 2).exists());
        assert!(live.exists() && !old.exists() && recent.exists());
        assert_eq!(private::mode(written).unwrap(), 0o600);
        let mut text = String::new();
        GzDecoder::new(std::fs::File::open(written).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(
            text,
            "  continued\n2026-12-01T10:00:00Z  INFO oldest\n2026-12-02T10:00:00Z  WARN newer\n"
        );
        // Read back with the live file, in time order.
        let (entries, problems) = super::super::collect_with_archives(&paths, &Default::default());
        // The placeholder archive is no gzip: named, not fatal.
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with(&recent.display().to_string()));
        let texts: Vec<&str> = entries.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(texts.len(), 4, "{texts:?}");
        assert!(
            texts[2].ends_with("newer") && texts[3].ends_with("live"),
            "{texts:?}"
        );
        // Nothing rotated since: a second run archives nothing.
        assert!(
            archive(&paths, Duration::from_secs(90 * 86_400), false)
                .unwrap()
                .archived
                .is_empty()
        );
    }

    /// A rotation between opening the files and removing them moves them to other numbers:
    /// they are found by inode, and the file that took their place stays.
    #[test]
    fn a_rotation_meanwhile_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let paths = DataPaths::new(dir.path());
        std::fs::create_dir_all(paths.logs()).unwrap();
        let live = paths.log_file();
        std::fs::write(rotated(&live, 1), "2026-12-01T10:00:00Z  INFO one\n").unwrap();
        std::fs::write(&live, "2026-12-02T10:00:00Z  INFO two\n").unwrap();
        let file = std::fs::File::open(rotated(&live, 1)).unwrap();
        let meta = file.metadata().unwrap();
        let opened = vec![(rotated(&live, 1), file, meta)];
        // The daemon rotates: .1 -> .2, live -> .1.
        std::fs::rename(rotated(&live, 1), rotated(&live, 2)).unwrap();
        std::fs::rename(&live, rotated(&live, 1)).unwrap();
        remove_archived(&live, &opened).unwrap();
        assert!(!rotated(&live, 2).exists());
        assert_eq!(
            std::fs::read_to_string(rotated(&live, 1)).unwrap(),
            "2026-12-02T10:00:00Z  INFO two\n"
        );
    }
}
