"""exai index / search / sources / eval from the shell, and indexing killed mid-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sqlite3
import time
from pathlib import Path

import pytest

from conftest import base_env, exai_bin


def run(home, *args, **env):
    env.setdefault("EXAI_EMBED_BACKEND", "none")
    return subprocess.run([exai_bin(), *args], env=base_env(home, **env), capture_output=True, text=True, timeout=300)


def corpus(root: Path, files: int) -> Path:
    docs = root / "many"
    docs.mkdir()
    for i in range(files):
        sub = docs / f"part{i % 10}"
        sub.mkdir(exist_ok=True)
        (sub / f"page{i}.md").write_text(
            f"# Page {i}\n\n## Topic {i % 7}\n\n" + " ".join(f"word{i}_{j} about topic {i % 7}" for j in range(60)) + "\n")
    return docs


def test_index_dry_run_search_sources(home, tmp_path):
    docs = corpus(tmp_path, 30)
    dry = run(home, "index", str(docs), "--source", "many", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    report = json.loads(dry.stdout)
    assert report["dry_run"] and report["added"] == 30 and report["chunks_written"] >= 30
    assert not (home / "kb.sqlite").exists() or json.loads(run(home, "sources", "--json").stdout)["status"]["documents"] == 0
    done = run(home, "index", str(docs), "--source", "many", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["added"] == 30
    found = run(home, "search", "word7_3", "--json")
    hits = json.loads(found.stdout)["hits"]
    assert hits[0]["path"] == "part7/page7.md"
    text = run(home, "search", "word7_3")
    assert "part7/page7.md" in text.stdout and "keyword" in text.stdout
    bad = run(home, "search", "x", "--source", "man")
    assert bad.returncode == 1 and "did you mean `many`" in bad.stderr
    sources = run(home, "sources")
    assert "many" in sources.stdout and "keyword search only" in sources.stdout
    (docs / "part1" / "page1.md").unlink()
    (docs / "part2" / "page2.md").write_text("# Changed\n\nnew text\n")
    (docs / "part3" / "new.md").write_text("# New\n\nnew page\n")
    (docs / "part4" / "blob.md").write_bytes(b"\x00\x01" * 100)
    # A dry run lists each file it would add, update, remove or skip, with the reason.
    plan = json.loads(run(home, "index", str(docs), "--source", "many", "--prune", "--dry-run", "--json").stdout)["plan"]
    assert {(p["path"], p["action"]) for p in plan} == {
        ("part3/new.md", "add"), ("part2/page2.md", "update"), ("part1/page1.md", "remove"), ("part4/blob.md", "skip")}
    assert next(p for p in plan if p["action"] == "skip")["reason"] == "binary"
    listed = run(home, "index", str(docs), "--source", "many", "--prune", "--dry-run")
    assert "remove  part1/page1.md  (gone from the source)" in listed.stdout, listed.stdout
    (docs / "part3" / "new.md").unlink()
    (docs / "part4" / "blob.md").unlink()
    again = json.loads(run(home, "index", str(docs), "--source", "many", "--prune", "--json").stdout)
    assert (again["unchanged"], again["updated"], again["removed"]) == (28, 1, 1)


def test_eval_keyword_on_a_small_labeled_set(home, tmp_path):
    docs = corpus(tmp_path, 20)
    assert run(home, "index", str(docs), "--source", "many").returncode == 0
    qs = tmp_path / "q.json"
    qs.write_text(json.dumps({"questions": [
        {"id": 1, "query": "word3_5", "relevant": ["part3/page3.md"]},
        {"id": 2, "query": "word11_2 topic", "relevant": ["part1/page11.md"]},
    ]}))
    out = run(home, "eval", "--questions", str(qs), "--mode", "keyword", "--json")
    assert out.returncode == 0, out.stderr
    scores = json.loads(out.stdout)
    assert scores[0]["mode"] == "keyword" and scores[0]["mrr_at_10"] == 1.0
    refused = run(home, "eval", "--questions", str(qs), "--mode", "semantic")
    assert refused.returncode == 1 and "semantic" in refused.stderr


def test_kill_9_mid_indexing_leaves_a_valid_store_and_rerun_resumes(home, tmp_path):
    docs = corpus(tmp_path, 3000)
    env = base_env(home, EXAI_EMBED_BACKEND="none")
    proc = subprocess.Popen([exai_bin(), "index", str(docs), "--source", "many"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = home / "kb.sqlite"
    deadline = time.monotonic() + 60
    committed = 0
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as c:
                committed = c.execute("select count(*) from documents").fetchone()[0]
        except sqlite3.Error:
            continue
        if committed >= 200:
            break
    assert proc.poll() is None, "indexing finished before it could be killed; make the corpus larger"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with sqlite3.connect(db) as c:
        assert c.execute("pragma integrity_check").fetchone()[0] == "ok"
        docs_n = c.execute("select count(*) from documents").fetchone()[0]
        # Every committed document has all its chunks and its FTS rows.
        orphans = c.execute("select count(*) from documents d where not exists (select 1 from chunks c where c.doc_id = d.id)").fetchone()[0]
        assert 0 < docs_n < 3000 and orphans == 0
    rerun = json.loads(run(home, "index", str(docs), "--source", "many", "--json").stdout)
    assert rerun["unchanged"] == docs_n and rerun["added"] == 3000 - docs_n
    found = json.loads(run(home, "search", "word2999_1", "--json").stdout)["hits"]
    assert found[0]["path"] == "part9/page2999.md"


@pytest.mark.skipif(not os.environ.get("EXAI_TEST_MODEL_DIR") and not os.environ.get("CI"), reason="set EXAI_TEST_MODEL_DIR (scripts/test.sh does)")
def test_ann_index_is_built_verified_and_rebuilt_when_corrupt(home, tmp_path):
    docs = corpus(tmp_path, 30)
    local = dict(EXAI_EMBED_BACKEND="local", EXAI_EMBED_MODEL=os.environ["EXAI_TEST_MODEL_DIR"])
    ann = dict(local, EXAI_KB_ANN_MIN_VECTORS="10")
    done = run(home, "index", str(docs), "--source", "many", "--json", **ann)
    assert done.returncode == 0, done.stderr
    path = home / "kb.sqlite.ann"
    assert path.exists()

    def verify():
        out = run(home, "db", "verify", "--json")
        kb = next(d for d in json.loads(out.stdout)["databases"] if d["name"] == "kb")
        return out, kb["kb"]

    out, report = verify()
    assert out.returncode == 0, out.stdout
    assert report["ann"]["fresh"] and report["ann"]["generation"] == report["generation"]
    assert report["ann"]["vectors"] >= 30
    assert "ANN index:" in run(home, "db", "verify").stdout

    def semantic(**env):
        out = run(home, "search", "topic 3", "--mode", "semantic", "--json", "--limit", "10", **env)
        assert out.returncode == 0, out.stderr
        return [(h["chunk_id"], h["cosine"]) for h in json.loads(out.stdout)["hits"]]

    exact = semantic(**local, EXAI_KB_ANN_MIN_VECTORS="0")
    assert len(exact) == 10
    assert semantic(**ann) == exact
    # A corrupt file: a warning in verify, exact answers meanwhile, and reindex rebuilds it.
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x55
    path.write_bytes(bytes(data))
    out, report = verify()
    assert out.returncode == 1 and report["ann"]["corrupt"], out.stdout
    assert semantic(**ann) == exact
    rebuilt = run(home, "db", "reindex", **ann)
    assert rebuilt.returncode == 0, rebuilt.stderr
    out, report = verify()
    assert out.returncode == 0 and report["ann"]["fresh"], out.stdout
