//! Replays the committed fuzz corpus (`fuzz/corpus/TARGET/`) through the functions the fuzz
//! targets call, so every build checks what fuzzing found, without cargo-fuzz or nightly.

use exai_core::config::fuzz;

#[path = "../../../fuzz/replay.rs"]
mod replay;
use replay::replay;

#[test]
fn config_load_corpus() {
    replay("config_load", fuzz::load_config);
}
