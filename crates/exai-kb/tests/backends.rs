#![allow(clippy::unwrap_used, clippy::expect_used)]
//! One suite, two backends: everything the knowledge base promises — incremental indexing,
//! keyword, semantic and hybrid search with every filter, chunks with context, documents,
//! sources and counts, model identity, removal — checked on SQLite and on PostgreSQL with
//! pgvector (a real server: `EXAI_TEST_DATABASE_URL`, see exai_pg::testing), and both
//! backends give the same semantic results for the same corpus.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use exai_embed::{EmbedError, Embedder, ModelIdentity};
use exai_kb::model::NewChunk;
use exai_kb::store::NewDocument;
use exai_kb::{
    CategoryMap, DocType, Filters, IndexRequest, Kb, KbError, KbOptions, Location, Mode,
    SearchRequest, Store,
};
use exai_pg::testing::TestDatabase;
use exai_pg::{Pool, PoolOptions};

/// Deterministic 16-dimensional vectors from a text's words (texts sharing words are close).
struct Fake(ModelIdentity);

fn fake(name: &str) -> Arc<dyn Embedder> {
    Arc::new(Fake(ModelIdentity {
        name: name.into(),
        dim: 16,
        precision: "fp32".into(),
        max_tokens: 256,
    }))
}

impl Embedder for Fake {
    fn identity(&self) -> &ModelIdentity {
        &self.0
    }
    fn backend(&self) -> &'static str {
        "candle"
    }
    fn embed_passages(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        texts.iter().map(|t| self.embed_query(t)).collect()
    }
    fn embed_query(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        let mut v = vec![0.05f32; 16];
        for word in text.to_lowercase().split(|c: char| !c.is_alphanumeric()) {
            if word.is_empty() {
                continue;
            }
            let h = blake3::hash(word.as_bytes());
            let b = h.as_bytes();
            v[b[0] as usize % 16] += 1.0;
            v[b[1] as usize % 16] += 0.5;
        }
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        Ok(v.into_iter().map(|x| x / n).collect())
    }
    fn count_tokens(&self, text: &str) -> usize {
        text.split_whitespace().count() + 2
    }
}

/// Each backend the suite runs on: SQLite always, PostgreSQL when a test server is there.
fn backends(label: &str, dir: &Path) -> Vec<(Location, Option<TestDatabase>)> {
    let mut out = vec![(Location::Sqlite(dir.join(format!("{label}.sqlite"))), None)];
    if let Some(db) = TestDatabase::create(label) {
        let pool = Pool::open(&db.url, PoolOptions::default()).unwrap();
        out.push((Location::Postgres(pool), Some(db)));
    }
    out
}

fn open(location: &Location, embedder: Option<Arc<dyn Embedder>>) -> Kb {
    Kb::open_at(
        location.clone(),
        embedder,
        KbOptions {
            ann_min_vectors: 0,
            ..KbOptions::default()
        },
        CategoryMap::default(),
    )
    .unwrap()
}

fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn corpus(dir: &Path) {
    write(
        dir,
        "guide/ownership.md",
        "# Ownership\n\nOwnership moves values between variables.\n\n## Borrowing\n\nBorrowing lends a reference without moving the value.\n\n## Lifetimes\n\nLifetimes annotate how long references live.\n",
    );
    write(
        dir,
        "guide/errors.md",
        "# Error handling\n\nRecoverable errors use Result; unrecoverable errors panic.\n\n## Propagation\n\nThe question mark operator propagates errors to the caller.\n",
    );
    write(
        dir,
        "api/vec.md",
        "# Vec API reference\n\nA contiguous growable array type. Push appends a value; pop removes the last value.\n",
    );
    write(
        dir,
        "src/lib.rs",
        "/// Parse a config file.\npub fn parse_config(text: &str) -> Result<Config, Error> {\n    toml::from_str(text).map_err(Error::from)\n}\n",
    );
    write(
        dir,
        "install/setup.md",
        "# Installation\n\nInstall the toolchain with rustup, then check the version.\n",
    );
}

fn index(kb: &Kb, root: &Path, source: &str, technology: &str) -> exai_kb::IndexReport {
    let req = IndexRequest {
        roots: vec![root.to_path_buf()],
        source: source.into(),
        technology: Some(technology.into()),
        prune: true,
        ..Default::default()
    };
    kb.index(&req, &|_| {}, &AtomicBool::new(false)).unwrap()
}

fn search(kb: &Kb, query: &str, mode: Mode, filters: Filters) -> exai_kb::SearchResponse {
    let mut r = SearchRequest::new(query.to_string());
    r.mode = mode;
    r.limit = 10;
    r.filters = filters;
    kb.search(&r).unwrap()
}

