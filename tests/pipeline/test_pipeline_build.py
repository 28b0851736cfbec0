"""`mmat build` end to end over the shared real TabMWP data, against the mock teacher server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mmat import store
from mmat.config import RunConfig
from mmat.llm.mock_server import MockTeacherServer
from mmat.llm.openai_client import OpenAITeacher
from mmat.pipeline import build_async
from mmat.pipeline.report import render_markdown
from mmat.stages.rule_teacher import StageRuleResponder
from mmat.tools.runner import ToolRunner


class WrongOnFives(StageRuleResponder):
    """The rule teacher, but it answers 'no idea' when the gold answer holds a 5 (so those are rejected)."""

    def __call__(self, body: dict[str, Any]) -> str:
        reply = super().__call__(body)
        last = body["messages"][-1]
        text = last["content"] if isinstance(last["content"], str) else ""
        if "Reply with the short final answer only" in text and "5" in reply:
            return "no idea"
        return reply


@pytest.fixture
def server() -> Iterator[MockTeacherServer]:
    with MockTeacherServer() as running:
        running.responder = WrongOnFives(operator_rounds=1)
        yield running


def run_config(shared_data: Path, base_url: str, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "sources": [{"name": "tabmwp", "root": str(shared_data / "tabmwp"), "limit": 20}],
        "teacher": {"kind": "openai", "base_url": base_url, "model": "mock", "api_key_env": None},
        "tools": {"enabled": []},
        "stages": {"answer_retries": 0},
        "output": {"exports": ["mmat1m"]},
    }
    data.update(extra)
    return data


async def test_build_over_shared_data_writes_exports_and_a_report_that_adds_up(
    shared_data: Path, server: MockTeacherServer, tmp_path: Path
) -> None:
    config = RunConfig.from_dict(run_config(shared_data, server.base_url))
    tools = ToolRunner(config, cache_dir=tmp_path / "toolcache")
    tools.register(
        "ocr", "reads the text in the image", lambda images, **args: f"text of {Path(images[0].path).name}"
    )
    teacher = OpenAITeacher(server.base_url, "mock", api_key_env=None)
    result = await build_async(config, out_dir=tmp_path / "out", teacher=teacher, tools=tools, progress=False)
    await teacher.aclose()
    report = result.report
    accepted = list(store.iter_accepted(result.out_dir))
    rejects = list(store.iter_rejects(result.out_dir))
    assert report["totals"]["input_dialogues"] == 20 == len(accepted) + len(rejects)
    assert report["check"] == {"input_qas": 20, "accepted_plus_rejected": 20, "adds_up": True}
    assert Counter(r.reason for r in rejects) == Counter({"answer_mismatch": len(rejects)})
    assert report["rejects_by_reason"] == {"answer_mismatch": len(rejects)} and rejects
    assert report["operator_calls"]["ocr"] == len(accepted)
    assert report["steps_per_qa"] == {"2": len(accepted)}
    assert report["totals"]["accepted_qas"] == len(accepted)
    first = accepted[0]
    assert first.trajectory is not None and first.orr is not None and first.quality is not None
    assert (
        first.trajectory.segments[0].turns[2].content
        == f"Here are ocr results from the previous step: text of {Path(first.images[0].path).name} Please continue your reasoning."
    )
    assert first.trajectory.provenance.teacher_model == "mock"
    rr_file = result.out_dir / "exports" / "mmat1m" / "dataset_qa_rr_train_all_RR_sys.jsonl"
    orr_file = result.out_dir / "exports" / "mmat1m" / "dataset_qa_rr_train_all_ORR.jsonl"
    assert sorted(p.name for p in result.exports["mmat1m"]) == [orr_file.name, rr_file.name]
    assert len(rr_file.read_text().splitlines()) == len(accepted)
    row = json.loads(rr_file.read_text().splitlines()[0])
    assert row["messages"][1]["content"].startswith("<image>\n")
    md = (result.out_dir / "report.md").read_text()
    assert md == render_markdown(json.loads((result.out_dir / "report.json").read_text()))
    assert "| tabmwp | 20 | 20 |" in md and "(adds up)" in md


def _count_lines(folder: Path) -> int:
    return (
        sum(len(p.read_text().splitlines()) for p in folder.glob("shard-*.jsonl")) if folder.is_dir() else 0
    )


@pytest.mark.slow
def test_kill_and_rerun_resumes_without_loss_or_duplicates(shared_data: Path, tmp_path: Path) -> None:
    with MockTeacherServer(latency_median_s=0.05) as server:
        server.responder = WrongOnFives(operator_rounds=0)
        data = run_config(shared_data, server.base_url, engine={"max_samples_in_flight": 2})
        data["sources"][0]["limit"] = 30
        config_path = tmp_path / "run.yaml"
        config_path.write_text(yaml.safe_dump(data))
        out = tmp_path / "out"
        command = [
            sys.executable,
            "-m",
            "mmat.cli",
            "build",
            "--config",
            str(config_path),
            "--out",
            str(out),
            "--no-progress",
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while _count_lines(out / "accepted") + _count_lines(out / "rejects") < 8 and time.time() < deadline:
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait()
        done_before = _count_lines(out / "accepted") + _count_lines(out / "rejects")
        assert 8 <= done_before < 30, "the kill must land mid-run"
        requests_before = server.request_count
        second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 0, second.stderr
        assert "report: " in second.stdout
    ids = [s.id for s in store.iter_accepted(out)] + [r.id for r in store.iter_rejects(out)]
    assert len(ids) == len(set(ids)) == 30
    report = json.loads((out / "report.json").read_text())
    assert report["check"] == {"input_qas": 30, "accepted_plus_rejected": 30, "adds_up": True}
    # the rerun sent at most the calls of the samples not yet written, plus those in flight at the kill
    # (at most 5 calls a sample: step, answer, general and math reflection, quality)
    per_sample = 5
    assert server.request_count - requests_before <= (30 - done_before + 2) * per_sample
