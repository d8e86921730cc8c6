//! Throughput benchmark of the local embedder, driven by `bench/embed/throughput.py`.
//!
//! ```text
//! embed_bench --model DIR --input texts.json [--batch 32] [--no-sort] [--pad-max]
//!             [--threading candle|rayon] [--row-major-weights] [--queries N]
//!             [--onnx fp32|int8 --runtime LIB [--threads N] [--max-batch-tokens N] [--no-arena]]
//! ```
//! With `--onnx`, DIR is an ONNX model directory (model.onnx / model_int8.onnx or onnx/…) run by
//! ONNX Runtime from LIB (default: `$ORT_DYLIB_PATH`, else exai's usual search); the candle
//! options do not apply then (except `--batch` and `--no-sort`).
//! `texts.json` is `{"short": [...], "passages": [...], "queries": [...]}`. Prints one JSON
//! object: seconds and texts per second for each set, single-query latency percentiles, RSS.

use std::path::PathBuf;
use std::time::Instant;

use exai_embed::{
    Embedder, LocalEmbedder, LocalOptions, OnnxEmbedder, OnnxOptions, Precision, Threading,
};

#[derive(serde::Deserialize)]
struct Input {
    short: Vec<String>,
    passages: Vec<String>,
    queries: Vec<String>,
}

struct Args {
    model: PathBuf,
    input: PathBuf,
    options: LocalOptions,
    queries: usize,
    onnx: Option<Precision>,
    runtime: Option<PathBuf>,
    /// ONNX intra-op threads (0: one per core).
    threads: usize,
    /// ONNX: padded tokens per forward pass at most (0: no bound; default: exai's default).
    max_batch_tokens: Option<usize>,
    /// ONNX: without the runtime's CPU memory arena.
    no_arena: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut model = None;
    let mut input = None;
    let mut options = LocalOptions::new(32);
    let mut queries = 200;
    let mut onnx = None;
    let mut runtime = None;
    let mut threads = 0;
    let mut max_batch_tokens = None;
    let mut no_arena = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--model" => model = Some(PathBuf::from(value()?)),
            "--input" => input = Some(PathBuf::from(value()?)),
            "--batch" => {
                options.batch_size = value()?.parse().map_err(|e| format!("--batch: {e}"))?
            }
            "--queries" => queries = value()?.parse().map_err(|e| format!("--queries: {e}"))?,
            "--no-sort" => options.sort_by_length = false,
            "--pad-max" => options.pad_to_longest = false,
            "--row-major-weights" => options.transposed_weights = false,
            "--threading" => {
                options.threading = match value()?.as_str() {
                    "candle" => Threading::Candle,
                    "rayon" => Threading::RayonBatches,
                    other => return Err(format!("--threading {other}: expected candle or rayon")),
                }
            }
            "--onnx" => onnx = Some(value()?.parse().map_err(|e| format!("--onnx: {e}"))?),
            "--runtime" => runtime = Some(PathBuf::from(value()?)),
            "--threads" => threads = value()?.parse().map_err(|e| format!("--threads: {e}"))?,
            "--max-batch-tokens" => {
                max_batch_tokens = Some(
                    value()?
                        .parse()
                        .map_err(|e| format!("--max-batch-tokens: {e}"))?,
                )
            }
            "--no-arena" => no_arena = true,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Args {
        model: model.ok_or("--model DIR is required")?,
        input: input.ok_or("--input FILE is required")?,
        options,
        queries,
        onnx,
        runtime,
        threads,
        max_batch_tokens,
        no_arena,
    })
}

fn rss_mb(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn timed(embedder: &dyn Embedder, texts: &[String]) -> Result<f64, String> {
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let started = Instant::now();
    let vectors = embedder.embed_passages(&refs).map_err(|e| e.to_string())?;
    let secs = started.elapsed().as_secs_f64();
    if vectors.len() != texts.len() {
        return Err("wrong number of vectors".into());
    }
    Ok(secs)
}

/// The first of `names` that exists in `dir`.
fn pick(dir: &std::path::Path, names: &[&str]) -> Result<PathBuf, String> {
    names
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("{} has none of {names:?}", dir.display()))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let input: Input = serde_json::from_str(
        &std::fs::read_to_string(&args.input)
            .map_err(|e| format!("{}: {e}", args.input.display()))?,
    )
    .map_err(|e| format!("{}: {e}", args.input.display()))?;

    let started = Instant::now();
    let (embedder, options): (Box<dyn Embedder>, String) = match args.onnx {
        None => {
            let e =
                LocalEmbedder::load_with(&args.model, args.options).map_err(|e| e.to_string())?;
            let options = format!("{:?}", e.options());
            (Box::new(e), options)
        }
        Some(precision) => {
            let runtime = match args.runtime {
                Some(lib) => lib,
                None => exai_embed::locate_runtime(None, &std::env::temp_dir())
                    .map_err(|e| e.to_string())?,
            };
            let settings_dir = args.model.clone();
            let graph = exai_embed::OnnxModel {
                graph: match precision {
                    Precision::Fp32 => pick(&settings_dir, &["model.onnx", "onnx/model.onnx"])?,
                    Precision::Int8 => {
                        pick(&settings_dir, &["model_int8.onnx", "onnx/model_int8.onnx"])?
                    }
                },
                dir: settings_dir,
            };
            let mut options = OnnxOptions::new(args.options.batch_size);
            options.sort_by_length = args.options.sort_by_length;
            options.intra_threads = args.threads;
            if let Some(tokens) = args.max_batch_tokens {
                options.max_batch_tokens = tokens;
            }
            options.memory_arena = !args.no_arena;
            let e = OnnxEmbedder::load(&runtime, &graph, precision, options)
                .map_err(|e| e.to_string())?;
            let options = format!("{:?} runtime {}", e.options(), runtime.display());
            (Box::new(e), options)
        }
    };
    let embedder = embedder.as_ref();
    let load_secs = started.elapsed().as_secs_f64();

    // Warm up allocator, thread pools and caches on a slice of each set.
    timed(embedder, &input.short[..input.short.len().min(64)])?;
    timed(embedder, &input.passages[..input.passages.len().min(32)])?;

    let short_secs = timed(embedder, &input.short)?;
    let passage_secs = timed(embedder, &input.passages)?;

    let mut latencies = Vec::new();
    for query in input.queries.iter().cycle().take(args.queries) {
        let started = Instant::now();
        embedder.embed_query(query).map_err(|e| e.to_string())?;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);

    let report = serde_json::json!({
        "model": embedder.identity().key(),
        "backend": embedder.backend(),
        "options": options,
        "avx512_kernels": cfg!(feature = "avx512"),
        "load_s": load_secs,
        "short": { "n": input.short.len(), "secs": short_secs, "per_s": input.short.len() as f64 / short_secs },
        "passages": { "n": input.passages.len(), "secs": passage_secs, "per_s": input.passages.len() as f64 / passage_secs },
        "query_ms": { "p50": percentile(&latencies, 0.5), "p95": percentile(&latencies, 0.95), "n": latencies.len() },
        "rss_mb": rss_mb("VmRSS:"),
        "peak_rss_mb": rss_mb("VmHWM:"),
    });
    println!("{report}");
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("embed_bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
