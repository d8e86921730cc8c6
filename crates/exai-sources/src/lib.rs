//! Sources of documentation and how they reach the knowledge base: each kind (local paths;
//! web sites, git repositories and package registries where this build fetches them) is
//! fetched and indexed through [`exai_kb::Kb`], and its [`Origin`] is recorded with the source
//! so that `exai refresh` fetches it again with the same options and re-indexes only what
//! changed.

pub mod origin;
pub mod settings;
pub mod web;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use exai_kb::{IndexReport, IndexRequest, Kb, KbError, Progress};

pub use origin::Origin;
pub use settings::Settings;

type Result<T> = std::result::Result<T, KbError>;

/// What to index: local paths, or one address of a fetched kind.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub specs: Vec<String>,
    /// The source to file the documents under.
    pub source: Option<String>,
    pub technology: Option<String>,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub dry_run: bool,
    /// Remove documents whose files are gone (a refresh always does).
    pub prune: bool,
    pub reembed: bool,
    pub skip_embedding: bool,
    /// A crawl's bounds and rendering, over the settings' defaults.
    pub max_pages: Option<usize>,
    pub max_depth: Option<u32>,
    pub render: Option<exai_core::RenderMode>,
}

/// Whether `address` names something fetched over the network rather than a local path.
pub fn is_remote(address: &str) -> bool {
    address.starts_with("http://") || address.starts_with("https://")
}

/// What kind of source a request's addresses name.
fn origin_of(req: &Request, settings: &Settings) -> Result<Origin> {
    let remote: Vec<&String> = req.specs.iter().filter(|s| is_remote(s)).collect();
    match (remote.as_slice(), req.specs.len()) {
        ([], _) => Ok(Origin::Paths {
            // Recorded absolute, so a refresh from another working directory reads the same
            // files (a path that does not resolve is left for the indexer to report).
            roots: req
                .specs
                .iter()
                .map(|p| match std::fs::canonicalize(p) {
                    Ok(abs) => abs.display().to_string(),
                    Err(_) => p.clone(),
                })
                .collect(),
            include: req.include.clone(),
            exclude: req.exclude.clone(),
        }),
        ([url], 1) => Ok(Origin::Web(web::WebOrigin::new(url, req, settings)?)),
        _ => Err(KbError::Invalid(
            "give local paths, or one URL: a source comes from one place".into(),
        )),
    }
}

/// The source name a fetched origin gets when the request names none: a site's host.
fn default_name(origin: &Origin) -> Option<String> {
    match origin {
        Origin::Paths { .. } => None,
        Origin::Web(web) => url::Url::parse(&web.url).ok().and_then(|u| {
            let host = u.host_str()?.to_string();
            Some(match u.port() {
                Some(port) => format!("{host}-{port}"),
                None => host,
            })
        }),
    }
}

/// Index what `req` names, recording its origin with the source.
pub fn index(
    kb: &Kb,
    req: &Request,
    settings: &Settings,
    progress: &(dyn Fn(&Progress) + Sync),
    cancel: &AtomicBool,
) -> Result<IndexReport> {
    if req.specs.is_empty() {
        return Err(KbError::Invalid(
            "give at least one path or address to index".into(),
        ));
    }
    let origin = origin_of(req, settings)?;
    let Some(source) = req.source.clone().or_else(|| default_name(&origin)) else {
        return Err(KbError::Invalid(
            "name the source to file the documents under (--source NAME, e.g. react)".into(),
        ));
    };
    run(kb, &source, &origin, req, settings, progress, cancel)
}

/// Fetch and index `source` again from its recorded origin, removing what disappeared.
pub fn refresh(
    kb: &Kb,
    source: &str,
    settings: &Settings,
    skip_embedding: bool,
    progress: &(dyn Fn(&Progress) + Sync),
    cancel: &AtomicBool,
) -> Result<IndexReport> {
    let info = kb.sources()?;
    let Some(found) = info.iter().find(|s| s.name == source) else {
        let valid: Vec<String> = info.into_iter().map(|s| s.name).collect();
        return Err(KbError::UnknownValue {
            kind: "source",
            value: source.to_string(),
            hint: None,
            valid,
        });
    };
    let origin = Origin::of(found).ok_or_else(|| {
        KbError::Invalid(format!(
            "source `{source}` records no origin to refresh from; index it again with `exai index`"
        ))
    })?;
    let req = Request {
        source: Some(source.to_string()),
        technology: Some(found.technology.clone()),
        prune: true,
        skip_embedding,
        ..Request::default()
    };
    run(kb, source, &origin, &req, settings, progress, cancel)
}

/// Every source with a recorded origin, and that origin.
pub fn origins(kb: &Kb) -> Result<Vec<(String, Origin)>> {
    Ok(kb
        .sources()?
        .iter()
        .filter_map(|s| Origin::of(s).map(|o| (s.name.clone(), o)))
        .collect())
}

fn run(
    kb: &Kb,
    source: &str,
    origin: &Origin,
    req: &Request,
    settings: &Settings,
    progress: &(dyn Fn(&Progress) + Sync),
    cancel: &AtomicBool,
) -> Result<IndexReport> {
    let report = match origin {
        Origin::Paths {
            roots,
            include,
            exclude,
        } => {
            let request = IndexRequest {
                roots: roots.iter().map(PathBuf::from).collect(),
                source: source.to_string(),
                technology: req.technology.clone(),
                include: include.clone(),
                exclude: exclude.clone(),
                dry_run: req.dry_run,
                prune: req.prune,
                reembed: req.reembed,
                skip_embedding: req.skip_embedding,
            };
            kb.index(&request, progress, cancel)?
        }
        Origin::Web(web) => web::index(kb, source, web, req, settings, progress, cancel)?,
    };
    if !req.dry_run {
        kb.writer()?.set_origin(source, &origin.to_json())?;
    }
    Ok(report)
}
