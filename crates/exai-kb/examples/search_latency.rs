//! Search latency on an existing knowledge base: every query of a question file, in each mode,
//! several rounds; prints p50/p99 per mode (query embedding included for semantic and hybrid).
//! Also times semantic search alone over `--scan-rows` synthetic unit vectors — exact scan and
//! HNSW side by side, with recall@10 — at a size the local embedder cannot fill in one session:
//! vectors scattered around the index's real ones, and uniform noise (the worst case). With a
//! model, the index's own vectors are searched exactly and through a freshly built HNSW graph
//! too, with recall@10 (a hit counts when its cosine reaches the exact 10th: equal texts tie).
//! `--slowest N` lists the N slowest keyword queries of the last round, each with how the keyword
//! index answered it (plan, terms, chunks each term is in, time on a fresh connection), and the
//! first round (term statistics not yet cached) is reported apart from the later ones.
//! `--modes keyword,hybrid` measures only those modes; `--eval` prints their nDCG@10, MRR@10
//! and recall@10 on the question file first.
//!
//! cargo run --release -p exai-kb --example search_latency -- --db PATH --questions FILE [--model DIR] [--precision fp32|int8] [--rounds N] [--modes LIST] [--eval] [--scan-rows N [--around-only] [--connectivity M] [--expansion-add E]] [--slowest N]

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Instant;

use exai_kb::{CategoryMap, Filters, Kb, KbOptions, Mode, SearchRequest, StoreBackend};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((p / 100.0) * (v.len() - 1) as f64).round() as usize]
}

