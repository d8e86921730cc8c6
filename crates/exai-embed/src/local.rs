//! The local back end: a sentence-transformers BERT-family model run with candle on the CPU.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use rayon::prelude::*;
use serde::Deserialize;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::pooling::{Pooling, l2_normalize, pool};
use crate::{EmbedError, Embedder, ModelIdentity, batch, model_dir};

/// How batches use the CPU cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threading {
    /// One batch at a time; candle spreads each matrix multiplication and large element-wise
    /// operation over its own threads.
    Candle,
    /// One batch per core at once on a dedicated rayon pool, each batch's multiplications on a
    /// single thread (gemm's threading threshold is raised, which is process-wide). The
    /// `batch_size` texts in flight are split over the cores: each forward pass takes
    /// `batch_size / cores` texts, or fewer so that every core gets a batch.
    RayonBatches,
}

impl Threading {
    /// Tells gemm whether to split multiplications over threads. The setting is global to the
    /// process; the last embedder loaded decides.
    fn configure_gemm(self) {
        let threshold = match self {
            Threading::Candle => gemm_common::gemm::DEFAULT_THREADING_THRESHOLD,
            Threading::RayonBatches => usize::MAX,
        };
        gemm_common::gemm::set_threading_threshold(threshold);
    }
}

/// Knobs of the local back end. [`LocalOptions::new`] gives the measured best; the other values
/// exist so the benchmark can show what each lever is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalOptions {
    /// Texts in flight at once: one forward pass of that many ([`Threading::Candle`]), or one
    /// pass per core sharing them ([`Threading::RayonBatches`]). Bounds the memory of activations.
    pub batch_size: usize,
    /// Group texts of similar length into a batch (input order is restored afterwards).
    pub sort_by_length: bool,
    /// Pad each batch to its longest text rather than to the model's maximum length.
    pub pad_to_longest: bool,
    pub threading: Threading,
    /// Store each linear layer's weight matrix transposed in memory (same values, same shape).
    /// candle multiplies by `weight.t()`; for the row-major weights of a checkpoint that makes
    /// gemm repack the whole matrix, element by element, on every call, which dominates small
    /// batches such as a single query. Stored transposed, `weight.t()` is already the layout
    /// gemm reads directly.
    pub transposed_weights: bool,
}

impl LocalOptions {
    pub fn new(batch_size: usize) -> LocalOptions {
        LocalOptions {
            batch_size: batch_size.max(1),
            sort_by_length: true,
            pad_to_longest: true,
            threading: Threading::RayonBatches,
            transposed_weights: true,
        }
    }
}

/// `sentence_bert_config.json`.
#[derive(Debug, Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

