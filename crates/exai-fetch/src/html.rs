//! What the crawler reads from an HTML page, in one parse: its title, its links, its canonical
//! URL and how much visible text it has (for the rendering decision).

use scraper::{ElementRef, Html, Node, Selector};
use url::Url;

/// Elements whose text is not the page's main content: code, and the page chrome a
/// script-rendered site ships even when its content is missing.
const NOT_MAIN_TEXT: &[&str] = &[
    "script", "style", "noscript", "template", "nav", "header", "footer", "head",
];

/// The facts the crawler needs from one HTML document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HtmlFacts {
    pub title: Option<String>,
    /// `a[href]`, `iframe[src]` and `frame[src]` targets resolved against `<base href>` (or the
    /// page URL), fragments removed, in document order, without duplicates. Frames count
    /// because generated sites put their table of contents there for script-less readers
    /// (mdBook's `toc.html`).
    pub links: Vec<Url>,
    /// `<link rel="canonical" href>`, resolved.
    pub canonical: Option<Url>,
    /// Non-whitespace characters of visible text outside [`NOT_MAIN_TEXT`] elements.
    pub main_text_chars: usize,
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
    HtmlFacts {
        title: title(&doc),
        links: links(&doc, &base),
        canonical: canonical(&doc, &base),
        main_text_chars: main_text_chars(&doc),
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

fn main_text_chars(doc: &Html) -> usize {
    doc.tree
        .root()
        .descendants()
        .filter_map(|node| match node.value() {
            Node::Text(text) => Some((node, text)),
            _ => None,
        })
        .filter(|(node, _)| {
            !node
                .ancestors()
                .filter_map(ElementRef::wrap)
                .any(|e| NOT_MAIN_TEXT.contains(&e.value().name()))
        })
        .map(|(_, text)| text.chars().filter(|c| !c.is_whitespace()).count())
        .sum()
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
        assert!(facts.has_scripts);
    }
}
