//! Where exai keeps its files. One data directory holds the database, logs and the pid file.

use std::path::{Path, PathBuf};

/// `EXAI_HOME`, else `$XDG_DATA_HOME/exai`, else `$HOME/.local/share/exai`.
pub fn data_dir(
    exai_home: Option<&str>,
    xdg_data_home: Option<&str>,
    home: Option<&str>,
) -> Option<PathBuf> {
    let non_empty = |v: Option<&str>| v.filter(|s| !s.trim().is_empty()).map(PathBuf::from);
    if let Some(dir) = non_empty(exai_home) {
        return Some(dir);
    }
    if let Some(dir) = non_empty(xdg_data_home).filter(|p| p.is_absolute()) {
        return Some(dir.join("exai"));
    }
    non_empty(home).map(|h| h.join(".local/share/exai"))
}

/// Named files inside the data directory.
#[derive(Debug, Clone)]
pub struct DataPaths {
    pub root: PathBuf,
}

impl DataPaths {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn log_file(&self) -> PathBuf {
        self.logs().join("exai.log")
    }
    pub fn activity_file(&self) -> PathBuf {
        self.logs().join("activity.jsonl")
    }
    pub fn pid_file(&self) -> PathBuf {
        self.root.join("exai.pid")
    }
    /// The daemon's answer to its latest configuration reload, for `exai daemon reload`.
    pub fn reload_file(&self) -> PathBuf {
        self.root.join("reload.json")
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence() {
        assert_eq!(
            data_dir(Some("/x"), Some("/y"), Some("/h")),
            Some(PathBuf::from("/x"))
        );
        assert_eq!(
            data_dir(None, Some("/y"), Some("/h")),
            Some(PathBuf::from("/y/exai"))
        );
        assert_eq!(
            data_dir(Some(""), Some("rel"), Some("/h")),
            Some(PathBuf::from("/h/.local/share/exai"))
        );
        assert_eq!(data_dir(None, None, None), None);
    }
}
