//! The committed fuzz corpus (`fuzz/corpus/TARGET/`) replayed through the function a fuzz
//! target calls, for each crate's `tests/fuzz_corpus.rs` (included there with `#[path]`), so
//! every build checks what fuzzing found, without cargo-fuzz or nightly.

use std::path::{Path, PathBuf};

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the corpus {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|e| {
            e.map(|e| e.path())
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        })
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus in {}", dir.display());
    files
}

pub fn replay(target: &str, run: fn(&[u8])) {
    for path in corpus(target) {
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // A panic names the file to hand to the fuzz target.
        let result = std::panic::catch_unwind(|| run(&data));
        assert!(result.is_ok(), "{target} fails on {}", path.display());
    }
}
