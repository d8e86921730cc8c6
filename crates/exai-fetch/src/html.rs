//! What the crawler reads from an HTML page, in one parse: its title, its links, its canonical
//! URL, a `<meta http-equiv="refresh">` target, and how much visible text it has and where (for
//! the rendering decision in [`crate::render`]).

use scraper::{ElementRef, Html, Node, Selector};
use url::Url;

/// Elements whose text is not the page's main content: code, and the page chrome a
/// script-rendered site ships even when its content is missing.
const NOT_MAIN_TEXT: &[&str] = &[
    "script", "style", "noscript", "template", "nav", "header", "footer", "head",
];

/// Elements that hold written content; text inside one means the server sent real content,
/// however short (a one-line keyword page, a section index with a heading).
const CONTENT_ELEMENTS: &[&str] = &[
    "p",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "li",
    "pre",
    "td",
    "dd",
    "blockquote",
];

/// Ids of the elements single-page-app frameworks mount their content into (React, Vue,
/// Next.js, Nuxt, Gatsby).
const MOUNT_POINT_IDS: &[&str] = &["root", "app", "__next", "__nuxt", "___gatsby"];

/// The facts the crawler needs from one HTML document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HtmlFacts {
    pub title: Option<String>,
    /// `a[href]`, `iframe[src]` and `frame[src]` targets (and the meta refresh target) resolved
    /// against `<base href>` (or the page URL), fragments removed, in document order, without
    /// duplicates. Frames count because generated sites put their table of contents there for
    /// script-less readers (mdBook's `toc.html`).
    pub links: Vec<Url>,
    /// `<link rel="canonical" href>`, resolved.
    pub canonical: Option<Url>,
    /// The target of `<meta http-equiv="refresh" content="N; url=…">`, resolved.
    pub refresh: Option<Url>,
    /// Non-whitespace characters of visible text outside [`NOT_MAIN_TEXT`] elements.
    pub main_text_chars: usize,
    /// The part of `main_text_chars` inside [`CONTENT_ELEMENTS`].
    pub content_text_chars: usize,
    /// Whether an element with a [`MOUNT_POINT_IDS`] id exists and holds no text.
    pub empty_mount_point: bool,
    /// Whether the document has any `<script>` element.
    pub has_scripts: bool,
}

fn selector(css: &str) -> Option<Selector> {
    Selector::parse(css).ok()
}

/// Parses `html` fetched from `page_url`.
pub fn analyse(html: &str, page_url: &Url) -> HtmlFacts {
    let doc = Html::parse_document(html);
    let base = base_url(&doc, page_url);
    let refresh = refresh(&doc, &base);
    let mut links = links(&doc, &base);
    if let Some(target) = refresh.as_ref().filter(|t| !links.contains(t)) {
        links.push(target.clone());
    }
    let (main_text_chars, content_text_chars) = text_chars(&doc);
    HtmlFacts {
        title: title(&doc),
        links,
        canonical: canonical(&doc, &base),
        refresh,
        main_text_chars,
        content_text_chars,
        empty_mount_point: empty_mount_point(&doc),
        has_scripts: selector("script").is_some_and(|s| doc.select(&s).next().is_some()),
    }
}

fn base_url(doc: &Html, page_url: &Url) -> Url {
    selector("base[href]")
        .and_then(|s| doc.select(&s).next())
        .and_then(|e| e.value().attr("href"))
        .and_then(|href| page_url.join(href.trim()).ok())
        .unwrap_or_else(|| page_url.clone())
}

fn title(doc: &Html) -> Option<String> {
    let s = selector("title")?;
    let text: String = doc.select(&s).next()?.text().collect();
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    (!text.is_empty()).then_some(text)
}

fn resolve(base: &Url, href: &str) -> Option<Url> {
    let mut url = base.join(href.trim()).ok()?;
    url.set_fragment(None);
    Some(url)
}

fn links(doc: &Html, base: &Url) -> Vec<Url> {
    let Some(s) = selector("a[href], iframe[src], frame[src]") else {
        return Vec::new();
    };
    let mut seen = std::collections::HashSet::new();
    doc.select(&s)
        .filter_map(|e| e.value().attr("href").or_else(|| e.value().attr("src")))
        .filter_map(|href| resolve(base, href))
        .filter(|u| seen.insert(u.clone()))
        .collect()
}

fn canonical(doc: &Html, base: &Url) -> Option<Url> {
    let s = selector("link[rel][href]")?;
    doc.select(&s)
        .find(|e| {
            e.value().attr("rel").is_some_and(|rel| {
                rel.split_whitespace()
                    .any(|r| r.eq_ignore_ascii_case("canonical"))
            })
        })
        .and_then(|e| e.value().attr("href"))
        .and_then(|href| resolve(base, href))
}

