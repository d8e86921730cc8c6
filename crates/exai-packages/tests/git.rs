#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Git sources against repositories the tests create: tags, changed paths between fetches, local
//! paths and `file://` URLs, the user's work tree left alone, bad refs, timeouts and a missing git.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use exai_packages::{ChangeKind, Error, GitConfig, GitSpec, SourceSpec, fetch_git};

fn git(repo: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args([
            "-c",
            "user.name=exai test",
            "-c",
            "user.email=test@example.org",
        ])
        .args([
            "-c",
            "commit.gpgsign=false",
            "-c",
            "tag.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
        ])
        .arg("-C")
        .arg(repo)
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

fn write(repo: &Path, path: &str, text: &str) {
    let path = repo.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A repository with tag v1.0 (annotated) and v2.0 (lightweight); between them `guide.md` is
/// changed, `docs/new.md` added and `old.md` removed.
fn two_tag_repository(root: &Path) -> (PathBuf, String, String) {
    let repo = root.join("upstream");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "--quiet"]);
    write(&repo, "guide.md", "# Guide\n\nversion one\n");
    write(&repo, "old.md", "# Old\n");
    write(&repo, "docs/intro.md", "# Intro\n");
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "--quiet", "-m", "one"]);
    git(&repo, &["tag", "-a", "v1.0", "-m", "release one"]);
    write(&repo, "guide.md", "# Guide\n\nversion two\n");
    write(&repo, "docs/new.md", "# New\n");
    std::fs::remove_file(repo.join("old.md")).unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "--quiet", "-m", "two"]);
    git(&repo, &["tag", "v2.0"]);
    let v1 = git(&repo, &["rev-parse", "v1.0^{commit}"]);
    let v2 = git(&repo, &["rev-parse", "v2.0^{commit}"]);
    (repo, v1, v2)
}

fn spec(text: &str) -> GitSpec {
    match text.parse::<SourceSpec>().unwrap() {
        SourceSpec::Git(spec) => spec,
        other => panic!("{text} parsed as {other:?}"),
    }
}

fn config() -> GitConfig {
    GitConfig {
        timeout: Duration::from_secs(120),
        ..GitConfig::default()
    }
}

#[tokio::test]
async fn tags_fetch_in_turn_and_report_the_changed_paths() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, v1, v2) = two_tag_repository(dir.path());
    let cache = dir.path().join("cache");

    let first = fetch_git(
        &spec(&format!("{}#v1.0", repo.display())),
        &cache,
        &config(),
    )
    .await
    .unwrap();
    assert_eq!(first.commit, v1);
    assert_eq!(
        (first.previous_commit.as_deref(), first.changes.as_ref()),
        (None, None)
    );
    assert_eq!(
        std::fs::read_to_string(first.root.join("guide.md")).unwrap(),
        "# Guide\n\nversion one\n"
    );
    assert!(first.root.join("old.md").is_file());
    assert!(
        !first.root.join(".git").exists(),
        "the tree holds only the repository's files"
    );

    let second = fetch_git(
        &spec(&format!("{}#v2.0", repo.display())),
        &cache,
        &config(),
    )
    .await
    .unwrap();
    assert_eq!(second.commit, v2);
    assert_eq!(second.previous_commit.as_deref(), Some(v1.as_str()));
    let mut changes: Vec<_> = second
        .changes
        .unwrap()
        .into_iter()
        .map(|c| (c.path, c.kind))
        .collect();
    changes.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        changes,
        [
            ("docs/new.md".to_owned(), ChangeKind::Added),
            ("guide.md".to_owned(), ChangeKind::Modified),
            ("old.md".to_owned(), ChangeKind::Deleted),
        ]
    );
    assert!(
        !second.root.join("old.md").exists(),
        "removed files leave the tree"
    );
    assert!(second.root.join("docs/new.md").is_file());

    let again = fetch_git(
        &spec(&format!("{}#v2.0", repo.display())),
        &cache,
        &config(),
    )
    .await
    .unwrap();
    assert_eq!(again.changes, Some(Vec::new()));
}

#[tokio::test]
async fn file_urls_commits_and_the_default_head_work_without_touching_the_work_tree() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, v1, v2) = two_tag_repository(dir.path());
    // An uncommitted edit in the user's work tree must survive and must not be indexed.
    write(&repo, "guide.md", "# Guide\n\nwork in progress\n");

    let by_url = fetch_git(
        &spec(&format!("git+file://{}#v1.0", repo.display())),
        &dir.path().join("a"),
        &config(),
    )
    .await
    .unwrap();
    assert_eq!(by_url.commit, v1);

    let by_commit = fetch_git(
        &spec(&format!("{}#{v1}", repo.display())),
        &dir.path().join("b"),
        &config(),
    )
    .await
    .unwrap();
    assert_eq!(by_commit.commit, v1);

    let head = fetch_git(
        &spec(&format!("git+file://{}", repo.display())),
        &dir.path().join("c"),
        &config(),
    )
    .await
    .unwrap();
    assert_eq!(head.commit, v2);
    assert_eq!(
        std::fs::read_to_string(head.root.join("guide.md")).unwrap(),
        "# Guide\n\nversion two\n"
    );

    assert_eq!(
        std::fs::read_to_string(repo.join("guide.md")).unwrap(),
        "# Guide\n\nwork in progress\n"
    );
    assert_eq!(git(&repo, &["rev-parse", "HEAD"]), v2);
    assert_eq!(git(&repo, &["status", "--porcelain"]), "M guide.md");
}

