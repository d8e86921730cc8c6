"""AI tools end to end: the official MCP Python SDK drives exai, which calls the built-in mock
provider (`exai mock-llm`, a real OpenAI-compatible HTTP server) configured as Kimi and GLM."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

import anyio
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from conftest import MOCK_KEY, AI_TOOLS, activity, base_env, start_daemon, structured

pytestmark = pytest.mark.anyio

KEY = MOCK_KEY




def provider_env(url: str, root: Path) -> dict[str, str]:
    return dict(KIMI_API_KEY=KEY, KIMI_API_URL=url, GLM_API_KEY=KEY, GLM_API_URL=url,
                EXAI_TOOLS_ALLOWED_ROOTS=str(root))


def mock_requests(url: str) -> list[dict]:
    base = url.rsplit("/v1", 1)[0]
    with urllib.request.urlopen(f"{base}/mock/requests", timeout=5) as resp:
        return json.loads(resp.read())


@pytest.fixture
def ai_daemon(home, mock_llm, tmp_path):
    d = start_daemon(home, **provider_env(mock_llm, tmp_path))
    yield d
    if d.proc.poll() is None:
        d.proc.kill()
        d.proc.wait()


async def session_call(url, name, args, **kw):
    async with streamable_http_client(url) as (r, w):
        async with ClientSession(r, w) as s:
            await s.initialize()
            return await s.call_tool(name, args, **kw)


async def test_chat_continues_across_a_restart_and_is_recorded(home, mock_llm, tmp_path):
    d = start_daemon(home, **provider_env(mock_llm, tmp_path))
    try:
        async with streamable_http_client(d.url) as (r, w):
            async with ClientSession(r, w) as s:
                await s.initialize()
                tools = {t.name for t in (await s.list_tools()).tools}
                assert AI_TOOLS <= tools
                first = structured(await s.call_tool("chat", {"prompt": "What is a monad?", "model": "glm-4.6"}))
                assert first["content"].startswith("mock answer from glm-4.6 (2 messages): What is a monad?")
                assert first["provider"] == "glm" and first["usage"]["prompt_tokens"] > 0
                cid = first["continuation_id"]
                second = structured(await s.call_tool("chat", {"prompt": "And a functor?", "model": "glm-4.6",
                                                               "continuation_id": cid}))
                assert "(4 messages)" in second["content"], "history reached the model"
                assert second["remaining_turns"] == 16
    finally:
        d.stop()
    d = start_daemon(home, **provider_env(mock_llm, tmp_path))
    try:
        third = structured(await session_call(d.url, "chat", {"prompt": "Still there?", "model": "kimi-k2-0905-preview",
                                                                "continuation_id": cid}))
        assert "(6 messages)" in third["content"], "the thread survived the restart"
        threads = structured(await session_call(d.url, "list_threads", {}))["threads"]
        assert threads[0]["continuation_id"] == cid and threads[0]["turns"] == 6
    finally:
        d.stop()
    records = [r for r in activity(home) if r["tool"] == "chat"]
    assert len(records) == 3 and all(r["outcome"] == "ok" for r in records)
    assert records[0]["model"] == "glm-4.6" and records[0]["provider"] == "glm"
    assert records[0]["tokens_in"] > 0 and "cost_usd" in records[0] and "route" in records[0]
    text = (home / "logs" / "activity.jsonl").read_text()
    assert KEY not in text


async def test_auto_routing_files_progress_and_retries(ai_daemon, mock_llm, tmp_path):
    src = tmp_path / "lib.rs"
    src.write_text("fn answer() -> u32 { 42 }\n")
    seen = []

    async def on_progress(progress, total, message):
        seen.append(progress)

    words = " ".join(f"w{i}" for i in range(12))
    out = structured(await session_call(
        ai_daemon.url, "chat",
        {"prompt": f"Explain {words} [[mock:stream_delay=60]]", "files": [str(src)]},
        progress_callback=on_progress))
    assert out["files"]["used"][0]["path"] == str(src)
    assert "deep" not in out["route"] and "fast task" in out["route"]
    assert seen and seen == sorted(seen), "progress notifications while streaming"
    sent = [r for r in mock_requests(mock_llm) if r["path"] == "/v1/chat/completions"][-1]
    assert "1│ fn answer() -> u32 { 42 }" in sent["body"]["messages"][-1]["content"]
    retried = structured(await session_call(ai_daemon.url, "chat", {"prompt": "busy [[mock:rate_limit=1]]",
                                                                     "model": "glm-4.6"}))
    assert retried["attempts"] == 2
    outside = await session_call(ai_daemon.url, "chat", {"prompt": "x", "files": ["/etc/hostname"]})
    assert outside.is_error and "outside the allowed roots" in outside.content[0].text


async def test_provider_errors_are_clear_tool_errors(ai_daemon, home):
    ctx = await session_call(ai_daemon.url, "chat", {"prompt": "huge [[mock:context_length]]", "model": "glm-4.6"})
    assert ctx.is_error and ctx.structured_content["error"] == "context_length"
    unknown = await session_call(ai_daemon.url, "chat", {"prompt": "x", "model": "glm-9"})
    assert unknown.is_error and "listmodels" in unknown.content[0].text
    nokey = await session_call(ai_daemon.url, "chat", {"prompt": "x", "model": "gpt-4.1"})
    assert nokey.is_error and "OPENAI_API_KEY" in nokey.content[0].text
    records = [r for r in activity(home) if r["tool"] == "chat"]
    assert [r["error_kind"] for r in records] == ["context_length", "unknown_model", "provider_not_configured"]


async def test_no_provider_is_an_error_naming_the_variables(home):
    d = start_daemon(home)
    try:
        out = await session_call(d.url, "chat", {"prompt": "hello"})
        assert out.is_error
        text = out.content[0].text
        assert "KIMI_API_KEY" in text and "GLM_API_KEY" in text
        models = structured(await session_call(d.url, "listmodels", {}))
        assert models["available"] == 0
        assert all("unavailable_reason" in m for m in models["models"])
    finally:
        d.stop()


async def test_cancellation_mid_stream_stops_the_call(ai_daemon, home):
    words = " ".join(f"w{i}" for i in range(40))
    async with streamable_http_client(ai_daemon.url) as (r, w):
        async with ClientSession(r, w) as s:
            await s.initialize()
            with anyio.move_on_after(1.0):
                await s.call_tool("chat", {"prompt": f"{words} [[mock:stream_delay=200]]", "model": "glm-4.6"},
                                  progress_callback=lambda *a: None)
            # The session still works after the cancelled call.
            assert not (await s.call_tool("listmodels", {})).is_error
    for _ in range(50):
        kinds = [r["outcome"] for r in activity(home) if r["tool"] == "chat"]
        if kinds:
            break
        await anyio.sleep(0.1)
    assert kinds == ["cancelled"]


async def test_consensus_survives_one_failing_model(ai_daemon):
    out = structured(await session_call(ai_daemon.url, "consensus", {
        "prompt": "Should we adopt Rust for the CLI?",
        "models": [{"model": "kimi-k2-0905-preview", "stance": "for"},
                   {"model": "glm-4.6", "stance": "against"},
                   {"model": "gpt-4.1", "stance": "neutral"}]}))
    status = {o["model"]: o["status"] for o in out["opinions"]}
    assert status == {"kimi-k2-0905-preview": "ok", "glm-4.6": "ok", "gpt-4.1": "provider_not_configured"}
    assert out["synthesis"]["content"].startswith("mock answer from kimi-k2-0905-preview")
    assert out["usage"]["prompt_tokens"] > 0


async def test_workflow_steps_then_expert(ai_daemon, mock_llm, tmp_path):
    src = tmp_path / "auth.py"
    src.write_text("def check(pw):\n    return pw == 'admin'\n")
    step1 = structured(await session_call(ai_daemon.url, "codereview", {
        "step": "Review auth.py for security", "step_number": 1, "total_steps": 2, "next_step_required": True,
        "findings": "Starting", "relevant_files": [str(src)]}))
    assert step1["status"] == "pause_for_investigation" and step1["required_actions"]
    cid = step1["continuation_id"]
    step2 = structured(await session_call(ai_daemon.url, "codereview", {
        "step": "Hard-coded password found", "step_number": 2, "total_steps": 2, "next_step_required": False,
        "findings": "check() compares to a literal", "relevant_files": [str(src)], "confidence": "high",
        "issues_found": [{"severity": "critical", "description": "hard-coded password"}],
        "continuation_id": cid, "model": "glm-4.6"}))
    assert step2["status"] == "complete"
    assert step2["consolidated"]["issues_found"][0]["severity"] == "critical"
    assert step2["model"] == "glm-4.6" and step2["expert_analysis"]["content"].startswith("mock answer")
    sent = [r for r in mock_requests(mock_llm) if r["path"] == "/v1/chat/completions"][-1]
    body = sent["body"]["messages"][-1]["content"]
    assert "return pw == 'admin'" in body and "hard-coded password" in body
    certain = structured(await session_call(ai_daemon.url, "debug", {
        "step": "Found it", "step_number": 1, "total_steps": 1, "next_step_required": False,
        "findings": "off by one", "confidence": "certain"}))
    assert certain["status"] == "complete_without_expert"


async def test_precommit_sends_the_git_diff(ai_daemon, mock_llm, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git = lambda *a: subprocess.run(["git", "-C", str(repo), *a], check=True, capture_output=True,
                                    env=base_env(tmp_path, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t",
                                                 GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t"))
    git("init", "-q")
    (repo / "a.txt").write_text("one\n")
    git("add", "a.txt")
    git("commit", "-qm", "init")
    (repo / "a.txt").write_text("one\ntwo\n")
    out = structured(await session_call(ai_daemon.url, "precommit", {
        "step": "Validate the change", "step_number": 1, "total_steps": 1, "next_step_required": False,
        "findings": "adds a line", "path": str(repo), "model": "glm-4.6"}))
    assert out["status"] == "complete"
    body = [r for r in mock_requests(mock_llm) if r["path"] == "/v1/chat/completions"][-1]["body"]
    assert "+two" in body["messages"][-1]["content"]


async def test_planner_challenge_and_web_search(ai_daemon):
    p1 = structured(await session_call(ai_daemon.url, "planner", {
        "step": "Design the schema", "step_number": 1, "total_steps": 2, "next_step_required": True}))
    p2 = structured(await session_call(ai_daemon.url, "planner", {
        "step": "Write the migration", "step_number": 2, "total_steps": 2, "next_step_required": False,
        "continuation_id": p1["continuation_id"]}))
    assert p2["status"] == "plan_complete" and p2["steps"] == ["Design the schema", "Write the migration"]
    ch = structured(await session_call(ai_daemon.url, "challenge", {"prompt": "The bug is in the parser"}))
    assert "The bug is in the parser" in ch["challenge_prompt"]
    web = structured(await session_call(ai_daemon.url, "glm_web_search", {"query": "rust 2024 edition", "count": 3}))
    assert len(web["results"]) == 3 and "rust 2024 edition" in web["results"][0]["title"]


async def test_long_answers_are_truncated_not_failed(home, mock_llm, tmp_path):
    d = start_daemon(home, MAX_MCP_OUTPUT_TOKENS="1000", **provider_env(mock_llm, tmp_path))
    try:
        long = "x" * 6000
        out = await session_call(d.url, "chat", {"prompt": f"[[mock:reply={long}]]", "model": "glm-4.6"})
        assert not out.is_error
        assert "output truncated" in out.content[-1].text
    finally:
        d.stop()


async def test_chat_answers_within_its_token_budget(ai_daemon, mock_llm):
    long = "word " * 2000
    out = await session_call(ai_daemon.url, "chat", {"prompt": f"[[mock:reply={long}]]", "model": "glm-4.6",
                                                     "max_tokens": 300})
    assert not out.is_error
    # The provider is asked for at most the budget less the footer's share, and says it stopped.
    sent = [r for r in mock_requests(mock_llm) if r["path"] == "/v1/chat/completions"][-1]["body"]
    assert sent["max_tokens"] == 220
    result = structured(out)
    assert result["finish_reason"] == "length" and len(result["content"]) <= 220 * 4
    assert "stopped at its token limit" in out.content[0].text
    # Without a budget the whole answer comes back.
    whole = structured(await session_call(ai_daemon.url, "chat", {"prompt": f"[[mock:reply={long}]]",
                                                                  "model": "glm-4.6"}))
    assert whole["finish_reason"] == "stop" and len(whole["content"]) >= 9_000


@pytest.mark.parametrize("tool", ["analyze", "refactor", "secaudit", "testgen", "tracer", "docgen", "debug"])
async def test_every_workflow_tool_consults_its_expert(ai_daemon, mock_llm, tool):
    out = structured(await session_call(ai_daemon.url, tool, {
        "step": f"{tool} the module", "step_number": 1, "total_steps": 1, "next_step_required": False,
        "findings": "looked at it", "confidence": "medium", "model": "kimi-k2-0905-preview"}))
    assert out["status"] == "complete" and out["tool"] == tool
    assert out["expert_analysis"]["content"].startswith("mock answer from kimi-k2-0905-preview")
    system = [r for r in mock_requests(mock_llm) if r["path"] == "/v1/chat/completions"][-1]["body"]["messages"][0]
    assert system["role"] == "system" and "senior engineer" in system["content"]


async def test_thinkdeep_asks_for_thinking(ai_daemon, mock_llm):
    out = structured(await session_call(ai_daemon.url, "thinkdeep", {
        "prompt": "Is a lock-free queue worth it here?", "focus_areas": ["performance"], "model": "glm-4.6"}))
    assert out["reasoning"].startswith("mock reasoning")
    body = [r for r in mock_requests(mock_llm) if r["path"] == "/v1/chat/completions"][-1]["body"]
    assert body["thinking"] == {"type": "enabled"}
    assert "Focus on: performance" in body["messages"][-1]["content"]


async def test_kimi_extracts_uploaded_files(ai_daemon, mock_llm, tmp_path):
    doc = tmp_path / "spec.txt"
    doc.write_text("The retry budget is three attempts.")
    out = structured(await session_call(ai_daemon.url, "kimi_chat_with_files", {
        "prompt": "What is the retry budget?", "files": [str(doc)]}))
    assert out["model"] == "kimi-k2-0905-preview"
    paths = [r["path"] for r in mock_requests(mock_llm)]
    assert "/v1/files" in paths
    body = [r for r in mock_requests(mock_llm) if r["path"] == "/v1/chat/completions"][-1]["body"]
    assert "The retry budget is three attempts." in body["messages"][-1]["content"]
    wrong = await session_call(ai_daemon.url, "kimi_chat_with_files", {"prompt": "x", "files": [str(doc)],
                                                                        "model": "glm-4.6"})
    assert wrong.is_error and "file extraction" in wrong.content[0].text


async def test_a_full_thread_continues_in_a_child(home, mock_llm, tmp_path):
    d = start_daemon(home, EXAI_THREADS_MAX_TURNS="4", **provider_env(mock_llm, tmp_path))
    try:
        first = structured(await session_call(d.url, "chat", {"prompt": "one", "model": "glm-4.6"}))
        cid = first["continuation_id"]
        second = structured(await session_call(d.url, "chat", {"prompt": "two", "model": "glm-4.6",
                                                               "continuation_id": cid}))
        assert second["remaining_turns"] == 0
        third = structured(await session_call(d.url, "chat", {"prompt": "three", "model": "glm-4.6",
                                                              "continuation_id": cid}))
        assert third["continued_from"] == cid and third["continuation_id"] != cid
        assert "(6 messages)" in third["content"], "the child carries the parent's history"
    finally:
        d.stop()