/// One entry of `modules.json`.
#[derive(Debug, Deserialize)]
struct Module {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

/// A loaded local model. Cheap to share (`Arc`) and safe to call from several threads at once.
pub struct LocalEmbedder {
    identity: ModelIdentity,
    dir: PathBuf,
    model: BertModel,
    /// Truncates to `max_tokens`, as sentence-transformers does before the forward pass.
    tokenizer: Tokenizer,
    /// The same tokenizer without truncation, for [`Embedder::count_tokens`].
    counter: Tokenizer,
    pad_id: u32,
    pooling: Pooling,
    options: LocalOptions,
    device: Device,
}

impl std::fmt::Debug for LocalEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEmbedder")
            .field("identity", &self.identity)
            .field("dir", &self.dir)
            .field("pooling", &self.pooling)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

pub(crate) fn invalid(path: &Path, reason: impl std::fmt::Display) -> EmbedError {
    EmbedError::InvalidModel {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn read_text(path: &Path) -> Result<String, EmbedError> {
    std::fs::read_to_string(path).map_err(|source| EmbedError::Io {
        context: "cannot read",
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, EmbedError> {
    serde_json::from_str(&read_text(path)?).map_err(|e| invalid(path, e))
}

impl LocalEmbedder {
    /// Loads the model directory with the default options and `batch_size` passages per pass.
    pub fn load(dir: &Path, batch_size: usize) -> Result<LocalEmbedder, EmbedError> {
        LocalEmbedder::load_with(dir, LocalOptions::new(batch_size))
    }

    /// Loads with explicit options. Note [`Threading`]'s process-wide gemm setting.
    pub fn load_with(dir: &Path, options: LocalOptions) -> Result<LocalEmbedder, EmbedError> {
        for file in model_dir::REQUIRED_FILES {
            if !dir.join(file).is_file() {
                return Err(EmbedError::MissingModelFile {
                    dir: dir.to_path_buf(),
                    file: file.to_string(),
                    origin: "given to the loader".to_string(),
                });
            }
        }
        let config_path = dir.join("config.json");
        let config: BertConfig = read_json(&config_path)?;
        let (pooling, normalize) = read_modules(dir)?;
        if !normalize {
            // The trait promises unit vectors; cosine similarity is unchanged by normalising.
            tracing::debug!(dir = %dir.display(), "model has no Normalize module; normalising anyway");
        }

        let max_tokens = max_tokens(dir, config.max_position_embeddings)?;
        let (tokenizer, counter, pad_id) =
            load_tokenizers(dir, max_tokens, config.pad_token_id as u32)?;

        let weights_path = dir.join("model.safetensors");
        let weights = std::fs::read(&weights_path).map_err(|source| EmbedError::Io {
            context: "cannot read",
            path: weights_path.clone(),
            source,
        })?;
        let fingerprint = model_dir::fingerprint(&weights);
        let device = Device::Cpu;
        let tensors = candle_core::safetensors::load_buffer(&weights, &device)
            .and_then(|tensors| prepare_weights(tensors, options.transposed_weights))
            .map_err(|e| invalid(&weights_path, e))?;
        drop(weights);
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &device);
        let model = BertModel::load(vb, &config).map_err(|e| invalid(&weights_path, e))?;
        options.threading.configure_gemm();

        let identity = ModelIdentity {
            name: model_dir::model_name(dir, &fingerprint),
            dim: config.hidden_size,
            precision: crate::Precision::Fp32.as_str().to_string(),
            max_tokens,
        };
        tracing::info!(model = %identity.key(), dir = %dir.display(), "loaded local embedding model");
        Ok(LocalEmbedder {
            identity,
            dir: dir.to_path_buf(),
            model,
            tokenizer,
            counter,
            pad_id,
            pooling,
            options,
            device,
        })
    }

    /// The directory the model was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn options(&self) -> LocalOptions {
        self.options
    }

    /// Word-piece ids per text, truncated to `max_tokens`, special tokens included.
    fn tokenize(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>, EmbedError> {
        tokenize(&self.tokenizer, texts)
    }

    /// One forward pass over the given sequences; returns one pooled, normalised vector each.
    fn embed_batch(&self, seqs: &[&[u32]]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let longest = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
        let width = if self.options.pad_to_longest {
            longest
        } else {
            self.identity.max_tokens.max(longest)
        };
        if width == 0 {
            return Ok(vec![vec![0.0; self.identity.dim]; seqs.len()]);
        }
        let rows = seqs.len();
        let mut ids = Vec::with_capacity(rows * width);
        let mut mask = Vec::with_capacity(rows * width);
        for seq in seqs {
            ids.extend_from_slice(seq);
            ids.extend(std::iter::repeat_n(self.pad_id, width - seq.len()));
            mask.extend(std::iter::repeat_n(1u32, seq.len()));
            mask.extend(std::iter::repeat_n(0u32, width - seq.len()));
        }
        let input_ids = Tensor::from_vec(ids, (rows, width), &self.device)?;
        let type_ids = input_ids.zeros_like()?;
        let attention = Tensor::from_vec(mask.clone(), (rows, width), &self.device)?;
        let hidden = self
            .model
            .forward(&input_ids, &type_ids, Some(&attention))?;
        let (_, _, dim) = hidden.dims3()?;
        let hidden: Vec<f32> = hidden.flatten_all()?.to_vec1()?;
        let vectors = hidden
            .chunks_exact(width * dim)
            .zip(mask.chunks_exact(width))
            .map(|(h, m)| {
                let mut v = pool(h, m, dim, self.pooling);
                l2_normalize(&mut v);
                v
            })
            .collect();
        Ok(vectors)
    }
}

/// The most word pieces the model reads: `max_seq_length` of `sentence_bert_config.json` when
/// present (sentence-transformers truncates to it), capped by the position embeddings.
pub(crate) fn max_tokens(dir: &Path, max_position_embeddings: usize) -> Result<usize, EmbedError> {
    let sbert_path = dir.join("sentence_bert_config.json");
    let max_seq_length = if sbert_path.is_file() {
        read_json::<SentenceBertConfig>(&sbert_path)?.max_seq_length
    } else {
        None
    };
    Ok(max_seq_length
        .unwrap_or(max_position_embeddings)
        .min(max_position_embeddings))
}

/// The model's `tokenizer.json` twice: truncating to `max_tokens` (for embedding) and not (for
/// counting), both without padding, and the padding id (`default_pad` if the file sets none).
pub(crate) fn load_tokenizers(
    dir: &Path,
    max_tokens: usize,
    default_pad: u32,
) -> Result<(Tokenizer, Tokenizer, u32), EmbedError> {
    let tokenizer_path = dir.join("tokenizer.json");
    let mut counter =
        Tokenizer::from_file(&tokenizer_path).map_err(|e| invalid(&tokenizer_path, e))?;
    let pad_id = counter.get_padding().map_or(default_pad, |p| p.pad_id);
    // Shipped tokenizer.json files often pad to a fixed length and truncate to another; exai
    // pads per batch itself and truncates to the model's own limit.
    counter.with_padding(None);
    counter
        .with_truncation(None)
        .map_err(|e| invalid(&tokenizer_path, e))?;
    let mut tokenizer = counter.clone();
    tokenizer
        .with_truncation(Some(TruncationParams {
            direction: TruncationDirection::Right,
            max_length: max_tokens,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
        }))
        .map_err(|e| invalid(&tokenizer_path, e))?;
    Ok((tokenizer, counter, pad_id))
}

/// Word-piece ids per text, truncated as `tokenizer` is configured, special tokens included.
pub(crate) fn tokenize(tokenizer: &Tokenizer, texts: &[&str]) -> Result<Vec<Vec<u32>>, EmbedError> {
    let encodings = match texts {
        // A single text (a query) gains nothing from the tokenizer's thread pool.
        [text] => tokenizer.encode_fast(*text, true).map(|e| vec![e]),
        _ => tokenizer.encode_batch_fast(texts.to_vec(), true),
    }
    .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
    Ok(encodings
        .into_iter()
        .map(|e| e.get_ids().to_vec())
        .collect())
}

/// Word pieces of `text` with special tokens, uncapped (an estimate if tokenizing fails).
pub(crate) fn count_tokens(counter: &Tokenizer, text: &str) -> usize {
    match counter.encode_fast(text, true) {
        Ok(encoding) => encoding.len(),
        // Tokenizing plain text does not fail in practice; an estimate beats a panic.
        Err(_) => crate::remote::estimate_tokens(text),
    }
}

/// Converts every tensor to f32 and, if asked, lays out the linear layers' weight matrices
/// transposed (see [`LocalOptions::transposed_weights`]). Embedding tables stay row-major: they
/// are read by row.
fn prepare_weights(
    tensors: HashMap<String, Tensor>,
    transposed: bool,
) -> candle_core::Result<HashMap<String, Tensor>> {
    tensors
        .into_iter()
        .map(|(name, tensor)| {
            let tensor = tensor.to_dtype(DType::F32)?;
            let linear =
                tensor.rank() == 2 && name.ends_with(".weight") && !name.contains("embeddings");
            let tensor = if transposed && linear {
                tensor.t()?.contiguous()?.t()?
            } else {
                tensor
            };
            Ok((name, tensor))
        })
        .collect()
}

/// One thread per core, independent of `RAYON_NUM_THREADS` (which candle reads for its own
/// threading), so the two can be set apart.
fn batch_pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: std::sync::OnceLock<Option<rayon::ThreadPool>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let threads = std::thread::available_parallelism().map_or(2, usize::from);
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("exai-embed-{i}"))
            .build()
            .ok()
    })
    .as_ref()
}

/// Reads `modules.json`: the pooling mode and whether a Normalize module follows. Models
/// without `modules.json` are plain BERT checkpoints: mean pooling.
pub(crate) fn read_modules(dir: &Path) -> Result<(Pooling, bool), EmbedError> {
    let modules_path = dir.join("modules.json");
    if !modules_path.is_file() {
        return Ok((read_pooling(&dir.join("1_Pooling/config.json"))?, false));
    }
    let modules: Vec<Module> = read_json(&modules_path)?;
    let mut pooling = None;
    let mut normalize = false;
    for module in &modules {
        let kind = module.kind.rsplit('.').next().unwrap_or(&module.kind);
        match kind {
            "Transformer" => {}
            "Pooling" => pooling = Some(read_pooling(&dir.join(&module.path).join("config.json"))?),
            "Normalize" => normalize = true,
            other => {
                return Err(invalid(
                    &modules_path,
                    format!(
                        "module {other} is not supported (exai runs Transformer → Pooling → \
                         Normalize models)"
                    ),
                ));
            }
        }
    }
    Ok((pooling.unwrap_or(Pooling::Mean), normalize))
}

fn read_pooling(path: &Path) -> Result<Pooling, EmbedError> {
    if !path.is_file() {
        return Ok(Pooling::Mean);
    }
    Pooling::from_config_json(&read_text(path)?).map_err(|e| invalid(path, e))
}

impl Embedder for LocalEmbedder {
    fn identity(&self) -> &ModelIdentity {
        &self.identity
    }

