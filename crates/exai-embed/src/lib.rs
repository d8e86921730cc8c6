//! Sentence embeddings for the knowledge base.
//!
//! Three back ends behind one [`Embedder`] trait:
//! - [`Backend::Onnx`]: a sentence-transformers BERT-family model (default
//!   `sentence-transformers/all-MiniLM-L6-v2`) run by ONNX Runtime, loaded at run time from a
//!   library the machine provides; fp32 (exact) or int8 (a quantized graph, faster);
//! - [`Backend::Candle`]: the same model run in pure Rust with candle, fp32, the fallback where
//!   ONNX Runtime or the ONNX graph is missing ([`Backend::Auto`] picks between the two);
//! - [`Backend::Remote`]: any OpenAI-compatible `POST {url}/embeddings` endpoint.
//!
//! The local back ends are exact to sentence-transformers (same tokenizer, same pooling, L2
//! norm); int8 vectors differ slightly, so the precision is part of [`ModelIdentity::key`].
//!
//! The API is synchronous on purpose: embedding is CPU-bound (local) or a blocking HTTP call
//! (remote), so async callers run it inside `tokio::task::spawn_blocking`.

mod batch;
mod error;
mod local;
mod model_dir;
mod onnx;
mod pooling;
mod remote;
mod runtime;
#[cfg(test)]
mod test_server;

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

pub use error::EmbedError;
pub use local::{LocalEmbedder, LocalOptions, Threading};
pub use model_dir::{
    DEFAULT_MODEL_DIR_NAME, DEFAULT_MODEL_NAME, DEFAULT_ONNX_DIR_NAME, HUB_BASE_URL, OnnxModel,
};
pub use onnx::{OnnxEmbedder, OnnxOptions};
pub use remote::{MAX_REMOTE_BATCH, RemoteEmbedder};
pub use runtime::{RUNTIME_DIR_NAME, locate_runtime};

/// What produced a vector. Vectors from models with different keys must never be compared, so the
/// knowledge base stores [`ModelIdentity::key`] beside its index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelIdentity {
    pub name: String,
    pub dim: usize,
    pub precision: String,
    pub max_tokens: usize,
}

impl ModelIdentity {
    /// `"{name}:{dim}:{precision}"`, e.g. `"sentence-transformers/all-MiniLM-L6-v2:384:fp32"`.
    /// The back end is not part of it: candle and ONNX Runtime fp32 compute the same vectors
    /// (cosine 1.000000 to each other), so they may share an index; int8 ones may not.
    pub fn key(&self) -> String {
        format!("{}:{}:{}", self.name, self.dim, self.precision)
    }

    /// Whether an index whose vectors carry `stored` (a [`ModelIdentity::key`]) can be searched
    /// with this model's vectors. Besides the exact key this accepts the spelling before
    /// precisions were named `fp32`/`int8` (`…:f32`), which meant the same fp32 vectors.
    pub fn matches_key(&self, stored: &str) -> bool {
        stored == self.key()
            || (self.precision == Precision::Fp32.as_str()
                && stored.strip_suffix(":f32") == Some(&format!("{}:{}", self.name, self.dim)[..]))
    }
}

/// Numeric precision of a local model's weights. Vectors of different precisions never share an
/// index (see [`ModelIdentity::key`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Exact: equal to sentence-transformers' vectors.
    #[default]
    Fp32,
    /// A dynamically quantized graph (int8 weights): faster than fp32, most of all with
    /// AVX-512 VNNI, with vectors close to fp32's (BENCHMARKS.md, "Local embeddings: ONNX
    /// Runtime"). ONNX Runtime only.
    Int8,
}

impl Precision {
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Int8 => "int8",
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Precision {
    type Err = EmbedError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fp32" | "f32" | "" => Ok(Precision::Fp32),
            "int8" => Ok(Precision::Int8),
            _ => Err(EmbedError::InvalidPrecision {
                value: s.to_string(),
            }),
        }
    }
}