fn paths(resp: &exai_kb::SearchResponse) -> Vec<String> {
    resp.hits
        .iter()
        .map(|h| format!("{}#{}", h.path, h.position))
        .collect()
}

#[test]
fn indexing_and_search_behave_the_same_on_both_backends() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    corpus(&docs);
    let mut semantic_by_backend = Vec::new();
    for (location, _db) in backends("suite", tmp.path()) {
        let name = location.backend();
        let kb = open(&location, Some(fake("fake")));

        // Indexing: every file, then nothing when unchanged, one when changed, prune.
        let r = index(&kb, &docs, "rust", "rust");
        assert_eq!((r.added, r.unchanged), (5, 0), "{name}: {r:?}");
        assert!(r.chunks_written >= 8, "{name}: {r:?}");
        assert_eq!(r.texts_without_vectors, 0, "{name}");
        let r = index(&kb, &docs, "rust", "rust");
        assert_eq!(
            (r.added, r.updated, r.unchanged),
            (0, 0, 5),
            "{name}: {r:?}"
        );

        // Keyword search: stemming, ranking title first, every filter.
        let resp = search(
            &kb,
            "borrowing references",
            Mode::Keyword,
            Filters::default(),
        );
        assert!(!resp.hits.is_empty(), "{name}");
        assert_eq!(resp.hits[0].path, "guide/ownership.md", "{name}");
        let resp = search(&kb, "errors", Mode::Keyword, Filters::default());
        assert_eq!(
            resp.hits[0].path, "guide/errors.md",
            "{name}: stemmed `errors`"
        );
        for (filters, want) in [
            (
                Filters {
                    path_prefix: Some("api/".into()),
                    ..Default::default()
                },
                vec!["api/vec.md"],
            ),
            (
                Filters {
                    doc_type: Some(DocType::Code),
                    ..Default::default()
                },
                vec!["src/lib.rs"],
            ),
            (
                Filters {
                    categories: vec!["setup".into()],
                    ..Default::default()
                },
                vec!["install/setup.md"],
            ),
        ] {
            for mode in [Mode::Keyword, Mode::Semantic, Mode::Hybrid] {
                let resp = search(&kb, "value config install array", mode, filters.clone());
                let mut got: Vec<&str> = resp.hits.iter().map(|h| h.path.as_str()).collect();
                got.dedup();
                assert_eq!(got, want, "{name} {mode:?} {filters:?}");
            }
        }
        let other = Filters {
            technologies: vec!["python".into()],
            ..Default::default()
        };
        let mut r = SearchRequest::new("value");
        r.filters = other;
        match kb.search(&r) {
            Err(KbError::UnknownValue { kind, valid, .. }) => {
                assert_eq!(
                    (kind, valid),
                    ("technology", vec!["rust".to_string()]),
                    "{name}"
                )
            }
            other => panic!("{name}: {other:?}"),
        }

        // Semantic and hybrid: every chunk has a vector; hybrid fuses both ranks.
        let resp = search(
            &kb,
            "lifetimes annotate references",
            Mode::Semantic,
            Filters::default(),
        );
        assert_eq!(resp.chunks_without_vectors, 0, "{name}");
        assert!(
            resp.hits[0].section.contains("Lifetimes"),
            "{name}: {:?}",
            resp.hits[0]
        );
        assert!(resp.hits[0].cosine.unwrap() > 0.5, "{name}");
        semantic_by_backend.push((name, paths(&resp)));
        let resp = search(
            &kb,
            "question mark operator",
            Mode::Hybrid,
            Filters::default(),
        );
        assert_eq!(resp.hits[0].path, "guide/errors.md", "{name}");
        assert!(resp.hits[0].keyword_rank.is_some() && resp.hits[0].semantic_rank.is_some());

        // Chunks with context, documents, sources, counts.
        let top = &search(&kb, "borrowing", Mode::Keyword, Filters::default()).hits[0];
        let with = kb.get_chunk(top.chunk_id, 2).unwrap();
        assert_eq!(
            with.chunk.text,
            kb.get_chunk(top.chunk_id, 0).unwrap().chunk.text
        );
        let doc = kb
            .get_document(None, Some("rust"), Some("guide/ownership.md"))
            .unwrap();
        assert_eq!(doc.document.title, "Ownership", "{name}");
        assert_eq!(doc.chunks.len() as i64, doc.document.chunks, "{name}");
        assert!(doc.chunks.windows(2).all(|w| w[0].position < w[1].position));
        assert!(matches!(
            kb.get_document(Some(999_999), None, None),
            Err(KbError::NotFound(_))
        ));
        assert!(matches!(
            kb.get_chunk(999_999, 0),
            Err(KbError::NotFound(_))
        ));
        let sources = kb.sources().unwrap();
        assert_eq!(sources.len(), 1);
        assert_eq!(
            (sources[0].documents, sources[0].chunks_without_vectors),
            (5, 0),
            "{name}"
        );
        let cats: Vec<String> = kb
            .counts("category")
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert!(
            cats.contains(&"setup".to_string()) && cats.contains(&"api_reference".to_string()),
            "{name}: {cats:?}"
        );
        let status = kb.status().unwrap();
        assert_eq!(status.documents, 5);
        assert_eq!(status.search_modes, vec!["hybrid", "keyword", "semantic"]);

        // A changed file is replaced as a whole; a removed one pruned.
        write(
            &docs,
            "guide/errors.md",
            "# Error handling\n\nPanics abort the thread.\n",
        );
        std::fs::remove_file(docs.join("api/vec.md")).unwrap();
        let r = index(&kb, &docs, "rust", "rust");
        assert_eq!(
            (r.updated, r.removed, r.unchanged),
            (1, 1, 3),
            "{name}: {r:?}"
        );
        assert!(
            search(&kb, "propagates", Mode::Keyword, Filters::default())
                .hits
                .is_empty(),
            "{name}"
        );
        assert!(
            !search(&kb, "panics abort", Mode::Keyword, Filters::default())
                .hits
                .is_empty()
        );
        corpus(&docs);
        index(&kb, &docs, "rust", "rust");

        // Another model's vectors are refused, semantic search says why.
        let other = open(&location, Some(fake("other")));
        let resp = search(&other, "ownership", Mode::Hybrid, Filters::default());
        assert_eq!(resp.mode, Mode::Keyword, "{name}");
        assert!(
            resp.notes.iter().any(|n| n.contains("--reembed")),
            "{name}: {:?}",
            resp.notes
        );
        let writer = other.writer().unwrap();
        assert!(matches!(
            writer.claim_embed_model("other:16:fp32"),
            Err(KbError::ModelMismatch { .. })
        ));
        drop(writer);

        // Removing the source leaves nothing behind.
        assert_eq!(kb.remove_source("rust").unwrap(), 5, "{name}");
        assert_eq!(kb.status().unwrap().documents, 0);
        assert!(
            search(&kb, "ownership", Mode::Keyword, Filters::default())
                .hits
                .is_empty()
        );
    }
    if semantic_by_backend.len() == 2 {
        assert_eq!(
            semantic_by_backend[0].1, semantic_by_backend[1].1,
            "same ranking on both"
        );
    }
}

