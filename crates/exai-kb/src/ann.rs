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
use crate::store::SqliteStore;
use crate::vectors::VectorIndex;

const MAGIC: &[u8; 8] = b"EXAIANN\x01";
/// Graph degree and construction breadth: 50k 384-d vectors build in under a minute on two
/// cores (BENCHMARKS.md).
pub const CONNECTIVITY: usize = 16;
pub const EXPANSION_ADD: usize = 128;
/// Search breadth (usearch never searches narrower than the number of results asked for): 64
/// gave recall@10 0.93 on 50k vectors around the Rust Book's, 128 brings it above 0.95.
pub const EXPANSION_SEARCH: usize = 128;

/// Vectors from which the graph is built denser.
pub const DENSE_FROM: usize = 250_000;

/// Graph degree and construction breadth for `vectors` points: [`CONNECTIVITY`] and
/// [`EXPANSION_ADD`] below [`DENSE_FROM`], twice both above. On 1M synthetic 384-d vectors
/// scattered around real ones, M 16 / ef_add 128 reached recall@10 0.62 at search breadth 128 and
/// 0.90 at 2,048 (p99 18.7 ms), built in 409 s; M 32 / ef_add 256 reached 0.984 (p99 27 ms),
/// built in 930 s on two cores (BENCHMARKS.md).
pub fn graph_params(vectors: usize) -> (usize, usize) {
    if vectors >= DENSE_FROM {
        (2 * CONNECTIVITY, 2 * EXPANSION_ADD)
    } else {
        (CONNECTIVITY, EXPANSION_ADD)
    }
}

/// How many candidates a search walks the graph for at `vectors` distinct vectors: the default
/// breadth up to 50k, then growing with the index (at most 2,048). Recall falls as a graph
/// grows: on 1M synthetic 384-d vectors scattered around real ones, the M 16 graph gave
/// recall@10 0.62 at 128, 0.82 at 512 and 0.90 at 2,048 (p99 3.4, 9.3 and 18.7 ms); the denser
/// graph used there ([`graph_params`]) costs the same at every breadth (BENCHMARKS.md).
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

/// Attach the ANN file's index to `index` when the file matches it exactly. Returns false when
/// the file is missing, stale or corrupt (a corrupt one is reported and left to be replaced by
/// the rebuild), so the caller builds.
pub fn try_load(index: &VectorIndex, db: &Path, model: &str) -> bool {
    if index.ann().is_some() {
        return true;
    }
    let path = ann_path(db);
    let source = index.ann_source(model);
    match read(&path) {
        AnnFile::Missing => false,
        AnnFile::Corrupt(why) => {
            tracing::warn!(file = %path.display(), "discarding a corrupt ANN index ({why}); rebuilding it");
            false
        }
        AnnFile::Present(header, _) if !header.matches(&source) => {
            tracing::info!(
                file = %path.display(),
                built_from = header.generation,
                current = source.generation,
                "the ANN index is stale; rebuilding it (exact search meanwhile)"
            );
            false
        }
        AnnFile::Present(header, payload) => match AnnIndex::load(header, &payload) {
            Ok(ann) => index.attach_ann(ann, model),
            Err(e) => {
                tracing::warn!(file = %path.display(), "discarding an unloadable ANN index ({e}); rebuilding it");
                false
            }
        },
    }
}

/// Build the ANN index over `index`'s rows, write it next to the database and attach it.
pub fn build_and_save(index: &VectorIndex, db: &Path, model: &str) -> Result<AnnHeader> {
    let started = std::time::Instant::now();
    let mut ann = index.build_ann(model)?;
    ann.save(&ann_path(db))?;
    let header = ann.header.clone();
    index.attach_ann(ann, model);
    tracing::info!(
        vectors = header.vectors,
        generation = header.generation,
        seconds = started.elapsed().as_secs_f64(),
        "ANN index built"
    );
    Ok(header)
}

/// Whether an index of `vectors` distinct vectors should have an ANN index (`min_vectors` 0:
/// never).
pub fn wanted(vectors: usize, min_vectors: usize) -> bool {
    min_vectors > 0 && vectors >= min_vectors
}

