//! HTML: the main content only. Navigation, sidebars, headers, footers, scripts and styles are
//! dropped; headings split sections; `<pre>` blocks stay whole as fenced code. Written for
//! rustdoc and mdBook pages first, and generic enough for most documentation sites.
//!
//! What a reader never sees but a model would read — elements hidden by an inline style or the
//! `hidden` and `aria-hidden` attributes, and comments — becomes a region for
//! [`super::untrusted`] to flag, drop or mark.

use ego_tree::iter::Edge;
use ego_tree::{NodeId, NodeRef};
use scraper::{Html, Node, Selector};

use super::clip_heading;
use super::html_dom;
use super::untrusted::{OPEN_COMMENT, OPEN_HIDDEN, region};
use super::walk::SkipReason;
use crate::model::{DocType, ParsedDoc, Section};

const ROOTS: &[&str] = &[
    "main",
    "#main-content",
    "[role=main]",
    "article",
    "#content",
    ".content",
    "body",
];
const SKIP_TAGS: &[&str] = &[
    "script",
    "style",
    "nav",
    "noscript",
    "svg",
    "button",
    "form",
    "template",
    "iframe",
    "footer",
    "header",
    "aside",
    "select",
    "input",
    "textarea",
    "canvas",
    "rustdoc-toolbar",
    "rustdoc-search",
    "head",
];
const SKIP_CLASSES: &[&str] = &[
    "sidebar",
    "nav-chapters",
    "mobile-nav-chapters",
    "nav-wrapper",
    "nav-wide-wrapper",
    "menu-bar",
    "src",
    "since",
    "rightside",
    "out-of-band",
    "anchor",
    "search-form",
    "sidebar-elems",
    "toc",
    "breadcrumbs",
    "rustdoc-breadcrumbs",
    "hideme",
    "skip-link",
    "edit-link",
    "footer",
    "navbar",
    "sr-only",
    "visually-hidden",
];
const SKIP_IDS: &[&str] = &[
    "sidebar",
    "menu-bar",
    "searchbar",
    "search-wrapper",
    "toc",
    "copy-path",
    "theme-list",
];
const BLOCK_TAGS: &[&str] = &[
    "p",
    "div",
    "section",
    "li",
    "ul",
    "ol",
    "dl",
    "dt",
    "dd",
    "tr",
    "table",
    "blockquote",
    "br",
    "hr",
    "details",
    "summary",
    "figure",
    "figcaption",
    "tbody",
    "thead",
];

struct Walker {
    stack: Vec<(usize, String)>,
    current: String,
    sections: Vec<Section>,
    first_h1: Option<String>,
    first_heading: Option<String>,
}

fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The words of an element, without those of skipped (and hidden) descendants: one pass over
/// its subtree.
fn subtree_text(node: NodeRef<'_, Node>) -> String {
    let mut out = String::new();
    let mut skipping: Option<NodeId> = None;
    for edge in node.traverse() {
        match edge {
            Edge::Open(d) if skipping.is_none() => match d.value() {
                Node::Text(t) => out.push_str(t),
                Node::Element(e) if d.id() != node.id() && (skip_element(e) || hidden(e)) => {
                    skipping = Some(d.id());
                }
                _ => {}
            },
            Edge::Close(d) if skipping == Some(d.id()) => skipping = None,
            _ => {}
        }
    }
    out
}

/// A heading's words.
fn element_text(node: NodeRef<'_, Node>) -> String {
    clip_heading(collapse(&subtree_text(node)).trim_matches('§').trim())
}

/// Parts of a page that are not its content (navigation, scripts, forms, …).
fn skip_element(e: &scraper::node::Element) -> bool {
    let name = e.name();
    if SKIP_TAGS.contains(&name) {
        return true;
    }
    if e.id().is_some_and(|id| SKIP_IDS.contains(&id)) {
        return true;
    }
    e.classes().any(|c| SKIP_CLASSES.contains(&c))
}

