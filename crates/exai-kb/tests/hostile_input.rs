#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Pages written to hurt the indexer: deep nesting, huge tags and headings, blank-line floods.
//! Each runs on a thread with a small stack, so code that recurses on the input's nesting
//! overflows it and fails the test instead of passing on a large main-thread stack. Timings are
//! for BENCHMARKS-style runs, not asserted here; what is asserted is that the work completes and
//! produces bounded output.

use exai_kb::chunk::{ChunkOptions, chunk};
use exai_kb::ingest::{self, MAX_HEADING_CHARS, SkipReason};
use exai_kb::model::{Format, ParsedDoc};

/// Enough for the parsers' own frames, far too little for one frame per level of nesting.
const SMALL_STACK: usize = 256 * 1024;

fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(SMALL_STACK)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

fn parse(format: Format, text: String) -> Result<ParsedDoc, SkipReason> {
    on_small_stack(move || {
        let doc = ingest::parse(format, &text, "docs/page.html")?;
        // The chunker runs on the same thread, as indexing does.
        let (chunks, _) = chunk(&doc, &ChunkOptions::default());
        assert!(!chunks.is_empty());
        Ok(doc)
    })
}

fn all_text(doc: &ParsedDoc) -> String {
    doc.sections
        .iter()
        .map(|s| s.text.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn hundred_thousand_nested_divs() {
    let n = 100_000;
    let page = format!(
        "<html><body><p>before</p>{}deep text{}<p>after</p></body></html>",
        "<div>".repeat(n),
        "</div>".repeat(n)
    );
    let doc = parse(Format::Html, page).unwrap();
    let text = all_text(&doc);
    assert!(
        text.contains("before") && text.contains("deep text") && text.contains("after"),
        "{text}"
    );
}

#[test]
fn unclosed_nested_lists() {
    let page = format!("<body>{}item", "<ul><li>".repeat(100_000));
    let doc = parse(Format::Html, page).unwrap();
    assert!(all_text(&doc).contains("item"));
}

#[test]
fn heading_over_deep_nesting_and_long_headings_are_bounded() {
    // Every text node of this heading sits at a different depth: walking up from each one
    // to the heading was quadratic.
    let n = 50_000;
    let page = format!(
        "<body><h1>{}</h1><p>body</p><h2>{}</h2><p>{}</p></body>",
        "<span>word ".repeat(n),
        "long ".repeat(200_000),
        "text under the long heading. ".repeat(20_000),
    );
    let doc = parse(Format::Html, page).unwrap();
    assert!(doc.title.chars().count() <= MAX_HEADING_CHARS + 1);
    for s in &doc.sections {
        for h in &s.headings {
            assert!(h.chars().count() <= MAX_HEADING_CHARS + 1);
        }
    }
    let (chunks, _) = chunk(&doc, &ChunkOptions::default());
    assert!(chunks.len() > 100);
    assert!(
        chunks
            .iter()
            .all(|c| c.section.len() < 2 * 6 * 4 * MAX_HEADING_CHARS)
    );
}

#[test]
fn one_tag_with_a_hundred_thousand_attributes() {
    let attrs: String = (0..100_000).map(|i| format!(" a{i}")).collect();
    let page = format!("<body><div{attrs} class=x>kept</div></body>");
    let doc = parse(Format::Html, page).unwrap();
    assert_eq!(all_text(&doc), "kept");
}

#[test]
fn formatting_elements_that_multiply() {
    // html5ever alone builds n²/2 elements from these n tags.
    let page: String = (0..20_000).map(|i| format!("<b c{i}><p>y")).collect();
    assert!(parse(Format::Html, page).is_ok());
    // Misnested formatting run through the adoption agency each time.
    let page = format!("<body>{}end", "<a><div></a>x".repeat(50_000));
    assert!(all_text(&parse(Format::Html, page).unwrap()).contains("end"));
    // Elements re-opened in every block are refused once the tree outgrows the page.
    let opened: String = (0..60).map(|i| format!("<i c{i}>")).collect();
    let page = format!("<body><p>{opened}</p>{}", "<div>y</div>".repeat(50_000));
    assert_eq!(parse(Format::Html, page).err(), Some(SkipReason::Malformed));
}

#[test]
fn deep_tables_and_foreign_content() {
    let page = format!("<body>{}cell", "<table><tr><td>".repeat(30_000));
    assert!(all_text(&parse(Format::Html, page).unwrap()).contains("cell"));
    // Inside `<svg>`, `<style>` is an ordinary element that nests (and `<svg>` is skipped).
    let page = format!("<body><p>kept</p>{}x", "<svg><style>".repeat(50_000));
    assert_eq!(all_text(&parse(Format::Html, page).unwrap()), "kept");
}

#[test]
fn markdown_nested_blockquotes_and_long_headings() {
    let n = 100_000;
    let text = format!("# Title\n\n{} quoted\n", ">".repeat(n));
    let doc = parse(Format::Markdown, text).unwrap();
    assert!(all_text(&doc).contains("quoted"));
    let lines: String = (1..=n)
        .map(|i| format!("{} level {i}\n", ">".repeat(i % 500)))
        .collect();
    assert!(parse(Format::Markdown, lines).is_ok());
    let text = format!(
        "# {}\n\n{}",
        "heading ".repeat(200_000),
        "Paragraph text here.\n\n".repeat(20_000)
    );
    let doc = parse(Format::Markdown, text).unwrap();
    assert!(doc.title.chars().count() <= MAX_HEADING_CHARS + 1);
    let front = format!("---\ntitle: {}\n---\nbody\n", "t".repeat(1_000_000));
    let doc = parse(Format::Markdown, front).unwrap();
    assert!(doc.title.chars().count() <= MAX_HEADING_CHARS + 1);
}

#[test]
fn chunker_on_blank_line_floods_and_long_words() {
    // A code block too big for one chunk, made of blank lines between a few words: carrying
    // the overlap used to insert at the front of a list, once per blank line.
    let text = format!("```\n{}\n```", "word\n\n\n\n".repeat(200_000));
    let doc = parse(Format::Markdown, text).unwrap();
    let (chunks, _) = chunk(&doc, &ChunkOptions::default());
    assert!(!chunks.is_empty());
    let text = format!("{} end", "!".repeat(1_000_000));
    assert!(parse(Format::Text, text).is_ok());
}

#[test]
fn front_matter_nested_deeply() {
    let yaml_map = |depth: usize| -> String {
        (0..depth)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect()
    };
    let yaml_seq = |depth: usize| format!("a:\n  {}x\n", "- ".repeat(depth));
    let toml_dotted = |depth: usize| format!("[{}]\nx = 1\n", vec!["a"; depth].join("."));
    for depth in [20, 40, 10_000] {
        for (fence, block) in [
            ("---", yaml_map(depth)),
            ("---", yaml_seq(depth)),
            ("+++", toml_dotted(depth)),
        ] {
            let text = format!("{fence}\n{block}{fence}\n# Title\n\nBody text.\n");
            let doc = parse(Format::Markdown, text).unwrap();
            // Shallow blocks are read; deep ones are ignored, the page indexed all the same.
            assert_eq!(doc.metadata.is_empty(), depth > 20, "{fence} {depth}");
            assert_eq!(all_text(&doc), "Body text.");
        }
    }
}
