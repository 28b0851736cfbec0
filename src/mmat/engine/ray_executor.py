"""Scale-out on Ray: the same per-shard engine inside Ray workers, with global limits and shared caches.

``mmat build --executor ray --address auto|local`` runs :func:`run_on_ray` instead of one in-process
:class:`~mmat.engine.runner.Engine`:

1. The driver streams the input once and splits it by the engine's own shard hash
   (:func:`mmat.engine.output.shard_of`) into ``OUT/_ray/inputs/shard-NNNNN.jsonl``.
2. Each shard is a Ray task that runs an ordinary :class:`Engine` over its file and appends to the
   ordinary shard outputs (``accepted/shard-NNNNN.jsonl``...), so the output is exactly what the local
   executor writes. A task killed mid-shard is retried by Ray (``ray.shard_retries``); the retry — and
   any later rerun — resumes through the engine's completion index, so nothing is lost or duplicated.
   A finished shard leaves ``OUT/_ray/done/shard-NNNNN.json`` and is skipped by reruns.
3. One :class:`GlobalLimiter` actor gates every teacher request of every worker: concurrency, RPM and
   TPM are global, and a 429's Retry-After pauses the whole cluster.
4. The call cache and the tool cache are SQLite files under ``engine.cache_dir`` (default
   ``OUT/cache``) shared by all workers, so a call paid by one worker is a hit for the others.
5. Operators named in ``ray.tool_actors`` run in one Ray actor each, with the resources given there
   (``{ocr: {num_gpus: 1}}`` puts OCR on a GPU node), shared by every worker.

Nothing in ``stages/`` knows it runs on Ray. Stages, teacher and tools are built inside the workers
from the run config (or from picklable factories, which tests use).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from mmat.config import RunConfig
from mmat.engine.cache import CallCache
from mmat.engine.context import EngineContext
from mmat.engine.limits import RequestLimiter
from mmat.engine.output import ShardStore, record_key, shard_of
from mmat.engine.runner import CACHE_DIRNAME, Engine
from mmat.errors import ConfigError, MissingDependencyError
from mmat.llm.base import Teacher
from mmat.schema import ImageRef, Reject, Sample, ToolResult
from mmat.stages.base import Stage
from mmat.store import STATS_FILE
from mmat.tools.base import ToolProvider

logger = logging.getLogger(__name__)

RAY_DIR = "_ray"
TeacherFactory = Callable[[RunConfig], Teacher]
StagesFactory = Callable[[RunConfig], list[Stage]]
ToolsFactory = Callable[[RunConfig, Path], ToolProvider | None]


def _ray() -> Any:
    try:
        import ray
    except ImportError as error:
        raise MissingDependencyError("Ray (the ray executor)", "ray", error) from None
    return ray


# --------------------------------------------------------------------------------------------------
# Actors (defined lazily so that importing this module never imports ray)


class GlobalLimiter:
    """A Ray actor holding the one :class:`RequestLimiter` of the whole run.

    Its methods are coroutines, so thousands of workers' ``acquire`` calls wait inside the actor's
    event loop exactly as they would inside one process.
    """

    def __init__(self, max_concurrency: int, rpm: int | None, tpm: int | None, adaptive: bool) -> None:
        self.limiter = RequestLimiter(max_concurrency, rpm=rpm, tpm=tpm, adaptive=adaptive)
        self.granted = 0

    async def acquire(self, tokens: int = 0) -> None:
        await self.limiter.acquire(tokens)
        self.granted += 1

    async def release(self, kwargs: dict[str, Any]) -> float:
        await self.limiter.release(**kwargs)
        return self.limiter.limit

    async def snapshot(self) -> dict[str, Any]:
        return {"granted": self.granted, "in_flight": self.limiter.in_flight, "limit": self.limiter.limit}


class RemoteLimiter:
    """The worker-side face of :class:`GlobalLimiter`, with :class:`RequestLimiter`'s interface."""

    def __init__(self, handle: Any, max_concurrency: int) -> None:
        self.handle = handle
        self.in_flight = 0
        self.limit = float(max_concurrency)

    async def acquire(self, tokens: int = 0) -> None:
        await self.handle.acquire.remote(tokens)
        self.in_flight += 1

    async def release(self, **kwargs: Any) -> None:
        self.in_flight -= 1
        self.limit = await self.handle.release.remote(kwargs)


class ToolActor:
    """A Ray actor running some operators for every worker (e.g. OCR on a GPU node)."""

    def __init__(self, config_json: str, cache_dir: str) -> None:
        from mmat.tools.runner import ToolRunner

        self.runner = ToolRunner(RunConfig.model_validate_json(config_json), cache_dir=Path(cache_dir))

    async def run(self, name: str, images: list[dict[str, Any]], args: dict[str, Any]) -> dict[str, Any]:
        result = await self.runner.run(name, [ImageRef.model_validate(i) for i in images], **args)
        return result.model_dump()