/// Whether a reader never sees the element: the `hidden` attribute (not `until-found`, which
/// the browser's find reveals), `aria-hidden="true"`, or an inline style that hides it.
fn hidden(e: &scraper::node::Element) -> bool {
    if e.attr("hidden")
        .is_some_and(|v| !v.trim().eq_ignore_ascii_case("until-found"))
    {
        return true;
    }
    if e.attr("aria-hidden")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    {
        return true;
    }
    e.attr("style").is_some_and(hiding_style)
}

/// Whether an inline style hides its element: `display:none`, `visibility:hidden|collapse`,
/// `opacity:0`, a zero font size, a zero width or height with the overflow hidden, text indented
/// or positioned far off the screen. Stylesheets and classes are not read: a class such as
/// `hidden` often hides only on some screens.
fn hiding_style(style: &str) -> bool {
    let mut declarations: Vec<(String, String)> = Vec::new();
    for declaration in style.split(';') {
        let Some((property, value)) = declaration.split_once(':') else {
            continue;
        };
        let value: String = value
            .to_ascii_lowercase()
            .replace("!important", "")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        declarations.push((property.trim().to_ascii_lowercase(), value));
    }
    let get = |name: &str| {
        declarations
            .iter()
            .rev()
            .find(|(p, _)| p == name)
            .map(|(_, v)| v.as_str())
    };
    let zero = |v: Option<&str>| v.and_then(length).is_some_and(|(n, _)| n == 0.0);
    if get("display") == Some("none")
        || matches!(get("visibility"), Some("hidden" | "collapse"))
        || get("opacity").and_then(|v| v.parse::<f64>().ok()) == Some(0.0)
        || zero(get("font-size"))
    {
        return true;
    }
    let clipped = matches!(get("overflow"), Some("hidden" | "clip"));
    if clipped && (zero(get("height")) || zero(get("width")) || zero(get("max-height"))) {
        return true;
    }
    if get("text-indent").is_some_and(far_off) {
        return true;
    }
    let positioned = matches!(get("position"), Some("absolute" | "fixed"));
    positioned
        && ["left", "top", "right"]
            .iter()
            .any(|p| get(p).is_some_and(far_off))
}

/// A CSS length: its number and unit (`px` for a bare number).
fn length(value: &str) -> Option<(f64, &str)> {
    let value = value.trim();
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+')))
        .unwrap_or(value.len());
    let number = value[..split].parse::<f64>().ok()?;
    let unit = value[split..].trim();
    Some((number, if unit.is_empty() { "px" } else { unit }))
}

/// A length that puts text off any screen: at least 500 pixels (or 50 ems, or a whole viewport)
/// to the left or top.
fn far_off(value: &str) -> bool {
    let Some((n, unit)) = length(value) else {
        return false;
    };
    match unit {
        "px" | "pt" => n <= -500.0,
        "em" | "rem" | "ch" | "ex" => n <= -50.0,
        "%" | "vw" | "vh" => n <= -100.0,
        "in" | "cm" => n <= -5.0,
        _ => false,
    }
}

fn heading_level(name: &str) -> Option<usize> {
    name.strip_prefix('h')
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| (1..=6).contains(l))
}

impl Walker {
    fn flush(&mut self) {
        let text = self.current.trim();
        if !text.is_empty() {
            let cleaned: Vec<&str> = text.lines().map(str::trim_end).collect();
            let mut joined = String::with_capacity(text.len());
            let mut blank = false;
            for line in cleaned {
                let is_blank = line.trim().is_empty();
                if is_blank && blank {
                    continue;
                }
                blank = is_blank;
                joined.push_str(line);
                joined.push('\n');
            }
            self.sections.push(Section {
                headings: self.stack.iter().map(|(_, h)| h.clone()).collect(),
                text: joined.trim().to_string(),
                doc_type: DocType::Text,
            });
        }
        self.current.clear();
    }

    fn newline(&mut self) {
        if !self.current.is_empty() && !self.current.ends_with('\n') {
            self.current.push('\n');
        }
    }

