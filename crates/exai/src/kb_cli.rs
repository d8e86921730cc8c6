//! `exai index`, `exai search`, `exai sources`, `exai eval`: the knowledge base from the shell.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use exai_core::Loaded;
use exai_kb::{CategoryMap, DocType, Filters, Kb, KbOptions, Mode, Progress, SearchRequest};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Args)]
pub struct IndexArgs {
    /// Files or directories to index, or a web site's URL (https://…: crawled within its path).
    #[arg(required = true, value_name = "PATH|URL")]
    pub paths: Vec<PathBuf>,
    /// Source name to file the documents under (e.g. react, rust-book; for a URL default its
    /// host).
    #[arg(long)]
    pub source: Option<String>,
    /// A crawl's most pages (default kb.crawl_max_pages).
    #[arg(long, value_name = "N")]
    pub max_pages: Option<usize>,
    /// A crawl's most links away from the start page (default kb.crawl_max_depth).
    #[arg(long, value_name = "N")]
    pub max_depth: Option<u32>,
    /// Render script-built pages in headless Chromium: auto, always or never (default kb.render).
    #[arg(long, value_name = "MODE", value_parser = parse_render)]
    pub render: Option<exai_core::RenderMode>,
    /// Technology label (default: the source name).
    #[arg(long)]
    pub technology: Option<String>,
    /// Only files matching this glob (repeatable), e.g. '*.md'.
    #[arg(long = "include", value_name = "GLOB")]
    pub include: Vec<String>,
    /// Skip files matching this glob (repeatable).
    #[arg(long = "exclude", value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Show what would be indexed, without writing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Remove documents whose files are gone.
    #[arg(long)]
    pub prune: bool,
    /// Drop every vector and embed again (after changing the embedding model).
    #[arg(long)]
    pub reembed: bool,
    /// Store text now, embed later (keyword search works at once).
    #[arg(long)]
    pub no_embed: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct SearchArgs {
    pub query: String,
    #[arg(long, default_value_t = 10)]
    pub limit: usize,
    /// hybrid, keyword or semantic.
    #[arg(long, default_value = "hybrid")]
    pub mode: String,
    /// A source, or a library name (its newest version unless --version says otherwise).
    #[arg(long)]
    pub source: Vec<String>,
    /// The version of the one --source library: exact, or a semver range such as '^18'.
    #[arg(long = "version", value_name = "VERSION")]
    pub lib_version: Option<String>,
    #[arg(long)]
    pub technology: Vec<String>,
    #[arg(long)]
    pub category: Vec<String>,
    #[arg(long)]
    pub path_prefix: Option<String>,
    /// text or code.
    #[arg(long)]
    pub doc_type: Option<String>,
    #[arg(long)]
    pub min_score: Option<f32>,
    /// Neighbouring chunks to show on each side (0–3).
    #[arg(long, default_value_t = 0)]
    pub context: usize,
    /// Best chunk per document only.
    #[arg(long)]
    pub group: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct EvalArgs {
    /// Labeled questions (JSON: {questions: [{id, query, relevant: [paths]}]}).
    #[arg(long, default_value = "bench/eval/rust_book_questions.json")]
    pub questions: PathBuf,
    /// Only search this source.
    #[arg(long)]
    pub source: Option<String>,
    /// Modes to evaluate (default: keyword, semantic, hybrid).
    #[arg(long = "mode")]
    pub modes: Vec<String>,
    #[arg(long)]
    pub json: bool,
}

fn parse_render(s: &str) -> std::result::Result<exai_core::RenderMode, String> {
    match s {
        "auto" => Ok(exai_core::RenderMode::Auto),
        "always" => Ok(exai_core::RenderMode::Always),
        "never" => Ok(exai_core::RenderMode::Never),
        _ => Err(format!("`{s}`: use auto, always or never")),
    }
}

fn open(loaded: &Loaded, need_embedder: bool) -> Result<Kb> {
    let embedder = match exai_kb::config::build_embedder(loaded) {
        Ok(e) => e,
        Err(e) if !need_embedder => {
            eprintln!("note: semantic search is off ({e})");
            None
        }
        Err(e) => return Err(e).context("cannot load the embedding model (index with --no-embed for keyword search now, or set embed.backend = none)"),
    };
    // One command, one process: a background ANN build would die with it (`exai index`
    // refreshes the index file at its end; searches meanwhile scan exactly).
    let options = KbOptions {
        ann_build_on_search: false,
        ..KbOptions::from_config(loaded)
    };
    Ok(Kb::open_at(
        exai_kb::config::location(loaded)?,
        embedder,
        options,
        CategoryMap::from_config(loaded),
    )?)
}

/// A terminal bar, or a line every few seconds when stderr is not a terminal.
struct Reporter {
    bar: Option<ProgressBar>,
    phase: Mutex<(String, Instant)>,
}

impl Reporter {
    fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {msg:<10} [{bar:30}] {pos}/{len} ({per_sec}, eta {eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar
        });
        Self {
            bar,
            phase: Mutex::new((String::new(), Instant::now() - Duration::from_secs(60))),
        }
    }

    fn update(&self, p: &Progress) {
        let (phase, done, total, extra) = match p {
            Progress::Discovered { files, skipped } => {
                ("files", 0, *files, format!("{skipped} skipped"))
            }
            Progress::Files {
                done,
                total,
                chunks,
            } => ("files", *done, *total, format!("{chunks} chunks")),
            Progress::Embedding { done, total } => ("embedding", *done, *total, String::new()),
            Progress::Fetching {
                fetched,
                queued,
                failed,
            } => (
                "fetching",
                *fetched,
                fetched + queued,
                format!("{failed} failed"),
            ),
        };
        if let Some(bar) = &self.bar {
            let mut last = self.phase.lock().unwrap_or_else(|p| p.into_inner());
            if last.0 != phase {
                bar.reset();
                last.0 = phase.to_string();
            }
            bar.set_length(total as u64);
            bar.set_position(done as u64);
            bar.set_message(phase.to_string());
            return;
        }
        let mut last = self.phase.lock().unwrap_or_else(|p| p.into_inner());
        let phase_changed = last.0 != phase;
        if phase_changed
            || last.1.elapsed() >= Duration::from_secs(5)
            || (done == total && total > 0)
        {
            // Progress is best effort: a closed stderr (`exai index … 2>&1 | head`) must not
            // stop the run.
            let _ = writeln!(std::io::stderr(), "{phase}: {done}/{total} {extra}");
            *last = (phase.to_string(), Instant::now());
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

pub fn index(args: IndexArgs, loaded: &Loaded) -> Result<ExitCode> {
    let kb = open(
        loaded,
        !args.no_embed
            && !args.dry_run
            && loaded.config.embed.backend != exai_core::EmbedBackend::None,
    )?;
    let req = exai_sources::Request {
        specs: args.paths.iter().map(|p| p.display().to_string()).collect(),
        source: args.source,
        technology: args.technology,
        include: args.include,
        exclude: args.exclude,
        dry_run: args.dry_run,
        prune: args.prune,
        reembed: args.reembed,
        skip_embedding: args.no_embed,
        max_pages: args.max_pages,
        max_depth: args.max_depth,
        render: args.render,
    };
    let settings = exai_sources::Settings::from_loaded(loaded);
    let reporter = Reporter::new();
    let cancel = AtomicBool::new(false);
    let report = exai_sources::index(&kb, &req, &settings, &|p| reporter.update(p), &cancel);
    reporter.finish();
    print_report(&report?, args.json)
}

#[derive(Args)]
pub struct RefreshArgs {
    /// The source to refresh (default: every source).
    pub source: Option<String>,
    /// Store text now, embed later.
    #[arg(long)]
    pub no_embed: bool,
    /// Print the reports as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn refresh(args: RefreshArgs, loaded: &Loaded) -> Result<ExitCode> {
    let kb = open(
        loaded,
        !args.no_embed && loaded.config.embed.backend != exai_core::EmbedBackend::None,
    )?;
    let names: Vec<String> = match args.source {
        Some(source) => vec![source],
        None => exai_sources::origins(&kb)?
            .into_iter()
            .map(|(name, _)| name)
            .collect(),
    };
    let settings = exai_sources::Settings::from_loaded(loaded);
    if names.is_empty() {
        println!("no sources to refresh: `exai index PATH --source NAME` first");
    }
    let mut failed = 0;
    for name in names {
        let reporter = Reporter::new();
        let cancel = AtomicBool::new(false);
        let report = exai_sources::refresh(
            &kb,
            &name,
            &settings,
            args.no_embed,
            &|p| reporter.update(p),
            &cancel,
        );
        reporter.finish();
        match report {
            Ok(report) => {
                print_report(&report, args.json)?;
            }
            Err(e) => {
                failed += 1;
                eprintln!("error: refreshing `{name}`: {e}");
            }
        }
    }
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn print_report(report: &exai_kb::IndexReport, json: bool) -> Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(ExitCode::SUCCESS);
    }
    // What would change first, then what would be skipped.
    let (skips, changes): (Vec<_>, Vec<_>) = report.plan.iter().partition(|p| p.action == "skip");
    for planned in changes.into_iter().chain(skips) {
        match &planned.reason {
            Some(reason) => println!("{:<7} {}  ({reason})", planned.action, planned.path),
            None => println!("{:<7} {}", planned.action, planned.path),
        }
    }
    let verb = if report.dry_run {
        "would index"
    } else {
        "indexed"
    };
    println!(
        "{verb} source `{}`: {} files seen, {} added, {} updated, {} unchanged, {} removed",
        report.source,
        report.files_seen,
        report.added,
        report.updated,
        report.unchanged,
        report.removed
    );
    if !report.by_format.is_empty() {
        let formats: Vec<String> = report
            .by_format
            .iter()
            .map(|(f, n)| format!("{n} {f}"))
            .collect();
        println!("  files read: {}", formats.join(", "));
    }
    let chunk_word = if report.dry_run {
        "chunks estimated"
    } else {
        "chunks written"
    };
    println!(
        "  {} {chunk_word} ({:.0} chunks/s)",
        report.chunks_written, report.chunks_per_second
    );
    if report.chunks_dropped > 0 {
        println!(
            "  {} chunks left out by kb.max_chunks_per_file",
            report.chunks_dropped
        );
    }
    if report.flagged.total() > 0 {
        println!(
            "  untrusted spans flagged in the files read: {} (see kb.untrusted_content)",
            report.flagged.describe()
        );
    }
    if !report.skipped.is_empty() {
        let skipped: Vec<String> = report
            .skipped
            .iter()
            .map(|(r, n)| format!("{n} {r}"))
            .collect();
        println!("  skipped: {}", skipped.join(", "));
    }
    if !report.dry_run {
        match &report.embedding_model {
            Some(m) => println!(
                "  {} texts embedded with {m}; {} waiting for vectors",
                report.texts_embedded, report.texts_without_vectors
            ),
            None => println!(
                "  no embedding model: keyword search only ({} texts without vectors)",
                report.texts_without_vectors
            ),
        }
    }
    println!("  {:.1} s", report.seconds);
    Ok(ExitCode::SUCCESS)
}

pub fn search(args: SearchArgs, loaded: &Loaded) -> Result<ExitCode> {
    let Some(mode) = Mode::parse(&args.mode) else {
        bail!(
            "--mode must be hybrid, keyword or semantic, not `{}`",
            args.mode
        )
    };
    let doc_type = match args.doc_type.as_deref() {
        None => None,
        Some(t) => Some(
            DocType::parse(t)
                .with_context(|| format!("--doc-type must be text or code, not `{t}`"))?,
        ),
    };
    let kb = open(loaded, false)?;
    let mut req = SearchRequest::new(args.query);
    req.limit = args.limit;
    req.mode = mode;
    req.filters = Filters {
        sources: args.source,
        technologies: args.technology,
        categories: args.category,
        path_prefix: args.path_prefix,
        doc_type,
    };
    req.min_score = args.min_score;
    req.context = args.context;
    req.group_by_document = args.group;
    req.version = args.lib_version;
    let resp = kb.search(&req)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&resp)?);
        return Ok(ExitCode::SUCCESS);
    }
    for note in &resp.notes {
        eprintln!("note: {note}");
    }
    if resp.hits.is_empty() {
        println!(
            "no results ({} search, {:.1} ms)",
            resp.mode.as_str(),
            resp.took_ms
        );
        return Ok(ExitCode::SUCCESS);
    }
    for (i, h) in resp.hits.iter().enumerate() {
        let section = if h.section.is_empty() {
            String::new()
        } else {
            format!(" › {}", h.section)
        };
        println!("{:>2}. [{:.3}] {}{section}", i + 1, h.score, h.title);
        println!(
            "    {}:{}  chunk {}  ({}, {})",
            h.source,
            h.path,
            h.chunk_id,
            h.category,
            h.doc_type.as_str()
        );
        for line in h.snippet.lines().take(6) {
            println!("    │ {line}");
        }
    }
    println!(
        "{} results, {} search, {:.1} ms",
        resp.hits.len(),
        resp.mode.as_str(),
        resp.took_ms
    );
    Ok(ExitCode::SUCCESS)
}

