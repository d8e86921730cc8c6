//! Where a source's documents come from, as recorded with the source in the knowledge base
//! (`sources.origin`): enough to fetch and index them again (`exai refresh`) with the options
//! they were first indexed with, and what the last fetch found.

use serde::{Deserialize, Serialize};

/// A source's origin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// Files and directories on this machine.
    Paths {
        roots: Vec<String>,
        #[serde(default)]
        include: Vec<String>,
        #[serde(default)]
        exclude: Vec<String>,
    },
    /// A web site, crawled.
    Web(crate::web::WebOrigin),
    /// A package from a registry, at the version it resolved to.
    Package(crate::package::PackageOrigin),
    /// A git repository at a ref.
    Git(crate::package::GitOrigin),
}

impl Origin {
    /// The origin recorded for `info`; a source indexed before origins were recorded has its
    /// roots only, which are local paths.
    pub fn of(info: &exai_kb::SourceInfo) -> Option<Origin> {
        match serde_json::from_value::<Origin>(info.origin.clone()) {
            Ok(origin) => Some(origin),
            Err(_) if !info.roots.is_empty() => Some(Origin::Paths {
                roots: info.roots.clone(),
                include: Vec::new(),
                exclude: Vec::new(),
            }),
            Err(_) => None,
        }
    }

    /// Whether refreshing it fetches over the network (what `kb.refresh_interval_hours`
    /// refreshes on a schedule).
    pub fn is_fetched(&self) -> bool {
        !matches!(self, Origin::Paths { .. })
    }

    /// One line for listings: `paths /docs/a, /docs/b`.
    pub fn describe(&self) -> String {
        match self {
            Origin::Paths { roots, .. } => format!("paths {}", roots.join(", ")),
            Origin::Web(web) => format!("web {}", web.url),
            Origin::Package(p) => format!("{}:{}@{}", p.registry, p.name, p.version),
            Origin::Git(g) => format!("git {} at {}", g.spec, g.commit),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}
