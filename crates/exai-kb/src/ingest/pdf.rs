//! PDF: text by page, each page a section named by the outline (bookmarks) entry covering it, or
//! `Page N` where the file has no outline.
//!
//! `lopdf` reads the structure (pages, outline, named destinations, encryption) and
//! `pdf-extract` the text of each page. Neither was written for hostile input, so a file is
//! bounded before and while they read it:
//! - its compressed streams are inflated once, up to [`MAX_INFLATED_BYTES`] in all, before
//!   `lopdf` loads it (a "PDF bomb" is refused, not expanded into memory);
//! - a page whose page-tree parents or form XObjects form a cycle is skipped (`pdf-extract`
//!   follows both by recursion, and a stack overflow would abort the process);
//! - at most [`MAX_PAGES`] pages and [`MAX_TEXT_CHARS`] characters are extracted;
//! - the work runs on its own thread under a deadline ([`DEADLINE`]); a panic inside the
//!   parsers is caught: on a page, the page is left out (after three such pages, the rest of
//!   the file too); outside the pages, the file is skipped as damaged. On a deadline the
//!   thread is left to finish on its own (a thread cannot be killed) and the file is skipped.
//!
//! The outline is walked here rather than with `lopdf`'s own outline reader, which follows
//! `First`/`Next` links without remembering where it has been (a cyclic outline would loop).

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use lopdf::{Dictionary, Document, Object, ObjectId};

use super::clip_heading;
use super::untrusted::strip_sentinels;
use super::walk::SkipReason;
use crate::model::{DocType, ParsedDoc, Section};

/// Most pages read from one file; the rest is not indexed.
pub const MAX_PAGES: usize = 2_000;
/// Most characters of text extracted from one file.
pub const MAX_TEXT_CHARS: usize = 8 * 1024 * 1024;
/// Most bytes a file's compressed streams may inflate to, all together.
pub const MAX_INFLATED_BYTES: u64 = 256 * 1024 * 1024;
/// Longest a file may take to read.
pub const DEADLINE: Duration = Duration::from_secs(60);
/// Most outline entries read, and their deepest nesting.
const MAX_OUTLINE_ENTRIES: usize = 10_000;
const MAX_OUTLINE_DEPTH: usize = 32;
/// Deepest nesting of form XObjects drawn by a page.
const MAX_FORM_DEPTH: usize = 32;
/// Longest chain of page-tree parents.
const MAX_PARENTS: usize = 256;
/// Pages the text extractor may fail on (panic) before the rest of a file is given up.
const MAX_PAGE_FAILURES: usize = 3;
/// The reading thread's stack: the parsers recurse on the file's nesting (bounded above).
const STACK_BYTES: usize = 32 * 1024 * 1024;

/// What a PDF yields before it becomes a document.
#[derive(Debug, Default)]
struct Extracted {
    title: Option<String>,
    pages: usize,
    /// Text of each page read, in order (page numbers from 1).
    texts: Vec<String>,
    /// Outline entries: first page and heading path, in page order.
    outline: Vec<(u32, Vec<String>)>,
}

/// Parse a PDF file's bytes into one section per page with text.
pub fn parse(bytes: &[u8], fallback_title: &str) -> Result<ParsedDoc, SkipReason> {
    let owned = bytes.to_vec();
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("exai-pdf".into())
        .stack_size(STACK_BYTES)
        .spawn(move || {
            let started = Instant::now();
            let result = catch_unwind(AssertUnwindSafe(|| read(&owned, started)))
                .unwrap_or(Err(SkipReason::Corrupt));
            // The receiver is gone only after a deadline, when nobody waits for the result.
            let _ = tx.send(result);
        });
    if spawned.is_err() {
        return Err(SkipReason::Unreadable);
    }
    // Pages stop being read at the deadline; the margin is for the page being read then.
    let extracted = match rx.recv_timeout(DEADLINE + Duration::from_secs(5)) {
        Ok(result) => result?,
        Err(mpsc::RecvTimeoutError::Timeout) => return Err(SkipReason::TimedOut),
        Err(mpsc::RecvTimeoutError::Disconnected) => return Err(SkipReason::Corrupt),
    };
    Ok(into_doc(extracted, fallback_title))
}

