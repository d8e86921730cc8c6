#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Registries against a loopback server that answers in each registry's own API shape (npm
//! packuments, PyPI's JSON API, crates.io's crate API) with archives and checksums the tests
//! build: version resolution, yanked and prerelease exclusion, checksum refusal, unsafe archives,
//! bounds, and reuse of an unpacked tree. Nothing leaves the machine.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use base64::Engine;
use exai_packages::{
    Error, FetchedPackage, PackageSpec, Registries, RegistryConfig, ReqwestFetcher, SourceSpec,
    UnpackLimits,
};
use serde_json::json;
use sha2::{Digest, Sha256, Sha512};

/// The loopback registry: fixed responses by path, and a log of the paths requested.
#[derive(Clone, Default)]
struct Served {
    files: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Served {
    fn put(&self, path: &str, body: Vec<u8>) {
        self.files.lock().unwrap().insert(path.to_owned(), body);
    }

    fn requests_of(&self, path: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|p| *p == path)
            .count()
    }
}

async fn serve(State(served): State<Served>, uri: Uri) -> (StatusCode, Vec<u8>) {
    let path = uri.path().to_owned();
    served.requests.lock().unwrap().push(path.clone());
    match served.files.lock().unwrap().get(&path) {
        Some(body) => (StatusCode::OK, body.clone()),
        None => (StatusCode::NOT_FOUND, b"not found".to_vec()),
    }
}

async fn start() -> (String, Served) {
    let served = Served::default();
    let app = axum::Router::new()
        .fallback(serve)
        .with_state(served.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, served)
}

fn registries(base: &str) -> Registries {
    let config = RegistryConfig {
        npm_url: format!("{base}/npm"),
        pypi_url: format!("{base}/pypi"),
        crates_url: format!("{base}/crates"),
        crates_download_url: Some(format!("{base}/crates-dl")),
        max_metadata_bytes: 1024 * 1024,
        limits: UnpackLimits {
            max_download_bytes: 1024 * 1024,
            max_unpacked_bytes: 1024 * 1024,
            max_entries: 100,
        },
    };
    let fetcher = ReqwestFetcher::new(Duration::from_secs(30)).unwrap();
    Registries::new(Arc::new(fetcher), config)
}

fn spec(text: &str) -> PackageSpec {
    match text.parse::<SourceSpec>().unwrap() {
        SourceSpec::Package(spec) => spec,
        other => panic!("{text} parsed as {other:?}"),
    }
}

/// A tar entry as raw header fields, so that tests can write paths a well-behaved builder refuses.
enum Entry<'a> {
    File(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
}

