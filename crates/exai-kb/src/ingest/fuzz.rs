//! Entry points of the fuzz targets in `fuzz/`, one per target, each taking arbitrary bytes.
//! The targets call nothing else, and `tests/fuzz_corpus.rs` replays the committed corpus
//! through the same functions, so a finding stays fixed in builds without cargo-fuzz.
//!
//! Each function panics when an invariant of the pipeline breaks; a panic, a stack overflow or
//! a timeout in the fuzzer is a finding.

use super::{MAX_HEADING_CHARS, parse};
use crate::chunk::{ChunkOptions, chunk};
use crate::model::{DocType, Format, ParsedDoc, Section};

/// Largest input whose tree is compared with html5ever's own parser's.
const DIFFERENTIAL_MAX_BYTES: usize = 8 * 1024;

/// The HTML extractor, then the chunker on what it extracted. Below the nesting cap, the tree
/// is also checked against html5ever's own parser: it must be the same.
pub fn html(data: &[u8]) {
    extract(Format::Html, data);
    let text = String::from_utf8_lossy(data);
    // The builder holds at most two handles per start tag (the stack and the list of active
    // formatting elements) plus three of its own, so with this few tags the cap never applies.
    // html5ever's own parser is quadratic in a tag's attributes: small inputs only.
    let tags = text.bytes().filter(|b| *b == b'<').count();
    if text.len() <= DIFFERENTIAL_MAX_BYTES
        && 2 * tags + 3 < super::html_dom::MAX_OPEN_ELEMENTS
        && let Ok(ours) = super::html_dom::parse_document(&text)
    {
        let theirs = scraper::Html::parse_document(&text);
        assert_eq!(ours.html(), theirs.html());
    }
}

/// The Markdown extractor, then the chunker on what it extracted.
pub fn markdown(data: &[u8]) {
    extract(Format::Markdown, data);
}

fn extract(format: Format, data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(doc) = parse(format, &text, "docs/page.src") else {
        return;
    };
    assert!(doc.title.chars().count() <= MAX_HEADING_CHARS + 1);
    // The default filter drops what it flags: no region marker of an extractor and no
    // character that only hides is left anywhere.
    let leaked = |text: &str| {
        text.chars().any(|c| {
            matches!(c, '\u{FDD0}'..='\u{FDEF}' | '\u{200B}' | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
        })
    };
    assert!(!leaked(&doc.title), "{:?}", doc.title);
    for section in &doc.sections {
        assert!(!leaked(&section.text), "{:?}", section.text);
        assert!(
            !section.headings.iter().any(|h| leaked(h)),
            "{:?}",
            section.headings
        );
        // Levels 1 to 6, each heading below the one before.
        assert!(section.headings.len() <= 6, "{:?}", section.headings);
        for heading in &section.headings {
            assert!(heading.chars().count() <= MAX_HEADING_CHARS + 1);
        }
    }
    check_chunks(&doc, &ChunkOptions::default());
}

/// The chunker on a document made of the input: its first bytes choose the options (small
/// budgets reach every splitting path), the rest is split into a text section and a code
/// section at the first NUL.
pub fn chunker(data: &[u8]) {
    let [a, b, c, rest @ ..] = data else {
        return;
    };
    let opts = ChunkOptions {
        max_tokens: 1 + usize::from(*a % 64),
        overlap_tokens: usize::from(*b % 32),
        max_chunks_per_file: 1 + usize::from(*c),
    };
    let text = String::from_utf8_lossy(rest);
    let (prose, code) = text.split_once('\0').unwrap_or((&text, ""));
    let heading = prose.lines().next().unwrap_or("").to_string();
    let doc = ParsedDoc {
        title: heading.clone(),
        sections: vec![
            Section {
                headings: vec![heading.clone(), "Usage".into()],
                text: prose.to_string(),
                doc_type: DocType::Text,
            },
            Section {
                headings: vec![heading],
                text: code.to_string(),
                doc_type: DocType::Code,
            },
        ],
        metadata: Default::default(),
        flagged: Default::default(),
    };
    check_chunks(&doc, &opts);
}

fn check_chunks(doc: &ParsedDoc, opts: &ChunkOptions) {
    let (chunks, dropped) = chunk(doc, opts);
    assert!(chunks.len() <= opts.max_chunks_per_file);
    if dropped > 0 {
        assert_eq!(chunks.len(), opts.max_chunks_per_file);
    }
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(c.position, i);
        assert!(!c.text.trim().is_empty());
        assert_eq!(c.tokens, crate::chunk::estimate_tokens(&c.text));
    }
}
