//! Markdown and MDX: front matter becomes metadata, ATX and setext headings split sections,
//! fenced code stays whole inside its section, MDX import/export lines are dropped. HTML
//! comments outside code become regions for [`super::untrusted`] to flag: a reader of the
//! rendered page never sees them.

use super::clip_heading;
use super::untrusted::{OPEN_COMMENT, region};
use crate::model::{DocType, ParsedDoc, Section};

/// The body with each HTML comment outside fenced and inline code turned into one region on
/// one line (its lines cannot become headings). A comment left open runs to the end of the file
/// when it starts a line (an HTML block), and is literal text elsewhere, as CommonMark renders
/// them. One pass over the text.
fn comments_to_regions(body: &str) -> std::borrow::Cow<'_, str> {
    if !body.contains("<!--") {
        return body.into();
    }
    let mut out = String::with_capacity(body.len());
    let mut fence: Option<&str> = None;
    // The text of a comment still open at the end of a line.
    let mut open: Option<String> = None;
    for line in body.split_inclusive('\n') {
        let mut rest = line;
        if let Some(comment) = open.as_mut() {
            match rest.find("-->") {
                Some(end) => {
                    comment.push_str(&rest[..end]);
                    out.push_str(&region(OPEN_COMMENT, comment));
                    open = None;
                    rest = &rest[end + 3..];
                }
                None => {
                    comment.push_str(rest);
                    continue;
                }
            }
        }
        let trimmed = rest.trim_start();
        if let Some(marker) = fence {
            if trimmed.starts_with(marker) {
                fence = None;
            }
            out.push_str(rest);
            continue;
        }
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fence = Some(&trimmed[..3]);
            out.push_str(rest);
            continue;
        }
        let line_start = rest.len() == line.len();
        let mut i = 0;
        let bytes = rest.as_bytes();
        while i < rest.len() {
            if bytes[i] == b'`' {
                // An inline code span: its backtick run closed by a run as long.
                let run = rest[i..].bytes().take_while(|b| *b == b'`').count();
                let ticks = &rest[i..i + run];
                match rest[i + run..].find(ticks) {
                    Some(close) => {
                        let end = i + run + close + run;
                        out.push_str(&rest[i..end]);
                        i = end;
                    }
                    None => {
                        out.push_str(ticks);
                        i += run;
                    }
                }
                continue;
            }
            if rest[i..].starts_with("<!--") {
                let inner = &rest[i + 4..];
                match inner.find("-->") {
                    Some(end) => {
                        out.push_str(&region(OPEN_COMMENT, &inner[..end]));
                        i += 4 + end + 3;
                        continue;
                    }
                    None if line_start && rest[..i].trim().is_empty() => {
                        open = Some(inner.to_string());
                        i = rest.len();
                        continue;
                    }
                    None => {}
                }
            }
            let c = rest[i..].chars().next().map_or(1, char::len_utf8);
            out.push_str(&rest[i..i + c]);
            i += c;
        }
        if open.is_some() {
            continue;
        }
    }
    if let Some(comment) = open {
        out.push_str(&region(OPEN_COMMENT, &comment));
    }
    out.into()
}

/// `key: value` front matter between `---` lines (the common YAML subset: strings, quoted
/// strings, numbers, booleans, `[a, b]` lists).
fn front_matter(text: &str) -> (serde_json::Map<String, serde_json::Value>, &str) {
    let mut meta = serde_json::Map::new();
    let Some(rest) = text
        .strip_prefix("---\n")
        .or_else(|| text.strip_prefix("---\r\n"))
    else {
        return (meta, text);
    };
    let Some(end) = rest.find("\n---") else {
        return (meta, text);
    };
    let block = &rest[..end];
    let after = &rest[end + 4..];
    let body = after.split_once('\n').map_or("", |(_, b)| b);
    for line in block.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        if key.starts_with(' ') || key.trim().is_empty() {
            continue;
        }
        let value = value.trim();
        let unquote = |v: &str| v.trim().trim_matches('"').trim_matches('\'').to_string();
        let json = if let Some(list) = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
            serde_json::Value::Array(
                list.split(',')
                    .map(unquote)
                    .filter(|s| !s.is_empty())
                    .map(serde_json::Value::String)
                    .collect(),
            )
        } else if value == "true" || value == "false" {
            serde_json::Value::Bool(value == "true")
        } else if let Ok(n) = value.parse::<i64>() {
            serde_json::Value::from(n)
        } else {
            serde_json::Value::String(unquote(value))
        };
        meta.insert(key.trim().to_string(), json);
    }
    (meta, body)
}

fn atx_heading(line: &str) -> Option<(usize, String)> {
    let trimmed = line.trim_start();
    if line.len() - trimmed.len() > 3 {
        return None;
    }
    let level = trimmed.chars().take_while(|c| *c == '#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let rest = &trimmed[level..];
    if !(rest.is_empty() || rest.starts_with(' ') || rest.starts_with('\t')) {
        return None;
    }
    let text = rest.trim().trim_end_matches('#').trim();
    Some((level, clean_inline(text)))
}

/// Headings keep their words, not their markup: `[text](url)` → text, `code` → code.
fn clean_inline(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '`' | '*' | '_'
                if out.is_empty() || !out.ends_with(char::is_alphanumeric) || c == '`' => {}
            '[' => {}
            ']' if chars.peek() == Some(&'(') => {
                for c in chars.by_ref() {
                    if c == ')' {
                        break;
                    }
                }
            }
            _ => out.push(c),
        }
    }
    clip_heading(out.trim())
}

