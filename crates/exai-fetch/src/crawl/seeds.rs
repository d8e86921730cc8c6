//! What a site says about itself before the crawl starts: `robots.txt` (rules, crawl delay,
//! sitemaps), `sitemap.xml` (and sitemap indexes), and the `llms.txt` / `llms-full.txt` files
//! written for machine readers.

use std::time::Duration;

use quick_xml::Reader;
use quick_xml::events::Event;
use robotxt::Robots;
use url::Url;

use crate::client::{Body, SafeClient};
use crate::error::FetchError;

/// Longest `Crawl-delay` honoured; a site asking for more is crawled at this pace.
pub(crate) const MAX_CRAWL_DELAY: Duration = Duration::from_secs(30);
/// Most sitemap files read (an index and the sitemaps it lists), and most URLs taken from them.
const MAX_SITEMAP_FILES: usize = 50;
const MAX_SITEMAP_URLS: usize = 50_000;

/// The rules that apply to us, and what else robots.txt offered.
#[derive(Debug)]
pub(crate) struct RobotsRules {
    robots: Robots,
    pub(crate) crawl_delay: Option<Duration>,
    pub(crate) sitemaps: Vec<Url>,
    /// Why everything is disallowed, when robots.txt could not be read (RFC 9309 §2.3.1.4).
    unreachable: Option<String>,
}

impl RobotsRules {
    pub(crate) fn allow_all() -> Self {
        Self {
            robots: Robots::allow_all(),
            crawl_delay: None,
            sitemaps: Vec::new(),
            unreachable: None,
        }
    }

    /// `None` when `url` may be fetched, else the skip reason.
    pub(crate) fn refusal(&self, url: &Url) -> Option<String> {
        if let Some(why) = &self.unreachable {
            return Some(format!(
                "robots.txt could not be read ({why}), so the site is treated as disallowed"
            ));
        }
        (!self.robots.is_url_allowed(url)).then(|| "robots.txt".to_string())
    }
}

/// The product token robots.txt groups are matched against: `exai` for `exai/0.1 (+…)`.
pub(crate) fn robots_agent(user_agent: &str) -> &str {
    user_agent
        .split(['/', ' '])
        .next()
        .filter(|s| !s.is_empty())
        .unwrap_or("exai")
}

/// Fetches and parses `/robots.txt` of `origin`. Missing (4xx) allows everything; a server
/// error or an unreachable host disallows everything, as RFC 9309 asks.
pub(crate) async fn fetch_robots(client: &SafeClient, origin: &Url) -> RobotsRules {
    let Ok(url) = origin.join("/robots.txt") else {
        return RobotsRules::allow_all();
    };
    let agent = robots_agent(&client.policy().user_agent).to_string();
    match client.get_raw(&url).await {
        Ok(bytes) => parse_robots(&bytes, &agent),
        Err(FetchError::Http { status, .. }) if (400..500).contains(&status) => {
            RobotsRules::allow_all()
        }
        Err(e) => {
            tracing::warn!(%url, error = %e, "robots.txt unreachable");
            RobotsRules {
                unreachable: Some(e.to_string()),
                ..RobotsRules::allow_all()
            }
        }
    }
}

/// The rules of a robots.txt body for `agent`, its crawl delay bounded by [`MAX_CRAWL_DELAY`].
fn parse_robots(txt: &[u8], agent: &str) -> RobotsRules {
    let robots = Robots::parse(txt, agent);
    let crawl_delay = robots.crawl_delay().map(|d| d.min(MAX_CRAWL_DELAY));
    let sitemaps = robots.sitemaps().to_vec();
    RobotsRules {
        robots,
        crawl_delay,
        sitemaps,
        unreachable: None,
    }
}

