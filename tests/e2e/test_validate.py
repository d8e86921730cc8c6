"""exai validate: every tool and variation through the real MCP path against the built-in mock
provider, each run and result recorded in the data directory's tracking tables."""

from __future__ import annotations

import json

from conftest import AI_TOOLS, CORE_TOOLS, KB_TOOLS, free_port, run_exai, state_rows

VARIATIONS = {"basic", "edge_cases", "error_handling", "provider_faults", "file_handling", "model_selection",
              "continuation", "timeout", "progress", "web_search", "file_upload", "search_filters"}


def history(home) -> list[dict]:
    out = run_exai(home, "validate", "history", "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["runs"]


def test_the_full_suite_against_the_mock_passes_and_is_recorded(home):
    out = run_exai(home, "validate", "--provider", "mock")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "overall" in out.stdout and "pass rate" in out.stdout

    [run] = state_rows(home, "SELECT * FROM test_runs")
    assert run["provider"] == "mock" and run["finished_at"] and run["tools_filter"] is None
    assert run["failed"] == 0 and run["errored"] == 0 and run["pass_rate"] == 1.0
    results = state_rows(home, "SELECT * FROM test_results WHERE run_id = ?", run["id"])
    assert len(results) == run["total"] >= 50
    assert run["passed"] + run["skipped"] == run["total"]
    # Only precommit may skip (when git is missing); the mock makes every other case runnable.
    assert all(r["status"] == "PASS" or (r["status"] == "SKIP" and r["tool"] == "precommit") for r in results), \
        [(r["tool"], r["variation"], r["status"], r["error"]) for r in results if r["status"] != "PASS"]
    assert (AI_TOOLS | KB_TOOLS | CORE_TOOLS) <= {r["tool"] for r in results}
    assert VARIATIONS <= {r["variation"] for r in results}

    chat = {r["variation"]: r for r in results if r["tool"] == "chat"}
    basic = chat["basic"]
    assert basic["provider"] == "glm" and basic["model"] == "glm-4.6"
    assert basic["tokens_in"] > 0 and basic["tokens_out"] > 0 and basic["cost_usd"] > 0
    assert basic["duration_ms"] > 0 and basic["error"] is None
    assert basic["output"].startswith("mock answer from glm-4.6")
    assert chat["timeout"]["duration_ms"] >= 1000, "the timeout case waited for the 2 s tool deadline"
    assert run["tokens_in"] == sum(r["tokens_in"] for r in results)

    [listed] = history(home)
    assert listed["id"] == run["id"] and listed["pass_rate"] == 1.0 and listed["total"] == run["total"]
    assert listed["trend_pp"] is None, "nothing to compare the first run with"


def test_filters_narrow_the_run_and_history_shows_the_trend(home):
    for _ in range(2):
        out = run_exai(home, "validate", "--provider", "mock", "--tools", "chat", "--variations", "basic")
        assert out.returncode == 0, out.stdout + out.stderr
    rows = state_rows(home, "SELECT run_id, tool, variation, status FROM test_results ORDER BY id")
    assert [(r["tool"], r["variation"], r["status"]) for r in rows] == [("chat", "basic", "PASS")] * 2
    newest, older = history(home)
    assert newest["id"] > older["id"] and newest["tools_filter"] == "chat" and newest["variations_filter"] == "basic"
    assert newest["total"] == 1 and newest["pass_rate"] == 1.0 and newest["trend_pp"] == 0.0

    text = run_exai(home, "validate", "history")
    assert text.returncode == 0 and "100.0%" in text.stdout and "mock" in text.stdout

    unknown = run_exai(home, "validate", "--provider", "mock", "--tools", "nope")
    assert unknown.returncode == 2 and "no tool `nope`" in unknown.stderr and "chat" in unknown.stderr
    assert len(history(home)) == 2, "a refused command records no run"


def test_the_watcher_grades_each_output(home):
    out = run_exai(home, "validate", "--provider", "mock", "--tools", "chat,challenge", "--variations", "basic",
                   "--watcher", "glm-4.6")
    assert out.returncode == 0, out.stdout + out.stderr
    grades = state_rows(home, """SELECT r.tool, g.watcher_model, g.grade, g.reasons, g.tokens_in, g.error
                                 FROM test_grades g JOIN test_results r ON r.id = g.result_id ORDER BY g.id""")
    assert [g["tool"] for g in grades] == ["chat", "challenge"]
    for g in grades:
        assert g["watcher_model"] == "glm-4.6" and 1 <= g["grade"] <= 10 and g["error"] is None
        assert g["reasons"] and g["tokens_in"] > 0, "the grade came from a model call"
    [run] = history(home)
    assert run["watcher_model"] == "glm-4.6" and run["mean_grade"] == sum(g["grade"] for g in grades) / 2

    keyless = run_exai(home, "validate", "--provider", "mock", "--tools", "version", "--watcher", "gpt-4.1")
    assert keyless.returncode == 2 and "OPENAI_API_KEY" in keyless.stderr


def test_failures_fail_the_command_and_missing_keys_skip(home):
    # A configured provider that does not answer: the case fails, the command exits 1.
    dead = f"http://127.0.0.1:{free_port()}/v1"
    out = run_exai(home, "validate", "--provider", "live", "--tools", "chat", "--variations", "basic",
                   GLM_API_KEY="k", GLM_API_URL=dead)
    assert out.returncode == 1, out.stdout + out.stderr
    [result] = state_rows(home, "SELECT status, error FROM test_results")
    assert result["status"] == "FAIL" and "answered with an error" in result["error"]
    assert "FAIL" in out.stdout and "0.0%" in out.stdout

    # No provider at all: model cases skip with what to set, which is no failure.
    out = run_exai(home, "validate", "--provider", "live", "--tools", "chat", "--variations", "basic,error_handling")
    assert out.returncode == 0, out.stdout + out.stderr
    run = history(home)[0]
    statuses = {r["variation"]: (r["status"], r["error"]) for r in
                state_rows(home, "SELECT variation, status, error FROM test_results WHERE run_id = ?", run["id"])}
    assert statuses["basic"][0] == "SKIP" and "KIMI_API_KEY" in statuses["basic"][1]
    assert statuses["error_handling"][0] == "PASS"
    assert run["skipped"] == 1 and run["pass_rate"] == 1.0

    # The server under test keeps the operator's bearer token; the suite's client sends it.
    out = run_exai(home, "validate", "--provider", "live", "--tools", "version,health",
                   EXAI_AUTH_TOKEN="0123456789abcdef0123")
    assert out.returncode == 0, out.stdout + out.stderr
    assert history(home)[0]["passed"] == 2


def test_weekly_review_by_day_and_by_tool(home):
    """`validate history --since 7d --by-day --by-tool`: the window's runs per day and per tool,
    against the week before (a run moved back in time stands for last week's)."""
    import sqlite3
    dead = f"http://127.0.0.1:{free_port()}/v1"
    for provider, env in (("mock", {}), ("live", {"GLM_API_KEY": "k", "GLM_API_URL": dead}), ("mock", {})):
        out = run_exai(home, "validate", "--provider", provider, "--tools", "chat,version", "--variations", "basic",
                       **env)
        assert out.returncode in (0, 1), out.stdout + out.stderr
    runs = state_rows(home, "SELECT id, started_at FROM test_runs ORDER BY id")
    assert len(runs) == 3
    # The first run goes back nine days: last week's, outside the window.
    with sqlite3.connect(home / "state.sqlite") as db:
        db.execute("UPDATE test_runs SET started_at = ? WHERE id = ?",
                   (_days_ago(9), runs[0]["id"]))

    out = run_exai(home, "validate", "history", "--since", "7d", "--by-day", "--by-tool", "--json")
    assert out.returncode == 0, out.stderr
    review = json.loads(out.stdout)
    s = review["summary"]
    assert (s["runs"], s["previous_runs"]) == (2, 1)
    assert s["cases"]["failed"] == 1 and s["cases"]["passed"] == 3
    assert s["pass_rate"] == 0.75 and s["previous_pass_rate"] == 1.0 and round(s["trend_pp"], 6) == -25.0
    assert [r["id"] for r in review["runs"]] == [runs[2]["id"], runs[1]["id"]]
    [today] = review["days"]
    assert today["runs"] == 2 and today["pass_rate"] == 0.75
    chat, version = review["tools"]
    assert chat["tool"] == "chat" and chat["runs"] == 2 and chat["cases"]["failed"] == 1
    assert chat["failing"] == [["basic", 1]] and "answered with an error" in chat["last_error"]
    assert chat["pass_rate"] == 0.5 and chat["previous_pass_rate"] == 1.0
    assert version["tool"] == "version" and version["pass_rate"] == 1.0 and version["failing"] == []

    text = run_exai(home, "validate", "history", "--since", "7d", "--by-day", "--by-tool")
    assert text.returncode == 0, text.stderr
    assert "2 run(s) since" in text.stdout and "previous 7d: 1 run(s), pass rate 100.0%" in text.stdout
    assert "↓ -25.0" in text.stdout and "basic ×1" in text.stdout and "day (UTC)" in text.stdout

    # --by-tool alone reviews the last 7 days; a window with no runs says so.
    assert run_exai(home, "validate", "history", "--by-tool", "--json").returncode == 0
    with sqlite3.connect(home / "state.sqlite") as db:
        db.execute("UPDATE test_runs SET started_at = ?", (_days_ago(9),))
    empty = run_exai(home, "validate", "history", "--since", "7d")
    assert empty.returncode == 0 and "no validation runs since" in empty.stdout
    for since in ("soon", "99999999d"):
        bad = run_exai(home, "validate", "history", "--since", since)
        assert bad.returncode == 1 and "--since" in bad.stderr and "panicked" not in bad.stderr, bad.stderr


def _days_ago(days: int) -> str:
    import datetime
    t = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=days)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
