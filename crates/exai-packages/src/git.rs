//! Git sources: a remote URL or a local repository read at a branch, tag or commit into a cache
//! directory the caller names (one per source), by shelling out to the `git` program.
//!
//! Layout of the cache: `repo.git/` holds the objects of a shallow fetch (`--depth 1`), `tree/`
//! the checked-out files the indexer walks. A later fetch of the same source fetches again,
//! reports the previous and the new commit and the paths that changed between them (the old
//! commit's objects are still in `repo.git`, so no deeper fetch is needed). A local repository is
//! fetched from in the same way, so its work tree, index and refs are never touched.
//!
//! Every git process runs with a deadline (the process group is killed when it passes), no
//! terminal or credential prompts, hooks disabled, symlinks checked out as plain files (so no
//! link in a repository can point the indexer outside the tree), and only the transports the
//! source needs (`https`, `http`, `ssh`, `git` for remotes; `file` for local repositories), so
//! `ext::` and other remote helpers are refused by git itself. Which remote hosts may be reached
//! is the caller's policy: see [`GitSpec::host`].

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::spec::{GitLocation, GitSpec};

/// How git is run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitConfig {
    /// The git program: a name looked up on `PATH` or a path.
    pub program: PathBuf,
    /// Deadline for each git process (a fetch of a large repository is one process).
    pub timeout: Duration,
}

impl Default for GitConfig {
    fn default() -> Self {
        Self {
            program: PathBuf::from("git"),
            timeout: Duration::from_secs(600),
        }
    }
}

/// How a path differs between the previous and the new commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

/// One changed path, relative to the tree's root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub kind: ChangeKind,
    pub path: String,
}

/// A repository checked out at a commit, with what changed since the previous fetch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitCheckout {
    /// The checked-out files (`cache/tree`), without a `.git` entry.
    pub root: PathBuf,
    /// The full hash of the checked-out commit.
    pub commit: String,
    /// The ref that was asked for (`None`: the default branch, or a local repository's HEAD).
    pub reference: Option<String>,
    /// The commit of the previous completed fetch into this cache.
    pub previous_commit: Option<String>,
    /// Paths changed since `previous_commit`: empty when the commit is the same, `None` on the
    /// first fetch or when the old commit could not be compared (index everything then).
    pub changes: Option<Vec<Change>>,
}

/// The ref that records the last completed checkout in the cache's repository.
const CHECKOUT_REF: &str = "refs/exai/checkout";

/// Fetches `spec` into `cache` and checks it out in `cache/tree`.
pub async fn fetch_git(
    spec: &GitSpec,
    cache: &Path,
    config: &GitConfig,
) -> Result<GitCheckout, Error> {
    let git = Git::new(spec, cache, config)?;
    git.ensure_repository().await?;
    let previous = git.previous_commit().await;
    let commit = git.fetch(spec).await?;
    let changes = match &previous {
        Some(old) if *old == commit => Some(Vec::new()),
        Some(old) => git.changes(old, &commit).await,
        None => None,
    };
    git.checkout(&commit).await?;
    Ok(GitCheckout {
        root: git.tree,
        commit,
        reference: spec.reference.clone(),
        previous_commit: previous,
        changes,
    })
}

/// One cache's git invocations.
struct Git<'a> {
    config: &'a GitConfig,
    git_dir: PathBuf,
    tree: PathBuf,
    /// What `git fetch` is given: the URL, or the local repository's absolute path.
    source: OsString,
    /// The source as shown in messages.
    display: String,
    local: bool,
}

impl<'a> Git<'a> {
    fn new(spec: &GitSpec, cache: &Path, config: &'a GitConfig) -> Result<Self, Error> {
        let (source, display, local) = match &spec.location {
            GitLocation::Remote(url) => (OsString::from(url), url.clone(), false),
            GitLocation::Local(path) => {
                let path = path.canonicalize().map_err(|e| {
                    Error::io(
                        format!("the repository {} cannot be read", path.display()),
                        e,
                    )
                })?;
                let display = path.display().to_string();
                (path.into_os_string(), display, true)
            }
        };
        if source.to_string_lossy().starts_with('-') {
            return Err(Error::Git {
                command: "git fetch".into(),
                detail: format!("refusing a source that starts with `-`: {display}"),
            });
        }
        Ok(Self {
            config,
            git_dir: cache.join("repo.git"),
            tree: cache.join("tree"),
            source,
            display,
            local,
        })
    }