fn doc<'a>(
    path: &'a str,
    hash: &'a str,
    meta: &'a serde_json::Map<String, serde_json::Value>,
) -> NewDocument<'a> {
    NewDocument {
        source: "s",
        path,
        uri: None,
        title: "Title",
        format: "markdown",
        technology: "rust",
        category: "guides",
        hash,
        bytes: 10,
        metadata: meta,
        flagged: Default::default(),
    }
}

fn chunk(position: usize, text: &str) -> NewChunk {
    NewChunk {
        position,
        section: "Intro".into(),
        text: text.into(),
        tokens: 3,
        doc_type: DocType::Text,
    }
}

#[test]
fn the_store_contract_holds_on_both_backends() {
    let tmp = tempfile::tempdir().unwrap();
    for (location, _db) in backends("store", tmp.path()) {
        let name = location.backend();
        let mut store: Store = location.open_store().unwrap();
        store.upsert_source("s", &["/x".into()], "rust").unwrap();
        let meta = serde_json::Map::new();
        let g0 = store.generation().unwrap();
        store
            .replace_documents(&[(
                doc("a.md", "h1", &meta),
                vec![
                    chunk(0, "ownership moves values"),
                    chunk(1, "borrowing rules"),
                ],
            )])
            .unwrap();
        assert!(
            store.generation().unwrap() > g0,
            "{name}: writes bump the generation"
        );
        assert_eq!(
            store
                .keyword_search("ownership", &Filters::default(), 10)
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            store
                .document_hashes("s")
                .unwrap()
                .get("a.md")
                .map(String::as_str),
            Some("h1")
        );
        store
            .replace_documents(&[(
                doc("a.md", "h2", &meta),
                vec![chunk(0, "lifetimes annotate references")],
            )])
            .unwrap();
        assert!(
            store
                .keyword_search("ownership", &Filters::default(), 10)
                .unwrap()
                .is_empty(),
            "{name}"
        );
        assert_eq!(store.totals().unwrap(), (1, 1), "{name}");
        // Identical texts share one vector; the model identity guards the vectors.
        store
            .replace_documents(&[(
                doc("b.md", "h3", &meta),
                vec![chunk(0, "lifetimes annotate references")],
            )])
            .unwrap();
        assert_eq!(store.count_chunks_without_vectors().unwrap(), 2);
        assert_eq!(store.count_texts_without_vectors().unwrap(), 1);
        let missing = store.texts_without_vectors(10).unwrap();
        store.claim_embed_model("m:3:fp32").unwrap();
        store
            .put_vectors(&[(missing[0].0.clone(), vec![1.0, 0.0, 0.0])])
            .unwrap();
        assert_eq!(store.count_chunks_without_vectors().unwrap(), 0, "{name}");
        assert!(matches!(
            store.claim_embed_model("x:3:fp32"),
            Err(KbError::ModelMismatch { .. })
        ));
        for backend in ["onnx", "candle", "onnx"] {
            store.record_embed_backend(backend).unwrap();
        }
        assert_eq!(
            store.embed_backends().unwrap(),
            ["onnx", "candle"],
            "{name}"
        );
        if let Some(hits) = store
            .vector_search(&[0.9, 0.1, 0.0], &Filters::default(), 10)
            .unwrap()
        {
            assert_eq!(hits.len(), 2, "both chunks share the vector");
            assert!((hits[0].1 - 0.9939).abs() < 1e-3, "{hits:?}");
        }
        assert_eq!(store.drop_vectors().unwrap(), 1);
        assert!(store.embed_model().unwrap().is_none());
        store.claim_embed_model("x:4:fp32").unwrap();
        assert_eq!(
            store
                .delete_documents("s", &["b.md".into(), "nope.md".into()])
                .unwrap(),
            1,
            "{name}"
        );
        assert_eq!(store.remove_source("s").unwrap(), 1);
        assert_eq!(store.totals().unwrap(), (0, 0));
        assert!(store.sources().unwrap().is_empty());
        assert!(store.quick_check().unwrap().is_empty(), "{name}");
    }
}

