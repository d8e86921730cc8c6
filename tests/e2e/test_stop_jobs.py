"""A stopping daemon does not wait for its background work: jobs still running when the calls in
flight are done (here the background embedding of a whole book with the local model, minutes of
work) are cancelled, and the process exits within seconds; a re-run resumes them."""
import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import base_env, exai_bin, start_daemon

BOOK = Path(subprocess.run(["rustc", "--print", "sysroot"], capture_output=True, text=True, check=True).stdout.strip()) / "share/doc/rust/html/book"


@pytest.mark.skipif(not os.environ.get("EXAI_TEST_MODEL_DIR") and not os.environ.get("CI"), reason="set EXAI_TEST_MODEL_DIR (scripts/test.sh does)")
def test_a_stopping_daemon_cancels_its_background_embedding(home):
    subprocess.run([exai_bin(), "index", str(BOOK), "--source", "book", "--include", "*.html", "--no-embed"],
                   env=base_env(home, EXAI_EMBED_BACKEND="none"), check=True, capture_output=True, timeout=300)
    env = dict(EXAI_EMBED_BACKEND="local", EXAI_EMBED_MODEL=os.environ["EXAI_TEST_MODEL_DIR"])
    d = start_daemon(home, **env)
    log = home / "logs" / "exai.log"
    started = time.monotonic()
    while "embedding chunk texts in the background" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() - started < 60, "the background embedding never started"
        time.sleep(0.1)
    stopping = time.monotonic()
    assert d.stop(timeout=120) == 0
    took = time.monotonic() - stopping
    # Thousands of texts on the CPU take minutes; one batch, seconds.
    assert took < 20, f"the daemon took {took:.1f} s to exit"
    assert "stopping the jobs still running" in log.read_text()
