//! Reading files into [`ParsedDoc`]s: discovery ([`walk`]) and one parser per format.

pub mod html;
pub mod markdown;
pub mod plain;
pub mod walk;

use crate::model::{Format, ParsedDoc};
pub use walk::{Candidate, Discovery, SkipReason, WalkOptions, content_skip, discover, format_of};

/// Parse a file's text by format. `rel` is its path in the source.
pub fn parse(format: Format, text: &str, rel: &str) -> Result<ParsedDoc, SkipReason> {
    let stem = rel.rsplit('/').next().unwrap_or(rel);
    let stem = stem.rsplit_once('.').map_or(stem, |(s, _)| s);
    let doc = match format {
        Format::Markdown => markdown::parse(text, stem),
        Format::Html => html::parse(text, stem)?,
        Format::Text => plain::parse_text(text, stem),
        Format::Code => plain::parse_code(text, rel),
    };
    if doc.sections.iter().all(|s| s.text.trim().is_empty()) {
        return Err(SkipReason::Empty);
    }
    Ok(doc)
}