    async fn ensure_repository(&self) -> Result<(), Error> {
        for dir in [&self.git_dir, &self.tree] {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        }
        if !self.git_dir.join("HEAD").is_file() {
            let mut args: Vec<OsString> = vec!["init".into(), "--quiet".into(), "--bare".into()];
            args.push(self.git_dir.clone().into_os_string());
            self.run(&args).await?;
        }
        // A bare repository with an explicit work tree: the tree holds no `.git` entry.
        self.run_in_repo(&["config", "core.bare", "false"]).await?;
        Ok(())
    }

    async fn previous_commit(&self) -> Option<String> {
        let revision = format!("{CHECKOUT_REF}^{{commit}}");
        let output = self
            .run_in_repo(&["rev-parse", "--verify", "--quiet", &revision])
            .await
            .ok()?;
        Some(output.trim().to_owned()).filter(|c| !c.is_empty())
    }

    /// Fetches the ref (or HEAD) at depth 1 and returns its commit.
    async fn fetch(&self, spec: &GitSpec) -> Result<String, Error> {
        let reference = spec.reference.as_deref().unwrap_or("HEAD");
        let mut args = self.repo_args();
        args.extend(
            [
                "fetch",
                "--quiet",
                "--depth",
                "1",
                "--no-tags",
                "--no-recurse-submodules",
            ]
            .map(OsString::from),
        );
        args.push(self.source.clone());
        args.push(reference.into());
        self.run(&args).await.map_err(|error| match error {
            Error::Git { detail, .. } if is_missing_ref(&detail) => Error::RefNotFound {
                reference: reference.to_owned(),
                repository: self.display.clone(),
                detail,
            },
            other => other,
        })?;
        let commit = self
            .run_in_repo(&["rev-parse", "--verify", "FETCH_HEAD^{commit}"])
            .await?;
        Ok(commit.trim().to_owned())
    }

    /// Paths changed between two fetched commits; `None` when they cannot be compared.
    async fn changes(&self, old: &str, new: &str) -> Option<Vec<Change>> {
        let output = self
            .run_in_repo(&[
                "diff",
                "--name-status",
                "--no-renames",
                "-z",
                old,
                new,
                "--",
            ])
            .await;
        match output {
            Ok(text) => Some(parse_name_status(&text)),
            Err(error) => {
                tracing::warn!(%error, "could not compare the previous and the new commit; everything will be re-indexed");
                None
            }
        }
    }

    async fn checkout(&self, commit: &str) -> Result<(), Error> {
        let tree = self.tree.as_os_str();
        let with_tree = |rest: &[&str]| {
            let mut args = self.repo_args();
            args.push("--work-tree".into());
            args.push(tree.to_owned());
            args.extend(rest.iter().map(OsString::from));
            args
        };
        self.run(&with_tree(&[
            "checkout", "--quiet", "--force", "--detach", commit, "--",
        ]))
        .await?;
        // Files an interrupted earlier checkout left behind would otherwise be indexed.
        self.run(&with_tree(&["clean", "-ffdxq"])).await?;
        self.run_in_repo(&["update-ref", CHECKOUT_REF, commit])
            .await?;
        Ok(())
    }

    fn repo_args(&self) -> Vec<OsString> {
        vec!["--git-dir".into(), self.git_dir.clone().into_os_string()]
    }

    async fn run_in_repo(&self, rest: &[&str]) -> Result<String, Error> {
        let mut args = self.repo_args();
        args.extend(rest.iter().map(OsString::from));
        self.run(&args).await
    }

    /// Runs git with the safety settings, under the deadline; returns stdout.
    async fn run(&self, args: &[OsString]) -> Result<String, Error> {
        let command_text = command_text(args);
        let mut command = tokio::process::Command::new(&self.config.program);
        command
            .args(self.safety_options())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        isolate_environment(&mut command);
        #[cfg(unix)]
        command.process_group(0);
        let child = command
            .spawn()
            .map_err(|e| spawn_error(&self.config.program, e))?;
        let killer = GroupKiller(child.id());
        let outcome = tokio::time::timeout(self.config.timeout, child.wait_with_output()).await;
        if outcome.is_ok() {
            killer.disarm();
        }
        match outcome {
            Ok(Ok(output)) if output.status.success() => {
                Ok(String::from_utf8_lossy(&output.stdout).into_owned())
            }
            Ok(Ok(output)) => Err(Error::Git {
                command: command_text,
                detail: stderr_tail(&output.stderr, output.status),
            }),
            Ok(Err(e)) => Err(Error::io(format!("running `{command_text}`"), e)),
            Err(_) => Err(Error::GitTimeout {
                command: command_text,
                timeout: self.config.timeout,
            }),
        }
    }

