//! Where a configuration value came from. The lowest piece of configuration: errors name it,
//! the loader records it for every key, `exai config show` prints it.

use std::fmt;
use std::path::PathBuf;

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    DotEnv {
        path: PathBuf,
        var: String,
    },
    Env(String),
    /// A command-line flag such as `--listen`.
    Flag(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) => write!(f, "{}", p.display()),
            Source::DotEnv { path, var } => write!(f, "{var} in {}", path.display()),
            Source::Env(var) => write!(f, "environment variable {var}"),
            Source::Flag(flag) => write!(f, "command-line flag {flag}"),
        }
    }
}