pub fn sources(json: bool, loaded: &Loaded) -> Result<ExitCode> {
    let kb = open(loaded, false)?;
    let sources = kb.sources()?;
    let status = kb.status()?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "sources": sources, "status": status })
            )?
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("database: {}", status.database);
    match (
        &status.embedding_model,
        status.embedding_backend,
        &status.embedding_precision,
    ) {
        (Some(model), Some(backend), Some(precision)) => {
            println!("embedding: {backend} {precision} ({model})")
        }
        _ => println!("embedding: none — keyword search only"),
    }
    match &status.index_embedding {
        Some(index) => println!("index vectors: {} ({})", index.describe(), index.model),
        None => println!("index vectors: none yet"),
    }
    println!("search modes: {}", status.search_modes.join(", "));
    println!(
        "untrusted content: {} (hidden text, invisible characters, comments and instructions to an AI {})",
        status.untrusted_content,
        match status.untrusted_content {
            "drop" => "are left out of the index",
            "mark" => "are indexed inside [untrusted: …] markers",
            _ => "are indexed as written",
        }
    );
    if sources.is_empty() {
        println!("no sources indexed yet: `exai index PATH --source NAME`");
    }
    for lib in kb.libraries()?.iter().filter(|l| l.versions.len() > 1) {
        println!("versions of {}: {}", lib.name, lib.versions.join(", "));
    }
    for s in sources {
        println!(
            "{:<20} {:>7} docs {:>8} chunks {:>8} without vectors  technology {}  updated {}  flagged: {}",
            s.name,
            s.documents,
            s.chunks,
            s.chunks_without_vectors,
            s.technology,
            s.updated_at,
            s.flagged.describe()
        );
        if let Some(origin) = exai_sources::Origin::of(&s) {
            println!("{:<20} from {}", "", origin.describe());
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn eval(args: EvalArgs, loaded: &Loaded) -> Result<ExitCode> {
    let set = exai_kb::eval::QuestionSet::load(&args.questions)?;
    let modes: Vec<Mode> = if args.modes.is_empty() {
        vec![Mode::Keyword, Mode::Semantic, Mode::Hybrid]
    } else {
        args.modes
            .iter()
            .map(|m| {
                Mode::parse(m).with_context(|| {
                    format!("--mode must be hybrid, keyword or semantic, not `{m}`")
                })
            })
            .collect::<Result<_>>()?
    };
    let kb = open(loaded, modes.iter().any(|m| *m != Mode::Keyword))?;
    let filters = Filters {
        sources: args.source.into_iter().collect(),
        ..Default::default()
    };
    let scores = exai_kb::eval::evaluate(&kb, &set, &modes, &filters)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&scores)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{} questions ({})", set.questions.len(), set.corpus);
    println!(
        "{:<10} {:>9} {:>9} {:>11} {:>9}",
        "mode", "nDCG@10", "MRR@10", "recall@10", "mean ms"
    );
    for s in &scores {
        println!(
            "{:<10} {:>9.4} {:>9.4} {:>11.4} {:>9.2}",
            s.mode, s.ndcg_at_10, s.mrr_at_10, s.recall_at_10, s.mean_ms
        );
    }
    Ok(ExitCode::SUCCESS)
}
