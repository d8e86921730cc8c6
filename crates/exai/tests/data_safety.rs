#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Data safety as a user meets it, through the `exai` binary: the data directory and every file
//! exai writes in it are private (0700 / 0600) after an index run, a daemon start and a backup,
//! and an older readable directory is narrowed at start; `exai db restore` refuses a backup whose
//! manifest names anything but exai's databases, and refuses while an `exai serve` has the
//! databases open.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn command(home: &Path, args: &[&str]) -> Command {
    let cwd = home.parent().unwrap();
    std::fs::create_dir_all(cwd).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_exai"));
    cmd.args(args)
        .env_clear()
        .env("EXAI_HOME", home)
        .env("EXAI_EMBED_BACKEND", "none")
        .current_dir(cwd);
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd
}

fn exai(home: &Path, args: &[&str]) -> Output {
    command(home, args).output().expect("run exai")
}

fn ok(home: &Path, args: &[&str]) -> String {
    let out = exai(home, args);
    assert!(
        out.status.success(),
        "exai {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Every directory under `dir` (itself included) and every file in them, with its mode.
fn modes(dir: &Path) -> Vec<(PathBuf, u32, bool)> {
    let mut out = vec![(dir.to_path_buf(), mode(dir), true)];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(modes(&path));
        } else {
            out.push((path.clone(), mode(&path), false));
        }
    }
    out
}

fn assert_private(home: &Path, when: &str) {
    for (path, m, is_dir) in modes(home) {
        let want = if is_dir { 0o700 } else { 0o600 };
        assert_eq!(m, want, "{when}: {} is {m:o}", path.display());
    }
}

/// Not `.tmpXXXX`: exai keeps out of hidden directories.
fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("exai-data-safety")
        .tempdir()
        .unwrap()
}

/// Every file under `dir` with its inode and length.
fn files(dir: &Path) -> Vec<(PathBuf, u64, u64)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            out.extend(files(&path));
        } else {
            out.push((path, meta.ino(), meta.len()));
        }
    }
    out.sort();
    out
}

