//! Sections into chunks: one chunk per section when it fits the token budget, otherwise split at
//! paragraph (then line, then word) boundaries with overlap. Code blocks are kept whole when
//! they fit. Token counts are estimated word pieces, so chunking does not depend on which
//! embedder is configured.

use crate::model::{DocType, NewChunk, ParsedDoc};

#[derive(Debug, Clone, Copy)]
pub struct ChunkOptions {
    /// Most estimated word pieces per chunk (the embedding model reads 256; leave room for the
    /// title line prepended at embedding time).
    pub max_tokens: usize,
    /// Word pieces repeated from the end of one chunk at the start of the next.
    pub overlap_tokens: usize,
    /// Most chunks one file may produce; the rest is dropped (and reported).
    pub max_chunks_per_file: usize,
}

impl Default for ChunkOptions {
    fn default() -> Self {
        Self {
            max_tokens: 200,
            overlap_tokens: 32,
            max_chunks_per_file: 2000,
        }
    }
}

/// Estimated BERT word pieces: each word is one piece plus one per ~6 further characters,
/// each punctuation mark one piece.
pub fn estimate_tokens(text: &str) -> usize {
    let mut n = 0;
    let mut word = 0usize;
    for c in text.chars() {
        if c.is_alphanumeric() {
            word += 1;
        } else {
            if word > 0 {
                n += 1 + (word - 1) / 6;
                word = 0;
            }
            if !c.is_whitespace() {
                n += 1;
            }
        }
    }
    if word > 0 {
        n += 1 + (word - 1) / 6;
    }
    n
}

/// Split text into pieces no larger than `max` tokens: paragraphs, then lines, then words.
/// Blank lines inside an oversized paragraph (a long code block) are dropped: a piece of no
/// tokens would never fill a chunk.
fn pieces(text: &str, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    for para in split_paragraphs(text) {
        if estimate_tokens(&para) <= max {
            out.push(para);
            continue;
        }
        for line in para.lines() {
            if line.trim().is_empty() {
                continue;
            }
            if estimate_tokens(line) <= max {
                out.push(line.to_string());
                continue;
            }
            // Words are joined by a space, which ends a word: the estimate of the joined text
            // is the sum of the words' estimates.
            let mut buf = String::new();
            let mut buf_tokens = 0;
            for w in line.split_whitespace() {
                let t = estimate_tokens(w);
                if !buf.is_empty() && buf_tokens + t > max {
                    out.push(std::mem::take(&mut buf));
                    buf_tokens = 0;
                }
                if !buf.is_empty() {
                    buf.push(' ');
                }
                buf.push_str(w);
                buf_tokens += t;
            }
            if !buf.is_empty() {
                out.push(buf);
            }
        }
    }
    out
}

/// Paragraphs separated by blank lines; a fenced code block is one paragraph.
fn split_paragraphs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_fence = false;
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("```") || t.starts_with("~~~") {
            in_fence = !in_fence;
        }
        if line.trim().is_empty() && !in_fence {
            if !cur.trim().is_empty() {
                out.push(std::mem::take(&mut cur).trim_end().to_string());
            }
            cur.clear();
            continue;
        }
        cur.push_str(line);
        cur.push('\n');
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim_end().to_string());
    }
    out
}

/// Pack pieces greedily into chunks of at most `max` tokens, each new chunk starting with the
/// previous chunk's last pieces up to `overlap` tokens.
fn pack(pieces: Vec<String>, max: usize, overlap: usize, sep: &str) -> Vec<String> {
    let mut chunks: Vec<String> = Vec::new();
    let mut cur: Vec<(String, usize)> = Vec::new();
    let mut cur_tokens = 0;
    for piece in pieces {
        let t = estimate_tokens(&piece);
        if !cur.is_empty() && cur_tokens + t > max {
            chunks.push(
                cur.iter()
                    .map(|(p, _)| p.as_str())
                    .collect::<Vec<_>>()
                    .join(sep),
            );
            let mut keep = 0;
            let mut carried_tokens = 0;
            for (_, pt) in cur.iter().rev() {
                if carried_tokens + pt > overlap || carried_tokens + pt + t > max {
                    break;
                }
                keep += 1;
                carried_tokens += pt;
            }
            cur = cur.split_off(cur.len() - keep);
            cur_tokens = carried_tokens;
        }
        cur_tokens += t;
        cur.push((piece, t));
    }
    if !cur.is_empty() {
        chunks.push(
            cur.iter()
                .map(|(p, _)| p.as_str())
                .collect::<Vec<_>>()
                .join(sep),
        );
    }
    chunks
}