    fn text(&mut self, t: &str) {
        let text = collapse(t);
        if text.is_empty() {
            return;
        }
        let needs_space = !self.current.is_empty()
            && !self.current.ends_with([' ', '\n'])
            && (t.starts_with(char::is_whitespace)
                || self.current.ends_with(char::is_alphanumeric)
                    && text.starts_with(char::is_alphanumeric));
        if needs_space {
            self.current.push(' ');
        }
        self.current.push_str(&text);
        if t.ends_with(char::is_whitespace) {
            self.current.push(' ');
        }
    }

    /// Text a reader never sees, as a region [`super::untrusted`] flags; apart from the words
    /// around it.
    fn region(&mut self, open: char, text: &str) {
        let region = region(open, text);
        if region.is_empty() {
            return;
        }
        if !self.current.is_empty() && !self.current.ends_with([' ', '\n']) {
            self.current.push(' ');
        }
        self.current.push_str(&region);
        self.current.push(' ');
    }

    fn heading(&mut self, level: usize, title: String) {
        self.flush();
        while self.stack.last().is_some_and(|(l, _)| *l >= level) {
            self.stack.pop();
        }
        if level == 1 && self.first_h1.is_none() {
            self.first_h1 = Some(title.clone());
        }
        if self.first_heading.is_none() {
            self.first_heading = Some(title.clone());
        }
        self.stack.push((level, title));
    }

    fn code(&mut self, node: NodeRef<'_, Node>) {
        let code: String = node
            .descendants()
            .filter_map(|d| match d.value() {
                Node::Text(t) => Some(&**t),
                _ => None,
            })
            .collect();
        self.newline();
        self.current.push_str("```\n");
        self.current.push_str(code.trim_end());
        self.current.push_str("\n```\n");
    }

    /// Everything under `root`, in document order. An explicit traversal rather than
    /// recursion: the tree's depth is the page author's choice.
    fn walk(&mut self, root: NodeRef<'_, Node>) {
        // The subtree being passed over (skipped, or already taken whole as heading or code).
        let mut passing: Option<NodeId> = None;
        for edge in root.traverse() {
            match edge {
                Edge::Open(node) => {
                    if passing.is_some() || node.id() == root.id() {
                        continue;
                    }
                    match node.value() {
                        Node::Text(t) => self.text(t),
                        Node::Comment(c) => self.region(OPEN_COMMENT, c),
                        Node::Element(e) => {
                            let name = e.name();
                            if skip_element(e) {
                                passing = Some(node.id());
                            } else if hidden(e) {
                                passing = Some(node.id());
                                self.region(OPEN_HIDDEN, &subtree_text(node));
                            } else if let Some(level) = heading_level(name) {
                                passing = Some(node.id());
                                let title = element_text(node);
                                if !title.is_empty() {
                                    self.heading(level, title);
                                }
                            } else if name == "pre" {
                                passing = Some(node.id());
                                self.code(node);
                            } else {
                                if BLOCK_TAGS.contains(&name) {
                                    self.newline();
                                }
                                if name == "li" {
                                    self.current.push_str("- ");
                                }
                                if name == "td" || name == "th" {
                                    self.current.push_str(" | ");
                                }
                            }
                        }
                        _ => {}
                    }
                }
                Edge::Close(node) => {
                    if passing == Some(node.id()) {
                        passing = None;
                        continue;
                    }
                    if passing.is_some() || node.id() == root.id() {
                        continue;
                    }
                    if let Node::Element(e) = node.value()
                        && BLOCK_TAGS.contains(&e.name())
                    {
                        self.newline();
                    }
                }
            }
        }
    }
}

fn select_first<'a>(doc: &'a Html, selector: &str) -> Option<scraper::ElementRef<'a>> {
    Selector::parse(selector)
        .ok()
        .and_then(|s| doc.select(&s).next())
}