/// Make the database refuse to record `embed_model`, as a write that fails half-way would.
fn refuse_model_records(location: &Location, db: Option<&TestDatabase>) {
    match (location, db) {
        (Location::Sqlite(path), _) => rusqlite::Connection::open(path)
            .unwrap()
            .execute_batch(
                "CREATE TRIGGER refuse_model BEFORE INSERT ON meta WHEN NEW.key = 'embed_model'
                 BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
            )
            .unwrap(),
        (Location::Postgres(_), Some(db)) => {
            exai_pg::postgres::Client::connect(&db.url, exai_pg::postgres::NoTls)
                .unwrap()
                .batch_execute(
                    "CREATE FUNCTION refuse_model() RETURNS trigger LANGUAGE plpgsql AS $$
                     BEGIN RAISE EXCEPTION 'refused by the test'; END $$;
                     CREATE TRIGGER refuse_model BEFORE INSERT ON kb_meta FOR EACH ROW
                     WHEN (NEW.key = 'embed_model') EXECUTE FUNCTION refuse_model();",
                )
                .unwrap()
        }
        (Location::Postgres(_), None) => unreachable!("a PostgreSQL location has its database"),
    }
}

#[test]
fn a_model_claim_that_fails_leaves_the_old_record_whole() {
    let tmp = tempfile::tempdir().unwrap();
    for (location, db) in backends("claim", tmp.path()) {
        let name = location.backend();
        let store: Store = location.open_store().unwrap();
        store.claim_embed_model("a:3:fp32").unwrap();
        store.record_embed_backend("onnx").unwrap();
        refuse_model_records(&location, db.as_ref());
        // No vectors yet, so another model may replace the record: its write fails midway.
        assert!(store.claim_embed_model("b:3:fp32").is_err(), "{name}");
        assert_eq!(
            store.embed_model().unwrap().as_deref(),
            Some("a:3:fp32"),
            "{name}"
        );
        assert_eq!(store.embed_backends().unwrap(), ["onnx"], "{name}");
    }
}