class ActorBackedTools:
    """A :class:`ToolProvider` that sends some operators to shared :class:`ToolActor` s."""

    def __init__(self, local: ToolProvider, actors: dict[str, Any]) -> None:
        self.local = local
        self.actors = actors

    async def run(self, name: str, images: Sequence[ImageRef], **args: Any) -> ToolResult:
        actor = self.actors.get(name)
        if actor is None:
            return await self.local.run(name, images, **args)
        payload = await actor.run.remote(name, [i.model_dump() for i in images], args)
        return ToolResult.model_validate(payload)

    async def search(self, query: str, *, k: int | None = None) -> ToolResult:
        return await self.local.search(query, k=k)

    def available(self) -> dict[str, str]:
        return self.local.available()

    async def aclose(self) -> None:
        closer = getattr(self.local, "aclose", None)
        if closer is not None:
            await closer()


# --------------------------------------------------------------------------------------------------
# One shard inside a worker


class _ShardEngine(Engine):
    """An :class:`Engine` for one shard: the global limiter, its own store and its own stats file."""

    def __init__(
        self, *args: Any, limiter: RemoteLimiter, shard: int, stats_path: Path, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.store = ShardStore(self.out_dir, self.config.engine.shards, only_shard=shard)
        self._limiter = limiter
        self._stats_path = stats_path

    def make_context(self) -> EngineContext:
        return EngineContext(
            self.config,
            self.teacher,
            tools=self.tools,
            cache=self.cache,
            limiter=self._limiter,  # type: ignore[arg-type]
            stats=self.stats,
            seed=self.config.seed,
        )

    def _finish(self) -> None:
        self.store.close()
        self.stats.write(self._stats_path)
        self.progress.stop()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            self.stats.write(self._stats_path)


def _shard_input(out: Path, shard: int) -> Path:
    return out / RAY_DIR / "inputs" / f"shard-{shard:05d}.jsonl"


def _shard_done(out: Path, shard: int) -> Path:
    return out / RAY_DIR / "done" / f"shard-{shard:05d}.json"


def _read_shard(path: Path) -> Iterable[Sample | Reject]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            kind, _, body = line.partition("\t")
            yield Sample.model_validate_json(body) if kind == "S" else Reject.model_validate_json(body)


def process_shard(
    config_json: str,
    out_dir: str,
    shard: int,
    limiter: Any,
    tool_actors: dict[str, Any],
    teacher_factory: TeacherFactory | None,
    stages_factory: StagesFactory | None,
    tools_factory: ToolsFactory | None,
) -> dict[str, Any]:
    """Run the engine over one shard (the body of the Ray task); returns the shard's stats."""
    config = RunConfig.model_validate_json(config_json)
    out = Path(out_dir)
    done = _shard_done(out, shard)
    if done.exists():
        return dict(json.loads(done.read_text()))
    from mmat.llm.factory import teacher_from_config
    from mmat.stages import default_stages

    cache_dir = Path(config.engine.cache_dir or out / CACHE_DIRNAME)
    teacher = teacher_factory(config) if teacher_factory else teacher_from_config(config.teacher)
    stages = stages_factory(config) if stages_factory else default_stages(config)
    runner = None
    tools: ToolProvider | None
    if tools_factory is not None:
        tools = tools_factory(config, cache_dir)
    else:
        from mmat.tools.runner import ToolRunner

        tools = runner = ToolRunner(config, cache_dir=cache_dir)
    if tools is not None and tool_actors:
        tools = ActorBackedTools(tools, tool_actors)
    stats_path = out / RAY_DIR / "stats" / f"shard-{shard:05d}.json"
    stats_path.parent.mkdir(parents=True, exist_ok=True)
    engine = _ShardEngine(
        config,
        teacher,
        stages,
        tools=tools,
        out_dir=out,
        progress=False,
        cache=CallCache(cache_dir),
        limiter=RemoteLimiter(limiter, config.engine.max_concurrent_requests),
        shard=shard,
        stats_path=stats_path,
    )
    if runner is not None and teacher.supports_images:
        runner.chat = engine.context.chat  # the CCoT caption asks the teacher through the global limiter

    async def go() -> dict[str, Any]:
        try:
            return await engine.run(_read_shard(_shard_input(out, shard)))
        finally:
            closer = getattr(tools, "aclose", None)
            if closer is not None:
                await closer()
            await teacher.aclose()

    stats = asyncio.run(go())
    stats["shard"] = shard
    stats["worker_pid"] = os.getpid()
    done.parent.mkdir(parents=True, exist_ok=True)
    tmp = done.with_suffix(".tmp")
    tmp.write_text(json.dumps(stats))
    tmp.replace(done)
    return stats


# --------------------------------------------------------------------------------------------------
# The driver


def partition(records: Iterable[Sample | Reject], out: Path, shards: int) -> Counter[int]:
    """Split the input by the engine's shard hash into one file per shard; returns counts per shard."""
    folder = out / RAY_DIR / "inputs"
    folder.mkdir(parents=True, exist_ok=True)
    handles: dict[int, Any] = {}
    counts: Counter[int] = Counter()
    try:
        for record in records:
            shard = shard_of(record_key(record), shards)
            if shard not in handles:
                handles[shard] = _shard_input(out, shard).open("w", encoding="utf-8")
            kind = "S" if isinstance(record, Sample) else "R"
            handles[shard].write(f"{kind}\t{record.model_dump_json()}\n")
            counts[shard] += 1
    finally:
        for handle in handles.values():
            handle.close()
    for stale in folder.glob("shard-*.jsonl"):
        if int(stale.stem.split("-")[1]) not in counts:
            stale.unlink()
    return counts


def _merge_stats(parts: list[dict[str, Any]], wall_s: float, workers: int) -> dict[str, Any]:
    merged: dict[str, Any] = {"executor": "ray", "shards": len(parts), "workers": workers, "wall_s": wall_s}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, bool) or key in ("shard", "worker_pid"):
                continue
            if isinstance(value, (int, float)):
                merged[key] = merged.get(key, 0) + value
            elif isinstance(value, dict) and all(isinstance(v, (int, float)) for v in value.values()):
                bucket = merged.setdefault(key, {})
                for k, v in value.items():
                    bucket[k] = bucket.get(k, 0) + v
    merged["wall_s"] = wall_s
    return merged