/// Turns text into unit-length vectors.
pub trait Embedder: Send + Sync {
    fn identity(&self) -> &ModelIdentity;
    /// What computes the vectors: `"onnx"`, `"candle"` or `"remote"` (for health and logs; not
    /// part of the identity, see [`ModelIdentity::key`]).
    fn backend(&self) -> &'static str;
    /// L2-normalised vectors, one per text, in input order. Texts longer than max_tokens are truncated.
    fn embed_passages(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError>;
    fn embed_query(&self, text: &str) -> Result<Vec<f32>, EmbedError>;
    /// Word pieces the model would see for this text (exact for local models; an estimate for remote).
    ///
    /// Counts the special tokens the model adds (`[CLS]`, `[SEP]`) and is not capped, so
    /// `count_tokens(text) <= identity().max_tokens` means the text is embedded whole.
    fn count_tokens(&self, text: &str) -> usize;
}

/// Which embedder to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// ONNX Runtime when its library and the ONNX model are present, else candle.
    #[default]
    Auto,
    /// ONNX Runtime, or an error that says what is missing.
    Onnx,
    /// candle (pure Rust), fp32 only.
    Candle,
    Remote,
    /// No embeddings: keyword-only search.
    None,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::Onnx => "onnx",
            Backend::Candle => "candle",
            Backend::Remote => "remote",
            Backend::None => "none",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Backend {
    type Err = EmbedError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            // `local` predates the choice between ONNX Runtime and candle.
            "auto" | "local" => Ok(Backend::Auto),
            "onnx" => Ok(Backend::Onnx),
            "candle" => Ok(Backend::Candle),
            "remote" => Ok(Backend::Remote),
            "none" => Ok(Backend::None),
            _ => Err(EmbedError::InvalidBackend {
                value: s.to_string(),
            }),
        }
    }
}

impl From<exai_core::EmbedPrecision> for Precision {
    fn from(p: exai_core::EmbedPrecision) -> Self {
        match p {
            exai_core::EmbedPrecision::Fp32 => Precision::Fp32,
            exai_core::EmbedPrecision::Int8 => Precision::Int8,
        }
    }
}

impl From<exai_core::EmbedBackend> for Backend {
    fn from(b: exai_core::EmbedBackend) -> Self {
        use exai_core::EmbedBackend as Configured;
        match b {
            Configured::Auto | Configured::Local => Backend::Auto,
            Configured::Onnx => Backend::Onnx,
            Configured::Candle => Backend::Candle,
            Configured::Remote => Backend::Remote,
            Configured::None => Backend::None,
        }
    }
}

/// Everything [`build`] needs; filled from exai's configuration.
#[derive(Clone)]
pub struct EmbedSettings {
    pub backend: Backend,
    /// Local models: fp32 (candle or ONNX) or int8 (ONNX only).
    pub precision: Precision,
    /// The ONNX Runtime library (config `embed.onnx_runtime`, env `ORT_DYLIB_PATH`); `None`:
    /// searched, see [`locate_runtime`].
    pub onnx_runtime: Option<PathBuf>,
    /// Explicit model directory (config `embed.model`, env `EXAI_EMBED_MODEL`).
    pub model: Option<PathBuf>,
    /// exai data dir; local models live in `data_dir/models/<name>`.
    pub data_dir: PathBuf,
    /// OpenAI-compatible base URL, e.g. `http://127.0.0.1:11434/v1`.
    pub remote_url: String,
    pub remote_model: String,
    pub remote_api_key: Option<String>,
    pub remote_dim: Option<usize>,
    /// Passages per forward pass (default 32).
    pub batch_size: usize,
    /// ONNX Runtime: padded tokens per forward pass at most; 0: `batch_size` alone bounds it
    /// (see [`OnnxOptions::max_batch_tokens`]).
    pub max_batch_tokens: usize,
    /// ONNX Runtime: threads for one query; 0: one per core (see [`OnnxOptions::query_threads`]).
    pub query_threads: usize,
}

impl std::fmt::Debug for EmbedSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbedSettings")
            .field("backend", &self.backend)
            .field("precision", &self.precision)
            .field("onnx_runtime", &self.onnx_runtime)
            .field("model", &self.model)
            .field("data_dir", &self.data_dir)
            .field("remote_url", &self.remote_url)
            .field("remote_model", &self.remote_model)
            .field(
                "remote_api_key",
                &self.remote_api_key.as_ref().map(|_| "<redacted>"),
            )
            .field("remote_dim", &self.remote_dim)
            .field("batch_size", &self.batch_size)
            .field("max_batch_tokens", &self.max_batch_tokens)
            .field("query_threads", &self.query_threads)
            .finish()
    }
}