fn docs(root: &Path) -> PathBuf {
    let dir = root.join("docs");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..5 {
        std::fs::write(
            dir.join(format!("page{i}.md")),
            format!("# Page {i}\n\nprivate notes about topic{i}\n"),
        )
        .unwrap();
    }
    dir
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn data_directory_and_every_file_in_it_are_private() {
    let root = tempdir();
    let home = root.path().join("home");
    let docs = docs(root.path());

    ok(
        &home,
        &["index", docs.to_str().unwrap(), "--source", "notes"],
    );
    assert!(home.join("kb.sqlite").exists());
    assert!(home.join("exai.lock").exists());
    assert_private(&home, "after an index run");

    // The state database (threads, validation runs) opens on first use.
    ok(&home, &["validate", "history"]);
    assert!(home.join("state.sqlite").exists());
    assert_private(&home, "after opening the state database");

    let daemon = Killed(
        command(&home, &["daemon", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("the daemon's pid file", Duration::from_secs(20), || {
        home.join("exai.pid").exists()
    });
    for file in ["exai.pid", "logs/exai.log", "logs/activity.jsonl"] {
        assert!(home.join(file).exists(), "{file}");
    }
    assert_private(&home, "with the daemon running");
    drop(daemon);

    let out = ok(&home, &["db", "backup"]);
    assert!(out.starts_with("backup: "), "{out}");
    assert!(home.join("backups").is_dir());
    assert_private(&home, "after a backup");
}

#[test]
fn a_readable_data_directory_from_an_older_version_is_made_private_at_start() {
    let root = tempdir();
    let home = root.path().join("home");
    let docs = docs(root.path());
    ok(
        &home,
        &["index", docs.to_str().unwrap(), "--source", "notes"],
    );
    std::fs::create_dir_all(home.join("logs")).unwrap();
    std::fs::write(home.join("logs/exai.log"), "an old line\n").unwrap();
    for (path, m) in [
        (home.clone(), 0o755),
        (home.join("logs"), 0o755),
        (home.join("logs/exai.log"), 0o644),
        (home.join("kb.sqlite"), 0o644),
    ] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(m)).unwrap();
    }
    let out = ok(&home, &["search", "topic3", "--mode", "keyword"]);
    assert!(out.contains("page3.md"), "{out}");
    assert_private(&home, "after a search");
}

/// A backup whose manifest was edited to write outside the data directory.
fn hostile_backup(home: &Path) -> PathBuf {
    let out = ok(home, &["db", "backup", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let dir = PathBuf::from(report["path"].as_str().unwrap());
    let manifest_path = dir.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).unwrap()).unwrap();
    let mut evil = manifest["files"][0].clone();
    evil["name"] = "evil".into();
    evil["file"] = "../../evil".into();
    manifest["files"].as_array_mut().unwrap().push(evil);
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
    // The planted file (in the data directory) matches the entry's size and checksum: only the
    // name check stops it from being copied to `<data dir>/../../evil`.
    std::fs::copy(dir.join("kb.sqlite"), dir.join("../../evil")).unwrap();
    dir
}

#[test]
fn restore_refuses_a_manifest_naming_files_exai_does_not_keep() {
    let root = tempdir();
    let home = root.path().join("a/b/home");
    let docs = docs(root.path());
    ok(
        &home,
        &["index", docs.to_str().unwrap(), "--source", "notes"],
    );
    let backup = hostile_backup(&home);
    let before = files(root.path());

    for args in [
        vec!["db", "restore", backup.to_str().unwrap()],
        vec!["db", "restore", "--check", backup.to_str().unwrap()],
    ] {
        let out = exai(&home, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("\"../../evil\"") && stderr.contains("not a database exai keeps"),
            "{stderr}"
        );
    }
    // Nothing was written, moved or replaced: not where the entry points (`root/a/evil`, two
    // levels above the data directory), not in the data directory.
    assert_eq!(files(root.path()), before);
    assert!(!root.path().join("a/evil").exists());
}

#[test]
fn restore_is_refused_while_exai_serve_has_the_databases_open() {
    let root = tempdir();
    let home = root.path().join("home");
    let docs = docs(root.path());
    ok(
        &home,
        &["index", docs.to_str().unwrap(), "--source", "notes"],
    );
    let out = ok(&home, &["db", "backup", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let backup = report["path"].as_str().unwrap().to_string();

    let mut serve = Killed(
        command(&home, &["serve"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = serve.0.id();
    // Once it answers `initialize`, it has long held the lock (taken before serving).
    let mut stdin = serve.0.stdin.take().unwrap();
    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"2025-06-18","capabilities":{{}},"clientInfo":{{"name":"test","version":"0"}}}}}}"#
    )
    .unwrap();
    stdin.flush().unwrap();
    let mut stdout = BufReader::new(serve.0.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(line.contains("\"result\""), "{line}");
    // A search opens the knowledge base: SQLite creates its -wal and -shm, as private as it.
    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","method":"notifications/initialized"}}
{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"search_docs","arguments":{{"query":"topic2","mode":"keyword"}}}}}}"#
    )
    .unwrap();
    stdin.flush().unwrap();
    line.clear();
    stdout.read_line(&mut line).unwrap();
    assert!(line.contains("page2.md"), "{line}");
    for file in ["kb.sqlite", "kb.sqlite-wal", "kb.sqlite-shm"] {
        assert_eq!(mode(&home.join(file)), 0o600, "{file}");
    }

    let kb = home.join("kb.sqlite");
    let inode = std::fs::metadata(&kb).unwrap().ino();
    let out = exai(&home, &["db", "restore", &backup]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "an exai process (pid {pid}: exai serve) has the databases in"
        )) && stderr.contains("stop it first"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::metadata(&kb).unwrap().ino(),
        inode,
        "kb.sqlite was replaced"
    );

    // The client goes away, the server with it: now the restore runs.
    drop(stdin);
    let status = serve.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let out = ok(&home, &["db", "restore", &backup]);
    assert!(out.contains("restored kb"), "{out}");
    assert_ne!(std::fs::metadata(&kb).unwrap().ino(), inode);
}
