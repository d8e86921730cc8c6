//! Fusing keyword and semantic results, snippets, and result shaping.

use std::collections::HashMap;

/// Reciprocal-rank-fusion constant (the usual 60): rank r contributes 1 / (K + r).
pub const RRF_K: f32 = 60.0;

/// Fused (chunk id, normalised score, keyword rank, semantic rank), best first. The score is
/// divided by the best possible (first in both lists), so 1.0 means "top of both".
pub fn rrf(
    keyword: &[(i64, f32)],
    semantic: &[(i64, f32)],
) -> Vec<(i64, f32, Option<usize>, Option<usize>)> {
    let mut fused: HashMap<i64, (f32, Option<usize>, Option<usize>)> = HashMap::new();
    for (rank, (id, _)) in keyword.iter().enumerate() {
        let e = fused.entry(*id).or_insert((0.0, None, None));
        e.0 += 1.0 / (RRF_K + rank as f32 + 1.0);
        e.1 = Some(rank + 1);
    }
    for (rank, (id, _)) in semantic.iter().enumerate() {
        let e = fused.entry(*id).or_insert((0.0, None, None));
        e.0 += 1.0 / (RRF_K + rank as f32 + 1.0);
        e.2 = Some(rank + 1);
    }
    let best = 2.0 / (RRF_K + 1.0);
    let mut out: Vec<_> = fused
        .into_iter()
        .map(|(id, (s, k, v))| (id, s / best, k, v))
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    out
}

/// Lower-cased query words, for snippets.
pub fn terms(query: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for w in query.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
        let w = w.to_lowercase();
        if w.len() >= 2 && seen.insert(w.clone()) {
            out.push(w);
        }
    }
    out
}

/// The passage of `text` (about `max_chars`) with the most distinct query terms, on line
/// boundaries where possible, marked with "…" where cut.
pub fn snippet(text: &str, terms: &[String], max_chars: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return String::new();
    }
    let score = |line: &str| {
        let lower = line.to_lowercase();
        terms.iter().filter(|t| lower.contains(t.as_str())).count()
    };
    let best = (0..lines.len())
        .max_by_key(|i| (score(lines[*i]), std::cmp::Reverse(*i)))
        .unwrap_or(0);
    let (mut start, mut end) = (best, best + 1);
    let len = |s: usize, e: usize| lines[s..e].iter().map(|l| l.len() + 1).sum::<usize>();
    while len(start, end) < max_chars {
        let grew_after = end < lines.len() && len(start, end + 1) <= max_chars;
        if grew_after {
            end += 1;
        }
        let grew_before = start > 0 && len(start - 1, end) <= max_chars;
        if grew_before {
            start -= 1;
        }
        if !grew_after && !grew_before {
            break;
        }
    }
    let mut out = lines[start..end].join("\n");
    if out.len() > max_chars {
        let cut = out
            .char_indices()
            .take_while(|(i, _)| *i < max_chars)
            .last()
            .map_or(0, |(i, c)| i + c.len_utf8());
        out.truncate(cut);
        out.push('…');
    }
    if start > 0 {
        out.insert(0, '…');
    }
    if end < lines.len() && !out.ends_with('…') {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rrf_rewards_agreement() {
        let k = vec![(1, 9.0), (2, 5.0), (3, 1.0)];
        let v = vec![(2, 0.9), (4, 0.8)];
        let f = rrf(&k, &v);
        assert_eq!(f[0].0, 2);
        assert_eq!(f[0].2, Some(2));
        assert_eq!(f[0].3, Some(1));
        assert!(f[0].1 <= 1.0 && f[0].1 > f[1].1);
        let top = rrf(&[(7, 1.0)], &[(7, 1.0)]);
        assert!((top[0].1 - 1.0).abs() < 1e-6);
    }

    #[test]
    fn snippet_finds_the_matching_passage() {
        let text = (0..30)
            .map(|i| format!("line {i} filler text"))
            .collect::<Vec<_>>()
            .join("\n")
            + "\nthe borrow checker rejects this\nmore";
        let s = snippet(&text, &terms("borrow checker"), 80);
        assert!(s.contains("borrow checker"), "{s}");
        assert!(s.starts_with('…'));
        assert!(s.len() <= 90);
    }
}