fn main() {
    let db = PathBuf::from(arg("--db").expect("--db PATH"));
    let questions = exai_kb::eval::QuestionSet::load(&PathBuf::from(
        arg("--questions").expect("--questions FILE"),
    ))
    .unwrap();
    let rounds: usize = arg("--rounds").map_or(3, |r| r.parse().unwrap());
    let embedder = arg("--model").map(|dir| {
        let settings = exai_embed::EmbedSettings {
            // ONNX Runtime when DIR holds an ONNX graph and the runtime is found, else candle.
            backend: exai_embed::Backend::Auto,
            precision: arg("--precision")
                .map_or(exai_embed::Precision::Fp32, |p| p.parse().unwrap()),
            onnx_runtime: None,
            model: Some(PathBuf::from(dir)),
            data_dir: std::env::temp_dir(),
            remote_url: String::new(),
            remote_model: String::new(),
            remote_api_key: None,
            remote_dim: None,
            batch_size: 32,
            max_batch_tokens: 1024,
            query_threads: 1,
        };
        exai_embed::build(&settings).unwrap().unwrap()
    });
    let kb = Kb::open(
        &db,
        embedder.clone(),
        KbOptions::default(),
        CategoryMap::default(),
    )
    .unwrap();
    let status = kb.status().unwrap();
    println!(
        "database: {} ({} documents, {} chunks, {} without vectors)",
        status.database, status.documents, status.chunks, status.chunks_without_vectors
    );
    let mut modes: Vec<Mode> = if status.search_modes.contains(&"semantic") {
        vec![Mode::Keyword, Mode::Semantic, Mode::Hybrid]
    } else {
        vec![Mode::Keyword]
    };
    if let Some(only) = arg("--modes") {
        let only: Vec<Mode> = only.split(',').map(|m| Mode::parse(m).unwrap()).collect();
        modes.retain(|m| only.contains(m));
    }
    // Warm up: load the vector index and the caches once.
    for q in questions.questions.iter().take(3) {
        let mut r = SearchRequest::new(q.query.clone());
        r.mode = *modes.last().unwrap();
        kb.search(&r).unwrap();
    }
    // `--eval`: ranking quality of the measured modes on the question file first (nDCG@10 as
    // `exai eval` computes it), so every speed figure has its quality beside it.
    if std::env::args().any(|a| a == "--eval") {
        let scores = exai_kb::eval::evaluate(&kb, &questions, &modes, &Filters::default()).unwrap();
        for s in scores {
            println!(
                "quality {:<8} nDCG@10 {:.4}  MRR@10 {:.4}  recall@10 {:.4}  ({} questions)",
                s.mode, s.ndcg_at_10, s.mrr_at_10, s.recall_at_10, s.questions
            );
        }
    }
    let slowest: usize = arg("--slowest").map_or(0, |n| n.parse().unwrap());
    for mode in modes {
        let mut times = Vec::new();
        let mut first = Vec::new();
        let mut per_query: Vec<(f64, &str)> = Vec::new();
        for round in 0..rounds {
            for q in &questions.questions {
                let mut r = SearchRequest::new(q.query.clone());
                r.mode = mode;
                let t = Instant::now();
                let resp = kb.search(&r).unwrap();
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                if round == 0 {
                    first.push(ms);
                } else {
                    times.push(ms);
                }
                if round == rounds - 1 {
                    per_query.push((ms, &q.query));
                }
                assert_eq!(resp.mode, mode);
            }
        }
        if mode == Mode::Keyword && slowest > 0 {
            per_query.sort_by(|a, b| b.0.total_cmp(&a.0));
            let store = exai_kb::SqliteStore::open_readonly(&db).unwrap();
            for (ms, q) in per_query.iter().take(slowest) {
                println!("  slow keyword {ms:>7.2} ms  {q}");
                explain(&store, q);
            }
        }
        if times.is_empty() {
            times = first.clone();
        }
        let n = times.len();
        println!(
            "{:<8} n={n:<5} p50 {:>7.2} ms  p99 {:>7.2} ms   (first round, statistics cold: n={} p50 {:.2} ms  p99 {:.2} ms)",
            mode.as_str(),
            pct(&mut times, 50.0),
            pct(&mut times, 99.0),
            first.len(),
            pct(&mut first, 50.0),
            pct(&mut first, 99.0),
        );
    }
    // The questions' query vectors, embedded once, each timed.
    // Only when semantic search is measured: the index's own HNSW graph takes seconds to build.
    let vector_half = arg("--modes").is_none_or(|m| m.contains("semantic"));
    let queries: Vec<Vec<f32>> = match &embedder {
        Some(e) if vector_half => {
            let mut embed = Vec::new();
            let queries: Vec<Vec<f32>> = questions
                .questions
                .iter()
                .map(|q| {
                    let t = Instant::now();
                    let v = e.embed_query(&q.query).unwrap();
                    embed.push(t.elapsed().as_secs_f64() * 1000.0);
                    v
                })
                .collect();
            println!(
                "query embedding alone p50 {:>7.2} ms  p99 {:>7.2} ms",
                pct(&mut embed, 50.0),
                pct(&mut embed, 99.0)
            );
            real_vectors(&db, &queries);
            queries
        }
        _ => Vec::new(),
    };
    if let (Some(rows), Some(e)) = (
        arg("--scan-rows").map(|r| r.parse::<usize>().unwrap()),
        embedder,
    ) {
        let dim = e.identity().dim;
        // The index's real vectors, each the centre of rows / n synthetic neighbours (a corpus
        // of related pages), and uniform noise (no neighbourhoods at all: the worst case).
        let real: Vec<Vec<f32>> = exai_kb::SqliteStore::open_readonly(&db)
            .unwrap()
            .vectors()
            .unwrap()
            .into_iter()
            .map(|r| r.1)
            .filter(|v| v.len() == dim)
            .collect();
        let mut seed = 0x9E3779B97F4A7C15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 11) as f32 / (1u64 << 53) as f32 - 0.5
        };
        let mut unit = |centre: Option<&Vec<f32>>| {
            let mut v: Vec<f32> = (0..dim).map(|_| next()).collect();
            if let Some(c) = centre {
                let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v = c.iter().zip(&v).map(|(c, x)| c + 0.5 * x / n).collect();
            }
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter_mut().for_each(|x| *x /= norm);
            v
        };
        // `--around-only`: skip the uniform set (its graph takes the longest to build; at 1M rows
        // far longer than a session).
        let mut sets = Vec::new();
        if !std::env::args().any(|a| a == "--around-only") {
            sets.push((
                "uniform random",
                (0..rows).map(|_| unit(None)).collect::<Vec<_>>(),
            ));
        }
        if !real.is_empty() {
            let around: Vec<Vec<f32>> = (0..rows)
                .map(|i| unit(Some(&real[i % real.len()])))
                .collect();
            sets.insert(0, ("around the index's vectors", around));
        }
        let meta = || exai_kb::store::VectorMeta {
            source: "s".into(),
            technology: "t".into(),
            category: "c".into(),
            path: "p".into(),
            doc_type: exai_kb::DocType::Text,
        };
        // Where the exact scan's cost passes a few milliseconds (kb.ann_min_vectors).
        let mut by_size = Vec::new();
        for n in [5_000, 10_000, 20_000, 50_000, 100_000] {
            if n > rows {
                break;
            }
            let data = sets[0].1[..n]
                .iter()
                .enumerate()
                .map(|(i, v)| (i as i64, v.clone(), meta()))
                .collect();
            let index = exai_kb::vectors::VectorIndex::build(data, 0);
            let mut t = Vec::new();
            for q in &queries {
                let s = Instant::now();
                index.search_exact(q, &Filters::default(), 50);
                t.push(s.elapsed().as_secs_f64() * 1000.0);
            }
            by_size.push(format!("{n}: {:.2} ms", pct(&mut t, 50.0)));
        }
        println!("exact scan p50 by rows (k=50): {}", by_size.join(", "));
        for (name, vectors) in sets {
            let data = vectors
                .into_iter()
                .enumerate()
                .map(|(i, v)| (i as i64, v, meta()))
                .collect();
            let index = exai_kb::vectors::VectorIndex::build(data, 0);
            let t = Instant::now();
            // `--connectivity M --expansion-add E`: another graph than the default's.
            let (default_m, default_ef) = exai_kb::ann::graph_params(index.distinct());
            let connectivity = arg("--connectivity").map_or(default_m, |v| v.parse().unwrap());
            let expansion_add = arg("--expansion-add").map_or(default_ef, |v| v.parse().unwrap());
            let ann = index
                .build_ann_with("bench", connectivity, expansion_add)
                .unwrap();
            let build = t.elapsed().as_secs_f64();
            let (mut exact_t, exact) = exact_tops(&index, &queries);
            let breadth = exai_kb::ann::search_breadth(index.distinct());
            println!(
                "{rows} x {dim}, {name} ({:.0} MB matrix; HNSW M={connectivity} ef_add={expansion_add} search breadth {breadth} built in {build:.1} s):",
                index.bytes() as f64 / 1e6,
            );
            println!(
                "  exact scan  p50 {:>7.2} ms  p99 {:>7.2} ms",
                pct(&mut exact_t, 50.0),
                pct(&mut exact_t, 99.0)
            );
            // The chosen breadth, then the graph searched at others: what recall costs here.
            for wide in std::iter::once(breadth).chain(
                [128, 256, 512, 1024, 2048]
                    .into_iter()
                    .filter(|w| *w != breadth),
            ) {
                let (mut t, recall, _) = ann_recall(&index, &ann, &queries, &exact, wide);
                println!(
                    "  HNSW {wide:>4} wide  p50 {:>7.2} ms  p99 {:>7.2} ms  recall@10 {recall:.4}",
                    pct(&mut t, 50.0),
                    pct(&mut t, 99.0),
                );
            }
        }
    }
}

