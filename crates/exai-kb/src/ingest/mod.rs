//! Reading files into [`ParsedDoc`]s: discovery ([`walk`]) and one parser per format. Text
//! formats are parsed from text ([`parse_with`]); every format, PDF included, from a file's
//! bytes ([`parse_bytes`]), whether read from disk or fetched.

pub mod front_matter;
pub mod fuzz;
pub mod html;
mod html_dom;
pub mod markdown;
pub mod pdf;
pub mod plain;
pub mod untrusted;
pub mod walk;

use crate::model::{Format, ParsedDoc};
pub use untrusted::{Flagged, UntrustedFilter};
pub use walk::{Candidate, Discovery, SkipReason, WalkOptions, content_skip, discover, format_of};

/// Longest heading kept, in characters. A heading is repeated in every section and chunk under
/// it, so an unbounded one would multiply a file's size by its number of chunks.
pub const MAX_HEADING_CHARS: usize = 200;

/// A heading cut to [`MAX_HEADING_CHARS`], marked with `…` where it was cut.
pub(crate) fn clip_heading(text: &str) -> String {
    match text.char_indices().nth(MAX_HEADING_CHARS) {
        Some((end, _)) => format!("{}…", text[..end].trim_end()),
        None => text.to_string(),
    }
}

/// Parse a file's text by format with the default handling of untrusted text (flagged spans
/// dropped). `rel` is its path in the source.
pub fn parse(format: Format, text: &str, rel: &str) -> Result<ParsedDoc, SkipReason> {
    parse_with(format, text, rel, UntrustedFilter::builtin())
}

/// Parse a file's bytes by format, flagging untrusted text with `filter`. Text formats are
/// decoded as UTF-8 (invalid sequences replaced); a PDF is read by [`pdf::parse`]. `rel` is the
/// file's path in the source (or a fetched page's path), which names it when it has no title.
pub fn parse_bytes(
    format: Format,
    bytes: &[u8],
    rel: &str,
    filter: &UntrustedFilter,
) -> Result<ParsedDoc, SkipReason> {
    match format {
        Format::Pdf => {
            let mut doc = pdf::parse(bytes, stem_of(rel))?;
            finish(&mut doc, rel, filter)?;
            Ok(doc)
        }
        _ => parse_with(format, &String::from_utf8_lossy(bytes), rel, filter),
    }
}

/// A path's file name without its extension.
fn stem_of(rel: &str) -> &str {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    name.rsplit_once('.').map_or(name, |(s, _)| s)
}

/// What every parser's document goes through: the untrusted-text filter, a title, and a skip
/// when nothing is left.
fn finish(doc: &mut ParsedDoc, rel: &str, filter: &UntrustedFilter) -> Result<(), SkipReason> {
    doc.flagged = filter.apply(doc);
    if doc.title.is_empty() {
        doc.title = stem_of(rel).to_string();
    }
    if doc.sections.iter().all(|s| s.text.trim().is_empty()) {
        return Err(SkipReason::Empty);
    }
    Ok(())
}

/// Parse a file's text by format, flagging untrusted text with `filter` (the counts are in
/// [`ParsedDoc::flagged`]).
pub fn parse_with(
    format: Format,
    text: &str,
    rel: &str,
    filter: &UntrustedFilter,
) -> Result<ParsedDoc, SkipReason> {
    let stem = stem_of(rel);
    // A byte-order mark opening the file is encoding, not text; one inside the text is flagged.
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let text = untrusted::strip_sentinels(text);
    let mut doc = match format {
        Format::Markdown => markdown::parse_file(&text, stem, rel),
        Format::Html => html::parse(&text, stem)?,
        Format::Text => plain::parse_text(&text, stem),
        Format::Code => plain::parse_code(&text, rel),
        // A PDF handed over as text (an uncompressed one can be valid UTF-8) is read as bytes.
        Format::Pdf => return parse_bytes(format, text.as_bytes(), rel, filter),
    };
    finish(&mut doc, rel, filter)?;
    Ok(doc)
}
