"""The Ray executor: same result as the local executor, and a killed worker loses and duplicates nothing."""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mmat import store
from mmat.config import RunConfig
from mmat.llm.mock_server import MockTeacherServer
from mmat.pipeline import build_async
from mmat.schema import Sample
from mmat.sources import load
from mmat.stages.base import Stage, StageContext
from mmat.stages.rule_teacher import StageRuleResponder
from mmat.wire import render_rr_messages

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.heavy, pytest.mark.slow]


class WrongOnFives(StageRuleResponder):
    """The rule teacher, answering 'no idea' when the gold answer holds a 5, so some samples are rejected."""

    def __call__(self, body: dict[str, Any]) -> str:
        reply = super().__call__(body)
        last = body["messages"][-1]
        text = last["content"] if isinstance(last["content"], str) else ""
        if "Reply with the short final answer only" in text and "5" in reply:
            return "no idea"
        return reply


class KillWorkerOnce(Stage):
    """Kills its worker process the first time it sees ``victim`` (a marker file makes it once only)."""

    name = "kill_once"

    def __init__(self, victim: str, marker: str) -> None:
        self.victim = victim
        self.marker = marker

    async def run(self, sample: Sample, ctx: StageContext) -> Sample:
        if sample.id == self.victim and not os.path.exists(self.marker):
            Path(self.marker).write_text("killed")
            os._exit(1)
        return sample


def kill_once_stages(victim: str, marker: str) -> Any:
    def factory(config: RunConfig) -> list[Stage]:
        from mmat.stages import default_stages

        return [KillWorkerOnce(victim, marker), *default_stages(config)]

    return factory


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    yield
    ray.shutdown()


@pytest.fixture
def server() -> Iterator[MockTeacherServer]:
    with MockTeacherServer() as running:
        running.responder = WrongOnFives(operator_rounds=1)
        yield running


def config_for(shared_data: Path, base_url: str, **extra: Any) -> RunConfig:
    data: dict[str, Any] = {
        "sources": [{"name": "tabmwp", "root": str(shared_data / "tabmwp"), "limit": 16}],
        "teacher": {"kind": "openai", "base_url": base_url, "model": "mock", "api_key_env": None},
        "tools": {"enabled": []},
        "stages": {"answer_retries": 0},
        "engine": {"shards": 4, "max_samples_in_flight": 4},
        "output": {"exports": ["mmat1m"]},
    }
    data.update(extra)
    return RunConfig.from_dict(data)


def outcome(out_dir: Path) -> tuple[dict[str, Any], Counter[str]]:
    """What a build decided, without timings: accepted samples' conversations and rejects' reasons."""
    accepted = {}
    for sample in store.iter_accepted(out_dir):
        assert sample.trajectory is not None
        accepted[sample.id] = (
            render_rr_messages(sample.trajectory),
            sample.orr.model_dump() if sample.orr else None,
            sample.quality.score if sample.quality else None,
        )
    rejects = Counter(f"{r.id}|{r.stage}|{r.reason}" for r in store.iter_rejects(out_dir))
    return accepted, rejects


def lines(out_dir: Path) -> list[str]:
    ids = []
    for kind in (store.ACCEPTED_DIR, store.REJECTS_DIR):
        for path in sorted((out_dir / kind).glob("shard-*.jsonl")):
            ids += [json.loads(line)["id"] for line in path.read_text().splitlines() if line.strip()]
    return ids


async def test_ray_build_equals_local_build(
    ray_cluster: None, server: MockTeacherServer, shared_data: Path, tmp_path: Path
) -> None:
    config = config_for(shared_data, server.base_url)
    local = await build_async(config, out_dir=tmp_path / "local", progress=False)
    ray_result = await build_async(
        config.with_overrides({"executor": "ray"}), out_dir=tmp_path / "ray", progress=False
    )
    local_accepted, local_rejects = outcome(tmp_path / "local")
    ray_accepted, ray_rejects = outcome(tmp_path / "ray")
    assert local_accepted and local_rejects  # the comparison covers both kinds of outcome
    assert ray_accepted == local_accepted
    assert ray_rejects == local_rejects
    assert ray_result.report["totals"] == local.report["totals"]
    stats = json.loads((tmp_path / "ray" / store.STATS_FILE).read_text())
    assert stats["executor"] == "ray" and stats["shards"] == 4
    assert stats["limiter"]["granted"] == stats["requests"]


async def test_killed_worker_is_retried_without_loss_or_duplicate(
    ray_cluster: None, server: MockTeacherServer, shared_data: Path, tmp_path: Path
) -> None:
    from mmat.engine.ray_executor import run_on_ray

    config = config_for(shared_data, server.base_url)
    records = list(load(config.sources[0]))
    ids = [r.id for r in records]
    victim = ids[len(ids) // 2]
    marker = tmp_path / "killed.marker"
    await build_async(config, out_dir=tmp_path / "local", progress=False)

    stats = run_on_ray(
        config, records, tmp_path / "ray", stages_factory=kill_once_stages(str(victim), str(marker))
    )
    assert marker.exists(), "the worker was never killed: the scenario did not happen"
    written = lines(tmp_path / "ray")
    assert sorted(written) == sorted(ids)  # every input exactly once: no loss, no duplicate
    assert outcome(tmp_path / "ray") == outcome(tmp_path / "local")
    assert stats["samples_seen"] == len(ids)

    # a rerun skips every finished shard and sends no request
    before = server.request_count
    run_on_ray(config, records, tmp_path / "ray")
    assert server.request_count == before
    assert sorted(lines(tmp_path / "ray")) == sorted(ids)


async def test_global_limiter_counts_every_request(
    ray_cluster: None, server: MockTeacherServer, shared_data: Path, tmp_path: Path
) -> None:
    config = config_for(shared_data, server.base_url, engine={"shards": 2, "max_concurrent_requests": 3})
    from mmat.engine.ray_executor import run_on_ray

    stats = run_on_ray(config, list(load(config.sources[0])), tmp_path)
    assert stats["limiter"]["granted"] == server.request_count
    assert stats["limiter"]["in_flight"] == 0
