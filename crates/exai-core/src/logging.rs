//! Logs: human-readable lines on stderr and in `logs/exai.log`, which rotates by size.
//! stdout is never written here: on `exai serve` it carries only the protocol. Log files and
//! their rotations are private (0600 in a 0700 directory): they record what agents asked.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::private;

/// An append-only file that rotates to `name.1 … name.N` when it would exceed `max_bytes`.
/// Each `write` call lands whole in one file, so a log line or JSON record is never split.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    file: File,
    size: u64,
}

impl RotatingFile {
    pub fn open(path: impl Into<PathBuf>, max_bytes: u64, keep: u32) -> io::Result<Self> {
        let path = path.into();
        if let Some(dir) = path.parent() {
            private::create_dir_all(dir)?;
        }
        let file = Self::create(&path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path,
            max_bytes: max_bytes.max(1024),
            keep: keep.max(1),
            file,
            size,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Open for appending, 0600 whether new or left by an older version.
    fn create(path: &Path) -> io::Result<File> {
        let file = private::options().create(true).append(true).open(path)?;
        private::restrict(&file)?;
        Ok(file)
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn rotate(&mut self) -> io::Result<()> {
        let _ = std::fs::remove_file(self.rotated(self.keep));
        for n in (1..self.keep).rev() {
            let from = self.rotated(n);
            if from.exists() {
                std::fs::rename(&from, self.rotated(n + 1))?;
            }
        }
        std::fs::rename(&self.path, self.rotated(1))?;
        self.file = Self::create(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.size > 0 && self.size + buf.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(buf)?;
        self.size += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// A cloneable handle to a [`RotatingFile`] usable as a tracing writer.
#[derive(Debug, Clone)]
pub struct SharedFile(Arc<Mutex<RotatingFile>>);

impl SharedFile {
    pub fn new(file: RotatingFile) -> Self {
        Self(Arc::new(Mutex::new(file)))
    }

    /// Append one complete record.
    pub fn append(&self, bytes: &[u8]) -> io::Result<()> {
        let mut file = self
            .0
            .lock()
            .map_err(|_| io::Error::other("log file lock poisoned"))?;
        file.write(bytes).map(|_| ())
    }
}

pub struct SharedFileWriter(SharedFile);

impl Write for SharedFileWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.append(buf).map(|_| buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for SharedFile {
    type Writer = SharedFileWriter;
    fn make_writer(&'a self) -> Self::Writer {
        SharedFileWriter(self.clone())
    }
}

/// Where logs go.
pub struct LogSettings<'a> {
    pub level: &'a str,
    /// `Some((path, max_bytes, keep))` also writes the rotating log file.
    pub file: Option<(&'a Path, u64, u32)>,
    /// Colours and such only when stderr is a terminal.
    pub ansi: bool,
}

/// Install the global subscriber. Returns the log file's handle when one is written.
pub fn init(settings: LogSettings<'_>) -> io::Result<Option<SharedFile>> {
    // The SDK narrates every message at info; keep it to warnings unless asked for by name.
    let directives = if settings.level.contains("rmcp") {
        settings.level.to_string()
    } else {
        format!("{},rmcp=warn", settings.level)
    };
    let filter = EnvFilter::try_new(directives).unwrap_or_else(|_| EnvFilter::new("info"));
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(io::stderr)
        .with_ansi(settings.ansi)
        .with_target(false);
    match settings.file {
        Some((path, max_bytes, keep)) => {
            let shared = SharedFile::new(RotatingFile::open(path, max_bytes, keep)?);
            let file_layer = tracing_subscriber::fmt::layer()
                .with_writer(shared.clone())
                .with_ansi(false);
            let _ = tracing_subscriber::registry()
                .with(filter)
                .with(stderr)
                .with(file_layer)
                .try_init();
            Ok(Some(shared))
        }
        None => {
            let _ = tracing_subscriber::registry()
                .with(filter)
                .with(stderr)
                .try_init();
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_n() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        let mut f = RotatingFile::open(&path, 1024, 2).unwrap();
        let line = [b'a'; 300];
        for _ in 0..20 {
            f.write_all(&line).unwrap();
        }
        assert!(std::fs::metadata(&path).unwrap().len() <= 1024);
        assert!(dir.path().join("x.log.1").exists());
        assert!(dir.path().join("x.log.2").exists());
        assert!(!dir.path().join("x.log.3").exists());
        assert_eq!(
            std::fs::metadata(dir.path().join("x.log.1")).unwrap().len(),
            900
        );
        for name in ["x.log", "x.log.1", "x.log.2"] {
            assert_eq!(crate::private::mode(&dir.path().join(name)).unwrap(), 0o600);
        }
    }

    #[test]
    fn a_readable_log_from_an_older_version_becomes_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/exai.log");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "old line\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut f = RotatingFile::open(&path, 1 << 20, 2).unwrap();
        f.write_all(b"new line\n").unwrap();
        assert_eq!(crate::private::mode(&path).unwrap(), 0o600);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "old line\nnew line\n"
        );
    }
}
