#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `exai db copy` and the PostgreSQL checks against a real server (`EXAI_TEST_DATABASE_URL`;
//! skipped without one unless `EXAI_REQUIRE_POSTGRES=1`).

use std::path::Path;
use std::time::{Duration, Instant};

use exai_core::config::{Config, DatabaseConfig};
use exai_kb::model::{DocType, NewChunk};
use exai_kb::store::NewDocument;
use exai_kb::{Filters, SharedLogic, SqliteStore, Store, StoreBackend};
use exai_ops::copy::{self, CopyOptions, Endpoint};
use exai_ops::pg;
use exai_pg::testing::TestDatabase;

const MODEL: &str = "test-model:8:fp32";

fn database() -> DatabaseConfig {
    Config::default().database
}

/// A unit vector that depends on `seed` only.
fn vector(seed: u64) -> Vec<f32> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut v: Vec<f32> = (0..8)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 2000) as f32 / 1000.0 - 1.0
        })
        .collect();
    let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt().max(1e-6);
    v.iter_mut().for_each(|a| *a /= norm);
    v
}

/// A SQLite knowledge base of two sources, 40 documents with metadata and 2–4 chunks each
/// (one text shared by several documents), every text with a vector.
fn build_sqlite(path: &Path) -> SqliteStore {
    let mut store = SqliteStore::open(path).unwrap();
    store
        .upsert_source("guide", &["/docs/guide".into()], "rust")
        .unwrap();
    store
        .upsert_source("api", &["/docs/api".into(), "/docs/more".into()], "python")
        .unwrap();
    let topics = [
        "ownership",
        "borrowing",
        "lifetimes",
        "traits",
        "generics",
        "closures",
        "iterators",
        "macros",
        "async",
        "threads",
    ];
    let metas: Vec<serde_json::Map<String, serde_json::Value>> = (0..40)
        .map(|i| {
            serde_json::json!({ "weight": i, "tags": ["a", "b"], "nested": { "z": 1, "a": "x" } })
                .as_object()
                .cloned()
                .unwrap()
        })
        .collect();
    let paths: Vec<String> = (0..40)
        .map(|i| format!("part{}/page{i}.md", i % 5))
        .collect();
    let titles: Vec<String> = (0..40)
        .map(|i| format!("{} guide {i}", topics[i % topics.len()]))
        .collect();
    let hashes: Vec<String> = (0..40).map(|i| format!("hash{i}")).collect();
    let uris: Vec<String> = (0..40)
        .map(|i| format!("https://example.org/{i}"))
        .collect();
    let mut docs = Vec::new();
    for i in 0..40 {
        let chunks: Vec<NewChunk> = (0..(2 + i % 3))
            .map(|p| NewChunk {
                position: p,
                section: format!("{} > part {p}", titles[i]),
                text: if p == 1 {
                    "a shared paragraph about common setup steps".into()
                } else {
                    format!(
                        "{} explained in depth: word{i}_{p} and {} with examples",
                        topics[i % topics.len()],
                        topics[(i + p) % topics.len()]
                    )
                },
                tokens: 12,
                doc_type: if p == 2 { DocType::Code } else { DocType::Text },
            })
            .collect();
        docs.push((
            NewDocument {
                source: if i % 4 == 0 { "api" } else { "guide" },
                path: &paths[i],
                uri: (i % 2 == 0).then_some(uris[i].as_str()),
                title: &titles[i],
                format: "markdown",
                technology: if i % 4 == 0 { "python" } else { "rust" },
                category: "guides",
                hash: &hashes[i],
                bytes: 100 + i as u64,
                metadata: &metas[i],
                flagged: Default::default(),
            },
            chunks,
        ));
    }
    store.replace_documents(&docs[..25]).unwrap();
    store.replace_documents(&docs[25..]).unwrap();
    // A document re-indexed later: its id (and its chunks') comes last.
    store.replace_documents(&docs[3..4]).unwrap();
    store.claim_embed_model(MODEL).unwrap();
    store.record_embed_backend("onnx").unwrap();
    let missing = store.texts_without_vectors(10_000).unwrap();
    let vectors: Vec<(String, Vec<f32>)> = missing
        .iter()
        .enumerate()
        .map(|(i, (h, ..))| (h.clone(), vector(i as u64 + 1)))
        .collect();
    store.put_vectors(&vectors).unwrap();
    store
}

fn sqlite(path: &Path) -> Endpoint {
    Endpoint::Sqlite(path.to_path_buf())
}

