#![allow(clippy::unwrap_used, clippy::expect_used)]
//! PDF files found by the walk are indexed by page and found by keyword search; damaged ones
//! are skipped with a reason.

use std::sync::atomic::AtomicBool;

use exai_kb::ingest::{self, SkipReason, UntrustedFilter};
use exai_kb::model::{Format, Mode, SearchRequest};
use exai_kb::{CategoryMap, IndexRequest, Kb, KbOptions};
use lopdf::content::{Content, Operation};
use lopdf::{Bookmark, Document, Object, Stream, dictionary};

/// A PDF of one page per text, with an outline entry per `(title, page)` (pages from 1).
fn build_pdf(pages: &[&str], outline: &[(&str, usize)]) -> Vec<u8> {
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font = doc.add_object(dictionary! {
        "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica",
    });
    let resources = doc.add_object(dictionary! { "Font" => dictionary! { "F1" => font } });
    let mut kids = Vec::new();
    for text in pages {
        let content = Content {
            operations: vec![
                Operation::new("BT", vec![]),
                Operation::new("Tf", vec!["F1".into(), 18.into()]),
                Operation::new("Td", vec![72.into(), 700.into()]),
                Operation::new("Tj", vec![Object::string_literal(*text)]),
                Operation::new("ET", vec![]),
            ],
        };
        let content_id = doc.add_object(Stream::new(dictionary! {}, content.encode().unwrap()));
        kids.push(doc.add_object(dictionary! {
            "Type" => "Page", "Parent" => pages_id, "Contents" => content_id,
        }));
    }
    for (title, page) in outline {
        doc.add_bookmark(
            Bookmark::new(title.to_string(), [0.0; 3], 0, kids[page - 1]),
            None,
        );
    }
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages",
            "Kids" => kids.iter().map(|k| Object::from(*k)).collect::<Vec<_>>(),
            "Count" => pages.len() as i64,
            "Resources" => resources,
            "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
        }),
    );
    let mut catalog = dictionary! { "Type" => "Catalog", "Pages" => pages_id };
    if let Some(outline) = doc.build_outline() {
        catalog.set("Outlines", outline);
    }
    let catalog = doc.add_object(catalog);
    doc.trailer.set("Root", catalog);
    let mut bytes = Vec::new();
    doc.save_to(&mut bytes).unwrap();
    bytes
}

#[test]
fn parse_bytes_reads_pages_and_outline() {
    let bytes = build_pdf(
        &[
            "Cover of the manual",
            "Install the frobnicator",
            "Every option listed",
        ],
        &[("Installation", 2), ("Options", 3)],
    );
    let doc = ingest::parse_bytes(
        Format::Pdf,
        &bytes,
        "docs/manual.pdf",
        UntrustedFilter::builtin(),
    )
    .unwrap();
    assert_eq!(doc.title, "manual");
    let sections: Vec<(String, &str)> = doc
        .sections
        .iter()
        .map(|s| (s.headings.join(" > "), s.text.as_str()))
        .collect();
    assert_eq!(
        sections,
        [
            ("Page 1".to_string(), "Cover of the manual"),
            ("Installation".to_string(), "Install the frobnicator"),
            ("Options".to_string(), "Every option listed"),
        ]
    );
    let broken = &bytes[..bytes.len() / 3];
    let result = ingest::parse_bytes(Format::Pdf, broken, "x.pdf", UntrustedFilter::builtin());
    assert!(
        matches!(result, Err(SkipReason::Corrupt | SkipReason::Empty)),
        "{result:?}"
    );
}

#[test]
fn indexing_a_directory_with_a_pdf_finds_its_text() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    let pdf = build_pdf(
        &[
            "Welcome",
            "The quuxification step needs a warm cache",
            "Appendix",
        ],
        &[("Setup", 2), ("Appendix", 3)],
    );
    std::fs::write(docs.join("guide.pdf"), pdf).unwrap();
    std::fs::write(docs.join("broken.pdf"), b"%PDF-1.4\ngarbage").unwrap();
    std::fs::write(docs.join("notes.md"), "# Notes\n\nNothing about caches.\n").unwrap();
    let kb = Kb::open(
        &tmp.path().join("kb.sqlite"),
        None,
        KbOptions::default(),
        CategoryMap::default(),
    )
    .unwrap();
    let req = IndexRequest {
        roots: vec![docs.clone()],
        source: "docs".into(),
        ..Default::default()
    };
    let report = kb.index(&req, &|_| {}, &AtomicBool::new(false)).unwrap();
    assert_eq!(report.by_format.get("pdf"), Some(&1), "{report:?}");
    assert_eq!(
        report.skipped.get(SkipReason::Corrupt.as_str()),
        Some(&1),
        "{report:?}"
    );
    let mut search = SearchRequest::new("quuxification");
    search.mode = Mode::Keyword;
    let resp = kb.search(&search).unwrap();
    assert_eq!(resp.hits.len(), 1, "{resp:?}");
    assert_eq!(resp.hits[0].path, "guide.pdf");
    assert_eq!(resp.hits[0].section, "Setup");
}
