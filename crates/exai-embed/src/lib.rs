//! Sentence embeddings for the knowledge base.
//!
//! Two back ends behind one [`Embedder`] trait:
//! - [`Backend::Local`]: a sentence-transformers BERT-family model (default
//!   `sentence-transformers/all-MiniLM-L6-v2`) run in pure Rust with candle, exact to
//!   sentence-transformers (same tokenizer, mean pooling over the attention mask, L2 norm);
//! - [`Backend::Remote`]: any OpenAI-compatible `POST {url}/embeddings` endpoint.
//!
//! The API is synchronous on purpose: embedding is CPU-bound (local) or a blocking HTTP call
//! (remote), so async callers run it inside `tokio::task::spawn_blocking`.

mod batch;
mod error;
mod local;
mod model_dir;
mod pooling;
mod remote;
#[cfg(test)]
mod test_server;

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

pub use error::EmbedError;
pub use local::{LocalEmbedder, LocalOptions, Threading};
pub use model_dir::{DEFAULT_MODEL_DIR_NAME, DEFAULT_MODEL_NAME, HUB_BASE_URL};
pub use remote::{MAX_REMOTE_BATCH, RemoteEmbedder};

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
    /// `"{name}:{dim}:{precision}"`, e.g. `"sentence-transformers/all-MiniLM-L6-v2:384:f32"`.
    pub fn key(&self) -> String {
        format!("{}:{}:{}", self.name, self.dim, self.precision)
    }
}

/// Turns text into unit-length vectors.
pub trait Embedder: Send + Sync {
    fn identity(&self) -> &ModelIdentity;
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Local,
    Remote,
    /// No embeddings: keyword-only search.
    None,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Local => "local",
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
            "local" => Ok(Backend::Local),
            "remote" => Ok(Backend::Remote),
            "none" => Ok(Backend::None),
            _ => Err(EmbedError::InvalidBackend {
                value: s.to_string(),
            }),
        }
    }
}

/// Everything [`build`] needs; filled from exai's configuration.
#[derive(Clone)]
pub struct EmbedSettings {
    pub backend: Backend,
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
}

impl std::fmt::Debug for EmbedSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbedSettings")
            .field("backend", &self.backend)
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
            .finish()
    }
}

/// Build the configured embedder. `Ok(None)` for [`Backend::None`] (keyword-only search).
///
/// Local: loads the model found by [`locate_local_model`]; when none is found and no explicit
/// directory is configured, downloads the default model from the Hugging Face hub (or the mirror
/// in `HF_ENDPOINT`) into `data_dir/models/all-MiniLM-L6-v2`, failing fast when it is unreachable.
/// Remote: checks the settings; when `remote_dim` is unset, embeds one probe text to learn the
/// dimension (so the identity is known before the first real call).
pub fn build(settings: &EmbedSettings) -> Result<Option<Arc<dyn Embedder>>, EmbedError> {
    match settings.backend {
        Backend::None => Ok(None),
        Backend::Local => {
            let dir = match locate_local_model(settings) {
                Ok(dir) => dir,
                Err(EmbedError::ModelNotFound { .. }) if settings.model.is_none() => {
                    model_dir::download_default_model(
                        &settings.data_dir,
                        &model_dir::hub_base_url(),
                    )?
                }
                Err(err) => return Err(err),
            };
            let embedder = LocalEmbedder::load(&dir, settings.batch_size)?;
            Ok(Some(Arc::new(embedder)))
        }
        Backend::Remote => {
            let embedder = RemoteEmbedder::new(settings)?;
            Ok(Some(Arc::new(embedder)))
        }
    }
}

/// Where a local model would be found, in order, without loading it (for `exai health` and error
/// messages): `settings.model` if set (an error naming the missing file if it lacks one), else
/// `data_dir/models/all-MiniLM-L6-v2`. Never downloads.
pub fn locate_local_model(settings: &EmbedSettings) -> Result<PathBuf, EmbedError> {
    model_dir::locate(settings.model.as_deref(), &settings.data_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(backend: Backend, data_dir: &std::path::Path) -> EmbedSettings {
        EmbedSettings {
            backend,
            model: None,
            data_dir: data_dir.to_path_buf(),
            remote_url: "http://127.0.0.1:1/v1".into(),
            remote_model: "m".into(),
            remote_api_key: Some("sk-very-secret".into()),
            remote_dim: Some(8),
            batch_size: 32,
        }
    }

    #[test]
    fn backend_parses_and_prints() {
        assert_eq!("local".parse::<Backend>().unwrap(), Backend::Local);
        assert_eq!(" Remote ".parse::<Backend>().unwrap(), Backend::Remote);
        assert_eq!("none".parse::<Backend>().unwrap(), Backend::None);
        let err = "onnx".parse::<Backend>().unwrap_err().to_string();
        assert!(
            err.contains("\"onnx\"") && err.contains("\"local\", \"remote\" or \"none\""),
            "{err}"
        );
        assert_eq!(Backend::Remote.to_string(), "remote");
    }

    #[test]
    fn identity_key() {
        let id = ModelIdentity {
            name: DEFAULT_MODEL_NAME.into(),
            dim: 384,
            precision: "f32".into(),
            max_tokens: 256,
        };
        assert_eq!(id.key(), "sentence-transformers/all-MiniLM-L6-v2:384:f32");
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
        assert_eq!(remote.identity().key(), "m:8:f32");
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
        let mut s = settings(Backend::Local, tmp.path());
        s.model = Some(tmp.path().join("absent"));
        let err = build(&s).err().unwrap();
        assert!(matches!(err, EmbedError::ModelNotFound { .. }), "{err}");
        assert!(!tmp.path().join("models").exists());
        assert!(locate_local_model(&s).is_err());
    }
}
