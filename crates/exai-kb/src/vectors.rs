//! Exact vector search over a contiguous in-memory matrix of L2-normalised vectors (cosine =
//! dot product), with the filter fields beside it so filtered searches never touch SQLite.
//! A derived artifact: built from the store, rebuilt when the store's generation moves. Above
//! `kb.ann_min_vectors` distinct vectors an HNSW graph over them ([`crate::ann`]) is attached
//! once it is loaded or built; until then, and whenever it finds too few rows passing the
//! filters, the exact scan answers.
//!
//! The matrix holds each distinct vector once, and every chunk row points at its vector.
//! Documentation repeats itself (rustdoc repeats boilerplate thousands of times), and identical
//! points ruin an HNSW graph (their neighbour lists fill with copies of each other; BENCHMARKS.md,
//! "SQLite against PostgreSQL + pgvector"); the scan also gets cheaper by the same factor.

use std::collections::HashMap;
use std::sync::OnceLock;

use std::path::Path;

use crate::ann::{self, AnnFile, AnnHeader, AnnIndex, AnnSource, ann_path, read};
use crate::error::Result;
use crate::model::Filters;
use crate::store::VectorMeta;
use crate::store::{SharedLogic, StoreBackend};

#[derive(Debug, Default)]
pub struct VectorIndex {
    pub dim: usize,
    /// Row-major, one row per distinct vector: `distinct × dim`.
    matrix: Vec<f32>,
    /// The chunk rows of distinct vector `d`: `rows[starts[d]..starts[d + 1]]`, ascending.
    starts: Vec<u32>,
    rows: Vec<u32>,
    /// Per chunk row.
    ids: Vec<i64>,
    meta: Vec<VectorMeta>,
    /// The store generation this was built from.
    pub generation: u64,
    /// The approximate index over exactly these distinct vectors, once loaded or built.
    ann: OnceLock<AnnIndex>,
}

