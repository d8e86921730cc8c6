#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Git repositories and registry packages through `exai_sources`: two tags of a repository the
//! test creates become two versions of one library (searching the library picks the newest, a
//! range picks its version, a refresh of an unchanged tag changes nothing); npm and PyPI
//! packages from a loopback registry answering in each registry's shape, with archives and
//! checksums built here, are indexed as `NAME@VERSION` side by side, with their origin; a
//! package the registry does not have is a clear error. Nothing leaves the machine.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use common::{Site, index, kb, refresh, request, search, settings};
use exai_sources::{Origin, Settings};
use serde_json::json;
use sha2::{Digest, Sha256, Sha512};

fn git(repo: &Path, args: &[&str]) {
    let output = Command::new("git")
        .args([
            "-c",
            "user.name=exai test",
            "-c",
            "user.email=test@example.org",
        ])
        .args(["-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false"])
        .args(["-c", "init.defaultBranch=main"])
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
}

fn write(root: &Path, path: &str, text: &str) {
    let path = root.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// `handbook` with tag v1.0, then `guide.md` changed, `docs/new.md` added, `old.md` removed,
/// tagged v2.0.
fn handbook_repository(root: &Path) -> PathBuf {
    let repo = root.join("handbook");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "--quiet"]);
    write(
        &repo,
        "guide.md",
        "# Guide\n\nThe guide tells of the oryx.\n",
    );
    write(&repo, "old.md", "# Old\n\nThe okapi page, dropped later.\n");
    write(
        &repo,
        "docs/intro.md",
        "# Intro\n\nThe ibex introduction.\n",
    );
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "--quiet", "-m", "one"]);
    git(&repo, &["tag", "-a", "v1.0", "-m", "release one"]);
    write(
        &repo,
        "guide.md",
        "# Guide\n\nThe guide tells of the gazelle.\n",
    );
    write(&repo, "docs/new.md", "# New\n\nThe newt page.\n");
    std::fs::remove_file(repo.join("old.md")).unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "--quiet", "-m", "two"]);
    git(&repo, &["tag", "v2.0"]);
    repo
}

fn sources_found(kb: &exai_kb::Kb, query: &str, source: Option<&str>) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = search(kb, query, source)
        .into_iter()
        .map(|(s, p, _)| (s, p))
        .collect();
    found.sort();
    found.dedup();
    found
}

#[test]
fn two_tags_of_a_repository_are_two_versions_of_one_library() {
    let dir = tempfile::tempdir().unwrap();
    let repo = handbook_repository(dir.path());
    let kb = kb(dir.path());
    let settings = settings(&[], dir.path());

    let v1 = index(
        &kb,
        &request(&format!("{}#v1.0", repo.display()), None),
        &settings,
    )
    .unwrap();
    assert_eq!(
        (v1.source.as_str(), v1.added),
        ("handbook@v1.0", 3),
        "{v1:?}"
    );
    let v2 = index(
        &kb,
        &request(&format!("{}#v2.0", repo.display()), None),
        &settings,
    )
    .unwrap();
    assert_eq!(
        (v2.source.as_str(), v2.added),
        ("handbook@v2.0", 3),
        "{v2:?}"
    );

    let mut names: Vec<String> = kb.sources().unwrap().into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(names, ["handbook@v1.0", "handbook@v2.0"]);
    for (name, origin) in exai_sources::origins(&kb).unwrap() {
        let Origin::Git(g) = origin else {
            panic!("{name}: {origin:?}")
        };
        assert!(
            g.spec.ends_with(&name["handbook@".len()..]),
            "{name}: {g:?}"
        );
        assert_eq!(g.commit.len(), 40, "{g:?}");
    }

    // Each version has its own files.
    assert_eq!(
        sources_found(&kb, "okapi", None),
        [("handbook@v1.0".into(), "old.md".into())]
    );
    assert_eq!(
        sources_found(&kb, "newt", None),
        [("handbook@v2.0".into(), "docs/new.md".into())]
    );
    // The library's name searches its newest version; a range picks the one it names.
    assert_eq!(
        sources_found(&kb, "guide", Some("handbook")),
        [("handbook@v2.0".into(), "guide.md".into())]
    );
    assert_eq!(
        kb.resolve_library("handbook", None).unwrap().source,
        "handbook@v2.0"
    );
    let one = kb.resolve_library("handbook", Some("1")).unwrap();
    assert_eq!(one.source, "handbook@v1.0", "{one:?}");

    let again = refresh(&kb, "handbook@v1.0", &settings).unwrap();
    assert_eq!(
        (again.unchanged, again.added, again.updated, again.removed),
        (3, 0, 0, 0),
        "{again:?}"
    );
    assert_eq!(
        sources_found(&kb, "oryx", None),
        [("handbook@v1.0".into(), "guide.md".into())]
    );
}

/// A `.tgz` with every file under `package/`, as `npm pack` makes them.
fn npm_tarball(files: &[(&str, &str)]) -> Vec<u8> {
    tar_gz(
        &files
            .iter()
            .map(|(p, t)| (format!("package/{p}"), *t))
            .collect::<Vec<_>>(),
    )
}