/// How the keyword index answers `query` on a fresh connection: its terms with the chunks each
/// is in, the plan, and the time of a cold and a warm run.
fn explain(store: &exai_kb::SqliteStore, query: &str) {
    let k = 50;
    let t = Instant::now();
    let (_, plan) = store
        .keyword_search_planned(query, &Filters::default(), k)
        .unwrap();
    let cold = t.elapsed().as_secs_f64() * 1000.0;
    let t = Instant::now();
    store
        .keyword_search_planned(query, &Filters::default(), k)
        .unwrap();
    let warm = t.elapsed().as_secs_f64() * 1000.0;
    let mut terms: Vec<(u64, String)> = exai_kb::store::query_terms(query)
        .into_iter()
        .map(|t| (store.term_chunks(&t).unwrap(), t))
        .collect();
    terms.sort();
    let postings: u64 = terms.iter().map(|t| t.0).sum();
    println!(
        "      {plan:?}: cold {cold:.2} ms, warm {warm:.2} ms; {} terms in {postings} postings: {}",
        terms.len(),
        terms
            .iter()
            .map(|(n, t)| format!("{t} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// The exact top 50 of every query, and how long each scan took (ms).
fn exact_tops(
    index: &exai_kb::vectors::VectorIndex,
    queries: &[Vec<f32>],
) -> (Vec<f64>, Vec<Vec<(i64, f32)>>) {
    let mut times = Vec::new();
    let tops = queries
        .iter()
        .map(|q| {
            let s = Instant::now();
            let hits = index.search_exact(q, &Filters::default(), 50);
            times.push(s.elapsed().as_secs_f64() * 1000.0);
            hits
        })
        .collect();
    (times, tops)
}

/// Searches of `ann` at `breadth` for k = 50, against the exact top lists: (times in ms,
/// recall@10 counting a hit whose cosine reaches the exact 10th since equal texts tie, recall@10
/// of the very same chunks).
fn ann_recall(
    index: &exai_kb::vectors::VectorIndex,
    ann: &exai_kb::ann::AnnIndex,
    queries: &[Vec<f32>],
    exact: &[Vec<(i64, f32)>],
    breadth: usize,
) -> (Vec<f64>, f64, f64) {
    let (mut times, mut tied, mut same) = (Vec::new(), 0usize, 0usize);
    for (q, exact) in queries.iter().zip(exact) {
        let s = Instant::now();
        let approx = index.search_ann_breadth(ann, q, &Filters::default(), 50, breadth);
        times.push(s.elapsed().as_secs_f64() * 1000.0);
        let tenth = exact.get(9).map_or(f32::MIN, |h| h.1);
        tied += approx.iter().take(10).filter(|h| h.1 >= tenth).count();
        same += approx
            .iter()
            .take(10)
            .filter(|h| exact.iter().take(10).any(|e| e.0 == h.0))
            .count();
    }
    let n = (10 * queries.len()) as f64;
    (times, tied as f64 / n, same as f64 / n)
}

/// The index's own vectors: exact scan against a freshly built HNSW graph, with recall@10.
fn real_vectors(db: &std::path::Path, queries: &[Vec<f32>]) {
    let store = exai_kb::SqliteStore::open_readonly(db).unwrap();
    let t = Instant::now();
    let index = exai_kb::vectors::VectorIndex::build(store.vectors().unwrap(), 0);
    let load = t.elapsed().as_secs_f64();
    if index.distinct() < 1000 {
        return;
    }
    let t = Instant::now();
    let ann = index.build_ann("bench").unwrap();
    let build = t.elapsed().as_secs_f64();
    let (mut exact_t, exact) = exact_tops(&index, queries);
    let breadth = exai_kb::ann::search_breadth(index.distinct());
    let (mut ann_t, found, same) = ann_recall(&index, &ann, queries, &exact, breadth);
    println!(
        "the index's own vectors: {} chunks, {} distinct vectors (loaded in {load:.1} s; HNSW built in {build:.1} s)",
        index.len(),
        index.distinct()
    );
    println!(
        "  exact scan  p50 {:>7.2} ms  p99 {:>7.2} ms",
        pct(&mut exact_t, 50.0),
        pct(&mut exact_t, 99.0)
    );
    println!(
        "  HNSW        p50 {:>7.2} ms  p99 {:>7.2} ms  recall@10 {:.4} (same chunks {:.4})",
        pct(&mut ann_t, 50.0),
        pct(&mut ann_t, 99.0),
        found,
        same
    );
}