/// A cheap hash of a vector's bits; equal hashes are confirmed by comparing the vectors.
fn vector_hash(v: &[f32]) -> u64 {
    v.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, x| {
        (h ^ u64::from(x.to_bits())).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl VectorIndex {
    pub fn build(rows: Vec<(i64, Vec<f32>, VectorMeta)>, generation: u64) -> Self {
        let dim = rows.first().map_or(0, |r| r.1.len());
        let mut matrix: Vec<f32> = Vec::new();
        let mut ids = Vec::with_capacity(rows.len());
        let mut meta = Vec::with_capacity(rows.len());
        let mut vector_of_row: Vec<u32> = Vec::with_capacity(rows.len());
        let mut by_hash: HashMap<u64, Vec<u32>> = HashMap::new();
        for (id, v, m) in rows {
            if v.len() != dim || dim == 0 {
                tracing::warn!(
                    chunk = id,
                    "vector of dimension {} in an index of {dim}; skipped",
                    v.len()
                );
                continue;
            }
            let same = by_hash.entry(vector_hash(&v)).or_default();
            let d = match same
                .iter()
                .find(|d| matrix[**d as usize * dim..(**d as usize + 1) * dim] == v[..])
            {
                Some(d) => *d,
                None => {
                    let d = (matrix.len() / dim) as u32;
                    matrix.extend_from_slice(&v);
                    same.push(d);
                    d
                }
            };
            vector_of_row.push(d);
            ids.push(id);
            meta.push(m);
        }
        matrix.shrink_to_fit();
        let distinct = matrix.len().checked_div(dim).unwrap_or(0);
        // Group the rows by vector (a counting sort keeps each group in row order).
        let mut starts = vec![0u32; distinct + 1];
        for d in &vector_of_row {
            starts[*d as usize + 1] += 1;
        }
        for d in 0..distinct {
            starts[d + 1] += starts[d];
        }
        let mut next = starts.clone();
        let mut grouped = vec![0u32; vector_of_row.len()];
        for (row, d) in vector_of_row.iter().enumerate() {
            grouped[next[*d as usize] as usize] = row as u32;
            next[*d as usize] += 1;
        }
        Self {
            dim,
            matrix,
            starts,
            rows: grouped,
            ids,
            meta,
            generation,
            ann: OnceLock::new(),
        }
    }

    /// The identity an ANN index over these vectors must carry (`model`: their model key).
    pub fn ann_source(&self, model: &str) -> AnnSource {
        AnnSource {
            generation: self.generation,
            model: model.to_string(),
            vectors: self.distinct() as u64,
            dim: self.dim,
            ids_hash: crate::ann::ids_hash(&self.ids),
        }
    }

    /// Build an ANN index over the distinct vectors (not attached; see [`Self::attach_ann`]).
    pub fn build_ann(&self, model: &str) -> crate::Result<AnnIndex> {
        AnnIndex::build(&self.matrix, self.dim, &self.ann_source(model))
    }

    /// [`Self::build_ann`] with another graph degree and construction breadth (benchmarks).
    pub fn build_ann_with(
        &self,
        model: &str,
        connectivity: usize,
        expansion_add: usize,
    ) -> crate::Result<AnnIndex> {
        AnnIndex::build_with(
            &self.matrix,
            self.dim,
            &self.ann_source(model),
            connectivity,
            expansion_add,
        )
    }

    /// Attach an ANN index built over exactly these vectors; refused (false) otherwise.
    pub fn attach_ann(&self, ann: AnnIndex, model: &str) -> bool {
        if !ann.header.matches(&self.ann_source(model)) {
            return false;
        }
        self.ann.set(ann).is_ok()
    }

    pub fn ann(&self) -> Option<&AnnIndex> {
        self.ann.get()
    }

    /// Chunk rows (chunks with a vector).
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Distinct vectors: what the scan and the ANN graph work over.
    pub fn distinct(&self) -> usize {
        self.starts.len().saturating_sub(1)
    }

    /// Memory held by the matrix and the row map, in bytes.
    pub fn bytes(&self) -> usize {
        self.matrix.len() * 4 + (self.starts.len() + self.rows.len()) * 4 + self.ids.len() * 8
    }

    fn members(&self, d: usize) -> &[u32] {
        &self.rows[self.starts[d] as usize..self.starts[d + 1] as usize]
    }

    fn vector(&self, d: usize) -> &[f32] {
        &self.matrix[d * self.dim..(d + 1) * self.dim]
    }

    fn allowed(m: &VectorMeta, f: &Filters) -> bool {
        (f.sources.is_empty() || f.sources.contains(&m.source))
            && (f.technologies.is_empty() || f.technologies.contains(&m.technology))
            && (f.categories.is_empty() || f.categories.contains(&m.category))
            && f.path_prefix
                .as_ref()
                .is_none_or(|p| m.path.starts_with(p.as_str()))
            && f.doc_type.is_none_or(|t| m.doc_type == t)
    }

    fn row_allowed(&self, row: u32, filters: &Filters) -> bool {
        self.meta
            .get(row as usize)
            .is_some_and(|m| Self::allowed(m, filters))
    }

    /// The `k` most similar chunks passing `filters`: (chunk id, cosine), best first, equal
    /// cosines by chunk id. Through the ANN index when one is attached, else (or when it finds
    /// fewer than `k` rows passing the filters) by the exact scan. Scores are always exact.
    pub fn search(&self, query: &[f32], filters: &Filters, k: usize) -> Vec<(i64, f32)> {
        if self.dim == 0 || query.len() != self.dim || k == 0 {
            return Vec::new();
        }
        if let Some(ann) = self.ann.get() {
            let hits = self.search_ann(ann, query, filters, k);
            if hits.len() >= k.min(self.len()) {
                return hits;
            }
        }
        self.search_exact(query, filters, k)
    }

    /// Through the ANN index only: the `k` nearest distinct vectors with a row passing the
    /// filters, expanded to those rows and re-scored from the matrix; may hold fewer than `k`
    /// when the filters are selective.
    pub fn search_ann(
        &self,
        ann: &AnnIndex,
        query: &[f32],
        filters: &Filters,
        k: usize,
    ) -> Vec<(i64, f32)> {
        let breadth = crate::ann::search_breadth(self.distinct());
        self.search_ann_breadth(ann, query, filters, k, breadth)
    }

    /// [`Self::search_ann`] walking the graph for `breadth` candidates (at least `k`), not the
    /// breadth chosen for the index's size (benchmarks).
    pub fn search_ann_breadth(
        &self,
        ann: &AnnIndex,
        query: &[f32],
        filters: &Filters,
        k: usize,
        breadth: usize,
    ) -> Vec<(i64, f32)> {
        let unfiltered = filters == &Filters::default();
        let allowed = |d: usize| {
            d < self.distinct()
                && self
                    .members(d)
                    .iter()
                    .any(|row| self.row_allowed(*row, filters))
        };
        let breadth = k.max(breadth);
        let found = if unfiltered {
            ann.search(query, breadth, None)
        } else {
            ann.search(query, breadth, Some(&allowed))
        };
        let mut top = TopK::new(k);
        for d in found {
            if d >= self.distinct() {
                continue;
            }
            let s = dot(self.vector(d), query);
            for row in self.members(d) {
                if unfiltered || self.row_allowed(*row, filters) {
                    top.offer(s, self.ids[*row as usize]);
                }
            }
        }
        top.into_sorted()
    }

    /// The exact scan (one dot product per distinct vector).
    pub fn search_exact(&self, query: &[f32], filters: &Filters, k: usize) -> Vec<(i64, f32)> {
        if self.dim == 0 || query.len() != self.dim || k == 0 {
            return Vec::new();
        }
        let unfiltered = filters == &Filters::default();
        let mut top = TopK::new(k);
        for (d, v) in self.matrix.chunks_exact(self.dim).enumerate() {
            let members = self.members(d);
            if !unfiltered && !members.iter().any(|row| self.row_allowed(*row, filters)) {
                continue;
            }
            let s = dot(v, query);
            if !top.admits(s) {
                continue;
            }
            for row in members {
                if unfiltered || self.row_allowed(*row, filters) {
                    top.offer(s, self.ids[*row as usize]);
                }
            }
        }
        top.into_sorted()
    }
}

/// The best `k` (score, chunk id) pairs seen, in a bounded min-heap; of equal scores the lower
/// chunk ids win, so every path through the index agrees on ties.
struct TopK {
    k: usize,
    heap: std::collections::BinaryHeap<std::cmp::Reverse<(Score, std::cmp::Reverse<i64>)>>,
}

impl TopK {
    fn new(k: usize) -> Self {
        TopK {
            k,
            heap: std::collections::BinaryHeap::with_capacity(k + 1),
        }
    }

    /// Whether a score could still enter (a cheap test before walking a vector's rows).
    fn admits(&self, s: f32) -> bool {
        self.heap.len() < self.k
            || self
                .heap
                .peek()
                .is_some_and(|std::cmp::Reverse((min, _))| s >= min.0)
    }

    fn offer(&mut self, s: f32, id: i64) {
        let entry = std::cmp::Reverse((Score(s), std::cmp::Reverse(id)));
        if self.heap.len() < self.k {
            self.heap.push(entry);
        } else if self.heap.peek().is_some_and(|min| entry < *min) {
            self.heap.pop();
            self.heap.push(entry);
        }
    }

    fn into_sorted(self) -> Vec<(i64, f32)> {
        let mut out: Vec<(i64, f32)> = self
            .heap
            .into_iter()
            .map(|std::cmp::Reverse((s, std::cmp::Reverse(id)))| (id, s.0))
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Score(f32);
impl Eq for Score {}
impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Score {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Dot product written so the compiler vectorises it (8 independent accumulators).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = a.len() / 8;
    for i in 0..chunks {
        for j in 0..8 {
            acc[j] += a[i * 8 + j] * b[i * 8 + j];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for i in chunks * 8..a.len() {
        sum += a[i] * b[i];
    }
    sum
}

/// The ANN graph on disk beside the database, for an in-memory index.
impl VectorIndex {
    /// Attach the ANN file's index to `index` when the file matches it exactly. Returns false when
    /// the file is missing, stale or corrupt (a corrupt one is reported and left to be replaced by
    /// the rebuild), so the caller builds.
    pub fn try_load_ann(&self, db: &Path, model: &str) -> bool {
        let index = self;
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
    pub fn build_and_save_ann(&self, db: &Path, model: &str) -> Result<AnnHeader> {
        let index = self;
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
}

/// Make the ANN file of `store` match it (load when fresh, else build and write), for
/// `exai index` and `exai db reindex`. `None` when the store has fewer than `min_vectors`
/// vectors or no embedding model.
pub fn refresh_ann(
    store: &dyn StoreBackend,
    db: &Path,
    min_vectors: usize,
) -> Result<Option<AnnHeader>> {
    let Some(model) = store.embed_model()? else {
        return Ok(None);
    };
    // The generation first: a change committed while the vectors are read labels the index
    // older than its rows, so it is rebuilt again, never trusted wrongly.
    let generation = store.generation()?;
    let index = VectorIndex::build(store.vectors()?, generation);
    if !ann::wanted(index.distinct(), min_vectors) {
        return Ok(None);
    }
    if index.try_load_ann(db, &model) {
        return Ok(index.ann().map(|a| a.header.clone()));
    }
    index.build_and_save_ann(db, &model).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DocType;

    fn meta(source: &str) -> VectorMeta {
        VectorMeta {
            source: source.into(),
            technology: "t".into(),
            category: "c".into(),
            path: format!("{source}/p"),
            doc_type: DocType::Text,
        }
    }

    #[test]
    fn exact_top_k_with_filters() {
        let rows = vec![
            (1, vec![1.0, 0.0], meta("a")),
            (2, vec![0.0, 1.0], meta("b")),
            (
                3,
                vec![
                    std::f32::consts::FRAC_1_SQRT_2,
                    std::f32::consts::FRAC_1_SQRT_2,
                ],
                meta("a"),
            ),
        ];
        let idx = VectorIndex::build(rows, 7);
        let hits = idx.search(&[1.0, 0.0], &Filters::default(), 2);
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), vec![1, 3]);
        let f = Filters {
            sources: vec!["b".into()],
            ..Default::default()
        };
        assert_eq!(idx.search(&[1.0, 0.0], &f, 2)[0].0, 2);
        let f = Filters {
            path_prefix: Some("a/".into()),
            ..Default::default()
        };
        assert_eq!(idx.search(&[0.0, 1.0], &f, 5).len(), 2);
        assert!(idx.search(&[1.0], &Filters::default(), 2).is_empty());
    }

    /// Every chunk row scored one by one, ties by id: what the grouped scan must equal.
    fn brute_force(
        rows: &[(i64, Vec<f32>, VectorMeta)],
        q: &[f32],
        f: &Filters,
        k: usize,
    ) -> Vec<(i64, f32)> {
        let mut all: Vec<(i64, f32)> = rows
            .iter()
            .filter(|r| VectorIndex::allowed(&r.2, f))
            .map(|r| (r.0, dot(&r.1, q)))
            .collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        all.truncate(k);
        all
    }

    #[test]
    fn repeated_vectors_are_stored_once_and_every_chunk_is_found() {
        // 40 chunks over 7 distinct vectors, ids out of row order, two sources interleaved.
        let basis: Vec<Vec<f32>> = (0..7)
            .map(|i| {
                let v: Vec<f32> = (0..8).map(|j| ((i * 8 + j) as f32).sin()).collect();
                let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.into_iter().map(|x| x / n).collect()
            })
            .collect();
        let rows: Vec<(i64, Vec<f32>, VectorMeta)> = (0..40)
            .map(|i| {
                let source = if i % 3 == 0 { "a" } else { "b" };
                ((i * 37 % 41) as i64, basis[i % 7].clone(), meta(source))
            })
            .collect();
        let idx = VectorIndex::build(rows.clone(), 1);
        assert_eq!((idx.len(), idx.distinct()), (40, 7));
        let only_a = Filters {
            sources: vec!["a".into()],
            ..Default::default()
        };
        for q in &basis {
            for k in [1, 3, 6, 13, 40, 50] {
                for f in [&Filters::default(), &only_a] {
                    let want = brute_force(&rows, q, f, k);
                    assert_eq!(idx.search_exact(q, f, k), want, "k {k}");
                    assert_eq!(idx.search(q, f, k), want, "k {k}");
                }
            }
        }
        // Through the graph: the same answer, ties included.
        let ann = idx.build_ann("m:8:fp32").unwrap();
        assert_eq!(ann.header.vectors, 7);
        for q in &basis {
            for f in [&Filters::default(), &only_a] {
                assert_eq!(idx.search_ann(&ann, q, f, 10), brute_force(&rows, q, f, 10));
            }
        }
    }

    #[test]
    fn dot_matches_naive() {
        let a: Vec<f32> = (0..389).map(|i| (i as f32).sin()).collect();
        let b: Vec<f32> = (0..389).map(|i| (i as f32).cos()).collect();
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - naive).abs() < 1e-3);
    }
}

#[cfg(test)]
mod ann_tests {
    use super::*;
    use crate::ann::*;

    fn try_load(index: &VectorIndex, db: &Path, model: &str) -> bool {
        index.try_load_ann(db, model)
    }

    fn build_and_save(index: &VectorIndex, db: &Path, model: &str) -> Result<AnnHeader> {
        index.build_and_save_ann(db, model)
    }
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
