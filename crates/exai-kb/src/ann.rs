//! The approximate vector index (HNSW, by `usearch`) that semantic search uses above
//! `kb.ann_min_vectors` vectors. It is a derived artifact: a file next to the database
//! (`kb.sqlite.ann`) whose header records the store generation, the model identity and the
//! vectors it was built from. A file that does not match the store is stale and rebuilt; one
//! that fails its checksum is corrupt, discarded and rebuilt; until a matching index is loaded,
//! search scans the exact matrix. Results are always re-scored exactly from the matrix, so an
//! approximate index can only miss a neighbour, never report a wrong score or a filtered-out
//! chunk.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use crate::error::{KbError, Result};

const MAGIC: &[u8; 8] = b"EXAIANN\x01";
/// Graph degree and construction breadth: the smallest that keep a 50k-vector build short
/// (build times in BENCHMARKS.md, "exact scan vs HNSW").
pub const CONNECTIVITY: usize = 16;
pub const EXPANSION_ADD: usize = 128;
/// Search breadth (usearch never searches narrower than the number of results asked for): the
/// narrowest that keeps recall@10 above 0.95 at 50k vectors (BENCHMARKS.md).
pub const EXPANSION_SEARCH: usize = 128;

/// Vectors from which the graph is built denser.
pub const DENSE_FROM: usize = 250_000;

/// Graph degree and construction breadth for `vectors` points: [`CONNECTIVITY`] and
/// [`EXPANSION_ADD`] below [`DENSE_FROM`], twice both above: at a million vectors the sparser
/// graph falls short of the recall target even at the widest breadth, the denser one meets it at
/// about twice the build time (BENCHMARKS.md, "A million vectors").
pub fn graph_params(vectors: usize) -> (usize, usize) {
    if vectors >= DENSE_FROM {
        (2 * CONNECTIVITY, 2 * EXPANSION_ADD)
    } else {
        (CONNECTIVITY, EXPANSION_ADD)
    }
}

/// How many candidates a search walks the graph for at `vectors` distinct vectors: the default
/// breadth up to 50k, then growing with the index (at most 2,048). Recall falls as a graph
/// grows; a wider search wins it back at a latency cost within the target (BENCHMARKS.md, "A
/// million vectors").
pub fn search_breadth(vectors: usize) -> usize {
    (EXPANSION_SEARCH * vectors / 50_000).clamp(EXPANSION_SEARCH, 2_048)
}

/// The ANN file of the database at `db`.
pub fn ann_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".ann");
    PathBuf::from(name)
}

/// What an ANN file was built from; a file is used only when all of it matches the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnHeader {
    /// The store generation the vectors were read at.
    pub generation: u64,
    /// The identity key of the model that computed the vectors.
    pub model: String,
    /// Distinct vectors: the graph's keys.
    pub vectors: u64,
    pub dim: usize,
    /// BLAKE3 of the chunk ids in row order: with the generation, ties the graph's keys (the
    /// distinct vectors in order of first use) to chunks.
    pub ids_hash: String,
    pub connectivity: usize,
    pub expansion_add: usize,
    /// Length and BLAKE3 of the serialized graph that follows the header.
    pub payload_len: u64,
    pub payload_hash: String,
}

impl AnnHeader {
    /// Whether this header describes an index built from exactly `expected`'s vectors.
    pub fn matches(&self, expected: &AnnSource) -> bool {
        self.generation == expected.generation
            && self.model == expected.model
            && self.vectors == expected.vectors
            && self.dim == expected.dim
            && self.ids_hash == expected.ids_hash
    }
}

/// The identity of the vectors an index must be built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnSource {
    pub generation: u64,
    pub model: String,
    pub vectors: u64,
    pub dim: usize,
    pub ids_hash: String,
}

/// BLAKE3 of chunk ids in row order.
pub fn ids_hash(ids: &[i64]) -> String {
    let mut h = blake3::Hasher::new();
    for id in ids {
        h.update(&id.to_le_bytes());
    }
    h.finalize().to_hex().to_string()
}

