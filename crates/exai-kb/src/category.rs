//! Categories inferred from paths and headings by a keyword map that configuration can extend
//! or override (`kb.categories`).

use std::collections::BTreeMap;

/// The built-in map, in priority order: the first category whose keyword appears wins.
pub const DEFAULT_CATEGORIES: &[(&str, &[&str])] = &[
    (
        "troubleshooting",
        &[
            "troubleshooting",
            "troubleshoot",
            "faq",
            "errors",
            "error",
            "debugging",
            "known-issues",
            "common-issues",
            "problems",
            "pitfalls",
        ],
    ),
    (
        "authentication",
        &[
            "auth",
            "authentication",
            "authorization",
            "login",
            "logout",
            "oauth",
            "sso",
            "jwt",
            "signin",
            "sign-in",
            "signup",
            "sign-up",
            "permissions",
            "session",
            "sessions",
        ],
    ),
    (
        "setup",
        &[
            "install",
            "installation",
            "installing",
            "setup",
            "set-up",
            "configuration",
            "configure",
            "config",
            "deploy",
            "deployment",
            "deploying",
            "upgrade",
            "upgrading",
            "migration",
            "migrating",
            "environment",
        ],
    ),
    (
        "getting_started",
        &[
            "getting-started",
            "getting_started",
            "gettingstarted",
            "quickstart",
            "quick-start",
            "start",
            "introduction",
            "intro",
            "hello",
            "first-steps",
            "foreword",
            "overview",
            "tutorial",
            "basics",
        ],
    ),
    (
        "examples",
        &[
            "example", "examples", "sample", "samples", "demo", "demos", "recipes", "recipe",
            "cookbook", "showcase",
        ],
    ),
    (
        "api_reference",
        &[
            "api",
            "reference",
            "ref",
            "struct",
            "enum",
            "trait",
            "fn",
            "macro",
            "constant",
            "type",
            "union",
            "primitive",
            "keyword",
            "attr",
            "derive",
            "mod",
            "module",
            "modules",
            "methods",
            "props",
            "hooks",
            "components",
            "cli",
            "commands",
        ],
    ),
    (
        "advanced",
        &[
            "advanced",
            "internals",
            "performance",
            "optimization",
            "optimizing",
            "unsafe",
            "architecture",
            "under-the-hood",
            "deep-dive",
            "patterns",
            "concurrency",
            "async",
        ],
    ),
    (
        "guides",
        &[
            "guide",
            "guides",
            "how-to",
            "howto",
            "walkthrough",
            "learn",
            "usage",
            "using",
            "working-with",
        ],
    ),
    (
        "concepts",
        &[
            "concepts",
            "concept",
            "fundamentals",
            "understanding",
            "what-is",
            "what",
            "why",
            "how-it-works",
            "core-concepts",
            "ownership",
            "model",
            "theory",
        ],
    ),
];

/// The fallback when nothing matches.
pub const GENERAL: &str = "general";

#[derive(Debug, Clone)]
pub struct CategoryMap {
    entries: Vec<(String, Vec<String>)>,
}

impl Default for CategoryMap {
    fn default() -> Self {
        Self::with_overrides(&BTreeMap::new())
    }
}

fn words(text: &str) -> Vec<String> {
    let lower = text.to_lowercase();
    let mut out: Vec<String> = lower
        .split(|c: char| !c.is_alphanumeric() && c != '-' && c != '_')
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    // Also the parts of hyphenated words, and "ch04-01-what-is" style pairs.
    let parts: Vec<String> = out
        .iter()
        .flat_map(|w| w.split(['-', '_']).map(str::to_string).collect::<Vec<_>>())
        .collect();
    let pairs: Vec<String> = parts
        .windows(2)
        .map(|p| format!("{}-{}", p[0], p[1]))
        .collect();
    out.extend(parts);
    out.extend(pairs);
    out
}

impl CategoryMap {
    /// Built-in categories, with `overrides` replacing the keywords of a category it names (or
    /// adding a new category, checked first).
    pub fn with_overrides(overrides: &BTreeMap<String, Vec<String>>) -> Self {
        let mut entries: Vec<(String, Vec<String>)> = overrides
            .iter()
            .filter(|(name, _)| !DEFAULT_CATEGORIES.iter().any(|(d, _)| d == name))
            .map(|(n, k)| (n.clone(), k.clone()))
            .collect();
        for (name, keywords) in DEFAULT_CATEGORIES {
            let keywords = overrides
                .get(*name)
                .cloned()
                .unwrap_or_else(|| keywords.iter().map(|k| k.to_string()).collect());
            entries.push((name.to_string(), keywords));
        }
        Self { entries }
    }

    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.entries.iter().map(|(n, _)| n.clone()).collect();
        names.push(GENERAL.into());
        names
    }

    /// The category of a document: an explicit one from metadata wins, then path segments,
    /// then the title and top headings.
    pub fn infer(&self, rel_path: &str, title: &str, explicit: Option<&str>) -> String {
        if let Some(c) = explicit.map(str::trim).filter(|c| !c.is_empty()) {
            return c.to_lowercase().replace([' ', '-'], "_");
        }
        let path_words = words(&rel_path.replace('.', " "));
        let title_words = words(title);
        for candidates in [&path_words, &title_words] {
            for (name, keywords) in &self.entries {
                if keywords.iter().any(|k| candidates.contains(k)) {
                    return name.clone();
                }
            }
        }
        GENERAL.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infers_from_path_then_title() {
        let m = CategoryMap::default();
        assert_eq!(
            m.infer("docs/getting-started/install.md", "", None),
            "setup"
        );
        assert_eq!(
            m.infer("std/vec/struct.Vec.html", "Vec in std::vec", None),
            "api_reference"
        );
        assert_eq!(m.infer("guides/routing.md", "", None), "guides");
        assert_eq!(
            m.infer("x/page.md", "Troubleshooting builds", None),
            "troubleshooting"
        );
        assert_eq!(
            m.infer("ch04-01-what-is-ownership.html", "What Is Ownership?", None),
            "concepts"
        );
        assert_eq!(m.infer("misc.md", "Colophon", None), "general");
        assert_eq!(m.infer("x.md", "", Some("API Reference")), "api_reference");
    }

    #[test]
    fn overrides_replace_and_add() {
        let mut o = BTreeMap::new();
        o.insert("recipes".to_string(), vec!["recipe".to_string()]);
        o.insert("setup".to_string(), vec!["bootstrap".to_string()]);
        let m = CategoryMap::with_overrides(&o);
        assert_eq!(m.infer("a/recipe/x.md", "", None), "recipes");
        assert_eq!(m.infer("a/install/x.md", "", None), "general");
        assert_eq!(m.infer("a/bootstrap.md", "", None), "setup");
        assert!(m.names().contains(&"recipes".to_string()));
    }
}