impl EmbedSettings {
    /// The settings of the `embed.*` configuration. int8 is the default for ONNX Runtime;
    /// candle runs fp32 only, so an explicit `backend = candle` with the default precision
    /// means fp32 rather than an error.
    pub fn from_config(loaded: &exai_core::Loaded) -> EmbedSettings {
        let e = &loaded.config.embed;
        let backend = Backend::from(e.backend);
        let mut precision = Precision::from(e.precision);
        if backend == Backend::Candle
            && loaded.source("embed.precision") == exai_core::Source::Default
        {
            precision = Precision::Fp32;
        }
        let onnx_runtime = e.onnx_runtime.trim();
        EmbedSettings {
            backend,
            precision,
            onnx_runtime: (!onnx_runtime.is_empty()).then(|| PathBuf::from(onnx_runtime)),
            model: (!e.model.trim().is_empty()).then(|| PathBuf::from(e.model.trim())),
            data_dir: loaded.data_dir.clone(),
            remote_url: e.remote_url.clone(),
            remote_model: e.remote_model.clone(),
            remote_api_key: e
                .remote_api_key
                .is_set()
                .then(|| e.remote_api_key.expose().to_string()),
            remote_dim: None,
            batch_size: usize::try_from(e.batch_size).unwrap_or(32),
            max_batch_tokens: usize::try_from(e.max_batch_tokens).unwrap_or(0),
            query_threads: usize::try_from(e.query_threads).unwrap_or(1),
        }
    }

    /// The ONNX back end's options these settings give.
    pub fn onnx_options(&self) -> OnnxOptions {
        OnnxOptions {
            max_batch_tokens: self.max_batch_tokens,
            query_threads: self.query_threads,
            ..OnnxOptions::new(self.batch_size)
        }
    }
}

/// Build the configured embedder. `Ok(None)` for [`Backend::None`] (keyword-only search).
///
/// - Auto: ONNX Runtime when [`plan_onnx`] finds the library and the ONNX model; for int8
///   without an int8 graph, ONNX fp32; else candle, fp32. Why ONNX Runtime was not used is
///   logged at info.
/// - Onnx: ONNX Runtime or the error saying what is missing. Without an explicit model
///   directory and no ONNX model installed, the model is downloaded from the Hugging Face hub
///   (or the mirror in `HF_ENDPOINT`) into `data_dir/models/all-MiniLM-L6-v2-onnx`.
/// - Candle: loads the model found by [`locate_local_model`]; when none is found and no
///   explicit directory is configured, downloads the default model from the hub into
///   `data_dir/models/all-MiniLM-L6-v2`, failing fast when it is unreachable. int8 is an error.
/// - Remote: checks the settings; when `remote_dim` is unset, embeds one probe text to learn the
///   dimension (so the identity is known before the first real call).
pub fn build(settings: &EmbedSettings) -> Result<Option<Arc<dyn Embedder>>, EmbedError> {
    match settings.backend {
        Backend::None => Ok(None),
        Backend::Remote => {
            let embedder = RemoteEmbedder::new(settings)?;
            Ok(Some(Arc::new(embedder)))
        }
        Backend::Candle => {
            if settings.precision == Precision::Int8 {
                return Err(EmbedError::InvalidSetting {
                    key: "embed.precision",
                    value: "int8".into(),
                    reason: "candle runs fp32 only; int8 needs `embed.backend = onnx` (or `auto` \
                             with ONNX Runtime and the ONNX model installed), or set \
                             `embed.precision = fp32`"
                        .into(),
                });
            }
            build_candle(settings)
        }
        Backend::Onnx => {
            let model = match model_dir::locate_onnx(
                settings.model.as_deref(),
                &settings.data_dir,
                settings.precision,
            ) {
                Ok(model) => model,
                Err(EmbedError::ModelNotFound { .. }) if settings.model.is_none() => {
                    model_dir::download_onnx_model(
                        &settings.data_dir,
                        &model_dir::hub_base_url(),
                        settings.precision,
                    )?
                }
                Err(err) => return Err(err),
            };
            let runtime =
                runtime::locate_runtime(settings.onnx_runtime.as_deref(), &settings.data_dir)?;
            let embedder = OnnxEmbedder::load(
                &runtime,
                &model,
                settings.precision,
                settings.onnx_options(),
            )?;
            Ok(Some(Arc::new(embedder)))
        }
        Backend::Auto => {
            // Fastest first: the configured precision on ONNX Runtime; for int8 without an
            // int8 graph, ONNX fp32 (still ~2× candle); then candle.
            let mut attempts = vec![settings.precision];
            if settings.precision == Precision::Int8 {
                attempts.push(Precision::Fp32);
            }
            let mut reasons = Vec::new();
            for precision in attempts {
                let wanted = EmbedSettings {
                    precision,
                    ..settings.clone()
                };
                let loaded = plan_onnx(&wanted).and_then(|(runtime, model)| {
                    OnnxEmbedder::load(&runtime, &model, precision, settings.onnx_options())
                });
                match loaded {
                    Ok(embedder) => {
                        if precision != settings.precision {
                            tracing::info!(
                                "embedding with ONNX Runtime fp32: no int8 graph ({})",
                                reasons.join("; ")
                            );
                        }
                        return Ok(Some(Arc::new(embedder)));
                    }
                    Err(err) => reasons.push(format!("{precision}: {err}")),
                }
            }
            let note = if settings.precision == Precision::Int8 {
                " (fp32: int8 needs ONNX Runtime)"
            } else {
                ""
            };
            tracing::info!(
                "embedding with candle{note}; ONNX Runtime is not used: {}",
                reasons.join("; ")
            );
            build_candle(settings)
        }
    }
}

