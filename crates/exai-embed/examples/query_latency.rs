//! Single-query latency of the ONNX back end under several session configurations, interleaved
//! in one process so that load from other processes hits every configuration alike: each
//! configuration embeds a block of queries one by one (a block keeps the model's weights in cache
//! as a run of queries does), then the next configuration the same block.
//! Driven by `bench/embed/query_latency.py`.
//!
//! ```text
//! query_latency --model DIR --runtime LIB --input queries.json [--queries N] [--block 20]
//!               [--precision fp32,int8] [--variant NAME=THREADS/spin|nospin ...]
//!               [--gap-ms G] [--evict-mb M]
//! ```
//! `--gap-ms` sleeps between two queries and `--evict-mb` reads that much other memory there, as a
//! server does between searches (the runtime's idle threads stop spinning and fall asleep; the
//! weights leave the caches); by default queries run back to back.
//! `queries.json` is a JSON array of strings. Each variant is an [`OnnxEmbedder`] whose queries run
//! with THREADS intra-op threads (0: one per core), spinning or not; by default `default`
//! ([`OnnxOptions::new`]) and the other combinations of one thread or every core, spinning or
//! not. A `tokenize` row times tokenization alone (the same tokenizer call a query makes). Prints
//! one JSON object: per precision and variant, the latencies in milliseconds (every call, in
//! order) and the tokens per query.

use std::path::PathBuf;
use std::time::Instant;

use exai_embed::{Embedder, OnnxEmbedder, OnnxModel, OnnxOptions, Precision};

struct Variant {
    name: String,
    threads: usize,
    spinning: bool,
}

struct Args {
    model: PathBuf,
    runtime: PathBuf,
    input: PathBuf,
    queries: usize,
    block: usize,
    precisions: Vec<Precision>,
    variants: Vec<Variant>,
    gap_ms: u64,
    evict_mb: usize,
}

fn parse_variant(spec: &str) -> Result<Variant, String> {
    let bad = || format!("--variant {spec}: expected NAME=THREADS/spin or NAME=THREADS/nospin");
    let (name, rest) = spec.split_once('=').ok_or_else(bad)?;
    let (threads, spin) = rest.split_once('/').ok_or_else(bad)?;
    Ok(Variant {
        name: name.to_string(),
        threads: threads.parse().map_err(|_| bad())?,
        spinning: match spin {
            "spin" => true,
            "nospin" => false,
            _ => return Err(bad()),
        },
    })
}

fn parse_args() -> Result<Args, String> {
    let mut model = None;
    let mut runtime = None;
    let mut input = None;
    let mut queries = 200;
    let mut block = 20;
    let mut precisions = vec![Precision::Fp32, Precision::Int8];
    let mut variants = Vec::new();
    let mut gap_ms = 0;
    let mut evict_mb = 0;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--model" => model = Some(PathBuf::from(value()?)),
            "--runtime" => runtime = Some(PathBuf::from(value()?)),
            "--input" => input = Some(PathBuf::from(value()?)),
            "--queries" => queries = value()?.parse().map_err(|e| format!("--queries: {e}"))?,
            "--block" => block = value()?.parse().map_err(|e| format!("--block: {e}"))?,
            "--precision" => {
                precisions = value()?
                    .split(',')
                    .map(|p| p.parse().map_err(|e| format!("--precision: {e}")))
                    .collect::<Result<_, String>>()?
            }
            "--variant" => variants.push(parse_variant(&value()?)?),
            "--gap-ms" => gap_ms = value()?.parse().map_err(|e| format!("--gap-ms: {e}"))?,
            "--evict-mb" => evict_mb = value()?.parse().map_err(|e| format!("--evict-mb: {e}"))?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if variants.is_empty() {
        let default = OnnxOptions::new(32);
        variants = vec![Variant {
            name: "default".into(),
            threads: default.query_threads,
            spinning: default.spinning,
        }];
        for (name, threads, spinning) in [
            ("1 thread, spinning", 1, true),
            ("every core, no spinning", 0, false),
            ("1 thread, no spinning", 1, false),
        ] {
            if (threads, spinning) != (default.query_threads, default.spinning) {
                variants.push(Variant {
                    name: name.into(),
                    threads,
                    spinning,
                });
            }
        }
    }
    Ok(Args {
        model: model.ok_or("--model DIR is required")?,
        runtime: runtime.ok_or("--runtime LIB is required")?,
        input: input.ok_or("--input FILE is required")?,
        queries,
        block,
        precisions,
        variants,
        gap_ms,
        evict_mb,
    })
}