/// What is on disk, for `exai db verify` and for deciding whether to rebuild.
#[derive(Debug)]
pub enum AnnFile {
    Missing,
    /// Unreadable, truncated, not an ANN file, or failing its checksum.
    Corrupt(String),
    Present(AnnHeader, Vec<u8>),
}

fn corrupt(why: impl Into<String>) -> AnnFile {
    AnnFile::Corrupt(why.into())
}

/// Read and check an ANN file (magic, header, payload length and checksum).
pub fn read(path: &Path) -> AnnFile {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return AnnFile::Missing,
        Err(e) => return corrupt(format!("cannot read it: {e}")),
    };
    if bytes.len() < 12 || &bytes[..8] != MAGIC {
        return corrupt("not an exai ANN file");
    }
    let header_len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
    let Some(header_bytes) = bytes.get(12..12 + header_len) else {
        return corrupt("truncated header");
    };
    let header: AnnHeader = match serde_json::from_slice(header_bytes) {
        Ok(h) => h,
        Err(e) => return corrupt(format!("unreadable header: {e}")),
    };
    let payload = &bytes[12 + header_len..];
    if payload.len() as u64 != header.payload_len {
        return corrupt(format!(
            "payload of {} bytes, header says {}",
            payload.len(),
            header.payload_len
        ));
    }
    if blake3::hash(payload).to_hex().as_str() != header.payload_hash {
        return corrupt("checksum mismatch");
    }
    let payload = payload.to_vec();
    AnnFile::Present(header, payload)
}

/// Only the header of an ANN file, with the payload checked; for reports.
pub fn inspect(path: &Path) -> std::result::Result<Option<AnnHeader>, String> {
    match read(path) {
        AnnFile::Missing => Ok(None),
        AnnFile::Corrupt(why) => Err(why),
        AnnFile::Present(h, _) => Ok(Some(h)),
    }
}

/// Remove the ANN file of the database at `db`, if any.
pub fn remove(db: &Path) -> Result<bool> {
    let path = ann_path(db);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(KbError::Io { path, source }),
    }
}