fn tar_gz(files: &[(String, &str)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, text) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, path, text.as_bytes())
            .unwrap();
    }
    let tar = builder.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

fn integrity(bytes: &[u8]) -> String {
    let digest = Sha512::digest(bytes);
    format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// Settings whose registries are the loopback site's `/npm` and `/pypi`.
fn registry_settings(site: &Site, dir: &Path) -> Settings {
    let mut settings = settings(&["127.0.0.1"], dir);
    settings.registries.npm_url = site.url("/npm");
    settings.registries.pypi_url = site.url("/pypi");
    settings
}

/// `testpkg` 1.0.0, 1.2.0 and 2.0.0 (latest), each with its README and docs.
fn serve_testpkg(site: &Site) {
    let mut versions = serde_json::Map::new();
    let mut time = serde_json::Map::new();
    for (i, (version, animal)) in [
        ("1.0.0", "marmot"),
        ("1.2.0", "wombat"),
        ("2.0.0", "wallaby"),
    ]
    .into_iter()
    .enumerate()
    {
        let readme = format!("# testpkg\n\nThe {animal} readme of version {version}.\n");
        let usage = format!(
            "# Usage\n\nCall it like a {animal}, then numbat{}.\n",
            i + 1
        );
        let manifest = format!("{{\"name\":\"testpkg\",\"version\":\"{version}\"}}");
        let tgz = npm_tarball(&[
            ("package.json", manifest.as_str()),
            ("README.md", readme.as_str()),
            ("docs/usage.md", usage.as_str()),
        ]);
        let file = format!("/npm-files/testpkg-{version}.tgz");
        versions.insert(
            version.into(),
            json!({"name": "testpkg", "version": version,
                   "dist": {"tarball": site.url(&file), "integrity": integrity(&tgz)}}),
        );
        time.insert(
            version.into(),
            json!(format!("2026-0{}-01T00:00:00.000Z", i + 1)),
        );
        site.put(&file, "application/octet-stream", tgz);
    }
    let packument = json!({"name": "testpkg", "dist-tags": {"latest": "2.0.0"},
                           "versions": versions, "time": time});
    site.put(
        "/npm/testpkg",
        "application/json",
        serde_json::to_vec(&packument).unwrap(),
    );
}

#[test]
fn npm_versions_are_indexed_side_by_side_from_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::start();
    serve_testpkg(&site);
    let kb = kb(dir.path());
    let settings = registry_settings(&site, dir.path());

    // The name a request without one gets, known before anything is downloaded.
    assert_eq!(
        exai_sources::default_source_name("npm:testpkg@^1", &settings).unwrap(),
        Some("testpkg@1.2.0".to_string())
    );
    let one = index(&kb, &request("npm:testpkg@^1", None), &settings).unwrap();
    assert_eq!(one.source, "testpkg@1.2.0", "{one:?}");
    assert!(one.added >= 2, "{one:?}");
    assert_eq!(
        sources_found(&kb, "wombat", None),
        [
            ("testpkg@1.2.0".into(), "README.md".into()),
            ("testpkg@1.2.0".into(), "docs/usage.md".into()),
        ]
    );
    assert_eq!(
        sources_found(&kb, "numbat2", None),
        [("testpkg@1.2.0".into(), "docs/usage.md".into())]
    );
    match exai_sources::origins(&kb).unwrap().as_slice() {
        [(name, Origin::Package(p))] => {
            assert_eq!(name, "testpkg@1.2.0");
            assert_eq!(
                (p.registry.as_str(), p.name.as_str(), p.version.as_str()),
                ("npm", "testpkg", "1.2.0")
            );
            assert_eq!(p.spec, "npm:testpkg@^1");
            assert!(p.checksum.starts_with("sha512:"), "{p:?}");
        }
        other => panic!("origins: {other:?}"),
    }
    let info = kb.sources().unwrap();
    assert_eq!(info[0].origin["kind"], "package");
    assert_eq!(info[0].origin["version"], "1.2.0");

    let two = index(&kb, &request("npm:testpkg@^2", None), &settings).unwrap();
    assert_eq!(two.source, "testpkg@2.0.0", "{two:?}");
    let mut names: Vec<String> = kb.sources().unwrap().into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(names, ["testpkg@1.2.0", "testpkg@2.0.0"]);
    assert_eq!(
        sources_found(&kb, "readme", Some("testpkg")),
        [("testpkg@2.0.0".into(), "README.md".into())],
        "the library's name searches its newest version"
    );
    assert_eq!(
        kb.resolve_library("testpkg", Some("^1")).unwrap().source,
        "testpkg@1.2.0"
    );
    assert!(
        sources_found(&kb, "marmot", None).is_empty(),
        "1.0.0 was never asked for"
    );

    // A refresh fetches the recorded version again, not the newest.
    let again = refresh(&kb, "testpkg@1.2.0", &settings).unwrap();
    assert_eq!(
        (again.added, again.updated, again.removed),
        (0, 0, 0),
        "{again:?}"
    );
    assert_eq!(again.unchanged, one.added, "{again:?}");
}