fn run_copy(from: &Endpoint, to: &Endpoint, force: bool) -> copy::CopyReport {
    let options = CopyOptions {
        force,
        // Small batches: many transactions, as on a big knowledge base.
        batch_chunks: 7,
        batch_vectors: 5,
        ..Default::default()
    };
    copy::copy(from, to, &database(), &options, &|_| {}).unwrap()
}

fn assert_verified(report: &copy::CopyReport) {
    let v = &report.verification;
    assert!(v.ok, "{:#?}", v);
    assert!(v.counts_equal && v.content_equal && v.vectors_equal && v.model_equal);
    assert_eq!(v.from.documents, 40);
    assert!(v.from.chunks > 80 && v.from.vectors > 40, "{:?}", v.from);
}

fn doc_rows(store: &Store) -> Vec<(String, String, String, Option<String>, String)> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = store.documents_page(after, 7).unwrap();
        let Some(last) = page.last() else { break };
        after = last.id;
        for d in page {
            out.push((
                d.source,
                d.path,
                d.hash,
                d.uri,
                serde_json::to_string(&d.metadata).unwrap(),
            ));
        }
    }
    out.sort();
    out
}

fn keyword_keys(store: &Store, query: &str) -> Vec<(String, i64)> {
    let ids: Vec<i64> = store
        .keyword_search(query, &Filters::default(), 10)
        .unwrap()
        .iter()
        .map(|h| h.0)
        .collect();
    store
        .chunks(&ids)
        .unwrap()
        .into_iter()
        .map(|c| (c.path, c.position))
        .collect()
}

#[test]
fn sqlite_to_postgres_to_sqlite_round_trip_is_verified() {
    let Some(db) = TestDatabase::create("copyround") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.sqlite");
    drop(build_sqlite(&first));
    let postgres = Endpoint::Postgres(db.url.clone());

    let there = run_copy(&sqlite(&first), &postgres, false);
    assert_verified(&there);
    assert_eq!(
        (there.from_backend, there.to_backend),
        ("sqlite", "postgres")
    );
    assert_eq!(there.embed_model.as_deref(), Some(MODEL));
    assert_eq!(there.embed_backends, ["onnx"]);
    // Across backends: keyword reported only, semantic required (and HNSW finds the same).
    let keyword = there.verification.keyword.as_ref().unwrap();
    assert!(
        keyword.required.is_none() && keyword.queries >= 10,
        "{keyword:?}"
    );
    let semantic = there.verification.semantic.as_ref().unwrap();
    assert!(semantic.passed && semantic.queries >= 10, "{semantic:?}");
    assert!(semantic.mean_overlap >= 0.9);

    // The PostgreSQL side checks clean: HNSW index built for the model, dimensions right.
    let check = pg::verify(&db.url, &database());
    assert!(check.problems.is_empty(), "{check:#?}");
    let kb = check.kb.as_ref().unwrap();
    assert_eq!(kb.hnsw_valid, Some(true));
    assert_eq!((kb.expected_dim, kb.column_dim), (Some(8), Some(8)));
    assert_eq!(kb.dims, vec![(8, there.copied.vectors)]);

    let second = dir.path().join("second.sqlite");
    let back = run_copy(&postgres, &sqlite(&second), false);
    assert_verified(&back);

    // Both SQLite ends hold the same documents (hashes, uris, metadata) and rank alike.
    let a = Store::from(SqliteStore::open(&first).unwrap());
    let b = Store::from(SqliteStore::open(&second).unwrap());
    assert_eq!(doc_rows(&a), doc_rows(&b));
    assert_eq!(
        a.document_hashes("guide").unwrap(),
        b.document_hashes("guide").unwrap()
    );
    for q in ["ownership", "shared setup", "word7_0 iterators", "guide 3"] {
        let hits = keyword_keys(&a, q);
        assert!(!hits.is_empty(), "{q}");
        assert_eq!(hits, keyword_keys(&b, q), "{q}");
    }
    assert_eq!(a.sources().unwrap()[0].roots, ["/docs/api", "/docs/more"]);
    assert_eq!(
        a.sources()
            .unwrap()
            .iter()
            .map(|s| (&s.name, &s.roots, &s.technology))
            .collect::<Vec<_>>(),
        b.sources()
            .unwrap()
            .iter()
            .map(|s| (&s.name, &s.roots, &s.technology))
            .collect::<Vec<_>>()
    );
    let doc = b.document(None, Some(("guide", "part1/page1.md"))).unwrap();
    let chunks = b.document_chunks(doc.id).unwrap();
    assert_eq!(
        chunks
            .iter()
            .map(|c| (c.position, c.doc_type))
            .collect::<Vec<_>>(),
        vec![(0, DocType::Text), (1, DocType::Text), (2, DocType::Code)]
    );

    // SQLite to SQLite: the same backend must give identical keyword top 10s.
    let third = dir.path().join("third.sqlite");
    let again = run_copy(&sqlite(&second), &sqlite(&third), false);
    assert_verified(&again);
    let keyword = again.verification.keyword.as_ref().unwrap();
    assert_eq!(keyword.required.as_deref(), Some("identical"));
    assert_eq!(keyword.identical, keyword.queries);
}