/// Temporary files left by a process killed while saving (a one-shot `exai search` that
/// exits during a background build): those whose process is gone (Linux's /proc tells).
fn remove_orphan_temporaries(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let prefix = format!("{}.tmp", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = file
            .strip_prefix(&prefix)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new("/proc/self").exists() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn options(dim: usize) -> IndexOptions {
    IndexOptions {
        dimensions: dim,
        metric: MetricKind::IP,
        quantization: ScalarKind::F32,
        connectivity: CONNECTIVITY,
        expansion_add: EXPANSION_ADD,
        expansion_search: EXPANSION_SEARCH,
        multi: false,
    }
}

fn native(what: &str, e: impl std::fmt::Display) -> KbError {
    KbError::Invalid(format!("ANN index: {what}: {e}"))
}

/// An HNSW graph over the rows of one vector matrix (a [`VectorIndex`]'s distinct vectors);
/// keys are row numbers.
pub struct AnnIndex {
    pub header: AnnHeader,
    index: Index,
}

impl std::fmt::Debug for AnnIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnnIndex")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl AnnIndex {
    /// Build over `matrix` (row-major, `dim` wide), on all cores.
    pub fn build(matrix: &[f32], dim: usize, source: &AnnSource) -> Result<AnnIndex> {
        let rows = matrix.len().checked_div(dim).unwrap_or(0);
        let (connectivity, expansion_add) = graph_params(rows);
        Self::build_with(matrix, dim, source, connectivity, expansion_add)
    }

    /// [`Self::build`] with another graph degree and construction breadth (benchmarks; the
    /// header records both, so a file built so loads as it was built).
    pub fn build_with(
        matrix: &[f32],
        dim: usize,
        source: &AnnSource,
        connectivity: usize,
        expansion_add: usize,
    ) -> Result<AnnIndex> {
        let rows = matrix.len().checked_div(dim).unwrap_or(0);
        let mut opts = options(dim);
        opts.connectivity = connectivity;
        opts.expansion_add = expansion_add;
        let index = Index::new(&opts).map_err(|e| native("create", e))?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        index
            .reserve_capacity_and_threads(rows, threads)
            .map_err(|e| native("reserve", e))?;
        let failed = std::sync::Mutex::new(None);
        std::thread::scope(|s| {
            for t in 0..threads {
                let (index, failed) = (&index, &failed);
                s.spawn(move || {
                    for row in (t..rows).step_by(threads) {
                        if let Err(e) = index.add(row as u64, &matrix[row * dim..(row + 1) * dim])
                            && let Ok(mut f) = failed.lock()
                        {
                            *f = Some(e.to_string());
                            return;
                        }
                    }
                });
            }
        });
        if let Some(e) = failed.into_inner().ok().flatten() {
            return Err(native("add", e));
        }
        Ok(AnnIndex {
            header: AnnHeader {
                generation: source.generation,
                model: source.model.clone(),
                vectors: source.vectors,
                dim,
                ids_hash: source.ids_hash.clone(),
                connectivity,
                expansion_add,
                payload_len: 0,
                payload_hash: String::new(),
            },
            index,
        })
    }

    /// Restore from a checked payload.
    pub fn load(header: AnnHeader, payload: &[u8]) -> Result<AnnIndex> {
        let mut opts = options(header.dim);
        opts.connectivity = header.connectivity;
        opts.expansion_add = header.expansion_add;
        let index = Index::new(&opts).map_err(|e| native("create", e))?;
        index
            .load_from_buffer(payload)
            .map_err(|e| native("load", e))?;
        if index.size() as u64 != header.vectors || index.dimensions() != header.dim {
            return Err(native(
                "load",
                format!(
                    "{} vectors of {}, header says {} of {}",
                    index.size(),
                    index.dimensions(),
                    header.vectors,
                    header.dim
                ),
            ));
        }
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        index
            .reserve_capacity_and_threads(index.size(), threads)
            .map_err(|e| native("reserve", e))?;
        index.change_expansion_search(EXPANSION_SEARCH);
        Ok(AnnIndex { header, index })
    }

    /// Write atomically (temporary file, then rename) next to the database.
    pub fn save(&mut self, path: &Path) -> Result<()> {
        remove_orphan_temporaries(path);
        let mut payload = vec![0u8; self.index.serialized_length()];
        self.index
            .save_to_buffer(&mut payload)
            .map_err(|e| native("serialize", e))?;
        self.header.payload_len = payload.len() as u64;
        self.header.payload_hash = blake3::hash(&payload).to_hex().to_string();
        let header = serde_json::to_vec(&self.header).map_err(|e| native("header", e))?;
        let tmp = {
            let mut name = path.as_os_str().to_owned();
            // Unique per process and per build: two builds may race to the same file.
            static BUILDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            name.push(format!(".tmp{}-{n}", std::process::id()));
            PathBuf::from(name)
        };
        let io = |source| KbError::Io {
            path: tmp.clone(),
            source,
        };
        let mut f = exai_core::private::options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io)?;
        f.write_all(MAGIC).map_err(io)?;
        f.write_all(&(header.len() as u32).to_le_bytes())
            .map_err(io)?;
        f.write_all(&header).map_err(io)?;
        f.write_all(&payload).map_err(io)?;
        f.sync_all().map_err(io)?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(|source| KbError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Rows nearest to `query` (approximate), at most `k`, among rows `allowed` accepts.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        allowed: Option<&dyn Fn(usize) -> bool>,
    ) -> Vec<usize> {
        // usearch widens the search to `k` itself when `k` exceeds the expansion, so the
        // shared setting is never changed while other threads search.
        let found = match allowed {
            None => self.index.search(query, k),
            Some(f) => self
                .index
                .filtered_search(query, k, |key: u64| f(key as usize)),
        };
        match found {
            Ok(m) => m.keys.iter().map(|k| *k as usize).collect(),
            Err(e) => {
                tracing::warn!("ANN search failed ({e}); scanning the exact matrix");
                Vec::new()
            }
        }
    }
}

/// Whether an index of `vectors` distinct vectors should have an ANN index (`min_vectors` 0:
/// never).
pub fn wanted(vectors: usize, min_vectors: usize) -> bool {
    min_vectors > 0 && vectors >= min_vectors
}