#[test]
fn a_package_the_registry_does_not_have_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::start();
    serve_testpkg(&site);
    let kb = kb(dir.path());
    let settings = registry_settings(&site, dir.path());

    let err = index(&kb, &request("npm:nosuchpkg@^1", None), &settings).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("nosuchpkg"), "{message}");
    assert!(message.contains("has no package named"), "{message}");
    let err = index(&kb, &request("npm:testpkg@^7", None), &settings).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("2.0.0"),
        "names the versions there are: {message}"
    );
    assert!(kb.sources().unwrap().is_empty(), "{:?}", kb.sources());

    // The registry's host falls under the address policy like any page.
    let mut refused = registry_settings(&site, dir.path());
    refused.allowed_hosts.clear();
    let err = index(&kb, &request("npm:testpkg@^1", None), &refused).unwrap_err();
    assert!(err.to_string().contains("kb.fetch_allowed_hosts"), "{err}");
}

#[test]
fn a_pypi_sdist_is_indexed_with_its_docs() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::start();
    let sdist = tar_gz(&[
        (
            "demo_lib-0.3.0/README.rst".to_string(),
            "demo-lib\n========\n\nThe pangolin library.\n",
        ),
        (
            "demo_lib-0.3.0/docs/index.md".to_string(),
            "# Docs\n\nThe platypus documentation.\n",
        ),
        (
            "demo_lib-0.3.0/PKG-INFO".to_string(),
            "Metadata-Version: 2.1\nName: demo-lib\nVersion: 0.3.0\n",
        ),
    ]);
    let sha256: String = Sha256::digest(&sdist)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let file = "/pypi-files/demo_lib-0.3.0.tar.gz";
    let project = json!({"info": {"name": "demo-lib"}, "releases": {
        "0.3.0": [{"packagetype": "sdist", "filename": "demo_lib-0.3.0.tar.gz",
                   "url": site.url(file), "digests": {"sha256": sha256}, "yanked": false,
                   "upload_time_iso_8601": "2026-03-01T00:00:00Z"}]}});
    site.put(
        "/pypi/pypi/demo-lib/json",
        "application/json",
        serde_json::to_vec(&project).unwrap(),
    );
    site.put(file, "application/gzip", sdist);
    let kb = kb(dir.path());
    let settings = registry_settings(&site, dir.path());

    let report = index(&kb, &request("pypi:demo-lib@>=0.3,<1", None), &settings).unwrap();
    assert_eq!(report.source, "demo-lib@0.3.0", "{report:?}");
    assert_eq!(
        sources_found(&kb, "pangolin", None),
        [("demo-lib@0.3.0".into(), "README.rst".into())]
    );
    assert_eq!(
        sources_found(&kb, "platypus", None),
        [("demo-lib@0.3.0".into(), "docs/index.md".into())]
    );
    match exai_sources::origins(&kb).unwrap().as_slice() {
        [(_, Origin::Package(p))] => {
            assert_eq!((p.registry.as_str(), p.version.as_str()), ("pypi", "0.3.0"));
            assert!(p.checksum.starts_with("sha256:"), "{p:?}");
        }
        other => panic!("origins: {other:?}"),
    }
}

#[test]
fn a_branch_refreshes_to_its_new_commit() {
    let dir = tempfile::tempdir().unwrap();
    let repo = handbook_repository(dir.path());
    let kb = kb(dir.path());
    let settings = settings(&[], dir.path());
    let spec = format!("{}#main", repo.display());
    let first = index(&kb, &request(&spec, Some("handbook")), &settings).unwrap();
    assert_eq!(first.added, 3, "{first:?}");
    let commit_of = |kb: &exai_kb::Kb| match exai_sources::origins(kb).unwrap().as_slice() {
        [(_, Origin::Git(g))] => g.commit.clone(),
        other => panic!("origins: {other:?}"),
    };
    let before = commit_of(&kb);

    write(
        &repo,
        "guide.md",
        "# Guide\n\nThe guide tells of the jerboa.\n",
    );
    git(&repo, &["commit", "--quiet", "-am", "three"]);
    let again = refresh(&kb, "handbook", &settings).unwrap();
    assert_eq!(
        (again.updated, again.unchanged, again.added, again.removed),
        (1, 2, 0, 0),
        "{again:?}"
    );
    assert_eq!(
        sources_found(&kb, "jerboa", None),
        [("handbook".into(), "guide.md".into())]
    );
    assert!(sources_found(&kb, "gazelle", None).is_empty());
    assert_ne!(commit_of(&kb), before, "the origin records the new commit");
}

#[test]
fn a_git_remote_on_loopback_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let kb = kb(dir.path());
    let err = index(
        &kb,
        &request("http://127.0.0.1:9/handbook.git#v1.0", None),
        &settings(&[], dir.path()),
    )
    .unwrap_err();
    assert!(err.to_string().contains("kb.fetch_allowed_hosts"), "{err}");
    assert!(kb.sources().unwrap().is_empty());
}