fn build_candle(settings: &EmbedSettings) -> Result<Option<Arc<dyn Embedder>>, EmbedError> {
    let dir = match locate_local_model(settings) {
        Ok(dir) => dir,
        Err(EmbedError::ModelNotFound { .. }) if settings.model.is_none() => {
            model_dir::download_default_model(&settings.data_dir, &model_dir::hub_base_url())?
        }
        Err(err) => return Err(err),
    };
    let embedder = LocalEmbedder::load(&dir, settings.batch_size)?;
    Ok(Some(Arc::new(embedder)))
}

/// What [`Backend::Auto`] would run with ONNX Runtime, without loading anything: the runtime
/// library and the ONNX model for the configured precision, or why not (never downloads).
pub fn plan_onnx(settings: &EmbedSettings) -> Result<(PathBuf, OnnxModel), EmbedError> {
    let model = model_dir::locate_onnx(
        settings.model.as_deref(),
        &settings.data_dir,
        settings.precision,
    )?;
    let runtime = runtime::locate_runtime(settings.onnx_runtime.as_deref(), &settings.data_dir)?;
    Ok((runtime, model))
}

/// Where a candle model would be found, in order, without loading it (for `exai health` and
/// error messages): `settings.model` if set (an error naming the missing file if it lacks one),
/// else `data_dir/models/all-MiniLM-L6-v2`. Never downloads.
pub fn locate_local_model(settings: &EmbedSettings) -> Result<PathBuf, EmbedError> {
    model_dir::locate(settings.model.as_deref(), &settings.data_dir)
}