/// The document: one section per page with text, under the heading path of the outline entry
/// covering it (the last one starting on or before it) or `Page N`.
fn into_doc(extracted: Extracted, fallback_title: &str) -> ParsedDoc {
    let mut sections = Vec::new();
    for (i, text) in extracted.texts.iter().enumerate() {
        if text.trim().is_empty() {
            continue;
        }
        let page = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let covering = extracted
            .outline
            .partition_point(|(first, _)| *first <= page);
        let headings = match covering.checked_sub(1) {
            Some(entry) => extracted.outline[entry].1.clone(),
            None => vec![format!("Page {page}")],
        };
        sections.push(Section {
            headings,
            text: text.trim().to_string(),
            doc_type: DocType::Text,
        });
    }
    let mut metadata = serde_json::Map::new();
    metadata.insert("pages".into(), extracted.pages.into());
    ParsedDoc {
        title: extracted
            .title
            .unwrap_or_else(|| fallback_title.to_string()),
        sections,
        metadata,
        flagged: Default::default(),
    }
}

/// Everything that touches the parsers, on the reading thread.
fn read(bytes: &[u8], started: Instant) -> Result<Extracted, SkipReason> {
    check_inflation(bytes, MAX_INFLATED_BYTES)?;
    let mut doc = Document::load_mem(bytes).map_err(|e| match e {
        lopdf::Error::Decryption(_) => SkipReason::Encrypted,
        _ => SkipReason::Corrupt,
    })?;
    // Many files are encrypted only to carry permissions, with an empty password.
    if doc.is_encrypted() && doc.decrypt("").is_err() {
        return Err(SkipReason::Encrypted);
    }
    let pages = doc.get_pages();
    if pages.is_empty() {
        return Err(SkipReason::Empty);
    }
    let numbers: HashMap<ObjectId, u32> = pages.iter().map(|(n, id)| (*id, *n)).collect();
    let mut out = Extracted {
        title: info_title(&doc),
        pages: pages.len(),
        outline: read_outline(&doc, &numbers),
        texts: Vec::new(),
    };
    let mut chars = 0;
    let mut failures = 0;
    for (&number, &id) in pages.iter().take(MAX_PAGES) {
        if chars >= MAX_TEXT_CHARS || started.elapsed() >= DEADLINE {
            tracing::warn!(
                pages = pages.len(),
                read = out.texts.len(),
                "PDF cut short: text or time limit reached"
            );
            break;
        }
        let text = match page_text(&doc, number, id) {
            Some(text) => text,
            None => {
                failures += 1;
                String::new()
            }
        };
        // A damaged font or stream usually fails every page after it: stop, keeping what was
        // read, rather than fail (and report) each page.
        if failures >= MAX_PAGE_FAILURES {
            tracing::warn!(
                page = number,
                "PDF cut short: the text extractor failed on {failures} pages"
            );
            break;
        }
        chars += text.len();
        out.texts.push(text);
    }
    Ok(out)
}

/// One page's text (empty when the page has none readable or its structure is cyclic), or
/// `None` when the text extractor panicked on it.
fn page_text(doc: &Document, number: u32, id: ObjectId) -> Option<String> {
    if !parents_end(doc, id) || !forms_acyclic(doc, id) {
        tracing::warn!(page = number, "PDF page skipped: its structure is cyclic");
        return Some(String::new());
    }
    let mut text = String::new();
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut output = pdf_extract::PlainTextOutput::new(&mut text);
        pdf_extract::output_doc_page(doc, &mut output, number)
    }));
    match result {
        Ok(Ok(())) => Some(tidy(&text)),
        Ok(Err(e)) => {
            tracing::debug!(page = number, error = %e, "PDF page has no readable text");
            Some(String::new())
        }
        Err(_) => None,
    }
}

/// Lines without trailing blanks, runs of blank lines as one, and none of the characters that
/// only an extractor may write ([`strip_sentinels`]).
fn tidy(text: &str) -> String {
    let text = strip_sentinels(text);
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.lines().map(str::trim_end) {
        if line.is_empty() {
            blank += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank > 0 { "\n\n" } else { "\n" });
        }
        blank = 0;
        out.push_str(line);
    }
    out
}

