//! The ONNX Runtime back end: the same sentence-transformers model as the candle back end (same
//! tokenizer, same pooling, L2 norm), run by ONNX Runtime from an ONNX graph, fp32 or int8.
//!
//! fp32 gives sentence-transformers' vectors; int8 is faster at close quality; candle is the
//! slower fallback (BENCHMARKS.md, "Local embeddings: ONNX Runtime").

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

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
    /// Padded tokens per forward pass at most (texts × the batch's longest text), so long
    /// passages go in narrower batches than short ones; 0: `batch_size` alone bounds a batch.
    /// The runtime's working memory for a pass grows with this times the text length.
    pub max_batch_tokens: usize,
    /// ONNX Runtime's CPU memory arena: buffers of a pass are kept for the next one (a little
    /// faster) instead of going back to the allocator. The arena only grows, to the largest
    /// pass it has seen.
    pub memory_arena: bool,
    /// Threads inside one pass over a batch of passages; 0 means one per core.
    pub intra_threads: usize,
    /// Threads inside one pass over a single query; 0 means one per core. When this differs
    /// from `intra_threads`, queries run on a session of their own. A query of a few dozen
    /// word pieces gives a second thread too little work to pay for waking it: one thread is as
    /// fast on an idle machine and several times faster when other work holds the other core
    /// or the pool's threads have gone to sleep between searches
    /// (`bench/embed/query_latency.py --gap-ms`).
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
            max_batch_tokens: 1024,
            memory_arena: true,
            intra_threads: 0,
            query_threads: 1,
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
/// use the main session. When queries run with the same thread count they use it too while it
/// is free; otherwise they get a second session rather than waiting behind a batch of passages
/// (~0.4–0.7 s). Each session holds its own copy of the weights, so a process opens only the
/// ones it uses: `load` opens the one queries use (it checks the graph's inputs), the other
/// opens on first need, and the first batch of passages closes a query session no query has
/// used yet (a process that only indexes does not keep it).
pub struct OnnxEmbedder {
    identity: ModelIdentity,
    model: OnnxModel,
    runtime: PathBuf,
    environment: ort::environment::Environment,
    session: Mutex<Option<Session>>,
    query_session: Mutex<Option<Session>>,
    /// Whether a query has run on the query session.
    queried: AtomicBool,
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
    memory_arena: bool,
) -> Result<Session, EmbedError> {
    let failed = |e: &dyn std::fmt::Display| invalid(graph, format!("ONNX Runtime: {e}"));
    Session::builder(environment)
        .map_err(|e| failed(&e))?
        .with_execution_providers([ort::ep::CPU::default()
            .with_arena_allocator(memory_arena)
            .build()])
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
        let shared = query_threads == threads;
        let session = open_session(
            &environment,
            &model.graph,
            if shared { threads } else { query_threads },
            options.spinning,
            options.memory_arena,
        )?;
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
        let (main, query) = if shared {
            (Some(session), None)
        } else {
            (None, Some(session))
        };
        Ok(OnnxEmbedder {
            identity,
            model: model.clone(),
            runtime: runtime.to_path_buf(),
            environment,
            session: Mutex::new(main),
            query_session: Mutex::new(query),
            queried: AtomicBool::new(false),
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

    /// Whether queries run with the passages' settings (and so may share their session).
    fn queries_share_main(&self) -> bool {
        self.query_threads == self.threads
    }

    /// `slot`'s session, opened with `threads` if it is not open.
    fn open_in<'a>(
        &self,
        mut slot: MutexGuard<'a, Option<Session>>,
        threads: usize,
    ) -> Result<SessionGuard<'a>, EmbedError> {
        if slot.is_none() {
            *slot = Some(open_session(
                &self.environment,
                &self.model.graph,
                threads,
                self.options.spinning,
                self.options.memory_arena,
            )?);
        }
        Ok(SessionGuard(slot))
    }
}

/// A locked slot that holds an open session.
struct SessionGuard<'a>(MutexGuard<'a, Option<Session>>);

impl SessionGuard<'_> {
    fn get(&mut self) -> Result<&mut Session, EmbedError> {
        self.0
            .as_mut()
            .ok_or_else(|| EmbedError::Inference("the ONNX session is not open".into()))
    }
}

/// A poisoned lock means a panic inside ONNX Runtime's wrapper on another thread; the session
/// holds no state between runs, so it is still usable.
fn lock(slot: &Mutex<Option<Session>>) -> MutexGuard<'_, Option<Session>> {
    slot.lock().unwrap_or_else(PoisonError::into_inner)
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
            batch::plan_within(
                &lengths,
                self.options.batch_size,
                self.options.max_batch_tokens,
            )
        } else {
            let order: Vec<usize> = (0..ids.len()).collect();
            order
                .chunks(self.options.batch_size.max(1))
                .map(<[usize]>::to_vec)
                .collect()
        };
        if !self.queries_share_main() && !self.queried.load(Ordering::Relaxed) {
            // No query has used the session `load` opened for them: an indexing process does
            // not keep a second copy of the weights for nothing (a later query reopens it).
            let mut slot = lock(&self.query_session);
            if !self.queried.load(Ordering::Relaxed) {
                drop(slot.take());
            }
        }
        let mut session = self.open_in(lock(&self.session), self.threads)?;
        let mut outputs = Vec::with_capacity(batches.len());
        for indices in &batches {
            let seqs: Vec<&[u32]> = indices.iter().map(|&i| ids[i].as_slice()).collect();
            outputs.push(self.embed_batch(session.get()?, &seqs)?);
        }
        drop(session);
        batch::restore(&batches, outputs, texts.len())
            .ok_or_else(|| EmbedError::Inference("batch results did not cover every input".into()))
    }

    fn embed_query(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        let ids = tokenize(&self.tokenizer, &[text])?;
        let seqs: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
        let main = if self.queries_share_main() {
            match self.session.try_lock() {
                Ok(session) => Some(session),
                Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) => None,
            }
        } else {
            None
        };
        let vectors = match main {
            Some(slot) => {
                let mut session = self.open_in(slot, self.threads)?;
                self.embed_batch(session.get()?, &seqs)?
            }
            None => {
                self.queried.store(true, Ordering::Relaxed);
                let mut session = self.open_in(lock(&self.query_session), self.query_threads)?;
                self.embed_batch(session.get()?, &seqs)?
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
