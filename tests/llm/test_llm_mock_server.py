"""The mock teacher server over plain HTTP: script, responder, faults, rate limit, latency, batch API."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from mmat.errors import ConfigError
from mmat.llm.mock_server import Fault, MockTeacherServer, default_responder, parse_script


def _post(url: str, body: dict, timeout: float = 5.0) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hello there"}]}


def test_script_then_responder_and_log() -> None:
    with MockTeacherServer() as server:
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
        server.script(["first", Fault("429", retry_after=3)])
        url = server.base_url + "/chat/completions"
        status, _, raw = _post(url, CHAT)
        assert status == 200 and json.loads(raw)["choices"][0]["message"]["content"] == "first"
        status, headers, _ = _post(url, CHAT)
        assert status == 429 and headers["Retry-After"] == "3" and headers["retry-after-ms"] == "3000"
        server.responder = lambda body: "from responder " + body["model"]
        status, _, raw = _post(url, CHAT)
        reply = json.loads(raw)
        assert reply["choices"][0]["message"]["content"] == "from responder tiny"
        assert reply["model"] == "tiny" and reply["usage"]["completion_tokens"] > 0
        assert [r.status for r in server.requests] == [200, 429, 200]
        assert server.request_count == 3 and server.stats()["unique_prompts"] == 1
        with urllib.request.urlopen(server.base_url + "/models") as response:
            assert "tiny" in {m["id"] for m in json.loads(response.read())["data"]}
    with pytest.raises(ConfigError, match="not running"):
        _ = server.base_url


def test_default_responder_is_deterministic_and_rule_based() -> None:
    step_request = {"messages": [{"role": "user", "content": "Answer as JSON with thought and next_action."}]}
    first, again = default_responder(step_request), default_responder(step_request)
    assert first == again and json.loads(first)["next_action"] == "continue"
    later = {"messages": [*step_request["messages"], {"role": "assistant", "content": "a"}] * 2}
    assert json.loads(default_responder(later))["next_action"] == "final_answer"
    judge = {"messages": [{"role": "user", "content": "Return JSON with quality_score"}]}
    assert json.loads(default_responder(judge))["quality_score"] == 0.9
    rr = {"messages": [{"role": "system", "content": "Use <THOUGHT> tags"}, {"role": "user", "content": "q"}]}
    assert default_responder(rr).endswith("<SIGNAL>continue</SIGNAL>")
    assert default_responder({"messages": [{"role": "user", "content": "hi"}]}).endswith(": hi")


def test_rpm_limit_returns_429_with_wait() -> None:
    with MockTeacherServer(rpm_limit=120) as server:  # 2 per second, burst 2
        statuses = [_post(server.base_url + "/chat/completions", CHAT)[0] for _ in range(4)]
        assert statuses[:2] == [200, 200] and statuses[2:] == [429, 429]
        assert server.stats()["by_fault"] == {"rpm": 2}


def test_latency_median_and_slow_tail() -> None:
    with MockTeacherServer(latency_median_s=0.05, slow_tail_p=1.0, slow_tail_s=0.1) as server:
        started = time.perf_counter()
        _post(server.base_url + "/chat/completions", CHAT)
        assert time.perf_counter() - started >= 0.15


def test_random_faults_are_seeded() -> None:
    def run() -> list[int]:
        with MockTeacherServer(fault_rate=0.5, fault_kinds=["500", "503"], seed=3) as server:
            return [_post(server.base_url + "/chat/completions", CHAT)[0] for _ in range(12)]

    first = run()
    assert first == run() and {500, 503} & set(first) and 200 in first


def test_bad_fault_and_script_items_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown fault kind 'boom'"):
        Fault("boom")
    with pytest.raises(ConfigError, match="bad mock script item"):
        parse_script([3])
    assert parse_script(["a", {"fault": "429", "retry_after": 2}])[1] == Fault("429", retry_after=2.0)


def test_malformed_request_body_is_400() -> None:
    with MockTeacherServer() as server:
        assert _post(server.base_url + "/chat/completions", {"model": "x"})[0] == 400


def test_mock_teacher_command_serves_script_and_reports_stats(tmp_path) -> None:
    import re
    import signal
    import subprocess
    import sys

    script = tmp_path / "script.json"
    script.write_text(json.dumps(["scripted reply", {"fault": "503"}]))
    process = subprocess.Popen(
        [sys.executable, "-m", "mmat.cli", "mock-teacher", "--port", "0", "--script", str(script)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stderr.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+/v1)", line)
        assert match, line
        _, _, raw = _post(match.group(1) + "/chat/completions", CHAT)
        assert json.loads(raw)["choices"][0]["message"]["content"] == "scripted reply"
        assert _post(match.group(1) + "/chat/completions", CHAT)[0] == 503
    finally:
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=10)
    assert json.loads(rest.strip().splitlines()[-1])["by_status"] == {"200": 1, "503": 1}