pub fn parse(html: &str, fallback_title: &str) -> Result<ParsedDoc, SkipReason> {
    let doc = html_dom::parse_document(html).map_err(|_| SkipReason::Malformed)?;
    if let Ok(refresh) = Selector::parse("meta[http-equiv]") {
        let redirect = doc.select(&refresh).any(|m| {
            m.value()
                .attr("http-equiv")
                .is_some_and(|v| v.eq_ignore_ascii_case("refresh"))
        });
        if redirect {
            return Err(SkipReason::Redirect);
        }
    }
    let page_title =
        select_first(&doc, "title").map(|t| clip_heading(&collapse(&t.text().collect::<String>())));
    let Some(root) = ROOTS.iter().find_map(|s| select_first(&doc, s)) else {
        return Err(SkipReason::Empty);
    };
    let mut w = Walker {
        stack: Vec::new(),
        current: String::new(),
        sections: Vec::new(),
        first_h1: None,
        first_heading: None,
    };
    w.walk(*root);
    w.flush();
    if w.sections.is_empty() {
        return Err(SkipReason::Empty);
    }
    // The page's own top heading names it best; `<title>` usually appends the site's name.
    let site_stripped = page_title.filter(|t| !t.is_empty()).map(|t| {
        t.rsplit_once(" - ")
            .map_or(t.clone(), |(page, _site)| page.to_string())
    });
    let title = w
        .first_h1
        .clone()
        .or(w.first_heading.clone())
        .or(site_stripped)
        .unwrap_or_else(|| fallback_title.to_string());
    let mut metadata = serde_json::Map::new();
    if let Some(desc) = Selector::parse("meta[name=description]")
        .ok()
        .and_then(|s| doc.select(&s).next())
        .and_then(|m| m.value().attr("content"))
    {
        metadata.insert(
            "description".into(),
            serde_json::Value::String(desc.to_string()),
        );
    }
    Ok(ParsedDoc {
        title,
        sections: w.sections,
        metadata,
        flagged: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn main_content_only() {
        let html = r##"<html><head><title>Ownership - Book</title><script>var x = 1;</script></head><body>
            <nav id="sidebar"><a>Chapter 1</a><a>Chapter 2</a></nav>
            <div id="content"><main>
              <h1 id="what"><a class="header" href="#what">What Is Ownership?</a></h1>
              <p>Ownership is a set of <em>rules</em>.</p>
              <h2>The Stack</h2><p>LIFO.</p><pre><code>let s = String::from("hi");
let t = s;</code></pre>
              <ul><li>one</li><li>two</li></ul>
            </main><nav class="nav-wrapper"><a>Next</a></nav></div>
            <footer>copyright</footer></body></html>"##;
        let doc = parse(html, "f").unwrap();
        assert_eq!(doc.title, "What Is Ownership?");
        assert_eq!(doc.sections.len(), 2);
        assert_eq!(doc.sections[0].text, "Ownership is a set of rules.");
        assert_eq!(
            doc.sections[1].headings,
            vec!["What Is Ownership?", "The Stack"]
        );
        let body = &doc.sections[1].text;
        assert!(
            body.contains("```\nlet s = String::from(\"hi\");\nlet t = s;\n```"),
            "{body}"
        );
        assert!(body.contains("- one\n- two"), "{body}");
        let all: String = doc.sections.iter().map(|s| s.text.clone()).collect();
        assert!(
            !all.contains("Chapter 1")
                && !all.contains("Next")
                && !all.contains("copyright")
                && !all.contains("var x")
        );
    }

    #[test]
    fn title_from_top_heading_or_page_title() {
        let sub = "<html><head><title>Running Tests - The Book</title></head><body><main><h2>Running Tests</h2><p>x</p></main></body></html>";
        assert_eq!(parse(sub, "f").unwrap().title, "Running Tests");
        let none = "<html><head><title>Vec in std::vec - Rust</title></head><body><main><p>x</p></main></body></html>";
        assert_eq!(parse(none, "f").unwrap().title, "Vec in std::vec");
    }

    #[test]
    fn redirects_are_skipped() {
        let html = r#"<html><head><meta http-equiv="refresh" content="0; url=ch01.html"></head><body>Redirecting</body></html>"#;
        assert_eq!(parse(html, "f").err(), Some(SkipReason::Redirect));
    }
}