/// Refuse a file whose zlib streams inflate past `limit` bytes in all. Streams are found by
/// their `stream`/`endstream` keywords, as a reader recovering a damaged file would.
fn check_inflation(bytes: &[u8], limit: u64) -> Result<(), SkipReason> {
    let mut total = 0u64;
    let mut at = 0;
    while let Some(found) = find(bytes, b"stream", at) {
        let mut start = found + b"stream".len();
        at = start;
        if bytes[found.saturating_sub(3)..found].ends_with(b"end") {
            continue;
        }
        start += match bytes.get(start..start + 2) {
            Some(b"\r\n") => 2,
            Some([b'\n', _]) | Some([b'\r', _]) => 1,
            _ => continue,
        };
        let end = find(bytes, b"endstream", start).unwrap_or(bytes.len());
        total += inflated_len(&bytes[start..end], limit - total + 1);
        if total > limit {
            return Err(SkipReason::Inflates);
        }
        at = end;
    }
    Ok(())
}

/// How many bytes `data` inflates to, up to `cap`; 0 when it is not zlib data. A truncated or
/// damaged stream counts up to where it breaks.
fn inflated_len(data: &[u8], cap: u64) -> u64 {
    let zlib = data.len() >= 2
        && data[0] & 0x0F == 8
        && u16::from_be_bytes([data[0], data[1]]).is_multiple_of(31);
    if !zlib {
        return 0;
    }
    let mut decoder = flate2::read::ZlibDecoder::new(data).take(cap);
    let mut count = 0u64;
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n @ 1..) = decoder.read(&mut buf) {
        count += n as u64;
    }
    count
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// The document information dictionary's `Title`, when it has words.
fn info_title(doc: &Document) -> Option<String> {
    let info = doc.trailer.get(b"Info").ok()?;
    let info = deref(doc, info)?.as_dict().ok()?;
    let title = lopdf::decode_text_string(deref(doc, info.get(b"Title").ok()?)?).ok()?;
    let title = heading(&title);
    (!title.is_empty()).then_some(title)
}

