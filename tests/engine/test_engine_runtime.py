"""The engine against the real mock server: layout, faults, budgets, cache rules, resume, limits."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from engine_helpers import AskStage, RejectOddStage, config, make_samples

from mmat.engine import CallCache, Engine, EngineContext, call_key
from mmat.engine.limits import RequestLimiter, backoff_delay
from mmat.engine.output import shard_of
from mmat.errors import TeacherError
from mmat.llm.base import ChatMessage, DecodingParams, ImagePart, TextPart
from mmat.llm.mock_server import Fault, MockTeacherServer
from mmat.llm.openai_client import OpenAITeacher
from mmat.schema import ImageRef, Reject, ToolResult
from mmat.store import iter_accepted, iter_rejects


@pytest.fixture(scope="module")
def server():
    with MockTeacherServer() as running:
        yield running


@pytest.fixture(autouse=True)
def _fresh(server):
    server.reset()
    server.responder = lambda body: "reply to " + body["messages"][-1]["content"][:40]


def _engine(server, out: Path, stages, **engine) -> Engine:
    teacher = OpenAITeacher(server.base_url, "mock-model", timeout_s=2)
    return Engine(config(**engine), teacher, stages, tools=None, out_dir=out, progress=False)


def test_run_writes_the_store_layout_and_rejects(server, tmp_path: Path) -> None:
    records = [*make_samples(10), Reject(stage="load", reason="missing_field", location="x.jsonl:3")]
    stats = _engine(server, tmp_path, [RejectOddStage(), AskStage("a"), AskStage("b")]).run_sync(records)
    accepted = list(iter_accepted(tmp_path))
    rejects = list(iter_rejects(tmp_path))
    assert sorted(s.id for s in accepted) == sorted(f"test/s-{i}" for i in range(0, 10, 2))
    assert all(s.metadata["b"].startswith("reply to [b v1]") for s in accepted)
    assert {r.reason for r in rejects} == {"odd_id", "missing_field"} and len(rejects) == 6
    assert (tmp_path / "accepted" / "shard-00000.jsonl").is_file()
    on_disk = json.loads((tmp_path / "stats.json").read_text())
    assert on_disk["kept"] == stats["kept"] == 5 and on_disk["rejects_by_reason"]["odd_id"] == 5
    assert server.request_count == 10 and stats["requests"] == 10 and stats["finished"]


def test_warm_rerun_sends_zero_requests(server, tmp_path: Path) -> None:
    cache = tmp_path / "shared-cache"
    _engine(server, tmp_path / "run1", [AskStage("a"), AskStage("b")], cache_dir=str(cache)).run_sync(
        make_samples(8)
    )
    assert server.request_count == 16
    server.reset()
    stats = _engine(server, tmp_path / "run2", [AskStage("a"), AskStage("b")], cache_dir=str(cache)).run_sync(
        make_samples(8)
    )
    assert server.request_count == 0 and stats["cache_hits"] == 16 and stats["kept"] == 8
    assert (
        next(iter(iter_accepted(tmp_path / "run1"))).metadata
        == next(iter(iter_accepted(tmp_path / "run2"))).metadata
    )
    # the same output directory: everything is already done
    again = _engine(server, tmp_path / "run2", [AskStage("a")], cache_dir=str(cache)).run_sync(
        make_samples(8)
    )
    assert again["skipped_done"] == 8 and again["calls"] == 0 and server.request_count == 0


def test_prompt_edit_resends_only_that_stage_and_later(server, tmp_path: Path) -> None:
    cache = str(tmp_path / "cache")
    stages = [AskStage("a"), AskStage("b"), AskStage("c")]
    _engine(server, tmp_path / "r1", stages, cache_dir=cache).run_sync(make_samples(5))
    assert server.request_count == 15
    server.reset()
    edited = [AskStage("a"), AskStage("b"), AskStage("c", prompt="v2")]
    _engine(server, tmp_path / "r2", edited, cache_dir=cache).run_sync(make_samples(5))
    assert server.request_count == 5
    assert {r.body["messages"][0]["content"][:7] for r in server.requests} == {"[c v2] "}
    server.reset()
    edited = [AskStage("a"), AskStage("b", prompt="v2"), AskStage("c", prompt="v2")]
    _engine(server, tmp_path / "r3", edited, cache_dir=cache).run_sync(make_samples(5))
    assert server.request_count == 10


def test_cache_key_rules(tmp_path: Path) -> None:
    image = ImageRef(path="a.png", sha256="ab" * 32)
    moved = ImageRef(path="elsewhere/b.png", root="/data", sha256="ab" * 32)
    changed = ImageRef(path="a.png", sha256="cd" * 32)

    def key(ref=image, teacher="openai:h:gpt", model="gpt", params=DecodingParams(), prompt="p1", text="q"):
        messages = [ChatMessage(role="user", content=[TextPart(text=text), ImagePart(image=ref)])]
        return call_key(teacher, model, params, prompt, messages)

    base = key()
    assert key(ref=moved) == base  # images count by content, not by path
    variants = [
        key(ref=changed),
        key(teacher="openai:other:gpt"),
        key(model="gpt-4o-mini"),
        key(params=DecodingParams(temperature=0.7)),
        key(params=DecodingParams(stop=["</SIGNAL>"])),
        key(prompt="p2"),
        key(text="q2"),
    ]
    assert len({base, *variants}) == len(variants) + 1
    cache = CallCache(tmp_path)
    from mmat.llm.base import Completion

    cache.put(base, Completion(text="x", model="gpt"), purpose="rationale.step")
    assert cache.get(base).cached and cache.get("nope") is None
    assert cache.stats()["by_purpose"] == {"rationale.step": 1}
    assert cache.prune(purpose="rationale.step") == 1 and len(cache) == 0


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (Fault("429", retry_after=0.05), "rate_limit"),
        (Fault("500"), "server"),
        (Fault("503"), "server"),
        (Fault("timeout", delay_s=1.0), "timeout"),
        (Fault("truncated"), "malformed"),
        (Fault("malformed"), "malformed"),
        (Fault("empty_choices"), "malformed"),
    ],
)
def test_each_fault_is_retried_then_succeeds(server, tmp_path: Path, fault, kind) -> None:
    server.script([fault, fault])
    engine = _engine(server, tmp_path, [AskStage("a")], max_concurrent_requests=1)
    engine.teacher.timeout_s = 0.3  # type: ignore[attr-defined]
    stats = engine.run_sync(make_samples(1))
    assert stats["kept"] == 1 and stats["retries"] == {kind: 2} and stats["errors"] == {kind: 2}
    assert server.request_count == 3 and [r.status for r in server.requests][-1] == 200


def test_exhausted_budget_rejects_the_sample_and_the_run_goes_on(server, tmp_path: Path) -> None:
    server.script([Fault("500"), Fault("500")])
    engine = _engine(
        server,
        tmp_path,
        [AskStage("a")],
        max_concurrent_requests=1,
        max_samples_in_flight=1,
        max_retries={"server": 1, "rate_limit": 5, "timeout": 1, "malformed": 1, "client": 0},
    )
    stats = engine.run_sync(make_samples(3))
    rejects = list(iter_rejects(tmp_path))
    assert stats["kept"] == 2 and [r.reason for r in rejects] == ["teacher_server"]
    assert rejects[0].id == "test/s-0" and "budget engine.max_retries.server=1" in rejects[0].detail


def test_client_errors_are_not_retried(server, tmp_path: Path) -> None:
    engine = Engine(
        config(),
        OpenAITeacher(server.base_url + "/nowhere", "m"),
        [AskStage("a")],
        out_dir=tmp_path,
        progress=False,
    )
    stats = engine.run_sync(make_samples(1))
    assert stats["rejects_by_reason"] == {"teacher_client": 1} and stats["requests"] == 1


def test_retry_after_pauses_every_request(server, tmp_path: Path) -> None:
    server.script([Fault("429", retry_after=0.4)])
    engine = _engine(server, tmp_path, [AskStage("a")], max_concurrent_requests=1)
    started = time.time()
    engine.run_sync(make_samples(2))
    times = [r.time - started for r in server.requests]
    assert server.requests[0].status == 429 and len(times) == 3
    assert times[1] >= 0.38 and times[2] >= 0.38


async def test_limiter_caps_concurrency_and_rpm() -> None:
    limiter = RequestLimiter(3, rpm=1200, adaptive=False)  # 20/s, a burst of 20
    peak = 0

    async def one() -> None:
        nonlocal peak
        await limiter.acquire(10)
        peak = max(peak, limiter.in_flight)
        await asyncio.sleep(0.01)
        await limiter.release(ok=True, latency_s=0.01)

    started = time.monotonic()
    await asyncio.gather(*[one() for _ in range(30)])
    assert peak == 3 and time.monotonic() - started >= 0.45


async def test_limiter_tpm_and_aimd() -> None:
    limiter = RequestLimiter(16, tpm=60_000)  # 1,000 tokens a second
    started = time.monotonic()
    for _ in range(3):
        await limiter.acquire(600)
        await limiter.release(ok=True, latency_s=0.01)
    assert time.monotonic() - started >= 0.75
    await limiter.acquire()
    await limiter.release(ok=False, error_kind="overloaded", retry_after=0.2)
    assert limiter.limit == 8 and limiter.pause_until > time.monotonic()  # a 503 halves the concurrency
    for _ in range(40):
        await limiter.acquire()
        await limiter.release(ok=True, latency_s=0.01)
    assert 10 < limiter.limit <= 16 and limiter.learned is None


async def test_limiter_learns_a_rate_from_429s() -> None:
    limiter = RequestLimiter(64)
    for _ in range(20):  # 20 successes at once, counted over the shortest window (1 s): 20 a second
        await limiter.acquire()
        await limiter.release(ok=True, latency_s=0.01)
    await limiter.acquire()
    await limiter.release(ok=False, error_kind="rate_limit")
    assert limiter.learned is not None and limiter.learned.rate == pytest.approx(18.0)
    assert limiter.limit > 63  # a rate limit paces requests; it does not cut the concurrency
    started = time.monotonic()
    for _ in range(5):
        await limiter.acquire()
        await limiter.release(ok=True, latency_s=0.01)
    assert time.monotonic() - started >= 0.15  # about 18 a second
    limiter._last_rate_decrease = 0.0
    await limiter.acquire()
    await limiter.release(ok=False, error_kind="rate_limit")
    assert limiter.stats.decreases == 2 and limiter.stats.learned_rps == limiter.learned.rate


async def test_limiter_learns_from_retry_after_before_any_reply() -> None:
    limiter = RequestLimiter(64)
    await limiter.acquire()
    await limiter.release(ok=False, error_kind="rate_limit")  # no Retry-After, no successes: no guess
    assert limiter.learned is None
    await limiter.acquire()
    await limiter.release(ok=False, error_kind="rate_limit", retry_after=0.05)
    assert limiter.learned is not None and limiter.learned.rate == pytest.approx(18.0)


async def test_backoff_delay_bounds() -> None:
    assert 0.5 <= backoff_delay(2, 0.5, 60) <= 1.0 and backoff_delay(30, 0.5, 4) <= 4


def test_shards_are_deterministic_by_id(server, tmp_path: Path) -> None:
    _engine(server, tmp_path, [AskStage("a")], shards=4).run_sync(make_samples(40))
    files = sorted(p.name for p in (tmp_path / "accepted").iterdir())
    assert len(files) == 4
    for number, name in enumerate(files):
        ids = [json.loads(line)["id"] for line in (tmp_path / "accepted" / name).read_text().splitlines()]
        assert all(shard_of(i, 4) == number for i in ids)


def test_stop_drains_in_flight_and_resume_finishes(server, tmp_path: Path) -> None:
    engine = _engine(server, tmp_path, [AskStage("a")], max_samples_in_flight=2)
    seen = 0

    def records():
        nonlocal seen
        for sample in make_samples(20):
            seen += 1
            if seen == 6:
                engine.stop()
            yield sample

    stats = engine.run_sync(records())
    kept_first = stats["kept"]
    assert stats["interrupted"] and not stats["finished"] and 0 < kept_first < 20
    first = server.request_count
    stats = _engine(server, tmp_path, [AskStage("a")]).run_sync(make_samples(20))
    assert stats["finished"] and stats["skipped_done"] == kept_first == first
    ids = [s.id for s in iter_accepted(tmp_path)]
    assert sorted(ids) == sorted(f"test/s-{i}" for i in range(20)) and len(ids) == len(set(ids))
    assert server.request_count == 20 and first < 20


async def test_context_without_tools_and_with_a_provider(server) -> None:
    teacher = OpenAITeacher(server.base_url, "m")
    ctx = EngineContext(config(), teacher)
    result = await ctx.tool("ocr", [ImageRef(path="a.png")])
    assert not result.ok and "no operators are configured" in (result.error or "")
    assert ctx.available_tools() == {}

    class Provider:
        async def run(self, name, images, **args):
            return ToolResult(tool=name, text=f"ran {name} {args}")

        async def search(self, query, *, k=None):
            return ToolResult(tool="rag", text=f"{query} k={k}")

        def available(self):
            return {"ocr": "reads text"}

    ctx = EngineContext(config(), teacher, tools=Provider())
    assert (await ctx.tool("ocr", [], lang="en")).text == "ran ocr {'lang': 'en'}"
    assert (await ctx.search("paris")).text == "paris k=3"
    assert ctx.available_tools() == {"ocr": "reads text"} and ctx.stats.tool_calls == {"ocr": 1, "rag": 1}
    await teacher.aclose()


async def test_identical_concurrent_calls_share_one_request(server) -> None:
    server.responder = lambda body: "shared"
    teacher = OpenAITeacher(server.base_url, "m")
    ctx = EngineContext(config(), teacher)
    messages = [ChatMessage(role="user", content="same")]
    replies = await asyncio.gather(*[ctx.chat(messages, purpose="p", prompt_hash="h") for _ in range(5)])
    await teacher.aclose()
    assert {r.text for r in replies} == {"shared"} and server.request_count == 1


async def test_budget_error_names_the_purpose(server) -> None:
    server.script([Fault("429", retry_after=0.01)] * 2)
    teacher = OpenAITeacher(server.base_url, "m")
    cfg = config(max_retries={"rate_limit": 1, "server": 0, "timeout": 0, "malformed": 0, "client": 0})
    ctx = EngineContext(cfg, teacher)
    with pytest.raises(TeacherError, match=r"rationale.step: gave up after 2 rate_limit") as caught:
        await ctx.chat([ChatMessage(role="user", content="x")], purpose="rationale.step", prompt_hash="h")
    await teacher.aclose()
    assert caught.value.kind == "rate_limit"


@pytest.mark.slow
def test_sigkill_then_resume_loses_nothing_duplicates_nothing(tmp_path: Path) -> None:
    worker = Path(__file__).parent / "engine_helpers.py"
    n = 160
    with MockTeacherServer(latency_median_s=0.02) as server:
        server.responder = lambda body: "ok " + body["messages"][0]["content"][:30]
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
        process = subprocess.Popen(
            [sys.executable, str(worker), server.base_url, str(tmp_path), str(n)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            done = (
                sum(len(p.read_bytes().splitlines()) for p in (tmp_path / "accepted").glob("*.jsonl"))
                if (tmp_path / "accepted").is_dir()
                else 0
            )
            if done >= n // 2:
                break
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        killed_at = len({s.id for s in iter_accepted(tmp_path)})
        assert 0 < killed_at < n
        before = server.request_count
        result = subprocess.run(
            [sys.executable, str(worker), server.base_url, str(tmp_path), str(n)],
            capture_output=True,
            env=env,
            timeout=120,
            check=True,
        )
        stats = json.loads(result.stdout.decode().strip().splitlines()[-1])
        ids = [s.id for s in iter_accepted(tmp_path)]
        assert sorted(ids) == sorted(f"test/s-{i}" for i in range(n)), "a sample was lost"
        assert len(ids) == len(set(ids)), "a sample was written twice"
        assert stats["skipped_done"] >= killed_at
        total = server.request_count
        wasted = total - server.stats()["unique_prompts"]
        assert wasted <= 8, f"{wasted} requests resent, more than the 8 that can be in flight"
        assert before <= total


def test_cache_command_stats_and_prune(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from mmat.cli import cli
    from mmat.llm.base import Completion

    cache = CallCache(tmp_path / "cache")
    cache.put("k1", Completion(text="a", model="m"), purpose="rationale.step")
    cache.put("k2", Completion(text="b", model="m"), purpose="quality")
    runner = CliRunner()
    result = runner.invoke(cli, ["cache", "stats", "--dir", str(tmp_path / "cache")])
    assert result.exit_code == 0 and json.loads(result.output)["by_purpose"] == {
        "quality": 1,
        "rationale.step": 1,
    }
    result = runner.invoke(cli, ["cache", "prune", "--dir", str(tmp_path / "cache"), "--purpose", "quality"])
    assert result.exit_code == 0 and "deleted 1 entries; 1 left" in result.output
    result = runner.invoke(cli, ["cache", "prune", "--dir", str(tmp_path / "cache")])
    assert "say what to prune" in str(result.exception)
    result = runner.invoke(cli, ["cache", "stats", "--dir", str(tmp_path / "nothing")])
    assert "no call cache at" in str(result.exception)


def _batch_engine(server, out: Path, stages, **engine) -> Engine:
    engine = {"batch": True, "batch_poll_s": 0.02, **engine}
    return _engine(server, out, stages, **engine)


def test_batch_mode_single_call_stage_uses_one_batch(server, tmp_path: Path) -> None:
    stats = _batch_engine(server, tmp_path, [AskStage("a")]).run_sync(
        [*make_samples(12), Reject(stage="load", reason="bad_row", location="f:1")]
    )
    assert stats["kept"] == 12 and stats["rejects_by_reason"] == {"bad_row": 1}
    assert {r.path for r in server.requests} == {"/v1/chat/completions (batch)"}
    assert server.request_count == 12 and stats["batch"]["batches"] == 1
    assert all(s.metadata["a"].startswith("reply to [a v1]") for s in iter_accepted(tmp_path))
    server.reset()
    again = _batch_engine(
        server, tmp_path / "again", [AskStage("a")], cache_dir=str(tmp_path / "cache")
    ).run_sync(make_samples(12))
    assert again["kept"] == 12 and server.request_count == 0


def test_batch_mode_resubmits_expired_and_failed_requests(server, tmp_path: Path) -> None:
    server.batch_expire_after = 4
    server.script([Fault("500")])
    try:
        stats = _batch_engine(server, tmp_path, [AskStage("a"), AskStage("b")]).run_sync(make_samples(6))
    finally:
        server.batch_expire_after = None
    assert stats["kept"] == 6
    # stage a: 4 of 6 processed (one of them failed with 500), 2 expired: 3 go into a second batch
    assert stats["batch"]["resubmitted"] >= 3 and stats["batch"]["failed"] == 0
    ids = [s.id for s in iter_accepted(tmp_path)]
    assert len(ids) == len(set(ids)) == 6


def test_batch_mode_gives_up_after_resubmits(server, tmp_path: Path) -> None:
    server.script([Fault("500")] * 3)
    stats = _batch_engine(server, tmp_path, [AskStage("a")], batch_resubmits=2).run_sync(make_samples(1))
    rejects = list(iter_rejects(tmp_path))
    assert stats["kept"] == 0 and [r.reason for r in rejects] == ["teacher_server"]
    assert stats["batch"] == {"batches": 3, "requests": 3, "resubmitted": 2, "failed": 1}
    assert "mock server error 500" in rejects[0].detail


def test_batch_mode_needs_an_openai_teacher(tmp_path: Path) -> None:
    from mmat.errors import ConfigError
    from mmat.llm.local import LocalTeacher

    engine = Engine(config(batch=True), LocalTeacher(), [AskStage("a")], out_dir=tmp_path, progress=False)
    with pytest.raises(ConfigError, match=r"engine\.batch needs an OpenAI-compatible teacher"):
        engine.run_sync(make_samples(1))


def test_stats_panel_and_projected_cost() -> None:
    from rich.console import Console

    from mmat.engine.stats import ProgressPanel, RunStats

    stats = RunStats(total=100, teacher="openai:x:gpt", teacher_grade="production")
    stats.accepted, stats.rejected, stats.cost_usd, stats.requests = 8, 2, 0.5, 12
    stats.rejects_by_reason["teacher_server"] = 2
    assert stats.projected_cost_usd() == 5.0
    console = Console(record=True, width=120)
    console.print(ProgressPanel(stats, enabled=False)._render())
    text = console.export_text()
    assert "requests/s" in text and "projected $5.00" in text and "teacher_server 2" in text
    data = stats.to_dict()
    assert (
        data["kept"] == 8
        and data["rejects_by_reason"] == {"teacher_server": 2}
        and data["rates"]["requests_per_s"] > 0
    )


@pytest.mark.slow
def test_ctrl_c_drains_in_flight_then_rerun_completes(tmp_path: Path) -> None:
    worker = Path(__file__).parent / "engine_helpers.py"
    n = 120
    with MockTeacherServer(latency_median_s=0.05) as server:
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
        process = subprocess.Popen(
            [sys.executable, str(worker), server.base_url, str(tmp_path), str(n)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        deadline = time.time() + 60
        while server.request_count < 20 and time.time() < deadline:
            time.sleep(0.01)
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=60)
        assert process.returncode == 0
        stats = json.loads(out.decode().strip().splitlines()[-1])
        assert stats["interrupted"] and not stats["finished"]
        written = [s.id for s in iter_accepted(tmp_path)]
        assert len(written) == stats["kept"] < n
        # draining means every request sent was used: nothing in flight was thrown away
        assert server.request_count == stats["kept"]
        subprocess.run(
            [sys.executable, str(worker), server.base_url, str(tmp_path), str(n)],
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        ids = [s.id for s in iter_accepted(tmp_path)]
        assert (
            sorted(ids) == sorted(f"test/s-{i}" for i in range(n)) and server.stats()["unique_prompts"] == n
        )


def _fill_cache(path: str, prefix: str) -> None:
    from mmat.llm.base import Completion

    cache = CallCache(path)
    for i in range(150):
        cache.put(f"{prefix}-{i}", Completion(text=f"{prefix} {i}", model="m"), purpose=prefix)


def test_cache_is_safe_under_concurrent_writer_processes(tmp_path: Path) -> None:
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_fill_cache, args=(str(tmp_path), name)) for name in ("a", "b", "c")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    cache = CallCache(tmp_path)
    assert len(cache) == 450 and cache.get("b-149").text == "b 149"


@pytest.mark.parametrize(("fault", "halved"), [(Fault("503"), True), (Fault("500"), False)])
async def test_503_halves_the_concurrency_and_500_does_not(server, fault, halved) -> None:
    server.script([fault])
    teacher = OpenAITeacher(server.base_url, "m")
    ctx = EngineContext(config(max_concurrent_requests=64), teacher)
    await ctx.chat([ChatMessage(role="user", content="x")], purpose="p", prompt_hash="h")
    await teacher.aclose()
    assert (ctx.limiter.limit < 40) is halved and ctx.stats.retries == {"server": 1}