    fn safety_options(&self) -> Vec<OsString> {
        let mut options = vec![
            "core.hooksPath=/dev/null",
            "core.symlinks=false",
            "core.fsmonitor=false",
            "submodule.recurse=false",
            "advice.detachedHead=false",
            "protocol.allow=never",
            // The caller checks the remote's address before git runs; a redirect would take
            // git somewhere that check never saw.
            "http.followRedirects=false",
        ];
        if self.local {
            options.push("protocol.file.allow=always");
        } else {
            options.extend([
                "protocol.https.allow=always",
                "protocol.http.allow=always",
                "protocol.ssh.allow=always",
                "protocol.git.allow=always",
            ]);
        }
        options
            .into_iter()
            .flat_map(|option| [OsString::from("-c"), OsString::from(option)])
            .collect()
    }
}

/// No prompts, no inherited repository from the caller's environment (exai may itself run inside
/// a git hook), no LFS downloads.
fn isolate_environment(command: &mut tokio::process::Command) {
    for variable in [
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_NAMESPACE",
        "GIT_COMMON_DIR",
        "GIT_CONFIG_PARAMETERS",
        "GIT_CONFIG_COUNT",
    ] {
        command.env_remove(variable);
    }
    command
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GCM_INTERACTIVE", "never")
        .env("GIT_PROTOCOL_FROM_USER", "0")
        .env("GIT_LFS_SKIP_SMUDGE", "1");
    if std::env::var_os("GIT_SSH_COMMAND").is_none() {
        command.env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes");
    }
}

fn spawn_error(program: &Path, error: std::io::Error) -> Error {
    if error.kind() == std::io::ErrorKind::NotFound {
        Error::GitMissing {
            reason: format!("`{}`: {error}", program.display()),
        }
    } else {
        Error::io(format!("starting `{}`", program.display()), error)
    }
}

/// Kills a git process's whole group when dropped armed: on a timeout, and when the caller drops
/// (cancels) the fetch, so that git's transport helpers (`git-remote-https`, `ssh`) do not
/// outlive it. `kill_on_drop` alone would reach only `git` itself.
struct GroupKiller(Option<u32>);

impl GroupKiller {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        kill_group(self.0.take());
    }
}

#[cfg(unix)]
fn kill_group(pid: Option<u32>) {
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::Pid;
    if let Some(pid) = pid.and_then(|pid| i32::try_from(pid).ok()) {
        // The group may already be gone; nothing to do then.
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

#[cfg(not(unix))]
fn kill_group(_pid: Option<u32>) {}

fn command_text(args: &[OsString]) -> String {
    let words: Vec<_> = std::iter::once(OsStr::new("git"))
        .chain(args.iter().map(OsString::as_os_str))
        .map(OsStr::to_string_lossy)
        .collect();
    words.join(" ")
}

fn stderr_tail(stderr: &[u8], status: std::process::ExitStatus) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(5)..].join(" / ");
    if tail.is_empty() {
        format!("exited with {status}")
    } else {
        tail
    }
}

/// git's wordings for a ref or commit the other side does not have.
fn is_missing_ref(detail: &str) -> bool {
    [
        "couldn't find remote ref",
        "not our ref",
        "unadvertised object",
        "no such remote ref",
        "invalid refspec",
    ]
    .iter()
    .any(|needle| detail.contains(needle))
}

/// Parses `git diff --name-status -z` output: `STATUS\0PATH\0` records.
fn parse_name_status(output: &str) -> Vec<Change> {
    let mut fields = output.split('\0');
    let mut changes = Vec::new();
    while let (Some(status), Some(path)) = (fields.next(), fields.next()) {
        let kind = match status.chars().next() {
            Some('A') => ChangeKind::Added,
            Some('D') => ChangeKind::Deleted,
            Some(_) => ChangeKind::Modified,
            None => break,
        };
        changes.push(Change {
            kind,
            path: path.to_owned(),
        });
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_status_records_parse() {
        let changes = parse_name_status("M\0a.md\0A\0docs/new.md\0D\0old.txt\0T\0link\0");
        let kinds: Vec<_> = changes.iter().map(|c| (c.kind, c.path.as_str())).collect();
        assert_eq!(
            kinds,
            [
                (ChangeKind::Modified, "a.md"),
                (ChangeKind::Added, "docs/new.md"),
                (ChangeKind::Deleted, "old.txt"),
                (ChangeKind::Modified, "link"),
            ]
        );
        assert!(parse_name_status("").is_empty());
    }
}
