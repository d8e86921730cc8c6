#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The index records which back end and precision computed its vectors, for `exai sources` and
//! `exai health`.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use exai_embed::{EmbedError, Embedder, ModelIdentity};
use exai_kb::{CategoryMap, IndexEmbedding, IndexRequest, Kb, KbOptions};

/// Vectors from word lengths: enough for the index to hold something.
struct Fake {
    identity: ModelIdentity,
    backend: &'static str,
}

impl Fake {
    fn shared(backend: &'static str, precision: &str) -> Arc<dyn Embedder> {
        Arc::new(Fake {
            identity: ModelIdentity {
                name: "fake/model".into(),
                dim: 3,
                precision: precision.into(),
                max_tokens: 256,
            },
            backend,
        })
    }
}

impl Embedder for Fake {
    fn identity(&self) -> &ModelIdentity {
        &self.identity
    }

    fn backend(&self) -> &'static str {
        self.backend
    }

    fn embed_passages(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        texts.iter().map(|t| self.embed_query(t)).collect()
    }

    fn embed_query(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        let n = text.split_whitespace().count() as f32;
        let v = [1.0, n, (text.len() % 7) as f32];
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        Ok(v.iter().map(|x| x / norm).collect())
    }

    fn count_tokens(&self, text: &str) -> usize {
        text.split_whitespace().count() + 2
    }
}

fn index(kb: &Kb, dir: &std::path::Path, reembed: bool) {
    let req = IndexRequest {
        roots: vec![dir.to_path_buf()],
        source: "docs".into(),
        reembed,
        ..Default::default()
    };
    kb.index(&req, &|_| {}, &AtomicBool::new(false)).unwrap();
}

#[test]
fn status_names_the_back_end_and_precision_of_the_index() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(
        docs.join("a.md"),
        "# Borrowing\n\nReferences borrow a value.\n",
    )
    .unwrap();
    let db = tmp.path().join("kb.sqlite");
    let open = |embedder| {
        Kb::open(
            &db,
            Some(embedder),
            KbOptions::default(),
            CategoryMap::default(),
        )
        .unwrap()
    };

    let kb = open(Fake::shared("onnx", "int8"));
    assert_eq!(kb.index_embedding().unwrap(), None);
    index(&kb, &docs, false);
    let expected = IndexEmbedding {
        model: "fake/model:3:int8".into(),
        precision: "int8".into(),
        backends: vec!["onnx".into()],
    };
    assert_eq!(kb.index_embedding().unwrap(), Some(expected.clone()));
    assert_eq!(expected.describe(), "onnx int8");
    let status = kb.status().unwrap();
    assert_eq!(status.index_embedding, Some(expected));
    assert_eq!(status.embedding_backend, Some("onnx"));
    assert_eq!(status.embedding_precision.as_deref(), Some("int8"));
    drop(kb);

    // Another precision is another model: re-embedding replaces the record.
    let kb = open(Fake::shared("candle", "fp32"));
    index(&kb, &docs, true);
    let now = kb.index_embedding().unwrap().unwrap();
    assert_eq!(now.describe(), "candle fp32");
    assert_eq!(now.model, "fake/model:3:fp32");
    drop(kb);

    // fp32 vectors from ONNX Runtime may join candle's: both back ends are named.
    let kb = open(Fake::shared("onnx", "fp32"));
    std::fs::write(docs.join("b.md"), "# Lifetimes\n\nLifetimes name scopes.\n").unwrap();
    index(&kb, &docs, false);
    assert_eq!(
        kb.index_embedding().unwrap().unwrap().describe(),
        "candle+onnx fp32"
    );
}
