//! Front matter: the metadata block opening a Markdown file, YAML between `---` lines (Jekyll,
//! Docusaurus, mkdocs) or TOML between `+++` lines (Hugo, Zola), read by maintained parsers
//! into the document's metadata.
//!
//! A block is bounded before it reaches a parser: one over [`MAX_FRONT_MATTER_BYTES`] or nested
//! deeper than [`MAX_NESTING`] is ignored, and YAML aliases are expanded by `serde_yaml_ng`
//! under its own repetition limit, so a "billion laughs" block fails fast. A block that cannot
//! be read leaves the metadata empty with a warning; the document is indexed all the same.

use serde_json::{Map, Value};

/// Largest front matter block read, in bytes. Real ones are a few hundred bytes.
pub const MAX_FRONT_MATTER_BYTES: usize = 64 * 1024;

/// Deepest nesting read (indentation levels, sequence dashes and flow collections): the YAML
/// parser and the conversions below recurse once per level, and a parse can run on a small
/// stack (an indexing thread's).
const MAX_NESTING: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Syntax {
    Yaml,
    Toml,
}

impl Syntax {
    fn name(self) -> &'static str {
        match self {
            Syntax::Yaml => "YAML",
            Syntax::Toml => "TOML",
        }
    }

    /// Whether `line` (without its line break) closes a block of this syntax.
    fn closes(self, line: &str) -> bool {
        let line = line.trim_end();
        match self {
            Syntax::Yaml => line == "---" || line == "...",
            Syntax::Toml => line == "+++",
        }
    }
}

/// The metadata of `text`'s front matter and the text after it. Without a closed block the
/// metadata is empty and the whole text is the body. `rel` names the file in warnings.
pub fn split<'a>(text: &'a str, rel: &str) -> (Map<String, Value>, &'a str) {
    let Some((syntax, block, body)) = find_block(text) else {
        return (Map::new(), text);
    };
    let metadata = match read_block(syntax, block) {
        Ok(metadata) => metadata,
        Err(reason) => {
            tracing::warn!(file = %rel, "{} front matter ignored: {reason}", syntax.name());
            Map::new()
        }
    };
    (metadata, body)
}

/// The block's syntax, its text and the body after its closing line.
fn find_block(text: &str) -> Option<(Syntax, &str, &str)> {
    let (first, rest) = text.split_once('\n')?;
    let syntax = match first.trim_end() {
        "---" => Syntax::Yaml,
        "+++" => Syntax::Toml,
        _ => return None,
    };
    let mut offset = 0;
    for line in rest.split_inclusive('\n') {
        if syntax.closes(line.trim_end_matches(['\n', '\r'])) {
            return Some((syntax, &rest[..offset], &rest[offset + line.len()..]));
        }
        offset += line.len();
    }
    None
}

/// The block read as a mapping, or why it was not.
fn read_block(syntax: Syntax, block: &str) -> Result<Map<String, Value>, String> {
    if block.len() > MAX_FRONT_MATTER_BYTES {
        return Err(format!(
            "the block is {} bytes, over the {MAX_FRONT_MATTER_BYTES}-byte limit",
            block.len()
        ));
    }
    let depth = match syntax {
        Syntax::Yaml => flow_nesting(block) + block_nesting(block),
        Syntax::Toml => flow_nesting(block) + dotted_nesting(block),
    };
    if depth > MAX_NESTING {
        return Err(format!("nested deeper than {MAX_NESTING} levels"));
    }
    match syntax {
        Syntax::Yaml => read_yaml(block),
        Syntax::Toml => read_toml(block),
    }
}

