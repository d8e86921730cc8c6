//! The ONNX Runtime back end: the same sentence-transformers model as the candle back end (same
//! tokenizer, same pooling, L2 norm), run by ONNX Runtime from an ONNX graph, fp32 or int8.
//!
//! fp32 gives sentence-transformers' vectors; int8 is faster at close quality; candle is the
//! slower fallback (BENCHMARKS.md, "Local embeddings: ONNX Runtime").

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionInputValue};
use ort::value::Tensor;
use serde::Deserialize;
use tokenizers::Tokenizer;

use crate::local::{
    count_tokens, invalid, load_tokenizers, max_tokens, read_json, read_modules, tokenize,
};
use crate::model_dir::{self, OnnxModel};
use crate::pooling::{Pooling, l2_normalize, pool};
use crate::{EmbedError, Embedder, ModelIdentity, Precision, batch, runtime};

/// Knobs of the ONNX back end. [`OnnxOptions::new`] gives the measured best.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnnxOptions {
    /// Texts per forward pass. ONNX Runtime spreads each pass over all intra-op threads, so
    /// batches run one after another.
    pub batch_size: usize,
    /// Threads inside one pass over a batch of passages; 0 means one per core.
    pub intra_threads: usize,
    /// Threads inside one pass over a single query; 0 means one per core. When this differs
    /// from `intra_threads`, queries run on a session of their own (opened on the first query).
    /// On an idle machine every core is fastest (`bench/embed/query_latency.py`: one thread
    /// is slower); with the other core busy, one thread is.
    pub query_threads: usize,
    /// Whether ONNX Runtime's idle intra-op threads spin (busy-wait) for the next operator's
    /// work instead of sleeping: faster on an idle machine, slower when other
    /// processes want the cores.
    pub spinning: bool,
    /// Group texts of similar length into a batch (input order is restored afterwards); each
    /// batch is padded to its longest text only.
    pub sort_by_length: bool,
}

impl OnnxOptions {
    pub fn new(batch_size: usize) -> OnnxOptions {
        OnnxOptions {
            batch_size: batch_size.max(1),
            intra_threads: 0,
            query_threads: 0,
            spinning: true,
            sort_by_length: true,
        }
    }
}

/// The parts of `config.json` the ONNX path needs (the graph holds the rest).
#[derive(Debug, Deserialize)]
struct OnnxConfig {
    hidden_size: usize,
    max_position_embeddings: usize,
    #[serde(default)]
    pad_token_id: u32,
}

/// A loaded ONNX model. Safe to call from several threads at once.
///
/// `ort` runs a session through `&mut`, so each session sits behind a lock. Passages (indexing)
/// use the main session. Queries use it too when it is free and runs them with the query thread
/// count; otherwise they get a second session, opened on first need, rather than waiting behind
/// a batch of 32 passages (~0.4–0.7 s).
pub struct OnnxEmbedder {
    identity: ModelIdentity,
    model: OnnxModel,
    runtime: PathBuf,
    environment: ort::environment::Environment,
    session: Mutex<Session>,
    query_session: OnceLock<Result<Mutex<Session>, String>>,
    /// Whether the graph takes `token_type_ids` (BERT exports do; some others do not).
    takes_type_ids: bool,
    output: String,
    tokenizer: Tokenizer,
    counter: Tokenizer,
    pad_id: u32,
    pooling: Pooling,
    options: OnnxOptions,
    /// Intra-op threads of the main session and of the query session.
    threads: usize,
    query_threads: usize,
}

impl std::fmt::Debug for OnnxEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxEmbedder")
            .field("identity", &self.identity)
            .field("model", &self.model)
            .field("runtime", &self.runtime)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn open_session(
    environment: &ort::environment::Environment,
    graph: &Path,
    threads: usize,
    spinning: bool,
) -> Result<Session, EmbedError> {
    let failed = |e: &dyn std::fmt::Display| invalid(graph, format!("ONNX Runtime: {e}"));
    Session::builder(environment)
        .map_err(|e| failed(&e))?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(|e| failed(&e))?
        .with_intra_threads(threads)
        .map_err(|e| failed(&e))?
        .with_inter_threads(1)
        .map_err(|e| failed(&e))?
        .with_intra_op_spinning(spinning)
        .map_err(|e| failed(&e))?
        .commit_from_file(graph)
        .map_err(|e| failed(&e))
}

