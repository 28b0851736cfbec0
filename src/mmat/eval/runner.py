"""Running a benchmark through the agent: concurrent, durable, resumable; then scoring and timing.

Layout of one run (``OUT/<run key>/<mode>/``)::

    predictions.jsonl   one PredictionRecord per line, appended and fsynced as items finish
    scores.jsonl        one ItemScore per item (rewritten at each scoring)
    judge_cache.jsonl   judge replies by prompt hash (when a judge is used)
    score.json          metrics, headline, latency summary, run settings

A rerun reads ``predictions.jsonl`` and only runs items without a successful prediction (items that
failed are retried); the last record of an index wins. Scores are recomputed from the predictions
each time, so changing a scorer or adding a judge never re-runs the model.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import Field

from mmat.agent.result import AgentMode, AgentResult
from mmat.eval.benchmarks import Benchmark
from mmat.eval.items import EvalItem
from mmat.eval.judge import Judge, JudgeCache
from mmat.eval.scoring import score_items
from mmat.schema import ImageRef, Record

logger = logging.getLogger(__name__)

MODES: tuple[AgentMode, ...] = ("baseline", "orr", "rr")
PREDICTIONS = "predictions.jsonl"
SCORES = "scores.jsonl"
SCORE = "score.json"
JUDGE_CACHE = "judge_cache.jsonl"


class Answerer(Protocol):
    """What the runner needs of the agent: ``mmat.agent.runtime.Agent`` satisfies it."""

    async def answer(self, images: Sequence[ImageRef], question: str, *, mode: AgentMode) -> AgentResult: ...


class PredictionRecord(Record):
    """One line of ``predictions.jsonl``."""

    index: str
    bench: str
    mode: AgentMode
    prediction: str = ""
    raw_output: str = ""
    error: str | None = None
    latency_s: float = 0.0
    turn_latencies_s: list[float] = Field(default_factory=list)
    model_calls: int = 0
    steps: int = 0
    operator_s: dict[str, float] = Field(default_factory=dict)
    tools_called: list[str] = Field(default_factory=list)
    finished_at: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


def record_from_result(
    item: EvalItem, mode: AgentMode, result: AgentResult, wall_s: float
) -> PredictionRecord:
    """A prediction record from an agent result (latency falls back to the measured wall time)."""
    operator_s: dict[str, float] = {}
    for timing in result.operator_timings:
        operator_s[timing.tool] = round(operator_s.get(timing.tool, 0.0) + timing.latency_s, 6)
    return PredictionRecord(
        index=item.index,
        bench=item.bench,
        mode=mode,
        prediction=result.answer,
        raw_output=result.raw_output,
        error=result.error,
        latency_s=result.latency_s or wall_s,
        turn_latencies_s=result.turn_latencies_s,
        model_calls=result.model_calls,
        steps=len(result.steps),
        operator_s=operator_s,
        tools_called=[t.tool for t in result.operator_timings],
        finished_at=time.time(),
    )


class PredictionLog:
    """Append-only ``predictions.jsonl``: each record is flushed and fsynced before the next."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = asyncio.Lock()

    def load(self) -> dict[str, PredictionRecord]:
        """The last record of each index; a torn last line (crash mid-write) is ignored."""
        records: dict[str, PredictionRecord] = {}
        if not self.path.is_file():
            return records
        lines = self.path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = PredictionRecord.model_validate_json(line)
            except ValueError:
                if number == len(lines):
                    logger.warning(
                        "%s:%d is a torn line from an interrupted run; ignoring it", self.path, number
                    )
                    continue
                raise
            records[record.index] = record
        return records

    async def append(self, record: PredictionRecord) -> None:
        async with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(record.model_dump_json() + "\n")
                handle.flush()
                os.fsync(handle.fileno())


@dataclass
class RunSummary:
    """What one ``run_mode`` did and scored."""

    run_key: str
    mode: AgentMode
    out_dir: Path
    ran: int
    skipped: int
    errors: int
    score: dict[str, Any] = field(default_factory=dict)


def latency_summary(records: Sequence[PredictionRecord]) -> dict[str, Any]:
    """Mean, median, p90 and total of per-item latency, plus mean model calls and steps."""
    values = sorted(r.latency_s for r in records)
    if not values:
        return {"n": 0}
    p90 = values[min(len(values) - 1, max(0, round(0.9 * len(values)) - 1))]
    operators: dict[str, float] = {}
    for record in records:
        for tool, seconds in record.operator_s.items():
            operators[tool] = operators.get(tool, 0.0) + seconds
    return {
        "n": len(values),
        "mean_s": round(statistics.fmean(values), 4),
        "median_s": round(statistics.median(values), 4),
        "p90_s": round(p90, 4),
        "total_s": round(sum(values), 4),
        "mean_model_calls": round(statistics.fmean(r.model_calls for r in records), 3),
        "mean_steps": round(statistics.fmean(r.steps for r in records), 3),
        "operator_total_s": {k: round(v, 4) for k, v in sorted(operators.items())},
    }