/// The deepest flow collection (`[`, `{`), brackets inside strings counted too.
fn flow_nesting(block: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    for b in block.bytes() {
        match b {
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// YAML block nesting: the deepest line's indentation levels and sequence dashes.
fn block_nesting(block: &str) -> usize {
    let mut indents: Vec<usize> = Vec::new();
    let mut deepest = 0;
    for line in block.lines() {
        let rest = line.trim_start_matches(' ');
        if rest.trim().is_empty() || rest.starts_with('#') {
            continue;
        }
        let indent = line.len() - rest.len();
        while indents.last().is_some_and(|i| *i >= indent) {
            indents.pop();
        }
        indents.push(indent);
        deepest = deepest.max(indents.len() + leading_dashes(rest));
    }
    deepest
}

/// TOML nesting by dotted keys: the most parts of a table header's or a key's name (dots inside
/// quoted keys counted too).
fn dotted_nesting(block: &str) -> usize {
    block
        .lines()
        .map(|line| {
            let line = line.trim_start();
            let key = match line.strip_prefix('[') {
                Some(header) => header.split(']').next().unwrap_or(""),
                None => line.split('=').next().unwrap_or(""),
            };
            key.matches('.').count() + 1
        })
        .max()
        .unwrap_or(0)
}

/// How many sequence entries open on this line (`- - - x` opens three).
fn leading_dashes(mut rest: &str) -> usize {
    let mut n = 0;
    while let Some(after) = rest.strip_prefix('-') {
        if !(after.is_empty() || after.starts_with([' ', '\t'])) {
            break;
        }
        n += 1;
        rest = after.trim_start();
    }
    n
}

fn read_yaml(block: &str) -> Result<Map<String, Value>, String> {
    let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(block).map_err(|e| e.to_string())?;
    match value {
        serde_yaml_ng::Value::Null => Ok(Map::new()),
        serde_yaml_ng::Value::Mapping(_) => match serde_json::to_value(value) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err("not a mapping of keys to values".into()),
            Err(e) => Err(e.to_string()),
        },
        _ => Err("not a mapping of keys to values".into()),
    }
}

fn read_toml(block: &str) -> Result<Map<String, Value>, String> {
    let table: toml::Table = toml::from_str(block).map_err(|e| e.message().to_string())?;
    Ok(table
        .into_iter()
        .map(|(key, value)| (key, toml_to_json(value)))
        .collect())
}

/// TOML values as JSON; dates and times become their TOML text.
fn toml_to_json(value: toml::Value) -> Value {
    match value {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(n) => Value::from(n),
        toml::Value::Float(f) => Value::from(f),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(items.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(table) => Value::Object(
            table
                .into_iter()
                .map(|(key, value)| (key, toml_to_json(value)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_front_matter_becomes_metadata() {
        let text = "---\ntitle: \"Hooks: the guide\"\ntags: [react, state]\nweight: 3\ndraft: false\nauthors:\n  - name: Ada\n---\nBody.\n";
        let (meta, body) = split(text, "f.md");
        assert_eq!(meta["title"], json!("Hooks: the guide"));
        assert_eq!(meta["tags"], json!(["react", "state"]));
        assert_eq!(meta["weight"], json!(3));
        assert_eq!(meta["draft"], json!(false));
        assert_eq!(meta["authors"], json!([{"name": "Ada"}]));
        assert_eq!(body, "Body.\n");
    }

    #[test]
    fn toml_front_matter_becomes_metadata() {
        let text =
            "+++\ntitle = \"Install\"\ndate = 2024-05-01\n[extra]\nlevel = 2\n+++\n# Install\n";
        let (meta, body) = split(text, "f.md");
        assert_eq!(meta["title"], json!("Install"));
        assert_eq!(meta["date"], json!("2024-05-01"));
        assert_eq!(meta["extra"], json!({"level": 2}));
        assert_eq!(body, "# Install\n");
    }

    #[test]
    fn invalid_or_odd_blocks_leave_metadata_empty_and_drop_the_block() {
        for text in [
            "---\ntitle: [unclosed\n---\nBody.\n",
            "---\n- a list\n- not a mapping\n---\nBody.\n",
            "+++\ntitle = \n+++\nBody.\n",
            "---\n---\nBody.\n",
        ] {
            let (meta, body) = split(text, "f.md");
            assert!(meta.is_empty(), "{text}: {meta:?}");
            assert_eq!(body, "Body.\n", "{text}");
        }
    }

    #[test]
    fn without_a_closed_block_the_text_is_the_body() {
        for text in [
            "---\ntitle: x\nno end\n",
            "Text\n---\n",
            "----\na: b\n----\n",
            "",
        ] {
            let (meta, body) = split(text, "f.md");
            assert!(meta.is_empty());
            assert_eq!(body, text);
        }
    }

    #[test]
    fn billion_laughs_and_huge_or_deep_blocks_are_refused_quickly() {
        let mut laughs = String::from(
            "---\na: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        for (name, prev) in ["b", "c", "d", "e", "f", "g", "h", "i"]
            .iter()
            .zip(["a", "b", "c", "d", "e", "f", "g", "h"])
        {
            laughs.push_str(&format!(
                "{name}: &{name} [{}]\n",
                vec![format!("*{prev}"); 9].join(",")
            ));
        }
        laughs.push_str("---\nBody.\n");
        let huge = format!(
            "---\ntitle: {}\n---\nBody.\n",
            "t".repeat(MAX_FRONT_MATTER_BYTES)
        );
        let deep = format!(
            "---\na: {}{}\n---\nBody.\n",
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        let deep_toml = format!(
            "+++\na = {}{}\n+++\nBody.\n",
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        let dotted_toml = format!(
            "+++\n[{}]\nx = 1\n+++\nBody.\n",
            vec!["a"; 10_000].join(".")
        );
        let deep_yaml: String = (0..10_000)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect();
        let deep_yaml = format!("---\n{deep_yaml}---\nBody.\n");
        for text in [laughs, huge, deep, deep_toml, dotted_toml, deep_yaml] {
            let started = std::time::Instant::now();
            let (meta, body) = split(&text, "f.md");
            assert!(meta.is_empty());
            assert_eq!(body, "Body.\n");
            assert!(started.elapsed() < std::time::Duration::from_secs(5));
        }
    }
}
