//! Which URLs a crawl may visit: a URL prefix, then include and exclude globs.
//!
//! URLs are compared in the normal form the `url` crate gives them (lowercase scheme and host,
//! default port dropped, path dot-segments resolved) with the fragment removed. A trailing
//! `index.html` is kept: a server may answer `/dir/` and `/dir/index.html` differently, and
//! when it answers them alike the crawl's identical-body check indexes the page once.
//!
//! Globs (`globset` syntax) match the URL's path, from its leading `/`, without the query;
//! `*` stays within one path segment and `**` spans segments (`/docs/**/*.html`). A URL is
//! visited when it is under the prefix, matches an include glob (or there are none), and matches
//! no exclude glob. The start URL is always visited: it is where the links come from.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use url::Url;

use crate::error::FetchError;

#[derive(Debug)]
pub(crate) struct Scope {
    prefix: Url,
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
}

/// The default scope of a start URL: its scheme, host, port and path up to the last `/`.
pub(crate) fn default_prefix(start: &Url) -> Url {
    let mut prefix = start.clone();
    prefix.set_query(None);
    prefix.set_fragment(None);
    let path = start.path();
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    prefix.set_path(if dir.is_empty() { "/" } else { dir });
    prefix
}

fn glob_set(patterns: &[String]) -> Result<Option<GlobSet>, FetchError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut set = GlobSetBuilder::new();
    for pattern in patterns {
        let glob = GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()
            .map_err(|e| FetchError::InvalidPolicy(format!("glob {pattern:?}: {e}")))?;
        set.add(glob);
    }
    set.build()
        .map(Some)
        .map_err(|e| FetchError::InvalidPolicy(format!("globs: {e}")))
}

impl Scope {
    pub(crate) fn new(
        prefix: Url,
        include: &[String],
        exclude: &[String],
    ) -> Result<Self, FetchError> {
        Ok(Self {
            prefix,
            include: glob_set(include)?,
            exclude: glob_set(exclude)?,
        })
    }

    pub(crate) fn prefix(&self) -> &Url {
        &self.prefix
    }

    /// Same origin and under the prefix path (globs not applied): where redirects may lead.
    pub(crate) fn under_prefix(&self, url: &Url) -> bool {
        url.scheme() == self.prefix.scheme()
            && url.host_str() == self.prefix.host_str()
            && url.port_or_known_default() == self.prefix.port_or_known_default()
            && url.path().starts_with(self.prefix.path())
    }

    /// `Ok` when the crawl visits `url`, else the reason it does not.
    pub(crate) fn check(&self, url: &Url) -> Result<(), &'static str> {
        if !self.under_prefix(url) {
            return Err("out of scope");
        }
        let path = url.path();
        if self.include.as_ref().is_some_and(|set| !set.is_match(path)) {
            return Err("not included");
        }
        if self.exclude.as_ref().is_some_and(|set| set.is_match(path)) {
            return Err("excluded");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn default_prefix_is_the_start_directory() {
        assert_eq!(
            default_prefix(&url("http://H:80/book/ch01.html?x#y")).as_str(),
            "http://h/book/"
        );
        assert_eq!(
            default_prefix(&url("https://h/book/")).as_str(),
            "https://h/book/"
        );
        assert_eq!(default_prefix(&url("https://h")).as_str(), "https://h/");
    }

    #[test]
    fn prefix_include_and_exclude() {
        let scope = Scope::new(
            url("http://h:8080/book/"),
            &["/book/ch*.html".into()],
            &["/book/ch02*".into()],
        )
        .unwrap();
        assert_eq!(scope.check(&url("http://h:8080/book/ch01.html")), Ok(()));
        assert_eq!(
            scope.check(&url("http://h:8080/book/ch02.html")),
            Err("excluded")
        );
        assert_eq!(
            scope.check(&url("http://h:8080/book/appendix.html")),
            Err("not included")
        );
        assert_eq!(
            scope.check(&url("http://h:8080/book/sub/ch01.html")),
            Err("not included")
        );
        assert_eq!(
            scope.check(&url("http://h:8080/other/ch01.html")),
            Err("out of scope")
        );
        assert_eq!(
            scope.check(&url("https://h:8080/book/ch01.html")),
            Err("out of scope")
        );
        assert_eq!(
            scope.check(&url("http://h:8081/book/ch01.html")),
            Err("out of scope")
        );
        assert!(Scope::new(url("http://h/"), &["[".into()], &[]).is_err());
    }
}