#[tokio::test]
async fn symlinks_in_a_repository_become_plain_files() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, _, _) = two_tag_repository(dir.path());
    std::os::unix::fs::symlink("/etc/passwd", repo.join("escape")).unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "--quiet", "-m", "link"]);
    let checkout = fetch_git(
        &spec(&repo.display().to_string()),
        &dir.path().join("cache"),
        &config(),
    )
    .await
    .unwrap();
    let link = checkout.root.join("escape");
    assert!(!link.symlink_metadata().unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read_to_string(link).unwrap(), "/etc/passwd");
}

#[tokio::test]
async fn a_missing_ref_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, _, _) = two_tag_repository(dir.path());
    let error = fetch_git(
        &spec(&format!("{}#v9.9", repo.display())),
        &dir.path().join("cache"),
        &config(),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, Error::RefNotFound { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("`v9.9` was not found") && message.contains("git ls-remote"),
        "{message}"
    );
}

#[tokio::test]
async fn a_missing_git_program_and_a_hung_git_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, _, _) = two_tag_repository(dir.path());
    let source = spec(&repo.display().to_string());

    let missing = GitConfig {
        program: dir.path().join("no-such-git"),
        ..config()
    };
    let error = fetch_git(&source, &dir.path().join("a"), &missing)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::GitMissing { .. }), "{error:?}");
    assert!(error.to_string().contains("install git"), "{error}");

    // A "git" that never finishes, with a helper process of its own as a real fetch has: the
    // deadline stops both, however long they would have run.
    let hung = dir.path().join("hung-git");
    let helper_pid = dir.path().join("helper.pid");
    let script = format!(
        "#!/bin/sh\nsleep 600 &\necho $! > {}\nwait\n",
        helper_pid.display()
    );
    std::fs::write(&hung, script).unwrap();
    std::fs::set_permissions(&hung, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let slow = GitConfig {
        program: hung,
        timeout: Duration::from_millis(300),
    };
    let error = fetch_git(&source, &dir.path().join("b"), &slow)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::GitTimeout { .. }), "{error:?}");
    assert!(
        error.to_string().contains("did not finish within 300ms"),
        "{error}"
    );
    let pid = std::fs::read_to_string(&helper_pid).unwrap();
    assert!(
        wait_until_gone(pid.trim()),
        "the helper process {pid} outlived the deadline"
    );

    // A fetch the caller cancels (drops) stops its processes as well.
    std::fs::remove_file(&helper_pid).unwrap();
    let patient = GitConfig {
        timeout: Duration::from_secs(3600),
        ..slow
    };
    let cache = dir.path().join("c");
    let task = tokio::spawn(async move { fetch_git(&source, &cache, &patient).await });
    let pid = wait_for_file(&helper_pid).await;
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert!(
        wait_until_gone(pid.trim()),
        "the helper process {pid} outlived the cancelled fetch"
    );
}

/// The contents of `path` once a process has written it (within 20 s on a loaded machine).
async fn wait_for_file(path: &Path) -> String {
    for _ in 0..200 {
        match std::fs::read_to_string(path) {
            Ok(text) if text.ends_with('\n') => return text,
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("{} was never written", path.display());
}

/// Whether process `pid` has ended (gone, or a zombie awaiting its reaper) within 20 s; the
/// kill is immediate, the bound only absorbs a loaded machine.
fn wait_until_gone(pid: &str) -> bool {
    for _ in 0..200 {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(stat)
                if stat
                    .rsplit(')')
                    .next()
                    .is_some_and(|rest| rest.trim_start().starts_with('Z')) =>
            {
                return true;
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    false
}

/// A `git daemon` serving `base` on a free loopback port, stopped when dropped.
struct Daemon {
    child: std::process::Child,
    port: u16,
}

impl Daemon {
    fn start(base: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // The daemon program itself: `git daemon` would run it as a child that a kill of `git`
        // leaves behind.
        let exec_path = git(Path::new("."), &["--exec-path"]);
        let child = Command::new(Path::new(&exec_path).join("git-daemon"))
            .args(["--reuseaddr", "--export-all", "--listen=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let daemon = Self { child, port };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return daemon;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("git daemon did not start listening on port {port}");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_remote_repository_is_fetched_shallow_at_tags_and_commits() {
    let dir = tempfile::tempdir().unwrap();
    let (_, v1, v2) = two_tag_repository(dir.path());
    let daemon = Daemon::start(dir.path());
    let url = format!("git+git://127.0.0.1:{}/upstream", daemon.port);
    let cache = dir.path().join("cache");

    let remote = spec(&format!("{url}#v1.0"));
    assert_eq!(remote.host().as_deref(), Some("127.0.0.1"));
    let first = fetch_git(&remote, &cache, &config()).await.unwrap();
    assert_eq!(first.commit, v1);
    let shallow = std::fs::read_to_string(cache.join("repo.git/shallow")).unwrap();
    assert!(shallow.contains(&v1), "the fetch is shallow: {shallow}");

    let second = fetch_git(&spec(&format!("{url}#v2.0")), &cache, &config())
        .await
        .unwrap();
    assert_eq!(
        (second.commit.as_str(), second.previous_commit.as_deref()),
        (v2.as_str(), Some(v1.as_str()))
    );
    assert_eq!(second.changes.map(|c| c.len()), Some(3));

    let by_commit = fetch_git(&spec(&format!("{url}#{v1}")), &cache, &config())
        .await
        .unwrap();
    assert_eq!(by_commit.commit, v1);
    assert!(by_commit.root.join("old.md").is_file());
}