/// Make the ANN file of `store` match it (load when fresh, else build and write), for
/// `exai index` and `exai db reindex`. `None` when the store has fewer than `min_vectors`
/// vectors or no embedding model.
pub fn refresh(store: &SqliteStore, min_vectors: usize) -> Result<Option<AnnHeader>> {
    let Some(model) = store.embed_model()? else {
        return Ok(None);
    };
    // The generation first: a change committed while the vectors are read labels the index
    // older than its rows, so it is rebuilt again, never trusted wrongly.
    let generation = store.generation()?;
    let index = VectorIndex::build(store.vectors()?, generation);
    if !wanted(index.distinct(), min_vectors) {
        return Ok(None);
    }
    if try_load(&index, store.path(), &model) {
        return Ok(index.ann().map(|a| a.header.clone()));
    }
    build_and_save(&index, store.path(), &model).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DocType, Filters};
    use crate::store::VectorMeta;

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> f32 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f32 / (1u64 << 53) as f32 - 0.5
        }
        fn unit(&mut self, dim: usize) -> Vec<f32> {
            let v: Vec<f32> = (0..dim).map(|_| self.next()).collect();
            normalised(v)
        }
    }

    fn normalised(mut v: Vec<f32>) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= n);
        v
    }

    /// Random unit vectors around random centres: like sentence embeddings, they have
    /// neighbourhoods (uniform noise in 384 dimensions has none, and no ANN index finds
    /// neighbours there; BENCHMARKS.md shows that worst case).
    pub(crate) fn clustered(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut rng = Rng(seed);
        let centres: Vec<Vec<f32>> = (0..(n / 20).max(1)).map(|_| rng.unit(dim)).collect();
        (0..n)
            .map(|i| {
                let noise = rng.unit(dim);
                let c = &centres[i % centres.len()];
                normalised(c.iter().zip(&noise).map(|(c, e)| c + 0.6 * e).collect())
            })
            .collect()
    }

    fn rows(vectors: Vec<Vec<f32>>) -> Vec<(i64, Vec<f32>, VectorMeta)> {
        vectors
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                let source = if i % 10 == 0 { "rare" } else { "common" };
                let meta = VectorMeta {
                    source: source.into(),
                    technology: "t".into(),
                    category: "c".into(),
                    path: format!("{source}/{i}"),
                    doc_type: DocType::Text,
                };
                (i as i64 * 3 + 1, v, meta)
            })
            .collect()
    }

    /// Queries near the data (a question lands near its answers), not at random.
    fn queries(data: &[Vec<f32>], n: usize) -> Vec<Vec<f32>> {
        let mut rng = Rng(0xDEADBEEF);
        (0..n)
            .map(|i| {
                let v = &data[(i * 7919) % data.len()];
                let noise = rng.unit(v.len());
                normalised(v.iter().zip(&noise).map(|(x, e)| x + 0.3 * e).collect())
            })
            .collect()
    }

    fn recall(index: &VectorIndex, ann: &AnnIndex, filters: &Filters, qs: &[Vec<f32>]) -> f64 {
        let mut found = 0;
        let mut total = 0;
        for q in qs {
            let exact: Vec<i64> = index
                .search_exact(q, filters, 10)
                .iter()
                .map(|h| h.0)
                .collect();
            let approx = index.search_ann(ann, q, filters, 10);
            total += exact.len();
            found += approx.iter().filter(|h| exact.contains(&h.0)).count();
        }
        found as f64 / total as f64
    }

    #[test]
    fn recall_at_10_against_the_exact_scan() {
        let dim = 384;
        let data = clustered(4000, dim, 7);
        let qs = queries(&data, 100);
        let index = VectorIndex::build(rows(data), 1);
        let ann = index.build_ann("m:384:fp32").unwrap();
        let r = recall(&index, &ann, &Filters::default(), &qs);
        assert!(r >= 0.95, "recall@10 {r}");
        // Filtered: every hit passes the filter, and the fallback makes the answer exact.
        let rare = Filters {
            sources: vec!["rare".into()],
            ..Default::default()
        };
        let r = recall(&index, &ann, &rare, &qs);
        assert!(r >= 0.95, "filtered recall@10 {r}");
        assert!(index.attach_ann(ann, "m:384:fp32"));
        for q in &qs {
            let hits = index.search(q, &rare, 10);
            assert_eq!(hits.len(), 10);
            assert!(hits.iter().all(|h| (h.0 - 1) / 3 % 10 == 0), "{hits:?}");
        }
    }

    /// Documentation repeats itself: here every distinct vector stands for 1 to 7 chunks (the
    /// std docs: 3.7 chunks per distinct text). The graph holds each vector once, so
    /// duplicates cannot crowd the neighbour lists, and recall is counted by chunk.
    #[test]
    fn recall_holds_when_chunks_repeat_their_vectors() {
        let dim = 64;
        let distinct = clustered(2000, dim, 11);
        let mut repeated = Vec::new();
        for (i, v) in distinct.iter().enumerate() {
            for _ in 0..(1 + i % 7) {
                repeated.push(v.clone());
            }
        }
        let qs = queries(&distinct, 100);
        let index = VectorIndex::build(rows(repeated), 1);
        assert_eq!(index.distinct(), 2000);
        assert!(index.len() > 7000);
        let ann = index.build_ann("m:64:fp32").unwrap();
        assert_eq!(ann.header.vectors, 2000);
        let r = recall(&index, &ann, &Filters::default(), &qs);
        assert!(r >= 0.95, "recall@10 {r}");
    }

    #[test]
    fn big_indexes_get_a_denser_graph() {
        assert_eq!(graph_params(20_000), (CONNECTIVITY, EXPANSION_ADD));
        assert_eq!(graph_params(DENSE_FROM - 1), (16, 128));
        assert_eq!(graph_params(1_000_000), (32, 256));
    }

    #[test]
    fn search_breadth_grows_with_the_index() {
        assert_eq!(search_breadth(0), EXPANSION_SEARCH);
        assert_eq!(search_breadth(50_000), EXPANSION_SEARCH);
        assert_eq!(search_breadth(200_000), 512);
        assert_eq!(search_breadth(1_000_000), 2_048);
        assert_eq!(search_breadth(usize::MAX / 1024), 2_048);
    }

    #[test]
    fn selective_filters_fall_back_to_the_exact_scan() {
        let dim = 32;
        let data = clustered(500, dim, 3);
        let q = queries(&data, 1).remove(0);
        let index = VectorIndex::build(rows(data), 1);
        assert!(index.attach_ann(index.build_ann("m:32:fp32").unwrap(), "m:32:fp32"));
        let one = Filters {
            path_prefix: Some("rare/40".into()),
            ..Default::default()
        };
        let hits = index.search(&q, &one, 10);
        assert_eq!(hits, index.search_exact(&q, &one, 10));
        let mut ids: Vec<i64> = hits.iter().map(|h| h.0).collect();
        ids.sort_unstable();
        assert_eq!(ids, vec![40 * 3 + 1, 400 * 3 + 1]);
        // Scores are exact cosines even through the graph.
        let unfiltered = index.search(&q, &Filters::default(), 5);
        let exact = index.search_exact(&q, &Filters::default(), 5);
        for (a, e) in unfiltered.iter().zip(&exact) {
            if a.0 == e.0 {
                assert_eq!(a.1, e.1);
            }
        }
    }

    #[test]
    fn a_saved_index_loads_only_for_the_same_vectors() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("kb.sqlite");
        let dim = 16;
        let index = VectorIndex::build(rows(clustered(300, dim, 5)), 4);
        build_and_save(&index, &db, "m:16:fp32").unwrap();
        assert!(index.ann().is_some());
        let again = VectorIndex::build(rows(clustered(300, dim, 5)), 4);
        assert!(try_load(&again, &db, "m:16:fp32"));
        let q = queries(&clustered(300, dim, 5), 1).remove(0);
        assert_eq!(
            again.search(&q, &Filters::default(), 5),
            index.search(&q, &Filters::default(), 5)
        );
        // Another generation, model or row set: stale.
        let newer = VectorIndex::build(rows(clustered(300, dim, 5)), 5);
        assert!(!try_load(&newer, &db, "m:16:fp32"));
        let other_model = VectorIndex::build(rows(clustered(300, dim, 5)), 4);
        assert!(!try_load(&other_model, &db, "n:16:fp32"));
        let fewer = VectorIndex::build(rows(clustered(299, dim, 5)), 4);
        assert!(!try_load(&fewer, &db, "m:16:fp32"));
        assert!(fewer.ann().is_none());
        assert_eq!(inspect(&ann_path(&db)).unwrap().unwrap().generation, 4);
    }

    #[test]
    fn a_corrupt_file_is_detected_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("kb.sqlite");
        let dim = 16;
        let index = VectorIndex::build(rows(clustered(200, dim, 9)), 2);
        build_and_save(&index, &db, "m:16:fp32").unwrap();
        let path = ann_path(&db);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 10;
        bytes[last] ^= 0xFF;
        std::fs::write(&path, &bytes).unwrap();
        assert!(inspect(&path).unwrap_err().contains("checksum"));
        let fresh = VectorIndex::build(rows(clustered(200, dim, 9)), 2);
        assert!(!try_load(&fresh, &db, "m:16:fp32"));
        build_and_save(&fresh, &db, "m:16:fp32").unwrap();
        assert!(inspect(&path).unwrap().is_some());
        std::fs::write(&path, b"EXAIANN\x01garbage").unwrap();
        assert!(inspect(&path).is_err());
        std::fs::write(&path, b"nonsense").unwrap();
        assert!(inspect(&path).unwrap_err().contains("not an exai ANN file"));
        assert!(remove(&db).unwrap());
        assert!(inspect(&path).unwrap().is_none());
    }
}