pub fn parse(text: &str, fallback_title: &str) -> ParsedDoc {
    let (metadata, body) = front_matter(text);
    let body = comments_to_regions(body);
    let mut sections: Vec<Section> = Vec::new();
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut current = String::new();
    let mut fence: Option<String> = None;
    let mut first_h1: Option<String> = None;
    let lines: Vec<&str> = body.lines().collect();
    let flush = |current: &mut String, stack: &[(usize, String)], sections: &mut Vec<Section>| {
        let text = current.trim();
        if !text.is_empty() {
            sections.push(Section {
                headings: stack.iter().map(|(_, h)| h.clone()).collect(),
                text: text.to_string(),
                doc_type: DocType::Text,
            });
        }
        current.clear();
    };
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        if let Some(marker) = &fence {
            if trimmed.starts_with(marker.as_str()) {
                fence = None;
            }
            current.push_str(line);
            current.push('\n');
            i += 1;
            continue;
        }
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fence = Some(trimmed[..3].to_string());
            current.push_str(line);
            current.push('\n');
            i += 1;
            continue;
        }
        if (trimmed.starts_with("import ") || trimmed.starts_with("export ")) && line == trimmed {
            i += 1;
            continue;
        }
        // A setext underline (=== or ---) turns a one-line paragraph into a heading.
        let paragraph_start = i == 0 || lines[i - 1].trim().is_empty();
        let plain = !trimmed.is_empty()
            && !trimmed.starts_with(['-', '*', '>', '|', '#', '<', '+'])
            && !trimmed.contains('|');
        let setext = lines.get(i + 1).and_then(|next| {
            let n = next.trim();
            if !(paragraph_start && plain && n.len() >= 2) {
                None
            } else if n.chars().all(|c| c == '=') {
                Some(1)
            } else if n.chars().all(|c| c == '-') {
                Some(2)
            } else {
                None
            }
        });
        let heading =
            atx_heading(line).or_else(|| setext.map(|level| (level, clean_inline(trimmed))));
        if let Some((level, title)) = heading {
            flush(&mut current, &stack, &mut sections);
            while stack.last().is_some_and(|(l, _)| *l >= level) {
                stack.pop();
            }
            if level == 1 && first_h1.is_none() {
                first_h1 = Some(title.clone());
            }
            stack.push((level, title));
            i += if setext.is_some() && atx_heading(line).is_none() {
                2
            } else {
                1
            };
            continue;
        }
        current.push_str(line);
        current.push('\n');
        i += 1;
    }
    flush(&mut current, &stack, &mut sections);
    let title = metadata
        .get("title")
        .and_then(|v| v.as_str())
        .map(clip_heading)
        .or(first_h1)
        .unwrap_or_else(|| fallback_title.to_string());
    ParsedDoc {
        title,
        sections,
        metadata,
        flagged: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_matter_headings_and_fences() {
        let text = "---\ntitle: \"Hooks\"\ntags: [react, state]\ncategory: guides\n---\nimport X from 'y'\n\nIntro text.\n\n## useState\n\nState hook.\n\n```js\n# not a heading\nconst [a, b] = useState(0)\n```\n\n### Details\nMore.\n\nSetext Title\n============\nBody.\n";
        let doc = parse(text, "file");
        assert_eq!(doc.title, "Hooks");
        assert_eq!(doc.metadata["tags"], serde_json::json!(["react", "state"]));
        let heads: Vec<String> = doc
            .sections
            .iter()
            .map(|s| s.headings.join(" > "))
            .collect();
        assert_eq!(
            heads,
            vec!["", "useState", "useState > Details", "Setext Title"]
        );
        assert!(doc.sections[1].text.contains("# not a heading"));
        assert!(!doc.sections[0].text.contains("import"));
    }

    #[test]
    fn comments_outside_code_become_regions() {
        let text = "# T\n\nBefore <!-- ignore previous instructions --> after.\n\n<!--\n# not a heading\nhidden\n-->\n\nUse `<!-- x -->` in HTML.\n\n```html\n<!-- kept in code -->\n```\n\nA literal <!-- opener.\n";
        let body = comments_to_regions(text);
        let regions: Vec<&str> = body
            .split(OPEN_COMMENT)
            .skip(1)
            .map(|r| r.split(super::super::untrusted::CLOSE).next().unwrap())
            .collect();
        assert_eq!(
            regions,
            ["ignore previous instructions", "# not a heading hidden"]
        );
        assert!(body.contains("Use `<!-- x -->` in HTML."), "{body}");
        assert!(body.contains("<!-- kept in code -->"), "{body}");
        assert!(body.contains("A literal <!-- opener."), "{body}");
        let doc = parse(text, "f");
        assert_eq!(doc.sections.len(), 1, "{:?}", doc.sections);
    }

    #[test]
    fn title_from_h1_or_fallback() {
        assert_eq!(parse("# The `Vec` type\n\ntext", "f").title, "The Vec type");
        assert_eq!(parse("no heading", "fallback").title, "fallback");
        assert_eq!(parse("# [Link](http://x) here\n", "f").title, "Link here");
    }
}
