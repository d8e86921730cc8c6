//! Sources of documentation and how they reach the knowledge base: each kind (local paths;
//! web sites, git repositories and package registries where this build fetches them) is
//! fetched and indexed through [`exai_kb::Kb`], and its [`Origin`] is recorded with the source
//! so that `exai refresh` fetches it again with the same options and re-indexes only what
//! changed.

pub mod origin;
pub mod package;
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

/// Whether `address` names something fetched rather than a local path: a URL, a package
/// (`npm:`, `pypi:`, `crate:`) or a git repository (`git+…`, `….git`, `PATH#REF`).
pub fn is_remote(address: &str) -> bool {
    address.starts_with("http://")
        || address.starts_with("https://")
        || matches!(package::classify(address), Ok(Some(_)) | Err(_))
}

/// The repository on this machine that `address` names (`PATH#REF`, `git+file://…`), for callers
/// that must check local paths against their own rules (the MCP server's allowed roots).
pub fn local_repository(address: &str) -> Option<PathBuf> {
    match package::classify(address) {
        Ok(Some(exai_packages::SourceSpec::Git(g))) => match g.location {
            exai_packages::GitLocation::Local(path) => Some(path),
            exai_packages::GitLocation::Remote(_) => None,
        },
        _ => None,
    }
}

/// What a request names: local paths, a web site, a package or a git repository.
enum Target {
    Origin(Origin),
    Package(exai_packages::PackageSpec),
    Git(exai_packages::GitSpec),
}

/// What kind of source a request's addresses name.
fn target_of(req: &Request, settings: &Settings) -> Result<Target> {
    if let [one] = req.specs.as_slice() {
        match package::classify(one)? {
            Some(exai_packages::SourceSpec::Package(p)) => return Ok(Target::Package(p)),
            Some(exai_packages::SourceSpec::Git(g)) => return Ok(Target::Git(g)),
            None => {}
        }
        if one.starts_with("http://") || one.starts_with("https://") {
            return Ok(Target::Origin(Origin::Web(web::WebOrigin::new(
                one, req, settings,
            )?)));
        }
    }
    if let Some(remote) = req.specs.iter().find(|s| is_remote(s)) {
        return Err(KbError::Invalid(format!(
            "`{remote}` is fetched, not a local path: index it on its own (a source comes from one place)"
        )));
    }
    Ok(Target::Origin(Origin::Paths {
        // Recorded absolute, so a refresh from another working directory reads the same files
        // (a path that does not resolve is left for the indexer to report).
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
    }))
}

/// The source name a site gets when the request names none: its host.
fn default_name(origin: &Origin) -> Option<String> {
    match origin {
        Origin::Web(web) => url::Url::parse(&web.url).ok().and_then(|u| {
            let host = u.host_str()?.to_string();
            Some(match u.port() {
                Some(port) => format!("{host}-{port}"),
                None => host,
            })
        }),
        _ => None,
    }
}

