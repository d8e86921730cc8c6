//! The knowledge-base tools, against a small fixture of two sources indexed through `index_path`
//! before the first kb case. The word "zephyrine" appears in three documents across both
//! sources (one of them code), so every filter has something to keep and something to drop.

use serde_json::{Value, json};

use super::{Case, case};
use crate::check::{Problem, check, contains};
use crate::system::{Reply, System};

/// The marker word of the fixture.
const MARKER: &str = "zephyrine";

/// A source of the fixture.
pub struct FixtureSource {
    pub name: &'static str,
    pub technology: &'static str,
    /// (path under the source's root, text)
    pub files: Vec<(&'static str, String)>,
}

/// The fixture every kb case searches.
pub fn corpus() -> Vec<FixtureSource> {
    let rules: String = (1..=60)
        .map(|i| format!("Rule {i}: a shared reference lets many readers see the value while nobody writes to it. "))
        .collect();
    vec![
        FixtureSource {
            name: "guide",
            technology: "rust",
            files: vec![
                (
                    "ownership.md",
                    format!(
                        "# Ownership\n\nEvery value in Rust has exactly one owner.\n\n## Moves\n\nAssigning a value moves it; the {MARKER} example moves a string out of a vector.\n\n## Borrowing\n\n{rules}\n"
                    ),
                ),
                (
                    "async/futures.md",
                    "# Futures\n\n## Polling\n\nA future does nothing until an executor polls it to completion.\n".to_string(),
                ),
            ],
        },
        FixtureSource {
            name: "api",
            technology: "http",
            files: vec![
                (
                    "endpoints.md",
                    format!(
                        "# Endpoints\n\n## GET /items\n\nLists items; the {MARKER} parameter pages through them.\n"
                    ),
                ),
                (
                    "client/fetch.py",
                    format!(
                        "def fetch_items(session):\n    \"\"\"Fetch every item, following the {MARKER} cursor.\"\"\"\n    return session.get('/items')\n"
                    ),
                ),
            ],
        },
    ]
}

fn hits(r: &Reply) -> Vec<Value> {
    r.at("/hits").as_array().cloned().unwrap_or_default()
}

async fn search(s: &System, args: Value) -> Result<Vec<Value>, Problem> {
    Ok(hits(&s.call("search_docs", args).await?.success()?))
}

/// Index `files` (relative path, text) into a fresh source; returns the job status.
async fn index_source(
    s: &System,
    source: &str,
    files: &[(&str, &str)],
    wait_secs: u32,
) -> Result<Reply, Problem> {
    for (path, text) in files {
        s.write(&format!("sources/{source}/{path}"), text)?;
    }
    let root = s.files().join("sources").join(source);
    s.call(
        "index_path",
        json!({ "path": root.display().to_string(), "source": source, "wait_secs": wait_secs }),
    )
    .await
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(
            kb "search_docs",
            "basic",
            "a keyword query finds the documents holding it, each hit with ids, score, title, section, path and a snippet showing the word",
            |s| {
                s.corpus().await?;
                let found = search(s, json!({ "query": MARKER, "mode": "keyword" })).await?;
                check!(found.len() == 3, "{} hits for {MARKER}, the fixture has 3 documents with it", found.len());
                for h in &found {
                    check!(
                        h["chunk_id"].is_i64() && h["doc_id"].is_i64() && h["score"].is_number(),
                        "a hit without ids or score: {h}"
                    );
                    check!(
                        !h["title"].as_str().unwrap_or("").is_empty() && !h["path"].as_str().unwrap_or("").is_empty(),
                        "a hit without title or path: {h}"
                    );
                    contains("a snippet", &h["snippet"].as_str().unwrap_or("").to_lowercase(), MARKER)?;
                }
                let borrow = search(s, json!({ "query": "shared reference readers", "limit": 3 })).await?;
                check!(
                    borrow.first().is_some_and(|h| h["title"] == "Ownership"
                        && h["section"].as_str().unwrap_or("").contains("Borrowing")),
                    "the Borrowing section is not the top hit: {}",
                    borrow.first().cloned().unwrap_or(Value::Null)
                );
                Ok(())
            }
        ),
        case!(
            kb "search_docs",
            "search_filters",
            "source, technology, doc_type and path_prefix each keep only matching hits and drop some the unfiltered query returns",
            |s| {
                s.corpus().await?;
                let all = search(s, json!({ "query": MARKER })).await?;
                let field = |hs: &[Value], k: &str| -> Vec<String> {
                    hs.iter().map(|h| h[k].as_str().unwrap_or("").to_string()).collect()
                };
                check!(
                    field(&all, "source").iter().any(|v| v == "guide") && field(&all, "source").iter().any(|v| v == "api"),
                    "the unfiltered query should reach both sources: {:?}",
                    field(&all, "source")
                );
                for (arg, value, key) in [
                    ("source", "guide", "source"),
                    ("technology", "http", "technology"),
                    ("doc_type", "code", "doc_type"),
                ] {
                    let kept = search(s, json!({ "query": MARKER, arg: value })).await?;
                    check!(!kept.is_empty(), "{arg}={value} found nothing");
                    check!(
                        field(&kept, key).iter().all(|v| v == value),
                        "{arg}={value} let through {:?}",
                        field(&kept, key)
                    );
                    check!(kept.len() < all.len(), "{arg}={value} dropped nothing");
                }
                let code_path = search(s, json!({ "query": MARKER, "doc_type": "code" })).await?
                    .first()
                    .and_then(|h| h["path"].as_str().map(str::to_string))
                    .unwrap_or_default();
                let prefix = code_path.rsplit_once('/').map(|(dir, _)| format!("{dir}/")).unwrap_or_default();
                check!(!prefix.is_empty(), "the code hit's path {code_path:?} has no directory");
                let under = search(s, json!({ "query": MARKER, "path_prefix": prefix })).await?;
                check!(
                    !under.is_empty() && field(&under, "path").iter().all(|p| p.starts_with(&prefix)),
                    "path_prefix {prefix:?} gave {:?}",
                    field(&under, "path")
                );
                check!(under.len() < all.len(), "path_prefix dropped nothing");
                Ok(())
            }
        ),
        case!(
            kb "search_docs",
            "edge_cases",
            "no match is an empty list, limit 1 gives one hit, query syntax characters and non-ASCII are plain text, group_by_document gives one hit per document",
            |s| {
                s.corpus().await?;
                check!(search(s, json!({ "query": "xylophonequux" })).await?.is_empty(), "hits for a word nowhere in the fixture");
                let one = search(s, json!({ "query": MARKER, "limit": 1 })).await?;
                check!(one.len() == 1, "limit 1 gave {} hits", one.len());
                search(s, json!({ "query": "\"unbalanced AND ( NEAR* -" })).await?;
                search(s, json!({ "query": "所有权 café ☕" })).await?;
                let grouped = search(s, json!({ "query": "shared reference", "group_by_document": true })).await?;
                let mut docs: Vec<i64> = grouped.iter().filter_map(|h| h["doc_id"].as_i64()).collect();
                let n = docs.len();
                docs.sort_unstable();
                docs.dedup();
                check!(n > 0 && docs.len() == n, "group_by_document returned {n} hits for {} documents", docs.len());
                Ok(())
            }
        ),
        case!(
            kb "search_docs",
            "error_handling",
            "an unknown source is refused with the valid ones listed; limit 0 and an unknown mode are refused",
            |s| {
                s.corpus().await?;
                let r = s.call("search_docs", json!({ "query": "x", "source": "gide" })).await?.refusal()?;
                contains("the refusal", &r.text, "guide")?;
                let zero = s.call("search_docs", json!({ "query": "x", "limit": 0 })).await?.refusal()?;
                contains("the refusal", &zero.text, "limit")?;
                let mode = s.call("search_docs", json!({ "query": "x", "mode": "fuzzy" })).await?.refusal()?;
                contains("the refusal", &mode.text, "fuzzy")?;
                Ok(())
            }
        ),
        case!(
            kb "get_chunk",
            "basic",
            "the full text of a hit's chunk; with context, neighbours of the same document and section in position order",
            |s| {
                s.corpus().await?;
                let top = search(s, json!({ "query": "Rule 30 shared reference", "limit": 1 })).await?;
                let id = top.first().and_then(|h| h["chunk_id"].as_i64()).ok_or_else(|| Problem::Fail("no hit to fetch".into()))?;
                let r = s.call("get_chunk", json!({ "chunk_id": id, "context": 1 })).await?.success()?;
                check!(r.at("/chunk/id").as_i64() == Some(id), "asked for chunk {id}, got {}", r.at("/chunk/id"));
                contains("the chunk", r.str("/chunk/text"), "shared reference")?;
                let position = r.at("/chunk/position").as_i64().unwrap_or(-1);
                let neighbours: Vec<Value> = ["/before", "/after"]
                    .iter()
                    .flat_map(|p| r.at(p).as_array().cloned().unwrap_or_default())
                    .collect();
                check!(!neighbours.is_empty(), "the Borrowing section spans several chunks but no neighbour came back");
                for n in &neighbours {
                    check!(
                        n["doc_id"] == *r.at("/chunk/doc_id") && n["section"] == *r.at("/chunk/section"),
                        "a neighbour from elsewhere: {n}"
                    );
                    let p = n["position"].as_i64().unwrap_or(-100);
                    check!((p - position).abs() == 1, "neighbour at position {p}, the chunk is at {position}");
                }
                Ok(())
            }
        ),
        case!(
            kb "get_chunk",
            "error_handling",
            "a chunk id that does not exist is refused as not found",
            |s| {
                s.corpus().await?;
                let r = s.call("get_chunk", json!({ "chunk_id": 987_654_321 })).await?.refusal()?;
                contains("the refusal", &r.text, "not found")?;
                Ok(())
            }
        ),
        case!(
            kb "get_document",
            "basic",
            "a document by doc_id and by source + path is the same, with all its chunks in order",
            |s| {
                s.corpus().await?;
                let top = search(s, json!({ "query": "Rule 12 shared reference", "limit": 1 })).await?;
                let hit = top.first().cloned().ok_or_else(|| Problem::Fail("no hit".into()))?;
                let by_id = s.call("get_document", json!({ "doc_id": hit["doc_id"] })).await?.success()?;
                check!(by_id.str("/document/title") == "Ownership", "title {:?}", by_id.str("/document/title"));
                let positions: Vec<i64> = by_id.at("/chunks").as_array().map(|c| c.iter().filter_map(|c| c["position"].as_i64()).collect()).unwrap_or_default();
                check!(positions.len() > 2, "{} chunks for a document with a long section", positions.len());
                check!(positions.windows(2).all(|w| w[0] < w[1]), "chunks out of order: {positions:?}");
                check!(
                    by_id.at("/document/chunks").as_i64() == Some(positions.len() as i64),
                    "the document counts {} chunks, {} came back",
                    by_id.at("/document/chunks"),
                    positions.len()
                );
                let by_path = s
                    .call("get_document", json!({ "source": hit["source"], "path": hit["path"] }))
                    .await?
                    .success()?;
                check!(
                    by_path.at("/document/id") == by_id.at("/document/id"),
                    "by path {} but by id {}",
                    by_path.at("/document/id"),
                    by_id.at("/document/id")
                );
                Ok(())
            }
        ),
        case!(
            kb "get_document",
            "error_handling",
            "neither doc_id nor path is refused with what to give; an unknown doc_id is not found",
            |s| {
                s.corpus().await?;
                let none = s.call("get_document", json!({})).await?.refusal()?;
                contains("the refusal", &none.text, "doc_id")?;
                let missing = s.call("get_document", json!({ "doc_id": 987_654_321 })).await?.refusal()?;
                contains("the refusal", &missing.text, "not found")?;
                Ok(())
            }
        ),
        case!(
            kb "list_sources",
            "basic",
            "each fixture source with its technology, document count and chunks; keyword search listed as a mode",
            |s| {
                let corpus = s.corpus().await?;
                let r = s.call("list_sources", json!({})).await?.success()?;
                let listed = r.at("/sources").as_array().cloned().unwrap_or_default();
                for (name, technology, documents) in &corpus.sources {
                    let found = listed.iter().find(|x| x["name"] == name.as_str());
                    check!(found.is_some(), "source {name} is not listed");
                    let x = found.cloned().unwrap_or(Value::Null);
                    check!(x["technology"] == technology.as_str(), "{name}: technology {}", x["technology"]);
                    check!(x["documents"].as_u64() == Some(*documents), "{name}: {} documents, indexed {documents}", x["documents"]);
                    check!(x["chunks"].as_u64().unwrap_or(0) >= *documents, "{name}: {} chunks", x["chunks"]);
                }
                check!(
                    r.at("/status/search_modes").as_array().is_some_and(|m| m.iter().any(|m| m == "keyword")),
                    "search modes {}",
                    r.at("/status/search_modes")
                );
                Ok(())
            }
        ),
        case!(
            kb "resolve_library",
            "versions",
            "two indexed versions of one library: the newest by default, a range picks the older, search_docs follows the version, an unknown library is refused with the known ones",
            |s| {
                for (version, word) in [("1.2.0", "walrus"), ("2.0.1", "narwhal")] {
                    let files = [("guide.md", format!("# Guide\n\nThe {word} option sets the pool size.\n"))];
                    let files: Vec<(&str, &str)> = files.iter().map(|(p, t)| (*p, t.as_str())).collect();
                    index_source(s, &format!("vlib@{version}"), &files, 30).await?.success()?;
                }
                let newest = s.call("resolve_library", json!({ "library": "vlib" })).await?.success()?;
                check!(newest.str("/source") == "vlib@2.0.1", "newest: {}", newest.text);
                check!(
                    newest.at("/versions") == &json!(["2.0.1", "1.2.0"]),
                    "versions {}",
                    newest.at("/versions")
                );
                let older = s.call("resolve_library", json!({ "library": "vlib", "version": "^1" })).await?.success()?;
                check!(older.str("/source") == "vlib@1.2.0", "^1: {}", older.text);
                let found = search(s, json!({ "query": "pool size", "mode": "keyword", "source": "vlib", "version": "1.x" })).await?;
                check!(found.len() == 1 && found[0]["source"] == "vlib@1.2.0", "search with version 1.x: {found:?}");
                let unknown = s.call("resolve_library", json!({ "library": "no-such-lib" })).await?.refusal()?;
                contains("the refusal", &unknown.text, "vlib")?;
                Ok(())
            }
        ),
        case!(
            kb "get_technologies",
            "basic",
            "each fixture technology with its document count",
            |s| {
                let corpus = s.corpus().await?;
                let r = s.call("get_technologies", json!({})).await?.success()?;
                let listed = r.at("/technologies").as_array().cloned().unwrap_or_default();
                for (_, technology, documents) in &corpus.sources {
                    let n = listed.iter().find(|t| t["name"] == technology.as_str()).and_then(|t| t["documents"].as_u64());
                    check!(n.is_some_and(|n| n >= *documents), "technology {technology}: {n:?} documents, indexed {documents}");
                }
                Ok(())
            }
        ),
        case!(
            kb "get_categories",
            "basic",
            "category counts cover every indexed document and name only categories the classifier knows",
            |s| {
                s.corpus().await?;
                let r = s.call("get_categories", json!({})).await?.success()?;
                let counts = r.at("/categories").as_array().cloned().unwrap_or_default();
                let known: Vec<String> = r.at("/known").as_array().map(|k| k.iter().filter_map(|k| k.as_str().map(str::to_string)).collect()).unwrap_or_default();
                check!(!known.is_empty(), "no known categories");
                let total: u64 = counts.iter().filter_map(|c| c["documents"].as_u64()).sum();
                let sources = s.call("list_sources", json!({})).await?.success()?;
                let documents: u64 = sources.at("/sources").as_array().map(|a| a.iter().filter_map(|x| x["documents"].as_u64()).sum()).unwrap_or(0);
                check!(total == documents, "categories count {total} documents, the sources {documents}");
                for c in &counts {
                    let name = c["name"].as_str().unwrap_or("");
                    check!(known.iter().any(|k| k == name), "category {name:?} is not among the known {known:?}");
                }
                Ok(())
            }
        ),
        case!(
            "index_path",
            "basic",
            "a new source is indexed (files, chunks); indexing it again finds every file unchanged",
            |s| {
                let files = [
                    ("a.md", "# Alpha\n\nFirst page about kites.\n"),
                    ("b.md", "# Beta\n\nSecond page about kites.\n"),
                ];
                let first = index_source(s, "validate-index", &files, 30)
                    .await?
                    .success()?;
                check!(
                    first.str("/state") == "done",
                    "state {:?}",
                    first.str("/state")
                );
                check!(
                    first.at("/report/added").as_u64() == Some(2)
                        && first.at("/report/chunks_written").as_u64().unwrap_or(0) >= 2,
                    "report {}",
                    first.at("/report")
                );
                let again = index_source(s, "validate-index", &files, 30)
                    .await?
                    .success()?;
                check!(
                    again.at("/report/unchanged").as_u64() == Some(2)
                        && again.at("/report/added").as_u64() == Some(0),
                    "re-indexing changed something: {}",
                    again.at("/report")
                );
                Ok(())
            }
        ),
        case!(
            "index_path",
            "progress",
            "indexing sends progress notifications while the client waits",
            |s| {
                let r = index_source(
                    s,
                    "validate-progress",
                    &[("p.md", "# P\n\nProgress page.\n")],
                    30,
                )
                .await?
                .success()?;
                check!(r.str("/state") == "done", "state {:?}", r.str("/state"));
                check!(!r.progress.is_empty(), "no progress notification");
                Ok(())
            }
        ),
        case!(
            "index_path",
            "error_handling",
            "a path outside the allowed roots and a missing path are refused",
            |s| {
                let outside = s
                    .call("index_path", json!({ "path": "/etc", "source": "etc" }))
                    .await?
                    .refusal()?;
                contains("the refusal", &outside.text, "outside the allowed roots")?;
                let missing = s.files().join("no-such-dir");
                let r = s
                    .call(
                        "index_path",
                        json!({ "path": missing.display().to_string(), "source": "missing" }),
                    )
                    .await?
                    .refusal()?;
                contains("the refusal", &r.text, "no-such-dir")?;
                Ok(())
            }
        ),
        case!(
            "job_status",
            "basic",
            "the job index_path started reports done with its report",
            |s| {
                let started =
                    index_source(s, "validate-job", &[("j.md", "# J\n\nJob page.\n")], 30)
                        .await?
                        .success()?;
                let id = started.str("/job_id").to_string();
                check!(!id.is_empty(), "index_path returned no job_id");
                let r = s
                    .call("job_status", json!({ "job_id": id }))
                    .await?
                    .success()?;
                check!(r.str("/job_id") == id, "job {:?}", r.str("/job_id"));
                check!(r.str("/state") == "done", "state {:?}", r.str("/state"));
                check!(
                    r.at("/report/files_seen").as_u64() == Some(1),
                    "report {}",
                    r.at("/report")
                );
                Ok(())
            }
        ),
        case!(
            "job_status",
            "error_handling",
            "an unknown job id is refused",
            |s| {
                let r = s
                    .call("job_status", json!({ "job_id": "job-000000000000" }))
                    .await?
                    .refusal()?;
                contains("the refusal", &r.text, "unknown job")?;
                Ok(())
            }
        ),
        case!(
            "cancel_job",
            "basic",
            "a running indexing job stops as cancelled, with fewer files done than found",
            |s| {
                let pages: Vec<(String, String)> = (0..1000)
                    .map(|i| {
                        (
                            format!("p{i:04}.md"),
                            format!("# Page {i}\n\nText of page {i} about cancellation.\n"),
                        )
                    })
                    .collect();
                let files: Vec<(&str, &str)> = pages
                    .iter()
                    .map(|(p, t)| (p.as_str(), t.as_str()))
                    .collect();
                let started = index_source(s, "validate-cancel", &files, 0)
                    .await?
                    .success()?;
                if started.str("/state") != "running" {
                    return Err(Problem::Error(format!(
                        "the job was {} before it could be cancelled",
                        started.str("/state")
                    )));
                }
                let id = started.str("/job_id").to_string();
                let r = s
                    .call("cancel_job", json!({ "job_id": id }))
                    .await?
                    .success()?;
                check!(
                    r.str("/state") == "cancelled",
                    "state after cancel_job: {:?}",
                    r.str("/state")
                );
                let done = r.at("/files_done").as_u64().unwrap_or(0);
                check!(
                    done < 1000,
                    "{done} of 1000 files done: nothing was cancelled"
                );
                let later = s
                    .call("job_status", json!({ "job_id": id }))
                    .await?
                    .success()?;
                check!(
                    later.str("/state") == "cancelled",
                    "job_status says {:?}",
                    later.str("/state")
                );
                Ok(())
            }
        ),
        case!(
            "cancel_job",
            "error_handling",
            "an unknown job id is refused",
            |s| {
                let r = s
                    .call("cancel_job", json!({ "job_id": "job-000000000000" }))
                    .await?
                    .refusal()?;
                contains("the refusal", &r.text, "unknown job")?;
                Ok(())
            }
        ),
        case!(
            "remove_source",
            "basic",
            "removing a source deletes its documents: it is no longer listed or searchable",
            |s| {
                index_source(
                    s,
                    "validate-remove",
                    &[
                        ("r1.md", "# R1\n\nplover page\n"),
                        ("r2.md", "# R2\n\nplover page\n"),
                    ],
                    30,
                )
                .await?
                .success()?;
                let r = s
                    .call("remove_source", json!({ "source": "validate-remove" }))
                    .await?
                    .success()?;
                check!(
                    r.at("/documents_removed").as_u64() == Some(2),
                    "documents_removed {}",
                    r.at("/documents_removed")
                );
                let listed = s.call("list_sources", json!({})).await?.success()?;
                check!(
                    !listed
                        .at("/sources")
                        .as_array()
                        .is_some_and(|a| a.iter().any(|x| x["name"] == "validate-remove")),
                    "the removed source is still listed"
                );
                let found = s
                    .call("search_docs", json!({ "query": "plover" }))
                    .await?
                    .success()?;
                check!(
                    hits(&found).is_empty(),
                    "the removed documents are still found"
                );
                Ok(())
            }
        ),
        case!(
            "remove_source",
            "error_handling",
            "an unknown source is refused with the valid ones listed",
            |s| {
                index_source(s, "validate-keep", &[("k.md", "# K\n\nkept\n")], 30)
                    .await?
                    .success()?;
                let r = s
                    .call("remove_source", json!({ "source": "no-such-source" }))
                    .await?
                    .refusal()?;
                contains("the refusal", &r.text, "validate-keep")?;
                Ok(())
            }
        ),
    ]
}