/// Longest section path kept on a chunk, in characters (six headings of
/// [`MAX_HEADING_CHARS`](crate::ingest::MAX_HEADING_CHARS) and their separators).
const MAX_SECTION_CHARS: usize = 6 * (crate::ingest::MAX_HEADING_CHARS + 4);

fn clip_section(path: &str) -> String {
    match path.char_indices().nth(MAX_SECTION_CHARS) {
        Some((end, _)) => format!("{}…", &path[..end]),
        None => path.to_string(),
    }
}

/// Chunks of a parsed document, in reading order. Returns the chunks and how many were dropped
/// by `max_chunks_per_file`.
pub fn chunk(doc: &ParsedDoc, opts: &ChunkOptions) -> (Vec<NewChunk>, usize) {
    let mut out = Vec::new();
    let mut dropped = 0;
    for section in &doc.sections {
        // The document title is shown beside the section; repeating it as the first heading
        // adds nothing.
        let headings: &[String] = match section.headings.split_first() {
            Some((first, rest)) if first == &doc.title => rest,
            _ => &section.headings,
        };
        // Parsers clip each heading; a document built elsewhere gets the same bound on the
        // path, which is copied into each of its chunks.
        let heading = clip_section(&headings.join(" > "));
        let texts = if estimate_tokens(&section.text) <= opts.max_tokens {
            vec![section.text.clone()]
        } else {
            let (sep, parts) = match section.doc_type {
                // Code: split at lines so a definition is not cut mid-line.
                DocType::Code => (
                    "\n",
                    section.text.lines().map(str::to_string).collect::<Vec<_>>(),
                ),
                DocType::Text => ("\n\n", pieces(&section.text, opts.max_tokens)),
            };
            let parts = if section.doc_type == DocType::Code {
                parts
                    .into_iter()
                    .flat_map(|l| {
                        if estimate_tokens(&l) > opts.max_tokens {
                            pieces(&l, opts.max_tokens)
                        } else {
                            vec![l]
                        }
                    })
                    .collect()
            } else {
                parts
            };
            pack(parts, opts.max_tokens, opts.overlap_tokens, sep)
        };
        for text in texts {
            if text.trim().is_empty() {
                continue;
            }
            if out.len() >= opts.max_chunks_per_file {
                dropped += 1;
                continue;
            }
            out.push(NewChunk {
                position: out.len(),
                section: heading.clone(),
                tokens: estimate_tokens(&text),
                text,
                doc_type: section.doc_type,
            });
        }
    }
    (out, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Section;

    #[test]
    fn estimates_are_close_to_word_pieces() {
        assert_eq!(estimate_tokens("hello world"), 2);
        assert_eq!(estimate_tokens("fn main() {}"), 6);
        assert_eq!(estimate_tokens("internationalization"), 4);
    }

    #[test]
    fn long_sections_split_with_overlap_and_bounds() {
        let para = |i: usize| {
            format!("Paragraph {i} talks about ownership and borrowing in some detail here.")
        };
        let text = (0..40).map(para).collect::<Vec<_>>().join("\n\n");
        let doc = ParsedDoc {
            title: "T".into(),
            sections: vec![Section {
                headings: vec!["A".into(), "B".into()],
                text,
                doc_type: DocType::Text,
            }],
            metadata: Default::default(),
            flagged: Default::default(),
        };
        let opts = ChunkOptions {
            max_tokens: 60,
            overlap_tokens: 15,
            max_chunks_per_file: 100,
        };
        let (chunks, dropped) = chunk(&doc, &opts);
        assert_eq!(dropped, 0);
        assert!(chunks.len() > 5);
        for c in &chunks {
            assert!(c.tokens <= 60, "{} tokens", c.tokens);
            assert_eq!(c.section, "A > B");
        }
        // Overlap: each chunk starts with the last paragraph of the one before.
        let last_of_first = chunks[0].text.rsplit("\n\n").next().unwrap();
        assert!(chunks[1].text.starts_with(last_of_first));
        // Positions are consecutive.
        assert!(chunks.iter().enumerate().all(|(i, c)| c.position == i));
        let opts = ChunkOptions {
            max_chunks_per_file: 3,
            ..opts
        };
        let (chunks, dropped) = chunk(&doc, &opts);
        assert_eq!(chunks.len(), 3);
        assert!(dropped > 0);
    }

    #[test]
    fn fenced_code_stays_one_piece() {
        let text = "Intro.\n\n```rust\nfn a() {}\n\nfn b() {}\n```\n\nOutro.";
        let paras = split_paragraphs(text);
        assert_eq!(paras.len(), 3);
        assert!(paras[1].contains("fn a") && paras[1].contains("fn b"));
    }
}