/// URLs listed by the sitemaps at `roots` (following sitemap indexes), bounded in files and URLs.
/// Unreadable sitemaps are skipped: a sitemap only seeds the crawl.
pub(crate) async fn sitemap_urls(client: &SafeClient, roots: Vec<Url>) -> Vec<Url> {
    let mut queue = std::collections::VecDeque::from(roots);
    let mut read = std::collections::HashSet::new();
    let mut urls = Vec::new();
    while let Some(sitemap) = queue.pop_front() {
        if read.len() >= MAX_SITEMAP_FILES || urls.len() >= MAX_SITEMAP_URLS {
            break;
        }
        if !read.insert(sitemap.clone()) {
            continue;
        }
        let Ok(bytes) = client.get_raw(&sitemap).await else {
            continue;
        };
        let Some(bytes) = gunzipped(bytes, client.policy().max_page_bytes) else {
            tracing::debug!(%sitemap, "gzipped sitemap over the page size cap or damaged; skipped");
            continue;
        };
        let (pages, nested) = parse_sitemap(&bytes, &sitemap);
        urls.extend(pages.into_iter().take(MAX_SITEMAP_URLS - urls.len()));
        queue.extend(nested);
    }
    urls
}

/// A sitemap's XML: a `.xml.gz` file (gzip bytes served as a file, not as a content encoding
/// the client already undid) inflated up to `cap` bytes; `None` past the cap or when damaged.
pub(crate) fn gunzipped(bytes: Vec<u8>, cap: u64) -> Option<Vec<u8>> {
    use std::io::Read;
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Some(bytes);
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes.as_slice())
        .take(cap.saturating_add(1))
        .read_to_end(&mut out)
        .ok()?;
    (out.len() as u64 <= cap).then_some(out)
}

/// The `<loc>`s of a sitemap: `(pages of a <urlset>, sitemaps of a <sitemapindex>)`.
pub(crate) fn parse_sitemap(xml: &[u8], base: &Url) -> (Vec<Url>, Vec<Url>) {
    let mut reader = Reader::from_reader(xml);
    let mut buf = Vec::new();
    let (mut pages, mut sitemaps) = (Vec::new(), Vec::new());
    let mut parent_is_sitemap = false;
    let mut in_loc = false;
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e)) => match e.local_name().as_ref() {
                b"sitemap" => parent_is_sitemap = true,
                b"url" => parent_is_sitemap = false,
                b"loc" => in_loc = true,
                _ => {}
            },
            Ok(Event::End(e)) if e.local_name().as_ref() == b"loc" => in_loc = false,
            Ok(Event::Text(text)) if in_loc => {
                let loc = text
                    .decode()
                    .ok()
                    .map(|t| t.trim().to_string())
                    .unwrap_or_default();
                if let Ok(mut url) = base.join(&loc) {
                    url.set_fragment(None);
                    if parent_is_sitemap {
                        sitemaps.push(url)
                    } else {
                        pages.push(url)
                    }
                }
            }
            Ok(Event::Eof) | Err(_) => break,
            _ => {}
        }
        buf.clear();
    }
    (pages, sitemaps)
}

/// Where a site may offer `name` (`llms.txt`, `llms-full.txt`): the scope's root, then the
/// host's root.
pub(crate) fn llms_candidates(prefix: &Url, name: &str) -> Vec<Url> {
    let mut out: Vec<Url> = [prefix.join(name), prefix.join(&format!("/{name}"))]
        .into_iter()
        .flatten()
        .collect();
    out.dedup();
    out
}

/// Link targets of a Markdown document, resolved against its URL, fragments removed.
pub(crate) fn markdown_links(markdown: &str, base: &Url) -> Vec<Url> {
    use pulldown_cmark::{Event as MdEvent, Parser, Tag};
    let mut seen = std::collections::HashSet::new();
    Parser::new(markdown)
        .filter_map(|event| match event {
            MdEvent::Start(Tag::Link { dest_url, .. }) => base.join(dest_url.trim()).ok(),
            _ => None,
        })
        .map(|mut url| {
            url.set_fragment(None);
            url
        })
        .filter(|url| seen.insert(url.clone()))
        .collect()
}

