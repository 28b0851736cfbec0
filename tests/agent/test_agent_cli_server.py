"""``mmat ask`` and ``mmat serve-agent`` (the agent behind an OpenAI-compatible endpoint)."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from mmat.agent.models import OpenAIModel
from mmat.agent.runtime import Agent
from mmat.agent.server import AgentServer
from mmat.agent.simulated import SimulatedToolProvider
from mmat.cli import cli
from mmat.llm.base import ChatMessage, ImagePart, TextPart
from mmat.llm.mock_server import MockTeacherServer
from mmat.schema import ImageRef

QUESTION = "How much did Veronica make after taxes?"
STEPS = [
    "<THOUGHT>Subtract the taxes from the earnings.</THOUGHT><SIGNAL>end</SIGNAL>",
    "2,825.35",
]


def test_ask_prints_the_trajectory(
    mock_server: MockTeacherServer, table_image: ImageRef, tmp_path: Path
) -> None:
    image = str(Path(table_image.root or "") / table_image.path)
    mock_server.script(STEPS)
    args = ["ask", image, QUESTION, "--model", "m", "--base-url", mock_server.base_url, "--no-tools"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "Subtract the taxes from the earnings." in result.output
    assert "Based on the above information, please summarize" in result.output
    assert "answer: 2,825.35" in result.output
    assert "mode rr" in result.output and "2 model calls" in result.output

    mock_server.script(STEPS)
    system = tmp_path / "system.txt"
    system.write_text("You are the tuned MMAT agent.\nUse <THOUGHT> and <SIGNAL>.", encoding="utf-8")
    result = CliRunner().invoke(cli, [*args, "--system-prompt-file", str(system)])
    assert result.exit_code == 0, result.output
    assert mock_server.requests[-1].body["messages"][0]["content"] == system.read_text(encoding="utf-8")

    mock_server.script(["<THOUGHT>x</THOUGHT><ANSWER>The answer is: 2,825.35</ANSWER>"])
    result = CliRunner().invoke(cli, [*args, "--mode", "orr", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["answer"] == "2,825.35" and data["mode"] == "orr" and data["model_calls"] == 1


def test_ask_failure_exits_nonzero_with_the_reason(
    mock_server: MockTeacherServer, table_image: ImageRef
) -> None:
    image = str(Path(table_image.root or "") / table_image.path)
    mock_server.script(["no tags", "still no tags"])
    args = ["ask", image, QUESTION, "--model", "m", "--base-url", mock_server.base_url, "--no-tools"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert "failed (malformed_step)" in result.output


def test_ask_rejects_a_missing_local_model(table_image: ImageRef, tmp_path: Path) -> None:
    image = str(Path(table_image.root or "") / table_image.path)
    result = CliRunner().invoke(
        cli, ["ask", image, QUESTION, "--model", str(tmp_path / "none"), "--no-tools"]
    )
    assert result.exit_code != 0
    assert "is not a local model directory; give --base-url" in str(result.exception or result.output)


def test_serve_agent_answers_like_a_model(mock_server: MockTeacherServer, table_image: ImageRef) -> None:
    tools = SimulatedToolProvider({"ocr": "Total earnings $3,900.00"})
    agent = Agent(OpenAIModel(mock_server.base_url, "tuned"), tools)
    with AgentServer(agent) as server:
        assert server.base_url.startswith("http://127.0.0.1:")
        # any OpenAI client can call the agent: here mmat's own client, in ORR mode by model name
        mock_server.script(["<THOUGHT>x</THOUGHT><ANSWER>The answer is: 2,825.35</ANSWER>"])
        client = OpenAIModel(server.base_url, "mmat-orr")
        message = ChatMessage(role="user", content=[ImagePart(image=table_image), TextPart(text=QUESTION)])
        reply = asyncio.run(client.generate([message]))
        assert reply.text == "2,825.35" and reply.finish_reason == "stop"
        # the image reached the inner model unchanged (same bytes)
        inner = mock_server.requests[-1].body["messages"][1]["content"][0]["image_url"]["url"]
        raw = (Path(table_image.root or "") / table_image.path).read_bytes()
        assert inner == "data:image/png;base64," + base64.b64encode(raw).decode()

        # RR by the `mode` field; the trajectory and timings come back under "mmat"
        mock_server.script(
            ["<THOUGHT>Read.</THOUGHT><OPERATOR>ocr</OPERATOR><SIGNAL>continue</SIGNAL>", *STEPS]
        )
        data_url = "data:image/png;base64," + base64.b64encode(raw).decode()
        body = {
            "model": "anything",
            "mode": "rr",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": data_url}},
                        {"type": "text", "text": QUESTION},
                    ],
                }
            ],
        }
        response = httpx.post(f"{server.base_url}/chat/completions", json=body, timeout=30)
        assert response.status_code == 200, response.text
        payload = response.json()
        assert payload["choices"][0]["message"]["content"] == "2,825.35"
        assert payload["mmat"]["mode"] == "rr" and len(payload["mmat"]["steps"]) == 2
        assert [t["tool"] for t in payload["mmat"]["operator_timings"]] == ["ocr"]
        assert payload["usage"]["total_tokens"] > 0

        # a failed run is a 200 with finish_reason "error" and the reason
        mock_server.script(["no tags", "no tags"])
        failed = httpx.post(f"{server.base_url}/chat/completions", json=body, timeout=30).json()
        assert failed["choices"][0]["finish_reason"] == "error"
        assert failed["mmat"]["error_kind"] == "malformed_step"

        bad = httpx.post(f"{server.base_url}/chat/completions", json={**body, "stream": True}, timeout=30)
        assert bad.status_code == 400 and "streaming is not supported" in bad.json()["error"]["message"]
        bad = httpx.post(f"{server.base_url}/chat/completions", json={**body, "mode": "fast"}, timeout=30)
        assert bad.status_code == 400 and "valid modes: baseline, orr, rr" in bad.json()["error"]["message"]
        local = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "/etc/passwd"}}]}
        bad = httpx.post(f"{server.base_url}/chat/completions", json={"messages": [local]}, timeout=30)
        assert bad.status_code == 400
        models = httpx.get(f"{server.base_url}/models", timeout=30).json()
        assert [m["id"] for m in models["data"]] == ["mmat-baseline", "mmat-orr", "mmat-rr"]


@pytest.mark.slow
def test_serve_agent_command_serves_until_stopped(mock_server: MockTeacherServer) -> None:
    command = [sys.executable, "-m", "mmat.cli", "serve-agent", "--port", "0", "--mode", "baseline"]
    command += ["--model", "m", "--base-url", mock_server.base_url, "--no-tools"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        match = re.search(r"serving on (http://127\.0\.0\.1:\d+/v1)", line)
        assert match, line
        mock_server.script(["2,825.35"])
        body = {"model": "mmat", "messages": [{"role": "user", "content": QUESTION}]}
        reply = httpx.post(f"{match.group(1)}/chat/completions", json=body, timeout=30).json()
        assert reply["choices"][0]["message"]["content"] == "2,825.35"
        assert reply["mmat"]["mode"] == "baseline"
        assert mock_server.requests[0].body["messages"] == [{"role": "user", "content": QUESTION}]
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    assert process.returncode == 0