impl OnnxEmbedder {
    /// Loads the ONNX Runtime library at `runtime` (once per process) and the model's graph.
    pub fn load(
        runtime: &Path,
        model: &OnnxModel,
        precision: Precision,
        options: OnnxOptions,
    ) -> Result<OnnxEmbedder, EmbedError> {
        // The runtime first: where it is missing or broken, that is the problem to report.
        let environment = runtime::environment(runtime)?;
        let dir = &model.dir;
        for file in model_dir::ONNX_REQUIRED_FILES {
            if !dir.join(file).is_file() {
                return Err(EmbedError::MissingModelFile {
                    dir: dir.clone(),
                    file: file.to_string(),
                    origin: "given to the ONNX loader".to_string(),
                });
            }
        }
        let config: OnnxConfig = read_json(&dir.join("config.json"))?;
        let (pooling, _normalize) = read_modules(dir)?;
        let max_tokens = max_tokens(dir, config.max_position_embeddings)?;
        let (tokenizer, counter, pad_id) = load_tokenizers(dir, max_tokens, config.pad_token_id)?;

        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        let threads = match options.intra_threads {
            0 => cores,
            n => n,
        };
        let query_threads = match options.query_threads {
            0 => cores,
            n => n,
        };
        let session = open_session(&environment, &model.graph, threads, options.spinning)?;
        let inputs: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        for needed in ["input_ids", "attention_mask"] {
            if !inputs.contains(&needed) {
                return Err(invalid(
                    &model.graph,
                    format!("the graph has no input `{needed}` (its inputs: {inputs:?})"),
                ));
            }
        }
        if let Some(other) = inputs
            .iter()
            .find(|i| !["input_ids", "attention_mask", "token_type_ids"].contains(i))
        {
            return Err(invalid(
                &model.graph,
                format!("the graph wants an input `{other}` exai does not provide"),
            ));
        }
        let takes_type_ids = inputs.contains(&"token_type_ids");
        let outputs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        let output = outputs
            .iter()
            .find(|o| ["last_hidden_state", "token_embeddings"].contains(*o))
            .or_else(|| outputs.first())
            .map(|o| (*o).to_string())
            .ok_or_else(|| invalid(&model.graph, "the graph has no outputs"))?;

        let fingerprint = model_dir::fingerprint_file(&model.graph)?;
        let identity = ModelIdentity {
            name: model_dir::model_name(dir, &fingerprint),
            dim: config.hidden_size,
            precision: precision.as_str().to_string(),
            max_tokens,
        };
        tracing::info!(
            model = %identity.key(),
            graph = %model.graph.display(),
            threads,
            "loaded ONNX embedding model"
        );
        Ok(OnnxEmbedder {
            identity,
            model: model.clone(),
            runtime: runtime.to_path_buf(),
            environment,
            session: Mutex::new(session),
            query_session: OnceLock::new(),
            takes_type_ids,
            output,
            tokenizer,
            counter,
            pad_id,
            pooling,
            options,
            threads,
            query_threads,
        })
    }

    pub fn model(&self) -> &OnnxModel {
        &self.model
    }

    /// The ONNX Runtime library file in use.
    pub fn runtime(&self) -> &Path {
        &self.runtime
    }

    pub fn options(&self) -> OnnxOptions {
        self.options
    }