/// The name a source gets when its request names none: a site's host (and port), a
/// repository's `REPO@REF`, a package's `NAME@VERSION` (resolved from its registry: one
/// metadata request); `None` for local paths, which need a name.
pub fn default_source_name(spec: &str, settings: &Settings) -> Result<Option<String>> {
    match package::classify(spec)? {
        Some(exai_packages::SourceSpec::Package(p)) => {
            let resolved = package::resolve(&p, settings)?;
            Ok(Some(package::package_source_name(
                &resolved.name,
                &resolved.version,
            )))
        }
        Some(exai_packages::SourceSpec::Git(g)) => Ok(Some(package::git_source_name(&g))),
        None if spec.starts_with("http://") || spec.starts_with("https://") => {
            let url =
                url::Url::parse(spec).map_err(|e| KbError::Invalid(format!("`{spec}`: {e}")))?;
            let origin = Origin::Web(web::WebOrigin {
                url: url.to_string(),
                include: Vec::new(),
                exclude: Vec::new(),
                max_pages: settings.max_pages,
                max_depth: settings.max_depth,
                render: settings.render,
            });
            Ok(default_name(&origin))
        }
        None => Ok(None),
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
    let (source, report, origin) = match target_of(req, settings)? {
        Target::Package(spec) => {
            let (source, report, origin) = package::index_package(
                kb,
                req.source.as_deref(),
                &spec,
                req,
                settings,
                progress,
                cancel,
            )?;
            (source, report, Origin::Package(origin))
        }
        Target::Git(spec) => {
            let (source, report, origin) = package::index_git(
                kb,
                req.source.as_deref(),
                &spec,
                req,
                settings,
                progress,
                cancel,
            )?;
            (source, report, Origin::Git(origin))
        }
        Target::Origin(origin) => {
            let Some(source) = req.source.clone().or_else(|| default_name(&origin)) else {
                return Err(KbError::Invalid(
                    "name the source to file the documents under (--source NAME, e.g. react)"
                        .into(),
                ));
            };
            return run(kb, &source, &origin, req, settings, progress, cancel);
        }
    };
    record(kb, &source, &origin, req)?;
    Ok(report)
}

/// Record where `source` came from (not in a dry run).
fn record(kb: &Kb, source: &str, origin: &Origin, req: &Request) -> Result<()> {
    if !req.dry_run {
        kb.writer()?.set_origin(source, &origin.to_json())?;
    }
    Ok(())
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
    let (report, origin) = match origin {
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
            (kb.index(&request, progress, cancel)?, origin.clone())
        }
        Origin::Web(web) => match web::index(kb, source, web, req, settings, progress, cancel) {
            Ok(report) => (report, origin.clone()),
            Err(KbError::Cancelled) => {
                // The stopped crawl left its pages and frontier in the store: with the origin
                // recorded, a refresh resumes it (without, the source's root, a URL, would
                // read as a local path).
                record(kb, source, origin, req)?;
                return Err(KbError::Cancelled);
            }
            Err(e) => return Err(e),
        },
        Origin::Package(p) => again_package(kb, source, p, req, settings, progress, cancel)?,
        Origin::Git(g) => again_git(kb, source, g, req, settings, progress, cancel)?,
    };
    record(kb, source, &origin, req)?;
    Ok(report)
}

/// A recorded package fetched again at its version, with its recorded globs.
fn again_package(
    kb: &Kb,
    source: &str,
    p: &package::PackageOrigin,
    req: &Request,
    settings: &Settings,
    progress: &(dyn Fn(&Progress) + Sync),
    cancel: &AtomicBool,
) -> Result<(IndexReport, Origin)> {
    let req = Request {
        include: p.include.clone(),
        exclude: p.exclude.clone(),
        ..req.clone()
    };
    let spec = package::pinned(p)?;
    let (_, report, mut fetched) =
        package::index_package(kb, Some(source), &spec, &req, settings, progress, cancel)?;
    // Keep the spec as first given.
    fetched.spec = p.spec.clone();
    Ok((report, Origin::Package(fetched)))
}

/// A recorded repository fetched again at its ref, with its recorded globs.
fn again_git(
    kb: &Kb,
    source: &str,
    g: &package::GitOrigin,
    req: &Request,
    settings: &Settings,
    progress: &(dyn Fn(&Progress) + Sync),
    cancel: &AtomicBool,
) -> Result<(IndexReport, Origin)> {
    let req = Request {
        include: g.include.clone(),
        exclude: g.exclude.clone(),
        ..req.clone()
    };
    let Some(exai_packages::SourceSpec::Git(spec)) = package::classify(&g.spec)? else {
        return Err(KbError::Invalid(format!(
            "the recorded git origin `{}` no longer reads as one",
            g.spec
        )));
    };
    let (_, report, fetched) =
        package::index_git(kb, Some(source), &spec, &req, settings, progress, cancel)?;
    Ok((report, Origin::Git(fetched)))
}