/// The first level-1 ATX heading of a Markdown document, as its title.
pub(crate) fn markdown_title(markdown: &str) -> Option<String> {
    markdown
        .lines()
        .find_map(|line| line.strip_prefix("# "))
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// The text a page's links are read from, when it has any.
pub(crate) fn body_text(body: &Body) -> Option<&str> {
    match body {
        Body::Text(text) => Some(text),
        Body::Bytes(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gzipped_sitemaps_are_inflated_within_the_cap() {
        let xml = br#"<urlset><url><loc>https://example.org/docs/a.html</loc></url></urlset>"#;
        let base = Url::parse("https://example.org/sitemap.xml.gz").unwrap();
        let inflated = gunzipped(gzip(xml), 1024).unwrap();
        let (pages, _) = parse_sitemap(&inflated, &base);
        assert_eq!(
            pages,
            [Url::parse("https://example.org/docs/a.html").unwrap()]
        );
        // Plain XML passes through; a bomb past the cap and damaged gzip are refused.
        assert_eq!(gunzipped(xml.to_vec(), 1024).unwrap(), xml.to_vec());
        assert!(gunzipped(gzip(&vec![b' '; 1 << 20]), 64 * 1024).is_none());
        assert!(gunzipped(vec![0x1f, 0x8b, 0, 1, 2], 1024).is_none());
    }

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn sitemap_and_index() {
        let base = url("http://h/sitemap.xml");
        let set =
            br#"<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
            <url><loc> http://h/a.html </loc><lastmod>2024-01-01</lastmod></url>
            <url><loc>http://h/b.html#x</loc></url></urlset>"#;
        let (pages, nested) = parse_sitemap(set, &base);
        assert_eq!(pages, [url("http://h/a.html"), url("http://h/b.html")]);
        assert!(nested.is_empty());
        let index =
            br#"<sitemapindex><sitemap><loc>http://h/s1.xml</loc></sitemap></sitemapindex>"#;
        assert_eq!(
            parse_sitemap(index, &base),
            (vec![], vec![url("http://h/s1.xml")])
        );
        assert_eq!(
            parse_sitemap(b"<urlset><url><loc>http://h/x", &base)
                .0
                .len(),
            1
        );
    }

    #[test]
    fn llms_files_and_markdown_links() {
        assert_eq!(
            llms_candidates(&url("http://h/docs/"), "llms.txt"),
            [url("http://h/docs/llms.txt"), url("http://h/llms.txt")]
        );
        assert_eq!(
            llms_candidates(&url("http://h/"), "llms.txt"),
            [url("http://h/llms.txt")]
        );
        let md = "# Project\n\n> Summary\n\n- [Guide](guide.html#intro): how\n- [API](/docs/api.md)\n- [Guide](guide.html)\n";
        let base = url("http://h/docs/llms.txt");
        assert_eq!(
            markdown_links(md, &base),
            [url("http://h/docs/guide.html"), url("http://h/docs/api.md")]
        );
        assert_eq!(markdown_title(md).as_deref(), Some("Project"));
    }

    #[test]
    fn robots_rules_for_our_agent() {
        let txt = b"User-agent: *\nDisallow: /\n\nUser-agent: exai\nDisallow: /private/\nCrawl-delay: 600\n\nSitemap: http://h/sitemap.xml\n";
        let rules = parse_robots(txt, "exai");
        assert_eq!(
            rules.refusal(&url("http://h/private/x.html")).as_deref(),
            Some("robots.txt")
        );
        assert_eq!(rules.refusal(&url("http://h/docs/x.html")), None);
        assert_eq!(rules.crawl_delay, Some(MAX_CRAWL_DELAY));
        assert_eq!(rules.sitemaps, [url("http://h/sitemap.xml")]);
        let others = parse_robots(txt, "otherbot");
        assert!(others.refusal(&url("http://h/docs/x.html")).is_some());
        let unreachable = RobotsRules {
            unreachable: Some("HTTP 503".into()),
            ..RobotsRules::allow_all()
        };
        assert!(
            unreachable
                .refusal(&url("http://h/a"))
                .unwrap()
                .contains("HTTP 503")
        );
    }

    #[test]
    fn robots_agent_is_the_product_token() {
        assert_eq!(
            robots_agent("exai/0.1.0 (+https://github.com/exai/exai)"),
            "exai"
        );
        assert_eq!(robots_agent(""), "exai");
    }
}
