//! Replays the committed fuzz corpus (`fuzz/corpus/TARGET/`) through the functions the fuzz
//! targets call, so every build checks what fuzzing found, without cargo-fuzz or nightly.

use exai_server::stdio::fuzz;

#[path = "../../../fuzz/replay.rs"]
mod replay;
use replay::replay;

#[test]
fn line_filter_corpus() {
    replay("line_filter", fuzz::line_filter);
}
