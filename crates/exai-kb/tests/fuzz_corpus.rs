//! Replays the committed fuzz corpus (`fuzz/corpus/TARGET/`) through the functions the fuzz
//! targets call, so every build checks what fuzzing found, without cargo-fuzz or nightly.

use exai_kb::ingest::fuzz;
use exai_kb::store::fuzz as store_fuzz;

#[path = "../../../fuzz/replay.rs"]
mod replay;
use replay::replay;

#[test]
fn html_extract_corpus() {
    replay("html_extract", fuzz::html);
}

#[test]
fn markdown_extract_corpus() {
    replay("markdown_extract", fuzz::markdown);
}

#[test]
fn chunker_corpus() {
    replay("chunker", fuzz::chunker);
}

#[test]
fn keyword_query_corpus() {
    replay("keyword_query", store_fuzz::keyword_query);
}