#[test]
fn postgres_to_postgres_ranks_identically() {
    let (Some(a), Some(b)) = (
        TestDatabase::create("copypga"),
        TestDatabase::create("copypgb"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kb.sqlite");
    drop(build_sqlite(&file));
    let (pa, pb) = (
        Endpoint::Postgres(a.url.clone()),
        Endpoint::Postgres(b.url.clone()),
    );
    assert_verified(&run_copy(&sqlite(&file), &pa, false));
    let report = run_copy(&pa, &pb, false);
    assert_verified(&report);
    let keyword = report.verification.keyword.as_ref().unwrap();
    assert_eq!(keyword.required.as_deref(), Some("identical"));
    assert_eq!(keyword.identical, keyword.queries, "{keyword:?}");
}

#[test]
fn a_destination_with_data_needs_force_and_is_then_replaced() {
    let Some(db) = TestDatabase::create("copyforce") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kb.sqlite");
    drop(build_sqlite(&file));
    let postgres = Endpoint::Postgres(db.url.clone());
    run_copy(&sqlite(&file), &postgres, false);
    let refused = copy::copy(
        &sqlite(&file),
        &postgres,
        &database(),
        &CopyOptions::default(),
        &|_| {},
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        refused.contains("--force") && refused.contains("40 documents"),
        "{refused}"
    );

    // A smaller knowledge base with another model replaces it, vector dimension included.
    let small = dir.path().join("small.sqlite");
    {
        let mut s = SqliteStore::open(&small).unwrap();
        s.upsert_source("one", &[], "").unwrap();
        let meta = serde_json::Map::new();
        s.replace_documents(&[(
            NewDocument {
                source: "one",
                path: "a.md",
                uri: None,
                title: "Alpha",
                format: "markdown",
                technology: "",
                category: "",
                hash: "h",
                bytes: 1,
                metadata: &meta,
                flagged: Default::default(),
            },
            vec![NewChunk {
                position: 0,
                section: String::new(),
                text: "alpha beta".into(),
                tokens: 2,
                doc_type: DocType::Text,
            }],
        )])
        .unwrap();
        s.claim_embed_model("other:3:fp32").unwrap();
        let (h, ..) = s.texts_without_vectors(1).unwrap().remove(0);
        s.put_vectors(&[(h, vec![0.6, 0.8, 0.0])]).unwrap();
    }
    let replaced = run_copy(&sqlite(&small), &postgres, true);
    assert!(replaced.verification.ok, "{:#?}", replaced.verification);
    assert_eq!(replaced.replaced.unwrap().documents, 40);
    assert_eq!(replaced.copied.documents, 1);
    let check = pg::verify(&db.url, &database());
    assert!(check.problems.is_empty(), "{check:#?}");
    assert_eq!(check.kb.unwrap().column_dim, Some(3));

    // The same knowledge base as source and destination is refused, however the URL is spelt.
    let respelt = Endpoint::Postgres(db.url.replacen("postgres://", "postgresql://", 1));
    let same = copy::copy(
        &postgres,
        &respelt,
        &database(),
        &CopyOptions::default(),
        &|_| {},
    );
    assert!(
        same.err()
            .unwrap()
            .to_string()
            .contains("reach one database")
    );
    let same = copy::copy(
        &postgres,
        &postgres,
        &database(),
        &CopyOptions::default(),
        &|_| {},
    );
    assert!(
        same.err()
            .unwrap()
            .to_string()
            .contains("same knowledge base")
    );
}

#[test]
fn verify_finds_a_missing_hnsw_index_and_orphan_embeddings() {
    let Some(db) = TestDatabase::create("pgverify") else {
        return;
    };
    let empty = pg::verify(&db.url, &database());
    assert!(empty.problems.is_empty(), "{empty:#?}");
    assert!(empty.kb.is_none() && empty.status() == 1, "{empty:#?}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kb.sqlite");
    drop(build_sqlite(&file));
    run_copy(&sqlite(&file), &Endpoint::Postgres(db.url.clone()), false);
    let mut client = exai_pg::postgres::Client::connect(&db.url, exai_pg::postgres::NoTls).unwrap();
    client
        .batch_execute(
            "DROP INDEX kb_embeddings_hnsw;
             INSERT INTO kb_embeddings(text_hash, vector) VALUES ('nobody', '[1,0,0,0,0,0,0,0]')",
        )
        .unwrap();
    let check = pg::verify(&db.url, &database());
    assert_eq!(check.status(), 2);
    assert!(
        check
            .problems
            .iter()
            .any(|p| p.contains("HNSW index kb_embeddings_hnsw is missing")),
        "{check:#?}"
    );
    assert!(
        check
            .warnings
            .iter()
            .any(|w| w.contains("1 embedding(s) belong to no chunk")),
        "{check:#?}"
    );
    let stats = pg::stats(&db.url, &database()).unwrap();
    let kb = stats.kb.unwrap();
    assert_eq!((kb.documents, kb.hnsw_valid), (40, None));
    assert_eq!(stats.tables["kb_documents"].rows, 40);
    assert!(stats.tables["kb_chunks"].rows > 80 && stats.tables["kb_chunks"].bytes > 0);
}

#[test]
fn migrate_brings_every_component_up() {
    let Some(db) = TestDatabase::create("pgmigrate") else {
        return;
    };
    let pending = pg::migrate(&db.url, &database(), true).unwrap();
    let kb = pending.iter().find(|m| m.name == "kb").unwrap();
    assert!(kb.pending() && kb.from == 0, "{pending:?}");
    let done = pg::migrate(&db.url, &database(), false).unwrap();
    for name in ["kb", "threads", "tracking", "jobs"] {
        let m = done.iter().find(|m| m.name == name).unwrap();
        assert!(m.applied && m.from == 0 && m.to >= 1, "{m:?}");
    }
    let again = pg::migrate(&db.url, &database(), false).unwrap();
    assert!(again.iter().all(|m| !m.applied), "{again:?}");
    let server = pg::server(&pg::connect(&db.url, &database()).unwrap(), &database()).unwrap();
    assert!(server.pgvector.is_some());
    assert!(server.components["threads"] >= 1 && server.components["tracking"] >= 1);
    assert!(server.components["jobs"] >= 1);
}

/// `exai db migrate` on a fresh database creates every component's tables, the index jobs' too
/// (which once waited for the first daemon to run a job), at the version the daemons expect.
#[test]
fn migrate_creates_every_table_on_a_fresh_database() {
    let Some(db) = TestDatabase::create("pgmigratefresh") else {
        return;
    };
    pg::migrate(&db.url, &database(), false).unwrap();
    let mut c = exai_pg::postgres::Client::connect(&db.url, exai_pg::postgres::NoTls).unwrap();
    for table in [
        "kb_documents",
        "threads",
        "thread_turns",
        "test_runs",
        "index_jobs",
    ] {
        let exists: bool = c
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
            .unwrap()
            .get(0);
        assert!(exists, "{table} was not created");
    }
    for component in exai_pg::schema::ALL {
        assert_eq!(
            component.version(&mut c).unwrap(),
            component.known_version(),
            "{}",
            component.name
        );
    }
    // The principal column of the jobs table's second step is there.
    c.execute(
        "INSERT INTO index_jobs (job_id, kind, source, path, state, phase, owner, started_at, principal)
         VALUES ('j', 'index', 's', '', 'running', 'starting', 'h:1', now(), 'alice')",
        &[],
    )
    .unwrap();
}

#[test]
fn a_server_that_does_not_answer_fails_at_once_without_the_password() {
    // Skipped with the others when no test server is configured.
    if exai_pg::testing::server_url().is_none() {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://exai:secret@127.0.0.1:{port}/exai");
    let started = Instant::now();
    let check = pg::verify(&url, &database());
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(check.status(), 2);
    let text = format!("{check:?}");
    assert!(!text.contains("secret"), "{text}");
    assert!(check.problems[0].contains("exai:***@127.0.0.1"), "{text}");
    let copy_err = copy::copy(
        &Endpoint::Postgres(url.clone()),
        &Endpoint::Sqlite(tempfile::tempdir().unwrap().path().join("x.sqlite")),
        &database(),
        &CopyOptions::default(),
        &|_| {},
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        !copy_err.contains("secret") && copy_err.contains("cannot connect"),
        "{copy_err}"
    );
}