/// The first of `names` that exists in `dir`.
fn pick(dir: &std::path::Path, names: &[&str]) -> Result<PathBuf, String> {
    names
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("{} has none of {names:?}", dir.display()))
}

fn millis(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let queries: Vec<String> = serde_json::from_str(
        &std::fs::read_to_string(&args.input)
            .map_err(|e| format!("{}: {e}", args.input.display()))?,
    )
    .map_err(|e| format!("{}: {e}", args.input.display()))?;
    if queries.is_empty() {
        return Err("no queries".into());
    }

    let mut embedders = Vec::new();
    for &precision in &args.precisions {
        let model = OnnxModel {
            graph: match precision {
                Precision::Fp32 => pick(&args.model, &["model.onnx", "onnx/model.onnx"])?,
                Precision::Int8 => pick(&args.model, &["model_int8.onnx", "onnx/model_int8.onnx"])?,
            },
            dir: args.model.clone(),
        };
        for variant in &args.variants {
            let mut options = OnnxOptions::new(32);
            options.query_threads = variant.threads;
            options.spinning = variant.spinning;
            let embedder = OnnxEmbedder::load(&args.runtime, &model, precision, options)
                .map_err(|e| e.to_string())?;
            // Opens the query session and warms its arena and thread pool.
            for query in queries.iter().take(20) {
                embedder.embed_query(query).map_err(|e| e.to_string())?;
            }
            embedders.push((format!("{precision} {}", variant.name), embedder));
        }
    }
    let tokens: Vec<usize> = match embedders.first() {
        Some((_, e)) => queries.iter().map(|q| e.count_tokens(q)).collect(),
        None => return Err("no variants".into()),
    };

    let rows = embedders.len() + 1;
    let mut latencies = vec![Vec::with_capacity(args.queries); rows];
    let sequence: Vec<&String> = queries.iter().cycle().take(args.queries).collect();
    let mut other_memory = vec![1u8; args.evict_mb * 1024 * 1024];
    for (b, block) in sequence.chunks(args.block.max(1)).enumerate() {
        // Rotate the order so no configuration always runs right after another one.
        for k in 0..rows {
            let row = (b + k) % rows;
            for query in block {
                if args.gap_ms > 0 {
                    std::thread::sleep(std::time::Duration::from_millis(args.gap_ms));
                }
                if !other_memory.is_empty() {
                    // Touch every cache line, as other work between two searches would.
                    for line in other_memory.chunks_mut(64) {
                        line[0] = line[0].wrapping_add(1);
                    }
                    std::hint::black_box(&other_memory);
                }
                let started = Instant::now();
                match embedders.get(row) {
                    Some((_, embedder)) => {
                        embedder.embed_query(query).map_err(|e| e.to_string())?;
                    }
                    None => {
                        let counted = embedders.first().map(|(_, e)| e.count_tokens(query));
                        std::hint::black_box(counted);
                    }
                }
                latencies[row].push(millis(started));
            }
        }
    }

    let mut report = serde_json::Map::new();
    for (row, lat) in latencies.into_iter().enumerate() {
        let name = embedders
            .get(row)
            .map_or("tokenize".to_string(), |(n, _)| n.clone());
        report.insert(name, serde_json::json!(lat));
    }
    println!(
        "{}",
        serde_json::json!({ "latency_ms": report, "tokens": tokens, "queries": args.queries })
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("query_latency: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