fn tar_gz(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_old();
        let (path, data, kind): (&str, &[u8], _) = match entry {
            Entry::File(path, data) => (path, data, tar::EntryType::Regular),
            Entry::Symlink(path, target) => {
                header.set_link_name_literal(target).unwrap();
                (path, &[][..], tar::EntryType::Symlink)
            }
        };
        header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    let tar = builder.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

fn zip_file(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in entries {
        writer.start_file(*name, options).unwrap();
        writer.write_all(data).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

fn integrity(bytes: &[u8]) -> String {
    format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(Sha512::digest(bytes))
    )
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn read(root: &Path, path: &str) -> String {
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// npm packument with one downloadable version per `(version, tarball bytes, integrity)`.
fn packument(base: &str, name: &str, latest: &str, versions: &[(&str, &str)]) -> Vec<u8> {
    let mut map = serde_json::Map::new();
    let mut time = serde_json::Map::new();
    for (version, integrity) in versions {
        let file = name.rsplit('/').next().unwrap();
        map.insert(
            (*version).into(),
            json!({"name": name, "version": version, "dist": {
                "tarball": format!("{base}/npm-files/{file}-{version}.tgz"), "integrity": integrity}}),
        );
        time.insert(
            (*version).into(),
            json!(format!("2026-01-0{}T00:00:00.000Z", map.len())),
        );
    }
    serde_json::to_vec(
        &json!({"name": name, "dist-tags": {"latest": latest, "next": "3.0.0-beta.1"},
        "versions": map, "time": time}),
    )
    .unwrap()
}

fn serve_npm(
    base: &str,
    served: &Served,
    name: &str,
    latest: &str,
    tarball: &[u8],
    integrity_of: &str,
) {
    let file = name.rsplit('/').next().unwrap();
    let versions = [
        ("1.0.0", "sha512-AAAA"),
        ("1.1.0", "sha512-AAAA"),
        ("2.0.0", integrity_of),
        ("3.0.0-beta.1", "sha512-AAAA"),
    ];
    served.put(
        &format!("/npm/{}", name.replace('/', "%2F")),
        packument(base, name, latest, &versions),
    );
    served.put(&format!("/npm-files/{file}-2.0.0.tgz"), tarball.to_vec());
}

#[tokio::test]
async fn npm_ranges_resolve_like_npm() {
    let (base, served) = start().await;
    serve_npm(&base, &served, "demo", "2.0.0", b"", "sha512-AAAA");
    let registries = registries(&base);
    let version = |range: &'static str| {
        let registries = registries.clone();
        async move { registries.resolve(&spec(range)).await.map(|r| r.version) }
    };
    assert_eq!(version("npm:demo").await.unwrap(), "2.0.0");
    assert_eq!(version("npm:demo@^1").await.unwrap(), "1.1.0");
    assert_eq!(version("npm:demo@1.0.0").await.unwrap(), "1.0.0");
    assert_eq!(version("npm:demo@>=1 <2").await.unwrap(), "1.1.0");
    assert_eq!(version("npm:demo@next").await.unwrap(), "3.0.0-beta.1");
    assert_eq!(
        version("npm:demo@^3.0.0-beta.0").await.unwrap(),
        "3.0.0-beta.1"
    );
    assert_eq!(version("npm:demo@*").await.unwrap(), "2.0.0");

    let error = version("npm:demo@>=3").await.unwrap_err();
    assert!(
        matches!(error, Error::NoMatchingVersion { .. }),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("newest versions: 3.0.0-beta.1, 2.0.0, 1.1.0, 1.0.0"),
        "{error}"
    );
    let missing = version("npm:absent").await.unwrap_err();
    assert!(
        matches!(missing, Error::PackageNotFound { .. }),
        "{missing:?}"
    );
}

#[tokio::test]
async fn npm_scoped_package_is_verified_unpacked_and_reused() {
    let (base, served) = start().await;
    let tarball = tar_gz(&[
        Entry::File("package/package.json", b"{\"name\":\"@scope/tool\"}"),
        Entry::File("package/README.md", b"# Tool\n"),
        Entry::File(
            "package/index.d.ts",
            b"/** Adds. */ export declare function add(): void;\n",
        ),
    ]);
    serve_npm(
        &base,
        &served,
        "@scope/tool",
        "2.0.0",
        &tarball,
        &integrity(&tarball),
    );
    let dest = tempfile::tempdir().unwrap();
    let registries = registries(&base);

    let first: FetchedPackage = registries
        .fetch(&spec("npm:@scope/tool@^2"), dest.path())
        .await
        .unwrap();
    assert!(!first.reused);
    assert_eq!(first.root, dest.path().join("@scope+tool@2.0.0"));
    assert_eq!(read(&first.root, "README.md"), "# Tool\n");
    assert!(first.root.join("index.d.ts").is_file());
    assert_eq!(
        first.resolved.checksum,
        format!("sha512:{}", sha512_hex(&tarball))
    );
    assert_eq!(
        first.resolved.published.as_deref(),
        Some("2026-01-03T00:00:00.000Z")
    );
    assert!(first.include.iter().any(|g| g == "**/*.d.ts"));

    let second = registries
        .fetch(&spec("npm:@scope/tool"), dest.path())
        .await
        .unwrap();
    assert!(second.reused);
    assert_eq!(second.root, first.root);
    assert_eq!(
        served.requests_of("/npm-files/tool-2.0.0.tgz"),
        1,
        "the tarball is downloaded once"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dest.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers,
        ["@scope+tool@2.0.0"],
        "no temporary directory is left behind"
    );
}

fn sha512_hex(bytes: &[u8]) -> String {
    Sha512::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn a_checksum_mismatch_is_refused_and_nothing_is_unpacked() {
    let (base, served) = start().await;
    let tarball = tar_gz(&[Entry::File("package/README.md", b"# Real\n")]);
    serve_npm(
        &base,
        &served,
        "tampered",
        "2.0.0",
        &tarball,
        &integrity(b"something else"),
    );
    let dest = tempfile::tempdir().unwrap();
    let error = registries(&base)
        .fetch(&spec("npm:tampered"), dest.path())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::ChecksumMismatch { .. }), "{error:?}");
    assert!(
        error.to_string().contains("the file was refused"),
        "{error}"
    );
    assert_eq!(
        std::fs::read_dir(dest.path())
            .map(|d| d.count())
            .unwrap_or(0),
        0
    );
}

async fn fetch_tarball(entries: &[Entry<'_>], dest: &Path) -> Result<FetchedPackage, Error> {
    let (base, served) = start().await;
    let tarball = tar_gz(entries);
    serve_npm(
        &base,
        &served,
        "archive",
        "2.0.0",
        &tarball,
        &integrity(&tarball),
    );
    registries(&base).fetch(&spec("npm:archive"), dest).await
}

#[tokio::test]
async fn unsafe_archives_are_refused_and_leave_nothing() {
    for bad_path in ["package/../../escape.txt", "/tmp/absolute.txt"] {
        let dest = tempfile::tempdir().unwrap();
        let entries = [
            Entry::File("package/README.md", b"# ok\n"),
            Entry::File(bad_path, b"owned"),
        ];
        let error = fetch_tarball(&entries, &dest.path().join("pkgs"))
            .await
            .unwrap_err();
        assert!(
            matches!(error, Error::UnsafeArchive { .. }),
            "{bad_path}: {error:?}"
        );
        assert!(
            error
                .to_string()
                .contains("points outside the unpack directory"),
            "{error}"
        );
        assert_eq!(
            std::fs::read_dir(dest.path().join("pkgs")).unwrap().count(),
            0,
            "{bad_path}"
        );
        assert!(!dest.path().join("escape.txt").exists());
    }
}

#[tokio::test]
async fn symlink_entries_are_not_created() {
    let dest = tempfile::tempdir().unwrap();
    let entries = [
        Entry::File("package/README.md", b"# ok\n"),
        Entry::Symlink("package/passwd", "/etc/passwd"),
    ];
    let fetched = fetch_tarball(&entries, dest.path()).await.unwrap();
    assert_eq!(read(&fetched.root, "README.md"), "# ok\n");
    assert!(
        fetched.root.join("passwd").symlink_metadata().is_err(),
        "the link was not created"
    );
}

#[tokio::test]
async fn archives_over_the_bounds_are_refused() {
    let dest = tempfile::tempdir().unwrap();
    let zeros = vec![0_u8; 2 * 1024 * 1024];
    let error = fetch_tarball(&[Entry::File("package/bomb.bin", &zeros)], dest.path())
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("unpacks to more than 1048576 bytes"),
        "{error}"
    );

    let names: Vec<String> = (0..150).map(|i| format!("package/f{i}.md")).collect();
    let entries: Vec<Entry<'_>> = names.iter().map(|n| Entry::File(n, b"x")).collect();
    let error = fetch_tarball(&entries, dest.path()).await.unwrap_err();
    assert!(
        error.to_string().contains("more than 100 entries"),
        "{error}"
    );
    assert_eq!(std::fs::read_dir(dest.path()).unwrap().count(), 0);
}

fn pypi_file(
    base: &str,
    filename: &str,
    kind: &str,
    bytes: &[u8],
    yanked: bool,
) -> serde_json::Value {
    json!({"filename": filename, "packagetype": kind, "url": format!("{base}/pypi-files/{filename}"),
        "digests": {"sha256": sha256(bytes), "md5": "x"}, "yanked": yanked,
        "upload_time_iso_8601": "2026-02-01T00:00:00.000000Z"})
}

#[tokio::test]
async fn pypi_prefers_sdists_skips_yanked_and_prereleases() {
    let (base, served) = start().await;
    let sdist = tar_gz(&[
        Entry::File("demo_pkg-1.0/README.md", b"# Demo\n"),
        Entry::File(
            "demo_pkg-1.0/demo_pkg/__init__.py",
            b"\"\"\"Demo docs.\"\"\"\n",
        ),
    ]);
    let wheel = zip_file(&[
        ("demo_pkg/__init__.py", b"\"\"\"Demo docs.\"\"\"\n"),
        ("demo_pkg-1.2.dist-info/METADATA", b"Name: demo-pkg\n"),
    ]);
    let releases = json!({
        "1.0": [pypi_file(&base, "demo_pkg-1.0.tar.gz", "sdist", &sdist, false),
                pypi_file(&base, "demo_pkg-1.0-py3-none-any.whl", "bdist_wheel", b"", false)],
        "1.2": [pypi_file(&base, "demo_pkg-1.2-py3-none-any.whl", "bdist_wheel", &wheel, false)],
        "1.5": [pypi_file(&base, "demo_pkg-1.5.tar.gz", "sdist", b"", true)],
        "2.0rc1": [pypi_file(&base, "demo_pkg-2.0rc1.tar.gz", "sdist", b"", false)],
        "0.9": [],
    });
    served.put(
        "/pypi/pypi/demo-pkg/json",
        serde_json::to_vec(&json!({"info": {"name": "demo-pkg"}, "releases": releases})).unwrap(),
    );
    served.put("/pypi-files/demo_pkg-1.0.tar.gz", sdist.clone());
    served.put("/pypi-files/demo_pkg-1.2-py3-none-any.whl", wheel.clone());
    let registries = registries(&base);
    let dest = tempfile::tempdir().unwrap();

    let newest = registries
        .fetch(&spec("pypi:Demo_Pkg"), dest.path())
        .await
        .unwrap();
    assert_eq!(
        newest.resolved.version, "1.2",
        "1.5 is yanked, 2.0rc1 a prerelease"
    );
    assert!(
        newest.resolved.url.ends_with(".whl"),
        "1.2 has only a wheel"
    );
    assert_eq!(
        read(&newest.root, "demo_pkg/__init__.py"),
        "\"\"\"Demo docs.\"\"\"\n"
    );
    assert!(
        newest
            .root
            .join("demo_pkg-1.2.dist-info/METADATA")
            .is_file()
    );

    let older = registries
        .fetch(&spec("pypi:demo-pkg@>=1.0,<1.2"), dest.path())
        .await
        .unwrap();
    assert_eq!(older.resolved.version, "1.0");
    assert!(
        older.resolved.url.ends_with("demo_pkg-1.0.tar.gz"),
        "the sdist is preferred"
    );
    assert_eq!(
        older.resolved.checksum,
        format!("sha256:{}", sha256(&sdist))
    );
    assert_eq!(read(&older.root, "README.md"), "# Demo\n");

    let pre = registries
        .resolve(&spec("pypi:demo-pkg@>=2.0rc1"))
        .await
        .unwrap();
    assert_eq!(pre.version, "2.0rc1");
    let pinned = registries
        .resolve(&spec("pypi:demo-pkg@==1.5"))
        .await
        .unwrap();
    assert_eq!(
        pinned.version, "1.5",
        "an exact pin may take a yanked file (PEP 592)"
    );
    for range in [">=1.3,<2", ">=3"] {
        let error = registries
            .resolve(&spec(&format!("pypi:demo-pkg@{range}")))
            .await
            .unwrap_err();
        assert!(
            matches!(error, Error::NoMatchingVersion { .. }),
            "{range}: {error:?}"
        );
        assert!(
            error
                .to_string()
                .contains("newest versions: 2.0rc1, 1.5, 1.2, 1.0, 0.9"),
            "{error}"
        );
    }
}

#[tokio::test]
async fn crates_resolve_cargo_requirements_and_unpack_the_crate_file() {
    let (base, served) = start().await;
    let crate_file = tar_gz(&[
        Entry::File(
            "demo-crate-0.1.5/Cargo.toml",
            b"[package]\nname = \"demo-crate\"\n",
        ),
        Entry::File("demo-crate-0.1.5/src/lib.rs", b"//! Demo crate docs.\n"),
    ]);
    let version = |num: &str, yanked: bool, checksum: &str| {
        json!({"num": num, "yanked": yanked, "checksum": checksum, "created_at": "2026-03-01T00:00:00Z",
            "dl_path": format!("/api/v1/crates/demo-crate/{num}/download")})
    };
    let versions = json!([
        version("0.1.0", false, &sha256(b"")),
        version("0.1.5", false, &sha256(&crate_file)),
        version("0.2.0", true, &sha256(b"")),
        version("1.0.0-alpha.1", false, &sha256(b"")),
    ]);
    served.put(
        "/crates/api/v1/crates/demo-crate",
        serde_json::to_vec(&json!({"crate": {"name": "demo-crate"}, "versions": versions}))
            .unwrap(),
    );
    served.put(
        "/crates-dl/demo-crate/demo-crate-0.1.5.crate",
        crate_file.clone(),
    );
    let registries = registries(&base);
    let dest = tempfile::tempdir().unwrap();

    let fetched = registries
        .fetch(&spec("crate:demo-crate"), dest.path())
        .await
        .unwrap();
    assert_eq!(fetched.resolved.version, "0.1.5");
    assert_eq!(
        fetched.resolved.published.as_deref(),
        Some("2026-03-01T00:00:00Z")
    );
    assert_eq!(read(&fetched.root, "src/lib.rs"), "//! Demo crate docs.\n");
    assert!(fetched.include.iter().any(|g| g == "**/*.rs"));

    let alpha = registries
        .resolve(&spec("crate:demo-crate@=1.0.0-alpha.1"))
        .await
        .unwrap();
    assert_eq!(alpha.version, "1.0.0-alpha.1");
    let error = registries
        .resolve(&spec("crate:demo-crate@0.2"))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("no version matches `0.2`"),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("newest versions: 1.0.0-alpha.1, 0.2.0, 0.1.5, 0.1.0"),
        "{error}"
    );
    let bad = registries
        .resolve(&spec("crate:demo-crate@>>1"))
        .await
        .unwrap_err();
    assert!(matches!(bad, Error::UnsupportedRange { .. }), "{bad:?}");
}

/// The real registries, off by default (no network in CI): `cargo test -p exai-packages --test
/// registry -- --ignored real_registries`.
#[tokio::test]
#[ignore = "reaches the real npm, PyPI and crates.io registries"]
async fn real_registries() {
    let fetcher = ReqwestFetcher::new(Duration::from_secs(60)).unwrap();
    let registries = Registries::new(Arc::new(fetcher), RegistryConfig::default());
    let dest = tempfile::tempdir().unwrap();
    for text in ["npm:left-pad@1.3.0", "pypi:six@1.16.0", "crate:itoa@1.0.11"] {
        let fetched = registries.fetch(&spec(text), dest.path()).await.unwrap();
        assert!(fetched.root.read_dir().unwrap().count() > 0, "{text}");
    }
}