#[test]
fn on_postgresql_one_process_embeds_at_a_time() {
    let Some(db) = TestDatabase::create("embedlock") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    corpus(&docs);
    let pool = Pool::open(&db.url, PoolOptions::default()).unwrap();
    let kb = open(&Location::Postgres(pool.clone()), Some(fake("fake")));
    let req = IndexRequest {
        roots: vec![docs.clone()],
        source: "rust".into(),
        skip_embedding: true,
        ..Default::default()
    };
    let report = kb.index(&req, &|_| {}, &AtomicBool::new(false)).unwrap();
    assert!(report.texts_without_vectors > 0);
    // Another daemon holds the embedding lock: this one leaves the texts to it.
    let other = exai_kb::PgStore::attach(&pool).unwrap();
    assert!(other.try_lock_embedding().unwrap());
    let (done, left) = kb.embed_pending(&|_| {}, &AtomicBool::new(false)).unwrap();
    assert_eq!((done, left), (0, report.texts_without_vectors));
    other.unlock_embedding().unwrap();
    let (done, left) = kb.embed_pending(&|_| {}, &AtomicBool::new(false)).unwrap();
    assert_eq!((done as u64, left), (report.texts_without_vectors, 0));
    // And the lock was released after the run.
    assert!(other.try_lock_embedding().unwrap());
    other.unlock_embedding().unwrap();
}

#[test]
fn a_database_without_pgvector_says_how_to_enable_it() {
    let Some(admin_url) = exai_pg::testing::server_url() else {
        return;
    };
    let suffix = std::process::id();
    let (role, name) = (
        format!("exai_noext_{suffix}"),
        format!("exai_noext_{suffix}"),
    );
    let mut admin =
        exai_pg::postgres::Client::connect(&admin_url, exai_pg::postgres::NoTls).unwrap();
    for sql in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("DROP ROLE IF EXISTS {role}"),
        format!("CREATE ROLE {role} LOGIN"),
        format!("CREATE DATABASE {name} TEMPLATE template0 OWNER {role}"),
    ] {
        admin.batch_execute(&sql).unwrap();
    }
    // A role that may not create the extension, in a database that does not have it.
    let url = exai_pg::testing::with_database(&admin_url, &name).replacen(
        "postgres@",
        &format!("{role}:s3cret@"),
        1,
    );
    let pool = Pool::open(&url, PoolOptions::default()).unwrap();
    let err = Kb::open_at(
        Location::Postgres(pool.clone()),
        None,
        KbOptions::default(),
        CategoryMap::default(),
    )
    .err()
    .expect("no pgvector, no knowledge base")
    .to_string();
    drop(pool);
    assert!(err.contains("pgvector extension is missing"), "{err}");
    assert!(err.contains("CREATE EXTENSION vector"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
    for sql in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("DROP ROLE IF EXISTS {role}"),
    ] {
        admin.batch_execute(&sql).unwrap();
    }
}

/// The corpus of pages with hidden instructions, zero-width characters, comments and a visible
/// instruction (`tests/fixtures/untrusted`), and the word each flagged part carries.
const UNTRUSTED_WORDS: &[&str] = &[
    "hiddenalpha",
    "hiddenbravo",
    "hiddencharlie",
    "hiddendelta",
    "hiddenecho",
    "hiddenfoxtrot",
    "hiddengolf",
    "hiddenhotel",
    "hiddenindia",
];

fn untrusted_kb(location: &Location, mode: exai_core::UntrustedContent) -> Kb {
    Kb::open_at(
        location.clone(),
        None,
        KbOptions {
            untrusted: Arc::new(exai_kb::ingest::UntrustedFilter::with_mode(mode)),
            ..KbOptions::default()
        },
        CategoryMap::default(),
    )
    .unwrap()
}

/// Every chunk text of the knowledge base.
fn all_chunk_texts(location: &Location) -> Vec<String> {
    let store: Store = location.open_store().unwrap();
    let docs = store.documents_page(0, 1000).unwrap();
    let ids: Vec<i64> = docs.iter().map(|d| d.id).collect();
    store
        .chunks_of_documents(&ids)
        .unwrap()
        .into_iter()
        .map(|c| c.text)
        .collect()
}