def run_on_ray(
    config: RunConfig,
    records: Iterable[Sample | Reject],
    out_dir: str | Path,
    *,
    teacher_factory: TeacherFactory | None = None,
    stages_factory: StagesFactory | None = None,
    tools_factory: ToolsFactory | None = None,
) -> dict[str, Any]:
    """Run a build's engine part on Ray; returns the merged stats (also written to ``stats.json``).

    Args:
        config: the run config; ``engine.shards`` is the number of shards (the unit of work and of
            retry), ``ray`` the cluster settings.
        records: the input records (streamed once, by the driver).
        out_dir: the output directory; it must be visible to every worker (a shared filesystem).
        teacher_factory, stages_factory, tools_factory: picklable callables that build these inside
            the workers (default: from the run config).
    """
    ray = _ray()
    settings = config.ray
    out = Path(out_dir).resolve()
    if config.engine.shards < 1:
        raise ConfigError("engine.shards must be at least 1; use several times the number of Ray workers")
    if not ray.is_initialized():
        address = settings.address or config.ray_address
        if address in (None, "local"):
            # a local instance talks over loopback only
            ray.init(
                num_cpus=settings.num_cpus,
                include_dashboard=False,
                log_to_driver=False,
                _node_ip_address="127.0.0.1",
            )
        else:
            ray.init(address=address, log_to_driver=False)
    counts = partition(records, out, config.engine.shards)
    engine = config.engine
    limiter = (
        ray.remote(GlobalLimiter)
        .options(max_concurrency=100_000, num_cpus=0)
        .remote(engine.max_concurrent_requests, engine.rpm, engine.tpm, engine.adaptive)
    )
    config_json = config.model_dump_json()
    cache_dir = str(Path(engine.cache_dir or out / CACHE_DIRNAME))
    tool_actors = {
        name: ray.remote(ToolActor).options(max_concurrency=64, **resources).remote(config_json, cache_dir)
        for name, resources in settings.tool_actors.items()
    }
    task = ray.remote(process_shard).options(
        num_cpus=settings.cpus_per_worker, max_retries=settings.shard_retries, retry_exceptions=False
    )
    started = time.monotonic()
    pending = [
        task.remote(
            config_json,
            str(out),
            shard,
            limiter,
            tool_actors,
            teacher_factory,
            stages_factory,
            tools_factory,
        )
        for shard in sorted(counts)
    ]
    parts = ray.get(pending)
    merged = _merge_stats(parts, time.monotonic() - started, settings.workers or len(parts))
    merged["limiter"] = ray.get(limiter.snapshot.remote())
    (out / STATS_FILE).write_text(json.dumps(merged, indent=2, sort_keys=True))
    for actor in [limiter, *tool_actors.values()]:
        ray.kill(actor)
    return merged