    fn backend(&self) -> &'static str {
        "candle"
    }

    fn embed_passages(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let ids = self.tokenize(texts)?;
        let pool = match self.options.threading {
            Threading::RayonBatches => batch_pool(),
            Threading::Candle => None,
        };
        let batch_size = match pool {
            // batch_size texts in flight at once, split over the cores (so memory is that of
            // one batch of batch_size), and at least one batch per core when there are enough.
            Some(pool) => {
                let cores = pool.current_num_threads().max(1);
                texts
                    .len()
                    .div_ceil(cores)
                    .min(self.options.batch_size.div_ceil(cores))
            }
            None => self.options.batch_size,
        }
        .max(1);
        let batches = if self.options.sort_by_length {
            let lengths: Vec<usize> = ids.iter().map(Vec::len).collect();
            batch::plan(&lengths, batch_size)
        } else {
            let order: Vec<usize> = (0..ids.len()).collect();
            order.chunks(batch_size).map(<[usize]>::to_vec).collect()
        };
        let run = |indices: &Vec<usize>| {
            let seqs: Vec<&[u32]> = indices.iter().map(|&i| ids[i].as_slice()).collect();
            self.embed_batch(&seqs)
        };
        let outputs: Vec<Vec<Vec<f32>>> = match self.options.threading {
            Threading::RayonBatches if batches.len() > 1 => match batch_pool() {
                Some(pool) => {
                    pool.install(|| batches.par_iter().map(run).collect::<Result<_, _>>())?
                }
                None => batches.iter().map(run).collect::<Result<_, _>>()?,
            },
            _ => batches.iter().map(run).collect::<Result<_, _>>()?,
        };
        batch::restore(&batches, outputs, texts.len())
            .ok_or_else(|| EmbedError::Inference("batch results did not cover every input".into()))
    }

    fn embed_query(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        self.embed_passages(&[text])?
            .pop()
            .ok_or_else(|| EmbedError::Inference("no vector for the query".into()))
    }

    fn count_tokens(&self, text: &str) -> usize {
        count_tokens(&self.counter, text)
    }
}