#[test]
fn untrusted_text_is_dropped_marked_kept_and_counted_on_both_backends() {
    use exai_core::UntrustedContent::{Drop, Keep, Mark};
    use exai_kb::ingest::Flagged;
    let tmp = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/untrusted");
    let expected = Flagged {
        hidden: 5,
        invisible: 2,
        comment: 2,
        instruction: 2,
    };
    let keyword = |kb: &Kb, word: &str| search(kb, word, Mode::Keyword, Filters::default());
    for (location, _db) in backends("untrusted", tmp.path()) {
        let name = location.backend();
        // A copy per backend: the end of the test edits a page.
        let docs = tmp.path().join(format!("docs-{name}"));
        std::fs::create_dir_all(&docs).unwrap();
        for page in ["install.html", "configuration.md", "notes.md"] {
            std::fs::copy(fixtures.join(page), docs.join(page)).unwrap();
        }

        // drop: nothing flagged reaches a result, the visible text does.
        let kb = untrusted_kb(&location, Drop);
        let r = index(&kb, &docs, "widget", "widget");
        assert_eq!((r.added, r.flagged), (3, expected), "{name}: {r:?}");
        let source = kb.sources().unwrap().remove(0);
        assert_eq!(source.flagged, expected, "{name}");
        for word in UNTRUSTED_WORDS {
            assert!(
                keyword(&kb, word).hits.is_empty(),
                "{name}: {word} reached a result"
            );
        }
        for word in [
            "installer",
            "upgrades",
            "proxy",
            "NO_PROXY",
            "ready",
            "syntax",
        ] {
            assert!(
                !keyword(&kb, word).hits.is_empty(),
                "{name}: {word} was lost"
            );
        }
        let texts = all_chunk_texts(&location).join("\n");
        assert!(
            !texts.contains('\u{200B}') && !texts.contains("untrusted"),
            "{name}: {texts}"
        );
        assert!(
            texts.contains("Configure the widget in widget.toml."),
            "{name}: {texts}"
        );
        assert_eq!(
            kb.status().unwrap().untrusted_content,
            "drop",
            "{name}: the status says the mode"
        );
        drop(kb);

        // mark: another mode re-reads every file; everything flagged is found, inside a marker.
        let kb = untrusted_kb(&location, Mark);
        let r = index(&kb, &docs, "widget", "widget");
        assert_eq!((r.updated, r.unchanged), (3, 0), "{name}: {r:?}");
        assert_eq!(kb.sources().unwrap()[0].flagged, expected, "{name}");
        for word in UNTRUSTED_WORDS {
            let hits = keyword(&kb, word).hits;
            assert_eq!(hits.len(), 1, "{name}: {word}");
            let text = kb.get_chunk(hits[0].chunk_id, 0).unwrap().chunk.text;
            // Markers nest (invisible characters inside a marked sentence): the word is inside
            // one when more open before it than close.
            let before = &text[..text.find(word).unwrap()];
            assert!(
                before.matches("[untrusted: ").count() > before.matches("[/untrusted]").count(),
                "{name}: {word} is outside its marker: {text}"
            );
        }
        let texts = all_chunk_texts(&location).join("\n");
        for marker in [
            "[untrusted: hidden text]",
            "[untrusted: comment]",
            "[untrusted: instruction to an AI]",
            "[untrusted: invisible characters] U+200B [/untrusted]",
        ] {
            assert!(texts.contains(marker), "{name}: no {marker} in {texts}");
        }
        let r = index(&kb, &docs, "widget", "widget");
        assert_eq!(r.unchanged, 3, "{name}: the same mode reads nothing again");
        drop(kb);

        // keep: indexed as written, counted all the same.
        let kb = untrusted_kb(&location, Keep);
        index(&kb, &docs, "widget", "widget");
        assert_eq!(kb.sources().unwrap()[0].flagged, expected, "{name}");
        assert_eq!(keyword(&kb, "hiddenhotel").hits.len(), 1, "{name}");
        assert!(all_chunk_texts(&location).join("\n").contains('\u{200B}'));

        // Re-indexing a document replaces its counts.
        let page = docs.join("configuration.md");
        let text = std::fs::read_to_string(&page).unwrap();
        let without_comment: String = text
            .lines()
            .filter(|l| !l.starts_with("<!--"))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&page, without_comment).unwrap();
        let r = index(&kb, &docs, "widget", "widget");
        assert_eq!(r.updated, 1, "{name}: {r:?}");
        let flagged = kb.sources().unwrap()[0].flagged;
        assert_eq!(
            flagged,
            Flagged {
                comment: 1,
                ..expected
            },
            "{name}"
        );
        let doc = kb
            .get_document(None, Some("widget"), Some("configuration.md"))
            .unwrap()
            .document;
        assert_eq!(
            doc.flagged,
            Flagged {
                instruction: 1,
                ..Flagged::default()
            },
            "{name}"
        );
    }
}