/// `content="0; URL='target'"` of a refresh `<meta>`.
fn refresh(doc: &Html, base: &Url) -> Option<Url> {
    let s = selector("meta[http-equiv][content]")?;
    let meta = doc.select(&s).find(|e| {
        e.value()
            .attr("http-equiv")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("refresh"))
    })?;
    let content = meta.value().attr("content")?;
    let (_, target) = content.split_once(';')?;
    let target = target.trim();
    let target = target
        .get(..4)
        .filter(|p| p.eq_ignore_ascii_case("url="))
        .map_or(target, |_| &target[4..]);
    let target = target.trim().trim_matches(['"', '\'']);
    (!target.is_empty())
        .then(|| resolve(base, target))
        .flatten()
}

/// `(main text, content text)`: non-whitespace characters outside [`NOT_MAIN_TEXT`], and the
/// part of them inside [`CONTENT_ELEMENTS`].
fn text_chars(doc: &Html) -> (usize, usize) {
    let mut main = 0;
    let mut content = 0;
    for node in doc.tree.root().descendants() {
        let Node::Text(text) = node.value() else {
            continue;
        };
        let names: Vec<&str> = node
            .ancestors()
            .filter_map(ElementRef::wrap)
            .map(|e| e.value().name())
            .collect();
        if names.iter().any(|n| NOT_MAIN_TEXT.contains(n)) {
            continue;
        }
        let chars = text.chars().filter(|c| !c.is_whitespace()).count();
        main += chars;
        if names.iter().any(|n| CONTENT_ELEMENTS.contains(n)) {
            content += chars;
        }
    }
    (main, content)
}

fn empty_mount_point(doc: &Html) -> bool {
    let Some(s) = selector("[id]") else {
        return false;
    };
    doc.select(&s)
        .filter(|e| {
            e.value()
                .id()
                .is_some_and(|id| MOUNT_POINT_IDS.contains(&id))
        })
        .any(|e| e.text().all(|t| t.trim().is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_resolve_against_base_without_fragments() {
        let page = Url::parse("http://h/docs/a/page.html").unwrap();
        let html = r#"<html><head><title> The
            Title </title><base href="/docs/b/"><link rel="Canonical" href="canon.html"></head>
            <body><a href="x.html#part">x</a><a href="x.html">again</a><a href="../y/">y</a>
            <a href="https://other/z">z</a><a>no href</a><iframe src="toc.html"></iframe></body></html>"#;
        let facts = analyse(html, &page);
        assert_eq!(facts.title.as_deref(), Some("The Title"));
        let links: Vec<_> = facts.links.iter().map(Url::as_str).collect();
        assert_eq!(
            links,
            [
                "http://h/docs/b/x.html",
                "http://h/docs/y/",
                "https://other/z",
                "http://h/docs/b/toc.html"
            ]
        );
        assert_eq!(
            facts.canonical.unwrap().as_str(),
            "http://h/docs/b/canon.html"
        );
        assert!(!facts.has_scripts);
    }

    #[test]
    fn main_text_leaves_out_chrome_and_code() {
        let page = Url::parse("http://h/").unwrap();
        let html = "<html><head><style>p{}</style></head><body><header>Site name</header><nav>Menu</nav>\
                    <main>Hello world</main><script>var x = 'lots of code';</script><footer>(c)</footer></body></html>";
        let facts = analyse(html, &page);
        assert_eq!(facts.main_text_chars, "Helloworld".len());
        assert_eq!(facts.content_text_chars, 0);
        assert!(facts.has_scripts);
    }

    #[test]
    fn meta_refresh_target_is_read_and_linked() {
        let page = Url::parse("http://h/std/macro.vec!.html").unwrap();
        let html = r#"<html><head><meta http-equiv="Refresh" content="0;URL=macro.vec.html"></head>
            <body><script>location.replace("macro.vec.html")</script></body></html>"#;
        let facts = analyse(html, &page);
        let target = Url::parse("http://h/std/macro.vec.html").unwrap();
        assert_eq!(facts.refresh.as_ref(), Some(&target));
        assert_eq!(facts.links, [target]);
        let quoted = r#"<meta http-equiv="refresh" content="5; url='/next'">"#;
        assert_eq!(
            analyse(quoted, &page).refresh.unwrap().as_str(),
            "http://h/next"
        );
        assert_eq!(
            analyse(r#"<meta http-equiv="refresh" content="30">"#, &page).refresh,
            None
        );
    }

    #[test]
    fn mount_points_and_content_elements() {
        let page = Url::parse("http://h/").unwrap();
        let facts = analyse(
            r#"<body><h1>Guide</h1><div id="root"> </div></body>"#,
            &page,
        );
        assert!(facts.empty_mount_point);
        assert_eq!(facts.content_text_chars, "Guide".len());
        let filled = analyse(r#"<body><div id="app"><p>Text</p></div></body>"#, &page);
        assert!(!filled.empty_mount_point);
    }
}
