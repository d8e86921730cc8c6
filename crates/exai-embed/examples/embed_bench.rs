//! Throughput benchmark of the local embedder, driven by `bench/embed/throughput.py`.
//!
//! ```text
//! embed_bench --model DIR --input texts.json [--batch 32] [--no-sort] [--pad-max]
//!             [--threading candle|rayon] [--queries N]
//! ```
//! `texts.json` is `{"short": [...], "passages": [...], "queries": [...]}`. Prints one JSON
//! object: seconds and texts per second for each set, single-query latency percentiles, RSS.

use std::path::PathBuf;
use std::time::Instant;

use exai_embed::{Embedder, LocalEmbedder, LocalOptions, Threading};

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
}

fn parse_args() -> Result<Args, String> {
    let mut model = None;
    let mut input = None;
    let mut options = LocalOptions::new(32);
    let mut queries = 200;
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
            "--threading" => {
                options.threading = match value()?.as_str() {
                    "candle" => Threading::Candle,
                    "rayon" => Threading::RayonBatches,
                    other => return Err(format!("--threading {other}: expected candle or rayon")),
                }
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Args {
        model: model.ok_or("--model DIR is required")?,
        input: input.ok_or("--input FILE is required")?,
        options,
        queries,
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

fn timed(embedder: &LocalEmbedder, texts: &[String]) -> Result<f64, String> {
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let started = Instant::now();
    let vectors = embedder.embed_passages(&refs).map_err(|e| e.to_string())?;
    let secs = started.elapsed().as_secs_f64();
    if vectors.len() != texts.len() {
        return Err("wrong number of vectors".into());
    }
    Ok(secs)
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
    let embedder =
        LocalEmbedder::load_with(&args.model, args.options).map_err(|e| e.to_string())?;
    let load_secs = started.elapsed().as_secs_f64();

    // Warm up allocator, thread pools and caches on a slice of each set.
    timed(&embedder, &input.short[..input.short.len().min(64)])?;
    timed(&embedder, &input.passages[..input.passages.len().min(32)])?;

    let short_secs = timed(&embedder, &input.short)?;
    let passage_secs = timed(&embedder, &input.passages)?;

    let mut latencies = Vec::new();
    for query in input.queries.iter().cycle().take(args.queries) {
        let started = Instant::now();
        embedder.embed_query(query).map_err(|e| e.to_string())?;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);

    let report = serde_json::json!({
        "model": embedder.identity().key(),
        "options": format!("{:?}", embedder.options()),
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