#[test]
fn versions_of_one_library_live_side_by_side_on_both_backends() {
    let tmp = tempfile::tempdir().unwrap();
    let mut trees = Vec::new();
    for (version, word) in [("1.4.0", "alpha"), ("2.0.0", "beta"), ("2.1.3", "gamma")] {
        let dir = tmp.path().join(version);
        write(
            &dir,
            "guide.md",
            &format!("# Guide\n\nThe connect function takes a {word} timeout.\n"),
        );
        trees.push((version, word, dir));
    }
    for (location, _db) in backends("versions", tmp.path()) {
        let name = location.backend();
        let kb = open(&location, None);
        for (version, _, dir) in &trees {
            index(&kb, dir, &format!("netlib@{version}"), "netlib");
        }
        index(&kb, &trees[0].2, "plain", "plain");
        let word_of = |source: &str, version: Option<&str>| {
            let mut r = SearchRequest::new("connect timeout");
            r.mode = Mode::Keyword;
            r.filters.sources = vec![source.to_string()];
            r.version = version.map(str::to_string);
            let resp = kb.search(&r).unwrap();
            let text = kb.get_chunk(resp.hits[0].chunk_id, 0).unwrap().chunk.text;
            let word = ["alpha", "beta", "gamma"]
                .into_iter()
                .find(|w| text.contains(w))
                .unwrap();
            (resp.hits[0].source.clone(), word, resp.notes)
        };
        // By default the newest, saying which and what else exists.
        let (source, word, notes) = word_of("netlib", None);
        assert_eq!((source.as_str(), word), ("netlib@2.1.3", "gamma"), "{name}");
        assert!(
            notes
                .iter()
                .any(|n| n.contains("newest of netlib: 2.1.3, 2.0.0, 1.4.0")),
            "{name}: {notes:?}"
        );
        assert_eq!(word_of("netlib", Some("^1")).1, "alpha", "{name}");
        assert_eq!(word_of("netlib", Some("~2.0")).1, "beta", "{name}");
        assert_eq!(word_of("netlib@2.0.0", None).1, "beta", "{name}");
        assert_eq!(word_of("netlib@<2", None).1, "alpha", "{name}");
        assert_eq!(word_of("plain", None).1, "alpha", "{name}");
        let mut r = SearchRequest::new("connect");
        r.filters.sources = vec!["netlib".into()];
        r.version = Some("^3".into());
        let e = kb.search(&r).unwrap_err().to_string();
        assert!(e.contains("indexed: 2.1.3, 2.0.0, 1.4.0"), "{name}: {e}");
        let mut r = SearchRequest::new("connect");
        r.version = Some("^1".into());
        let e = kb.search(&r).unwrap_err().to_string();
        assert!(e.contains("needs exactly one source"), "{name}: {e}");

        let libs = kb.libraries().unwrap();
        let netlib = libs.iter().find(|l| l.name == "netlib").unwrap();
        assert_eq!(netlib.versions, ["2.1.3", "2.0.0", "1.4.0"], "{name}");
        let resolved = kb.resolve_library("netlib", Some(">=2.0.1")).unwrap();
        assert_eq!(resolved.source, "netlib@2.1.3", "{name}");
        let info = kb.sources().unwrap();
        let one = info.iter().find(|s| s.name == "netlib@2.0.0").unwrap();
        assert_eq!(
            (one.library.as_str(), one.version.as_deref()),
            ("netlib", Some("2.0.0")),
            "{name}"
        );
    }
}

#[test]
fn origins_and_page_states_round_trip_on_both_backends() {
    let tmp = tempfile::tempdir().unwrap();
    for (location, _db) in backends("origins", tmp.path()) {
        let name = location.backend();
        let kb = open(&location, None);
        let mut store = kb.writer().unwrap();
        store.upsert_source("site", &[], "site").unwrap();
        let origin = serde_json::json!({"kind": "web", "url": "https://example.org/docs/"});
        store.set_origin("site", &origin).unwrap();
        let missing = store.set_origin("nope", &origin).unwrap_err();
        assert!(matches!(missing, KbError::NotFound(_)), "{name}: {missing}");
        let page = |url: &str, state: &str| exai_kb::PageState {
            url: url.into(),
            path: Some(url.trim_start_matches("https://example.org/").into()),
            state: state.into(),
            reason: (state == "failed").then(|| "HTTP 500".to_string()),
            etag: Some("\"e1\"".into()),
            last_modified: None,
            hash: Some("h".into()),
            links: vec!["https://example.org/docs/b".into()],
            depth: 2,
            fetched_at: "2026-12-06T00:00:00Z".into(),
        };
        let a = page("https://example.org/docs/a", "indexed");
        let b = page("https://example.org/docs/b", "failed");
        store
            .put_page_states("site", &[a.clone(), b.clone()])
            .unwrap();
        let mut a2 = a.clone();
        a2.etag = Some("\"e2\"".into());
        store.put_page_states("site", &[a2.clone()]).unwrap();
        assert_eq!(
            store.page_states("site").unwrap(),
            [a2, b.clone()],
            "{name}"
        );
        assert_eq!(
            store
                .delete_page_states("site", Some(std::slice::from_ref(&a.url)))
                .unwrap(),
            1,
            "{name}"
        );
        assert_eq!(store.page_states("site").unwrap(), [b], "{name}");
        drop(store);
        let info = kb.sources().unwrap();
        assert_eq!(info[0].origin, origin, "{name}");
        // Removing the source forgets its pages.
        kb.remove_source("site").unwrap();
        let store = kb.writer().unwrap();
        assert!(store.page_states("site").unwrap().is_empty(), "{name}");
    }
}