async def run_mode(
    agent: Answerer,
    bench: Benchmark,
    items: Sequence[EvalItem],
    mode: AgentMode,
    out_dir: str | Path,
    *,
    run_key: str | None = None,
    concurrency: int = 4,
    judge: Judge | None = None,
    settings: dict[str, Any] | None = None,
) -> RunSummary:
    """Answer every not-yet-done item in ``mode``, then score all predictions and write ``score.json``."""
    key = run_key or bench.name
    mode_dir = Path(out_dir) / key / mode
    log = PredictionLog(mode_dir / PREDICTIONS)
    done = {index for index, record in log.load().items() if record.ok}
    todo = [item for item in items if item.index not in done]
    gate = asyncio.Semaphore(max(1, concurrency))
    errors = finished = 0
    every = max(1, len(todo) // 20)
    started = time.perf_counter()

    async def one(item: EvalItem) -> None:
        nonlocal errors, finished
        async with gate:
            began = time.perf_counter()
            try:
                result = await agent.answer(item.images, item.prompt, mode=mode)
                record = record_from_result(item, mode, result, time.perf_counter() - began)
            except Exception as error:  # one item's failure must not end a long run
                logger.exception("item %s (%s, %s) failed", item.index, key, mode)
                record = PredictionRecord(
                    index=item.index,
                    bench=item.bench,
                    mode=mode,
                    error=f"{type(error).__name__}: {error}",
                    latency_s=time.perf_counter() - began,
                    finished_at=time.time(),
                )
            if not record.ok:
                errors += 1
            await log.append(record)
            finished += 1
            if finished % every == 0 or finished == len(todo):
                logger.info(
                    "%s/%s: %d/%d items (%d errors, %.1fs)",
                    key, mode, finished, len(todo), errors, time.perf_counter() - started,
                )  # fmt: skip

    await asyncio.gather(*(one(item) for item in todo))
    wall_s = time.perf_counter() - started
    logger.info("%s/%s: ran %d items in %.1fs (%d skipped as done)", key, mode, len(todo), wall_s, len(done))
    score = await score_mode(bench, items, mode_dir, judge=judge, settings=settings, run_key=key, mode=mode)
    if todo:
        score["latency"]["last_session_wall_s"] = round(wall_s, 3)
        score["latency"]["last_session_items"] = len(todo)
        write_json(mode_dir / SCORE, score)
    return RunSummary(key, mode, mode_dir, ran=len(todo), skipped=len(done), errors=errors, score=score)


async def score_mode(
    bench: Benchmark,
    items: Sequence[EvalItem],
    mode_dir: str | Path,
    *,
    judge: Judge | None = None,
    settings: dict[str, Any] | None = None,
    run_key: str | None = None,
    mode: str | None = None,
) -> dict[str, Any]:
    """Score the predictions in ``mode_dir`` against ``items``; write ``scores.jsonl`` and ``score.json``."""
    mode_dir = Path(mode_dir)
    records = PredictionLog(mode_dir / PREDICTIONS).load()
    wanted = {item.index for item in items}
    predictions = {i: r.prediction for i, r in records.items() if r.ok and i in wanted}
    scorer = bench.scorer()
    cache = JudgeCache(mode_dir / JUDGE_CACHE) if judge else None
    scores, metrics = await score_items(scorer, items, predictions, judge=judge, judge_cache=cache)
    with (mode_dir / SCORES).open("w", encoding="utf-8") as handle:
        for score in scores:
            handle.write(score.model_dump_json() + "\n")
    ok_records = [r for i, r in records.items() if r.ok and i in wanted]
    result: dict[str, Any] = {
        "bench": bench.name,
        "run_key": run_key or bench.name,
        "mode": mode or mode_dir.name,
        "in_average": bench.in_average,
        "headline": scorer.headline,
        "headline_value": metrics.get(scorer.headline),
        "unit": scorer.unit,
        "n_items": len(items),
        "n_predicted": len(predictions),
        "n_errors": sum(1 for i, r in records.items() if not r.ok and i in wanted),
        "metrics": metrics,
        "latency": latency_summary(ok_records),
        "judge": getattr(judge, "name", None),
        "settings": settings or {},
    }
    write_json(mode_dir / SCORE, result)
    return result


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