/// Where the ONNX model for the configured precision would be found, without loading it:
/// `settings.model` if set, else `data_dir/models/all-MiniLM-L6-v2-onnx`. Never downloads.
pub fn locate_onnx_model(settings: &EmbedSettings) -> Result<OnnxModel, EmbedError> {
    model_dir::locate_onnx(
        settings.model.as_deref(),
        &settings.data_dir,
        settings.precision,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(backend: Backend, data_dir: &std::path::Path) -> EmbedSettings {
        EmbedSettings {
            backend,
            precision: Precision::Fp32,
            onnx_runtime: None,
            model: None,
            data_dir: data_dir.to_path_buf(),
            remote_url: "http://127.0.0.1:1/v1".into(),
            remote_model: "m".into(),
            remote_api_key: Some("sk-very-secret".into()),
            remote_dim: Some(8),
            batch_size: 32,
            max_batch_tokens: 1024,
            query_threads: 1,
        }
    }

    #[test]
    fn backend_parses_and_prints() {
        assert_eq!("local".parse::<Backend>().unwrap(), Backend::Auto);
        assert_eq!("auto".parse::<Backend>().unwrap(), Backend::Auto);
        assert_eq!("ONNX".parse::<Backend>().unwrap(), Backend::Onnx);
        assert_eq!("candle".parse::<Backend>().unwrap(), Backend::Candle);
        assert_eq!(" Remote ".parse::<Backend>().unwrap(), Backend::Remote);
        assert_eq!("none".parse::<Backend>().unwrap(), Backend::None);
        let err = "torch".parse::<Backend>().unwrap_err().to_string();
        assert!(
            err.contains("\"torch\"") && err.contains("\"auto\", \"onnx\", \"candle\""),
            "{err}"
        );
        assert_eq!(Backend::Remote.to_string(), "remote");
        assert_eq!(Backend::default(), Backend::Auto);
    }

    #[test]
    fn precision_parses_and_prints() {
        assert_eq!("fp32".parse::<Precision>().unwrap(), Precision::Fp32);
        assert_eq!(" INT8".parse::<Precision>().unwrap(), Precision::Int8);
        assert_eq!(Precision::Int8.to_string(), "int8");
        let err = "fp16".parse::<Precision>().unwrap_err().to_string();
        assert!(
            err.contains("\"fp16\"") && err.contains("\"int8\""),
            "{err}"
        );
    }

    #[test]
    fn identity_key_carries_the_precision() {
        let mut id = ModelIdentity {
            name: DEFAULT_MODEL_NAME.into(),
            dim: 384,
            precision: Precision::Fp32.to_string(),
            max_tokens: 256,
        };
        assert_eq!(id.key(), "sentence-transformers/all-MiniLM-L6-v2:384:fp32");
        // Indexes written before precisions had names hold `…:f32`: the same fp32 vectors.
        assert!(id.matches_key("sentence-transformers/all-MiniLM-L6-v2:384:fp32"));
        assert!(id.matches_key("sentence-transformers/all-MiniLM-L6-v2:384:f32"));
        assert!(!id.matches_key("sentence-transformers/all-MiniLM-L6-v2:384:int8"));
        assert!(!id.matches_key("other:384:f32"));
        id.precision = Precision::Int8.to_string();
        assert_eq!(id.key(), "sentence-transformers/all-MiniLM-L6-v2:384:int8");
        assert!(!id.matches_key("sentence-transformers/all-MiniLM-L6-v2:384:f32"));
        assert!(!id.matches_key("sentence-transformers/all-MiniLM-L6-v2:384:fp32"));
    }

    #[test]
    fn none_builds_nothing_and_remote_builds_without_network_when_dim_is_known() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(
            build(&settings(Backend::None, tmp.path()))
                .unwrap()
                .is_none()
        );
        let remote = build(&settings(Backend::Remote, tmp.path()))
            .unwrap()
            .unwrap();
        assert_eq!(remote.identity().key(), "m:8:fp32");
        assert_eq!(remote.backend(), "remote");
        assert!(remote.count_tokens("hello world") >= 4);
    }

    #[test]
    fn settings_debug_redacts_the_key() {
        let tmp = tempfile::tempdir().unwrap();
        let text = format!("{:?}", settings(Backend::Remote, tmp.path()));
        assert!(!text.contains("sk-very-secret"), "{text}");
        assert!(text.contains("<redacted>"), "{text}");
    }

    #[test]
    fn explicit_model_that_is_missing_is_not_downloaded() {
        let tmp = tempfile::tempdir().unwrap();
        for backend in [Backend::Auto, Backend::Candle, Backend::Onnx] {
            let mut s = settings(backend, tmp.path());
            s.model = Some(tmp.path().join("absent"));
            let err = build(&s).err().unwrap();
            assert!(
                matches!(err, EmbedError::ModelNotFound { .. }),
                "{backend}: {err}"
            );
            assert!(!tmp.path().join("models").exists());
        }
        let mut s = settings(Backend::Auto, tmp.path());
        s.model = Some(tmp.path().join("absent"));
        assert!(locate_local_model(&s).is_err());
        assert!(locate_onnx_model(&s).is_err());
    }

    /// A directory with the files the locators check for (contents are not valid models).
    fn fake_model(dir: &std::path::Path, files: &[&str]) {
        for f in files {
            let path = dir.join(f);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"{}").unwrap();
        }
    }

    #[test]
    fn candle_refuses_int8() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = settings(Backend::Candle, tmp.path());
        s.precision = Precision::Int8;
        let msg = build(&s).err().unwrap().to_string();
        assert!(
            msg.contains("embed.precision") && msg.contains("fp32"),
            "{msg}"
        );
        assert!(msg.contains("embed.backend = onnx"), "{msg}");
    }

    #[test]
    fn onnx_model_layouts_and_precisions() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path();
        // Flat layout in the default ONNX directory.
        let flat = data.join("models").join(DEFAULT_ONNX_DIR_NAME);
        fake_model(&flat, &["config.json", "tokenizer.json", "model.onnx"]);
        let mut s = settings(Backend::Onnx, data);
        assert_eq!(
            locate_onnx_model(&s).unwrap(),
            OnnxModel {
                dir: flat.clone(),
                graph: flat.join("model.onnx")
            }
        );
        // No int8 graph there yet: the error names the files it wants and how to install them.
        s.precision = Precision::Int8;
        let msg = locate_onnx_model(&s).unwrap_err().to_string();
        assert!(
            msg.contains("model_int8.onnx") && msg.contains("install-model.sh --onnx"),
            "{msg}"
        );
        fake_model(&flat, &["model_int8.onnx"]);
        assert_eq!(
            locate_onnx_model(&s).unwrap().graph,
            flat.join("model_int8.onnx")
        );

        // The hub's layout: graphs under onnx/, an explicit directory.
        let hub = data.join("hub-clone");
        fake_model(
            &hub,
            &[
                "config.json",
                "tokenizer.json",
                "onnx/model.onnx",
                "onnx/model_qint8_avx512.onnx",
            ],
        );
        s.model = Some(hub.clone());
        assert_eq!(
            locate_onnx_model(&s).unwrap().graph,
            hub.join("onnx/model_qint8_avx512.onnx")
        );
        s.precision = Precision::Fp32;
        assert_eq!(
            locate_onnx_model(&s).unwrap().graph,
            hub.join("onnx/model.onnx")
        );
        // A graph without its tokenizer is not a model.
        std::fs::remove_file(hub.join("tokenizer.json")).unwrap();
        assert!(locate_onnx_model(&s).is_err());
    }

    #[test]
    fn onnx_without_a_runtime_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("m");
        fake_model(&dir, &["config.json", "tokenizer.json", "model.onnx"]);
        let mut s = settings(Backend::Onnx, tmp.path());
        s.model = Some(dir);
        s.onnx_runtime = Some(tmp.path().join("no-such-libonnxruntime.so"));
        let err = build(&s).err().unwrap();
        assert!(matches!(err, EmbedError::RuntimeNotFound { .. }), "{err}");
        assert!(err.to_string().contains("pip install onnxruntime"), "{err}");
        assert!(plan_onnx(&s).is_err());
    }

    #[test]
    fn auto_falls_back_to_candle_when_onnx_is_unusable() {
        let tmp = tempfile::tempdir().unwrap();
        // One directory with both a (fake) ONNX graph and the candle files: with no runtime,
        // auto must try candle on it, whose loader then rejects the fake weights.
        let dir = tmp.path().join("m");
        fake_model(
            &dir,
            &[
                "config.json",
                "tokenizer.json",
                "model.onnx",
                "model.safetensors",
            ],
        );
        for precision in [Precision::Fp32, Precision::Int8] {
            let mut s = settings(Backend::Auto, tmp.path());
            s.model = Some(dir.clone());
            s.precision = precision;
            s.onnx_runtime = Some(tmp.path().join("no-such-libonnxruntime.so"));
            let err = build(&s).err().unwrap();
            assert!(
                matches!(err, EmbedError::InvalidModel { ref path, .. } if path.ends_with("config.json")),
                "{precision}: {err}"
            );
        }
        // A fake runtime file that fails to load also falls back to candle.
        let fake_lib = tmp.path().join("libonnxruntime.so");
        std::fs::write(&fake_lib, b"not a library").unwrap();
        let mut s = settings(Backend::Auto, tmp.path());
        s.model = Some(dir.clone());
        s.onnx_runtime = Some(fake_lib.clone());
        assert!(plan_onnx(&s).is_ok());
        let err = build(&s).err().unwrap();
        assert!(matches!(err, EmbedError::InvalidModel { .. }), "{err}");
        // ... while the onnx back end reports the runtime's failure.
        s.backend = Backend::Onnx;
        let err = build(&s).err().unwrap();
        assert!(matches!(err, EmbedError::RuntimeLoad { .. }), "{err}");
    }
}