/// A title from the file as a heading: words single-spaced, clipped, without sentinels.
fn heading(text: &str) -> String {
    clip_heading(
        &strip_sentinels(text)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// An object with one level of reference followed.
fn deref<'a>(doc: &'a Document, object: &'a Object) -> Option<&'a Object> {
    match object {
        Object::Reference(id) => doc.get_object(*id).ok(),
        other => Some(other),
    }
}

fn dict_of<'a>(doc: &'a Document, object: &'a Object) -> Option<&'a Dictionary> {
    match deref(doc, object)? {
        Object::Dictionary(d) => Some(d),
        Object::Stream(s) => Some(&s.dict),
        _ => None,
    }
}

/// Whether the page's chain of `Parent` links ends (no cycle, bounded length).
fn parents_end(doc: &Document, page: ObjectId) -> bool {
    let mut seen = HashSet::new();
    let mut current = page;
    for _ in 0..MAX_PARENTS {
        if !seen.insert(current) {
            return false;
        }
        let Ok(dict) = doc.get_dictionary(current) else {
            return true;
        };
        match dict.get(b"Parent").and_then(Object::as_reference) {
            Ok(parent) => current = parent,
            Err(_) => return true,
        }
    }
    false
}

/// The page's resources, as `pdf-extract` finds them: its own or the nearest parent's.
fn page_resources(doc: &Document, page: ObjectId) -> Option<&Dictionary> {
    let mut current = doc.get_dictionary(page).ok()?;
    for _ in 0..MAX_PARENTS {
        if let Ok(resources) = current.get(b"Resources") {
            return dict_of(doc, resources);
        }
        let parent = current.get(b"Parent").and_then(Object::as_reference).ok()?;
        current = doc.get_dictionary(parent).ok()?;
    }
    None
}

/// Whether the form XObjects a page can draw nest without a cycle and not too deep.
fn forms_acyclic(doc: &Document, page: ObjectId) -> bool {
    let Some(resources) = page_resources(doc, page) else {
        return true;
    };
    let mut path = Vec::new();
    let mut budget = MAX_OUTLINE_ENTRIES;
    forms_ok(doc, resources, &mut path, &mut budget)
}

fn forms_ok(
    doc: &Document,
    resources: &Dictionary,
    path: &mut Vec<ObjectId>,
    budget: &mut usize,
) -> bool {
    let Some(xobjects) = resources.get(b"XObject").ok().and_then(|x| dict_of(doc, x)) else {
        return true;
    };
    for (_, entry) in xobjects.iter() {
        let Ok(id) = entry.as_reference() else {
            continue;
        };
        let Ok(Object::Stream(form)) = doc.get_object(id) else {
            continue;
        };
        if !matches!(form.dict.get(b"Subtype"), Ok(Object::Name(n)) if n == b"Form") {
            continue;
        }
        if path.contains(&id) || path.len() >= MAX_FORM_DEPTH || *budget == 0 {
            return false;
        }
        *budget -= 1;
        // A form without resources of its own draws with its caller's.
        let inner = form
            .dict
            .get(b"Resources")
            .ok()
            .and_then(|r| dict_of(doc, r))
            .unwrap_or(resources);
        path.push(id);
        let ok = forms_ok(doc, inner, path, budget);
        path.pop();
        if !ok {
            return false;
        }
    }
    true
}

/// The outline's entries that point at a page: (first page, heading path), sorted by page
/// with entries on the same page kept in outline order (the deepest last).
fn read_outline(doc: &Document, numbers: &HashMap<ObjectId, u32>) -> Vec<(u32, Vec<String>)> {
    let Some(first) = doc
        .catalog()
        .ok()
        .and_then(|c| c.get(b"Outlines").ok())
        .and_then(|o| dict_of(doc, o))
        .and_then(|o| o.get(b"First").and_then(Object::as_reference).ok())
    else {
        return Vec::new();
    };
    let mut entries = Vec::new();
    let mut path: Vec<String> = Vec::new();
    let mut seen = HashSet::new();
    // Depth-first in reading order: a node, its children, then its next sibling.
    let mut stack = vec![(first, 0usize)];
    while let Some((id, depth)) = stack.pop() {
        if entries.len() >= MAX_OUTLINE_ENTRIES || !seen.insert(id) {
            continue;
        }
        let Ok(node) = doc.get_dictionary(id) else {
            continue;
        };
        let title = node
            .get(b"Title")
            .ok()
            .and_then(|t| deref(doc, t))
            .and_then(|t| lopdf::decode_text_string(t).ok())
            .map(|t| heading(&t))
            .unwrap_or_default();
        path.truncate(depth);
        path.push(title);
        if let Some(page) = destination_page(doc, node, numbers) {
            entries.push((page, path.clone()));
        }
        if let Ok(next) = node.get(b"Next").and_then(Object::as_reference) {
            stack.push((next, depth));
        }
        if depth + 1 < MAX_OUTLINE_DEPTH
            && let Ok(child) = node.get(b"First").and_then(Object::as_reference)
        {
            stack.push((child, depth + 1));
        }
    }
    entries.sort_by_key(|(page, _)| *page);
    entries
}

/// The page an outline entry goes to: its `Dest`, or the `D` of its go-to action; either an
/// explicit destination (an array starting with the page) or a named one.
fn destination_page(
    doc: &Document,
    node: &Dictionary,
    numbers: &HashMap<ObjectId, u32>,
) -> Option<u32> {
    let dest = match node.get(b"Dest") {
        Ok(dest) => dest,
        Err(_) => dict_of(doc, node.get(b"A").ok()?)?.get(b"D").ok()?,
    };
    let dest = match deref(doc, dest)? {
        Object::Name(name) | Object::String(name, _) => named_destination(doc, name)?,
        other => other,
    };
    let target = match dest {
        Object::Array(items) => items.first()?,
        Object::Dictionary(d) => d.get(b"D").ok().and_then(|d| d.as_array().ok())?.first()?,
        _ => return None,
    };
    numbers.get(&target.as_reference().ok()?).copied()
}

/// A named destination, from the catalog's `Dests` dictionary or its `Names` → `Dests` name tree.
fn named_destination<'a>(doc: &'a Document, name: &[u8]) -> Option<&'a Object> {
    let catalog = doc.catalog().ok()?;
    if let Some(dests) = catalog.get(b"Dests").ok().and_then(|d| dict_of(doc, d))
        && let Ok(dest) = dests.get(name)
    {
        return deref(doc, dest);
    }
    let names = dict_of(doc, catalog.get(b"Names").ok()?)?;
    let root = names.get(b"Dests").ok()?;
    // The name tree, bounded and without revisiting a node.
    let mut stack = vec![root];
    let mut seen = 0;
    while let Some(node) = stack.pop() {
        seen += 1;
        if seen > MAX_OUTLINE_ENTRIES {
            return None;
        }
        let Some(node) = dict_of(doc, node) else {
            continue;
        };
        if let Ok(pairs) = node.get(b"Names").and_then(Object::as_array) {
            for pair in pairs.chunks(2) {
                if let [key, value] = pair
                    && deref(doc, key).and_then(|k| k.as_str().ok()) == Some(name)
                {
                    return deref(doc, value);
                }
            }
        }
        if let Ok(kids) = node.get(b"Kids").and_then(Object::as_array) {
            stack.extend(kids.iter());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use lopdf::content::{Content, Operation};
    use lopdf::{Bookmark, Stream, dictionary};

    /// A PDF of one page per text, in Helvetica, with an outline entry per `(title, page)`
    /// (pages from 1).
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
            let stream = Stream::new(dictionary! {}, content.encode().unwrap());
            let content_id = doc.add_object(stream);
            let page = doc.add_object(dictionary! {
                "Type" => "Page", "Parent" => pages_id, "Contents" => content_id,
            });
            kids.push(page);
        }
        let page_ids = kids.clone();
        doc.objects.insert(
            pages_id,
            Object::Dictionary(dictionary! {
                "Type" => "Pages",
                "Kids" => kids.into_iter().map(Object::from).collect::<Vec<_>>(),
                "Count" => pages.len() as i64,
                "Resources" => resources,
                "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
            }),
        );
        for (title, page) in outline {
            let mark = Bookmark::new(title.to_string(), [0.0, 0.0, 0.0], 0, page_ids[page - 1]);
            doc.add_bookmark(mark, None);
        }
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

    fn sections(doc: &ParsedDoc) -> Vec<(String, String)> {
        doc.sections
            .iter()
            .map(|s| (s.headings.join(" > "), s.text.clone()))
            .collect()
    }

    #[test]
    fn pages_become_sections_named_by_the_outline() {
        let bytes = build_pdf(
            &[
                "Cover page words",
                "Install the widget first",
                "Reference of every option",
            ],
            &[("Getting started", 2), ("Reference", 3)],
        );
        let doc = parse(&bytes, "manual").unwrap();
        assert_eq!(doc.title, "manual");
        assert_eq!(doc.metadata["pages"], serde_json::json!(3));
        assert_eq!(
            sections(&doc),
            [
                ("Page 1".into(), "Cover page words".into()),
                ("Getting started".into(), "Install the widget first".into()),
                ("Reference".into(), "Reference of every option".into()),
            ]
        );
    }

    #[test]
    fn without_an_outline_pages_are_numbered_and_blank_pages_dropped() {
        let bytes = build_pdf(&["First", "", "Third"], &[]);
        let doc = parse(&bytes, "f").unwrap();
        let heads: Vec<_> = sections(&doc).into_iter().map(|(h, _)| h).collect();
        assert_eq!(heads, ["Page 1", "Page 3"]);
    }

    #[test]
    fn damaged_files_are_skipped_not_panicked_on() {
        let good = build_pdf(&["Some text"], &[]);
        let cases: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"not a pdf at all".to_vec(),
            b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF".to_vec(),
            good[..good.len() / 2].to_vec(),
            good.iter().map(|b| if *b == b'/' { b'#' } else { *b }).collect(),
        ];
        for bytes in cases {
            match parse(&bytes, "f") {
                Ok(doc) => assert!(doc.sections.iter().all(|s| !s.text.is_empty())),
                Err(reason) => assert!(
                    matches!(reason, SkipReason::Corrupt | SkipReason::Empty),
                    "{reason:?}"
                ),
            }
        }
    }

    #[test]
    fn a_stream_that_inflates_past_the_limit_is_refused() {
        use std::io::Write;
        let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&vec![0u8; 4 * 1024 * 1024]).unwrap();
        let packed = encoder.finish().unwrap();
        let mut file = b"%PDF-1.5\n1 0 obj << /Filter /FlateDecode >>\nstream\n".to_vec();
        file.extend_from_slice(&packed);
        file.extend_from_slice(b"\nendstream\nendobj\n");
        assert_eq!(
            check_inflation(&file, 1024 * 1024),
            Err(SkipReason::Inflates)
        );
        assert_eq!(check_inflation(&file, 8 * 1024 * 1024), Ok(()));
    }

    #[test]
    fn cyclic_outlines_forms_and_parents_end() {
        let bytes = build_pdf(&["Looping text"], &[("Only", 1)]);
        let mut doc = Document::load_mem(&bytes).unwrap();
        let pages = doc.get_pages();
        let page = pages[&1];
        // The outline entry names itself as its next sibling and its first child.
        let first = doc
            .catalog()
            .unwrap()
            .get(b"Outlines")
            .and_then(Object::as_reference)
            .and_then(|o| doc.get_dictionary(o))
            .and_then(|o| o.get(b"First"))
            .and_then(Object::as_reference)
            .unwrap();
        let entry = doc.get_dictionary_mut(first).unwrap();
        entry.set("Next", first);
        entry.set("First", first);
        let numbers = pages.iter().map(|(n, id)| (*id, *n)).collect();
        assert_eq!(
            read_outline(&doc, &numbers),
            [(1, vec!["Only".to_string()])]
        );
        // A form that draws itself, and a page that is its own parent.
        let form = doc.new_object_id();
        let stream = Stream::new(
            dictionary! {
                "Type" => "XObject", "Subtype" => "Form",
                "Resources" => dictionary! { "XObject" => dictionary! { "X" => form } },
            },
            b"/X Do".to_vec(),
        );
        doc.objects.insert(form, Object::Stream(stream));
        let resources = dictionary! { "XObject" => dictionary! { "X" => form } };
        doc.get_dictionary_mut(page)
            .unwrap()
            .set("Resources", resources);
        assert!(!forms_acyclic(&doc, page));
        assert!(parents_end(&doc, page));
        doc.get_dictionary_mut(page).unwrap().set("Parent", page);
        assert!(!parents_end(&doc, page));
        assert_eq!(page_text(&doc, 1, page), Some(String::new()));
    }

    #[test]
    fn a_page_the_extractor_fails_on_is_left_out() {
        let bytes = build_pdf(&["First page", "Second page", "Third page"], &[]);
        let mut doc = Document::load_mem(&bytes).unwrap();
        let pages = doc.get_pages();
        // Without a media box anywhere up its page tree, the extractor panics on page 2.
        let media_box = || Object::from(vec![0.into(), 0.into(), 595.into(), 842.into()]);
        for n in [1, 3] {
            doc.get_dictionary_mut(pages[&n])
                .unwrap()
                .set("MediaBox", media_box());
        }
        let parent = doc
            .get_dictionary(pages[&2])
            .unwrap()
            .get(b"Parent")
            .and_then(Object::as_reference)
            .unwrap();
        doc.get_dictionary_mut(parent).unwrap().remove(b"MediaBox");
        let mut damaged = Vec::new();
        doc.save_to(&mut damaged).unwrap();
        let parsed = parse(&damaged, "f").unwrap();
        assert_eq!(
            sections(&parsed),
            [
                ("Page 1".into(), "First page".into()),
                ("Page 3".into(), "Third page".into()),
            ]
        );
    }

    fn encrypted(bytes: &[u8], user_password: &str) -> Vec<u8> {
        use lopdf::encryption::{EncryptionState, EncryptionVersion, Permissions};
        let mut doc = Document::load_mem(bytes).unwrap();
        // The file identifier is part of the encryption key.
        let id = Object::string_literal(&b"exai-test-file-1"[..]);
        doc.trailer.set("ID", vec![id.clone(), id]);
        let version = EncryptionVersion::V2 {
            document: &doc,
            owner_password: "owner",
            user_password,
            key_length: 128,
            permissions: Permissions::default(),
        };
        let state = EncryptionState::try_from(version).unwrap();
        doc.encrypt(&state).unwrap();
        let mut out = Vec::new();
        doc.save_to(&mut out).unwrap();
        out
    }

    #[test]
    fn encrypted_files_need_a_password_unless_it_is_empty() {
        let bytes = build_pdf(&["Sealed words"], &[]);
        let locked = encrypted(&bytes, "secret");
        assert_eq!(parse(&locked, "f").err(), Some(SkipReason::Encrypted));
        let open = encrypted(&bytes, "");
        let doc = parse(&open, "f").unwrap();
        assert_eq!(sections(&doc), [("Page 1".into(), "Sealed words".into())]);
    }
}
