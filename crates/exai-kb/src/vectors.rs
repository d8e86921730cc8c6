//! Exact vector search over a contiguous in-memory matrix of L2-normalised vectors (cosine =
//! dot product), with the filter fields beside it so filtered searches never touch SQLite.
//! A derived artifact: built from the store, rebuilt when the store's generation moves. Above
//! `kb.ann_min_vectors` rows an HNSW graph over the same rows ([`crate::ann`]) is attached
//! once it is loaded or built; until then, and whenever it finds too few rows passing the
//! filters, the exact scan answers.

use std::sync::OnceLock;

use crate::ann::{AnnIndex, AnnSource};
use crate::model::Filters;
use crate::store::VectorMeta;

#[derive(Debug, Default)]
pub struct VectorIndex {
    pub dim: usize,
    /// Row-major, `ids.len() × dim`.
    matrix: Vec<f32>,
    ids: Vec<i64>,
    meta: Vec<VectorMeta>,
    /// The store generation this was built from.
    pub generation: u64,
    /// The approximate index over exactly these rows, once loaded or built.
    ann: OnceLock<AnnIndex>,
}

impl VectorIndex {
    pub fn build(rows: Vec<(i64, Vec<f32>, VectorMeta)>, generation: u64) -> Self {
        let dim = rows.first().map_or(0, |r| r.1.len());
        let mut matrix = Vec::with_capacity(rows.len() * dim);
        let mut ids = Vec::with_capacity(rows.len());
        let mut meta = Vec::with_capacity(rows.len());
        for (id, v, m) in rows {
            if v.len() != dim {
                tracing::warn!(
                    chunk = id,
                    "vector of dimension {} in an index of {dim}; skipped",
                    v.len()
                );
                continue;
            }
            matrix.extend_from_slice(&v);
            ids.push(id);
            meta.push(m);
        }
        Self {
            dim,
            matrix,
            ids,
            meta,
            generation,
            ann: OnceLock::new(),
        }
    }

    /// The identity an ANN index over these rows must carry (`model`: the vectors' model key).
    pub fn ann_source(&self, model: &str) -> AnnSource {
        AnnSource {
            generation: self.generation,
            model: model.to_string(),
            vectors: self.ids.len() as u64,
            dim: self.dim,
            ids_hash: crate::ann::ids_hash(&self.ids),
        }
    }

    /// Build an ANN index over these rows (not attached; see [`Self::attach_ann`]).
    pub fn build_ann(&self, model: &str) -> crate::Result<AnnIndex> {
        AnnIndex::build(&self.matrix, self.dim, &self.ann_source(model))
    }

    /// Attach an ANN index built over exactly these rows; refused (false) otherwise.
    pub fn attach_ann(&self, ann: AnnIndex, model: &str) -> bool {
        if !ann.header.matches(&self.ann_source(model)) {
            return false;
        }
        self.ann.set(ann).is_ok()
    }

    pub fn ann(&self) -> Option<&AnnIndex> {
        self.ann.get()
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Memory held by the matrix, in bytes.
    pub fn bytes(&self) -> usize {
        self.matrix.len() * 4
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

    /// The `k` most similar chunks passing `filters`: (chunk id, cosine), best first. Through
    /// the ANN index when one is attached, else (or when it finds fewer than `k` rows passing
    /// the filters) by the exact scan. Scores are always exact cosines.
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

    /// Through the ANN index only: the rows it finds, filtered exactly and re-scored from the
    /// matrix; may hold fewer than `k` when the filters are selective.
    pub fn search_ann(
        &self,
        ann: &AnnIndex,
        query: &[f32],
        filters: &Filters,
        k: usize,
    ) -> Vec<(i64, f32)> {
        let unfiltered = filters == &Filters::default();
        let allowed = |row: usize| {
            self.meta
                .get(row)
                .is_some_and(|m| Self::allowed(m, filters))
        };
        let rows = if unfiltered {
            ann.search(query, k, None)
        } else {
            ann.search(query, k, Some(&allowed))
        };
        let mut out: Vec<(i64, f32)> = rows
            .into_iter()
            .filter(|row| *row < self.ids.len() && (unfiltered || allowed(*row)))
            .map(|row| {
                let v = &self.matrix[row * self.dim..(row + 1) * self.dim];
                (self.ids[row], dot(v, query))
            })
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        out.dedup_by_key(|h| h.0);
        out
    }

    /// The exact scan.
    pub fn search_exact(&self, query: &[f32], filters: &Filters, k: usize) -> Vec<(i64, f32)> {
        if self.dim == 0 || query.len() != self.dim || k == 0 {
            return Vec::new();
        }
        let unfiltered = filters == &Filters::default();
        // A small bounded min-heap keeps the top k without sorting every score.
        let mut heap: std::collections::BinaryHeap<std::cmp::Reverse<(Score, usize)>> =
            std::collections::BinaryHeap::with_capacity(k + 1);
        for (row, v) in self.matrix.chunks_exact(self.dim).enumerate() {
            if !unfiltered && !Self::allowed(&self.meta[row], filters) {
                continue;
            }
            let s = dot(v, query);
            if heap.len() < k {
                heap.push(std::cmp::Reverse((Score(s), row)));
            } else if heap
                .peek()
                .is_some_and(|std::cmp::Reverse((min, _))| s > min.0)
            {
                heap.pop();
                heap.push(std::cmp::Reverse((Score(s), row)));
            }
        }
        let mut out: Vec<(i64, f32)> = heap
            .into_iter()
            .map(|std::cmp::Reverse((s, row))| (self.ids[row], s.0))
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

    #[test]
    fn dot_matches_naive() {
        let a: Vec<f32> = (0..389).map(|i| (i as f32).sin()).collect();
        let b: Vec<f32> = (0..389).map(|i| (i as f32).cos()).collect();
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - naive).abs() < 1e-3);
    }
}