#[test]
fn a_feed_indexes_handed_over_documents_batch_by_batch_on_both_backends() {
    use exai_kb::model::Format;
    use exai_kb::{IndexRequest, Item};
    let tmp = tempfile::tempdir().unwrap();
    let item = |path: &str, format: Format, text: &str| Item {
        path: path.into(),
        uri: format!("https://example.org/{path}"),
        format,
        bytes: text.as_bytes().to_vec(),
    };
    let pages = [
        item(
            "guide/intro.html",
            Format::Html,
            "<html><head><title>Intro</title></head><body><main><h1>Intro</h1><p>The quokka protocol starts here.</p></main></body></html>",
        ),
        item(
            "guide/setup.md",
            Format::Markdown,
            "# Setup\n\nInstall the quokka client.\n",
        ),
        item("notes.txt", Format::Text, "Plain notes about wombats.\n"),
    ];
    for (location, _db) in backends("feed", tmp.path()) {
        let name = location.backend();
        let kb = open(&location, Some(fake("fake")));
        let request = |dry_run: bool| IndexRequest {
            source: "site".into(),
            dry_run,
            ..Default::default()
        };
        let roots = ["https://example.org/".to_string()];
        let mut feed = kb.feed(request(false), &roots).unwrap();
        assert!(feed.add(&pages[..2]).unwrap() >= 2, "{name}");
        // What a stopped run wrote is searchable before it finishes.
        let hits = search(&kb, "quokka", Mode::Keyword, Filters::default());
        assert_eq!(hits.hits.len(), 2, "{name}");
        assert_eq!(
            hits.hits[0]
                .uri
                .as_deref()
                .map(|u| u.starts_with("https://example.org/guide/")),
            Some(true),
            "{name}"
        );
        feed.add(&pages[2..]).unwrap();
        feed.skipped("https://example.org/broken", "HTTP 500");
        let report = feed.finish(&|_| {}, &AtomicBool::new(false)).unwrap();
        assert_eq!(
            (report.added, report.unchanged),
            (3, 0),
            "{name}: {report:?}"
        );
        assert_eq!(report.skipped.get("HTTP 500"), Some(&1), "{name}");
        assert_eq!(
            report.texts_without_vectors, 0,
            "{name}: embedded at the end"
        );
        let info = kb.sources().unwrap();
        assert_eq!(info[0].roots, roots, "{name}");

        // Again: unchanged bytes cost nothing; a dry run lists a change and a removal.
        let mut changed = pages.clone();
        changed[2].bytes = b"Plain notes about echidnas.\n".to_vec();
        let mut dry = kb.feed(request(true), &roots).unwrap();
        assert!(
            dry.is_unchanged("guide/setup.md", &pages[1].bytes),
            "{name}"
        );
        dry.add(&changed[1..]).unwrap();
        dry.remove(&["guide/intro.html".to_string()]).unwrap();
        let plan = dry.finish(&|_| {}, &AtomicBool::new(false)).unwrap().plan;
        let plan: Vec<(&str, &str)> = plan.iter().map(|p| (p.path.as_str(), p.action)).collect();
        assert_eq!(
            plan,
            [("notes.txt", "update"), ("guide/intro.html", "remove")],
            "{name}"
        );
        assert_eq!(
            search(&kb, "wombats", Mode::Keyword, Filters::default())
                .hits
                .len(),
            1,
            "{name}: the dry run wrote nothing"
        );
        let mut feed = kb.feed(request(false), &roots).unwrap();
        feed.add(&changed).unwrap();
        feed.remove(&["guide/intro.html".to_string()]).unwrap();
        let report = feed.finish(&|_| {}, &AtomicBool::new(false)).unwrap();
        assert_eq!(
            (report.unchanged, report.updated, report.removed),
            (2, 1, 1),
            "{name}: {report:?}"
        );
        assert_eq!(
            search(&kb, "quokka", Mode::Keyword, Filters::default())
                .hits
                .len(),
            1,
            "{name}"
        );
    }
}
