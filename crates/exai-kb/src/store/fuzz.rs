//! Entry point of the `keyword_query` fuzz target (`fuzz/`): a search's words
//! ([`super::query_terms`]) and the FTS5 queries keyword search builds from them
//! ([`super::bm25`]), on arbitrary query text. `tests/fuzz_corpus.rs` replays the committed
//! corpus through the same function, so a finding stays fixed in every build.
//!
//! No query may be read as FTS5 syntax: every term is letters, digits and `_` only, and every
//! query built from the terms is accepted by SQLite's FTS5 on the knowledge base's own table
//! and tokenizer. The same terms go into PostgreSQL's `to_tsquery`, which the first property
//! keeps safe too.

use rusqlite::Connection;

use super::bm25::{or_query, rare_and_any, term_query};
use super::query_terms;
use super::sqlite::SCHEMA_V1;

thread_local! {
    static DB: Connection = {
        let conn = Connection::open_in_memory()
            .unwrap_or_else(|e| panic!("cannot open an in-memory database: {e}"));
        conn.execute_batch(SCHEMA_V1)
            .unwrap_or_else(|e| panic!("cannot create the schema: {e}"));
        conn
    };
}

/// Query text (lossy UTF-8) in; the first byte picks where the terms split into rare and
/// common for the rare-first query.
pub fn keyword_query(data: &[u8]) {
    let [pick, rest @ ..] = data else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let terms = query_terms(&text);
    let mut seen = std::collections::HashSet::new();
    for term in &terms {
        assert!(!term.is_empty());
        assert!(
            term.chars().all(|c| c.is_alphanumeric() || c == '_'),
            "term {term:?} holds other characters"
        );
        assert!(seen.insert(term), "term {term:?} twice");
    }
    if terms.is_empty() {
        return;
    }
    let terms: Vec<&str> = terms.iter().map(String::as_str).collect();
    let mut queries: Vec<String> = terms.iter().map(|t| term_query(t)).collect();
    queries.push(or_query(&terms));
    if terms.len() > 1 {
        let split = 1 + usize::from(*pick) % (terms.len() - 1);
        let (rare, common) = terms.split_at(split);
        queries.push(rare_and_any(&or_query(rare), &or_query(common)));
    }
    DB.with(|db| {
        // A row holding the query itself, so the queries have something to match (replacing
        // the last input's, which a failed check leaves behind).
        db.execute("DELETE FROM chunks_fts WHERE rowid = 1", [])
            .unwrap_or_else(|e| panic!("cannot remove the last query text: {e}"));
        db.execute(
            "INSERT INTO chunks_fts (rowid, title, section, text) VALUES (1, ?1, ?1, ?1)",
            [text.as_ref()],
        )
        .unwrap_or_else(|e| panic!("cannot index the query text: {e}"));
        for fts in &queries {
            let counted = db.query_row(
                "SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH ?",
                [fts],
                |r| r.get::<_, i64>(0),
            );
            if let Err(e) = counted {
                panic!("FTS5 refuses {fts:?}: {e}");
            }
        }
    });
}
