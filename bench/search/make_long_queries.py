#!/usr/bin/env python3
"""Long natural-language queries for the keyword-latency benchmark, made reproducibly from the
labeled Rust Book questions: query i joins questions i, i+1 (and i+2 for every other i) as one
request, the way a user pastes a paragraph of related questions. The relevant pages are the
union of the joined questions' pages, so the set also scores ranking quality (`exai eval`).

Usage: bench/search/make_long_queries.py [IN] [OUT]
  (default IN bench/eval/rust_book_questions.json, OUT bench/search/long_queries.json)
"""
import json
import sys

src = sys.argv[1] if len(sys.argv) > 1 else "bench/eval/rust_book_questions.json"
out = sys.argv[2] if len(sys.argv) > 2 else "bench/search/long_queries.json"
with open(src) as f:
    base = json.load(f)
qs = base["questions"]
n = len(qs)
long = []
for i in range(n):
    parts = [qs[(i + j) % n] for j in range(3 if i % 2 == 0 else 2)]
    relevant = []
    for p in parts:
        for r in p["relevant"]:
            if r not in relevant:
                relevant.append(r)
    long.append({
        "id": i + 1,
        "query": ". ".join(p["query"].rstrip("?. ") for p in parts) + ".",
        "relevant": relevant,
    })
with open(out, "w") as f:
    json.dump({
        "corpus": base.get("corpus", ""),
        "root": base.get("root", ""),
        "made_by": "bench/search/make_long_queries.py from " + src,
        "questions": long,
    }, f, indent=2)
    f.write("\n")
words = sorted(len(q["query"].split()) for q in long)
print(f"{out}: {len(long)} queries, {words[0]}-{words[-1]} words (median {words[len(words) // 2]})")
