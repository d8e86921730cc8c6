#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The ANN index is a derived artifact: built by an indexing run, detected stale after a store
//! change and rebuilt, discarded and rebuilt when corrupt, and never changes what a filtered
//! search may return.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use exai_embed::{EmbedError, Embedder, ModelIdentity};
use exai_kb::ann::{ann_path, inspect};
use exai_kb::{CategoryMap, Filters, IndexRequest, Kb, KbOptions, Mode, SearchRequest};

/// Deterministic 16-dimensional vectors from a text's bytes.
struct Fake(ModelIdentity);

impl Embedder for Fake {
    fn identity(&self) -> &ModelIdentity {
        &self.0
    }
    fn backend(&self) -> &'static str {
        "candle"
    }
    fn embed_passages(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        texts.iter().map(|t| self.embed_query(t)).collect()
    }
    fn embed_query(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        let mut v = vec![0.1f32; 16];
        for (i, b) in text.bytes().enumerate() {
            v[(i * 7 + b as usize) % 16] += f32::from(b) / 255.0;
        }
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        Ok(v.into_iter().map(|x| x / n).collect())
    }
    fn count_tokens(&self, text: &str) -> usize {
        text.split_whitespace().count() + 2
    }
}

fn open(db: &std::path::Path, ann_min_vectors: usize) -> Kb {
    let e: Arc<dyn Embedder> = Arc::new(Fake(ModelIdentity {
        name: "fake".into(),
        dim: 16,
        precision: "fp32".into(),
        max_tokens: 256,
    }));
    let options = KbOptions {
        ann_min_vectors,
        ..KbOptions::default()
    };
    Kb::open(db, Some(e), options, CategoryMap::default()).unwrap()
}

fn index(kb: &Kb, dir: &std::path::Path, source: &str) {
    let req = IndexRequest {
        roots: vec![dir.to_path_buf()],
        source: source.into(),
        ..Default::default()
    };
    kb.index(&req, &|_| {}, &AtomicBool::new(false)).unwrap();
}

fn write_docs(dir: &std::path::Path, n: usize, word: &str) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        std::fs::write(
            dir.join(format!("{word}{i}.md")),
            format!(
                "# {word} page {i}\n\nThe {word} number {i} explains item {}.\n",
                i * 31
            ),
        )
        .unwrap();
    }
}

fn semantic(kb: &Kb, query: &str, filters: Filters) -> Vec<(i64, String)> {
    let mut r = SearchRequest::new(query.to_string());
    r.mode = Mode::Semantic;
    r.limit = 10;
    r.filters = filters;
    let resp = kb.search(&r).unwrap();
    resp.hits
        .iter()
        .map(|h| (h.chunk_id, h.source.clone()))
        .collect()
}

#[test]
fn built_by_indexing_rebuilt_when_stale_or_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("kb.sqlite");
    write_docs(&tmp.path().join("a"), 40, "alpha");
    write_docs(&tmp.path().join("b"), 5, "beta");
    let kb = open(&db, 10);
    index(&kb, &tmp.path().join("a"), "a");
    let path = ann_path(&db);
    let built = inspect(&path)
        .unwrap()
        .expect("indexing builds the ANN index");
    let writer = kb.writer().unwrap();
    assert_eq!(built.generation, writer.generation().unwrap());
    assert_eq!(built.model, "fake:16:fp32");
    let before = semantic(&kb, "alpha page 3", Filters::default());
    assert_eq!(before.len(), 10);
    assert!(kb.ann_in_use());

    // A store change makes the file stale; the next indexing run rebuilds it.
    index(&kb, &tmp.path().join("b"), "b");
    let now = writer.generation().unwrap();
    let rebuilt = inspect(&path).unwrap().unwrap();
    assert_eq!(rebuilt.generation, now);
    assert!(rebuilt.vectors > built.vectors);

    // Filters stay exact through the graph: only `b` chunks, all five of them.
    let only_b = Filters {
        sources: vec!["b".into()],
        ..Default::default()
    };
    let hits = semantic(&kb, "alpha page 3", only_b);
    assert_eq!(hits.len(), 5);
    assert!(hits.iter().all(|h| h.1 == "b"), "{hits:?}");
    drop(kb);

    // A corrupt file: a fresh process discards it, answers exactly meanwhile, and rebuilds.
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    assert!(inspect(&path).is_err());
    let kb = open(&db, 10);
    let exact_kb = open(&db, 0);
    assert_eq!(
        semantic(&kb, "beta page 1", Filters::default()),
        semantic(&exact_kb, "beta page 1", Filters::default())
    );
    assert!(!exact_kb.ann_in_use());
    let header = kb.refresh_ann().unwrap().unwrap();
    assert_eq!(header.generation, now);
    assert!(inspect(&path).unwrap().is_some());
    assert!(kb.ann_in_use());

    // Under the threshold no index is built or used.
    let small = open(&db, 1_000);
    assert!(small.refresh_ann().unwrap().is_none());
    semantic(&small, "beta", Filters::default());
    assert!(!small.ann_in_use());
}

#[test]
fn one_shot_searches_never_start_a_build() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("kb.sqlite");
    write_docs(&tmp.path().join("a"), 30, "alpha");
    let kb = open(&db, 10);
    index(&kb, &tmp.path().join("a"), "a");
    drop(kb);
    let path = ann_path(&db);
    std::fs::remove_file(&path).unwrap();
    let e: Arc<dyn Embedder> = Arc::new(Fake(ModelIdentity {
        name: "fake".into(),
        dim: 16,
        precision: "fp32".into(),
        max_tokens: 256,
    }));
    let options = KbOptions {
        ann_min_vectors: 10,
        ann_build_on_search: false,
        ..KbOptions::default()
    };
    let one_shot = Kb::open(&db, Some(e), options, CategoryMap::default()).unwrap();
    assert_eq!(
        semantic(&one_shot, "alpha page 3", Filters::default()).len(),
        10
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!path.exists(), "no background build from a one-shot search");
    assert!(!one_shot.ann_in_use());
    // A server-style Kb does build it in the background, once.
    let served = open(&db, 10);
    semantic(&served, "alpha page 3", Filters::default());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while inspect(&path).ok().flatten().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the background build never finished"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