    /// One forward pass over the given sequences on `session`; one pooled, normalised vector
    /// each.
    fn embed_batch(
        &self,
        session: &mut Session,
        seqs: &[&[u32]],
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let dim = self.identity.dim;
        let width = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
        if width == 0 {
            return Ok(vec![vec![0.0; dim]; seqs.len()]);
        }
        let rows = seqs.len();
        let mut ids = Vec::with_capacity(rows * width);
        let mut mask = Vec::with_capacity(rows * width);
        for seq in seqs {
            ids.extend(seq.iter().map(|&id| i64::from(id)));
            ids.extend(std::iter::repeat_n(
                i64::from(self.pad_id),
                width - seq.len(),
            ));
            mask.extend(std::iter::repeat_n(1u32, seq.len()));
            mask.extend(std::iter::repeat_n(0u32, width - seq.len()));
        }
        let shape = [rows, width];
        let mask_i64: Vec<i64> = mask.iter().map(|&m| i64::from(m)).collect();
        let mut inputs: Vec<(&str, SessionInputValue<'_>)> = vec![
            ("input_ids", Tensor::from_array((shape, ids))?.into()),
            (
                "attention_mask",
                Tensor::from_array((shape, mask_i64))?.into(),
            ),
        ];
        if self.takes_type_ids {
            let types = vec![0i64; rows * width];
            inputs.push(("token_type_ids", Tensor::from_array((shape, types))?.into()));
        }
        let outputs = session.run(inputs)?;
        let hidden = outputs
            .get(&self.output)
            .ok_or_else(|| EmbedError::Inference(format!("no output `{}`", self.output)))?;
        let (out_shape, data) = hidden.try_extract_tensor::<f32>()?;
        let expected = [rows as i64, width as i64, dim as i64];
        if out_shape[..] != expected[..] {
            return Err(EmbedError::Inference(format!(
                "output `{}` has shape {:?}, expected {expected:?}",
                self.output,
                &out_shape[..]
            )));
        }
        Ok(data
            .chunks_exact(width * dim)
            .zip(mask.chunks_exact(width))
            .map(|(h, m)| {
                let mut v = pool(h, m, dim, self.pooling);
                l2_normalize(&mut v);
                v
            })
            .collect())
    }

    /// The second session: for every query when queries use another thread count than
    /// passages, else for queries that arrive while the main session is busy.
    fn query_session(&self) -> Result<&Mutex<Session>, EmbedError> {
        self.query_session
            .get_or_init(|| {
                open_session(
                    &self.environment,
                    &self.model.graph,
                    self.query_threads,
                    self.options.spinning,
                )
                .map(Mutex::new)
                .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| EmbedError::Inference(e.clone()))
    }
}

impl Embedder for OnnxEmbedder {
    fn identity(&self) -> &ModelIdentity {
        &self.identity
    }

    fn backend(&self) -> &'static str {
        "onnx"
    }

    fn embed_passages(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let ids = tokenize(&self.tokenizer, texts)?;
        let batches = if self.options.sort_by_length {
            let lengths: Vec<usize> = ids.iter().map(Vec::len).collect();
            batch::plan(&lengths, self.options.batch_size)
        } else {
            let order: Vec<usize> = (0..ids.len()).collect();
            order
                .chunks(self.options.batch_size.max(1))
                .map(<[usize]>::to_vec)
                .collect()
        };
        // A poisoned lock means a panic inside ONNX Runtime's wrapper on another thread; the
        // session itself holds no state between runs, so it is still usable.
        let mut session = self.session.lock().unwrap_or_else(PoisonError::into_inner);
        let mut outputs = Vec::with_capacity(batches.len());
        for indices in &batches {
            let seqs: Vec<&[u32]> = indices.iter().map(|&i| ids[i].as_slice()).collect();
            outputs.push(self.embed_batch(&mut session, &seqs)?);
        }
        drop(session);
        batch::restore(&batches, outputs, texts.len())
            .ok_or_else(|| EmbedError::Inference("batch results did not cover every input".into()))
    }

    fn embed_query(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        let ids = tokenize(&self.tokenizer, &[text])?;
        let seqs: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
        let main = if self.query_threads == self.threads {
            match self.session.try_lock() {
                Ok(session) => Some(session),
                Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) => None,
            }
        } else {
            None
        };
        let vectors = match main {
            Some(mut session) => self.embed_batch(&mut session, &seqs)?,
            None => {
                let mut session = self
                    .query_session()?
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                self.embed_batch(&mut session, &seqs)?
            }
        };
        vectors
            .into_iter()
            .next()
            .ok_or_else(|| EmbedError::Inference("no vector for the query".into()))
    }

    fn count_tokens(&self, text: &str) -> usize {
        count_tokens(&self.counter, text)
    }
}
