"""The build orchestration: Foundation sources -> Engine(stages) -> exporters -> report.

One function does a whole run, and rerunning it with the same config resumes: the engine's completion
index skips finished samples and its caches make in-flight work cheap to redo; exports and the report
are rewritten from the store at the end of every run.

Example:
    >>> result = build(RunConfig.from_yaml("configs/demo.yaml"), out_dir="out/demo")   # doctest: +SKIP
    >>> result.report["check"]["adds_up"]
    True
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmat import store
from mmat.config import RunConfig
from mmat.errors import ConfigError
from mmat.llm.base import Teacher
from mmat.pipeline.report import InputTally, build_report, write_report
from mmat.schema import Reject, Sample
from mmat.stages import default_stages
from mmat.stages.base import Stage
from mmat.tools.base import ToolProvider

logger = logging.getLogger(__name__)


@dataclass
class BuildResult:
    """Where a build wrote its files, and its report."""

    out_dir: Path
    report: dict[str, Any]
    report_json: Path
    report_md: Path
    exports: dict[str, list[Path]] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)


def iter_sources(config: RunConfig) -> Iterator[Sample | Reject]:
    """Every configured source's samples and rejects, one source after the other."""
    from mmat.sources import load

    if not config.sources:
        raise ConfigError(
            "the run config lists no sources; add e.g. `sources: [{name: tabmwp, root: examples/data/tabmwp}]` "
            "(see configs/demo.yaml)"
        )
    return itertools.chain.from_iterable(load(source) for source in config.sources)


def create_teacher(config: RunConfig) -> Teacher:
    """The teacher named by ``teacher.kind`` (a registered teacher), built from the teacher section."""
    from mmat.llm.factory import teacher_from_config

    return teacher_from_config(config.teacher)


def _exportable(samples: Iterable[Sample], config: RunConfig) -> Iterator[Sample]:
    for sample in samples:
        if config.ablation == "orr_only":
            sample = sample.model_copy(update={"trajectory": None})
        yield sample


def run_exports(out_dir: Path, config: RunConfig) -> dict[str, list[Path]]:
    """Stream the accepted samples into every exporter of ``output.exports`` (``output.image_paths``
    goes to the exporters that take it)."""
    from mmat.export.run import create_exporter

    written: dict[str, list[Path]] = {}
    for name in config.output.exports:
        exporter = create_exporter(name, strict=False, image_paths=config.output.image_paths)
        target = out_dir / store.EXPORTS_DIR / name
        written[name] = exporter.export(_exportable(store.iter_accepted(out_dir), config), target)
    return written


async def build_async(
    config: RunConfig,
    *,
    out_dir: str | Path | None = None,
    teacher: Teacher | None = None,
    tools: ToolProvider | None = None,
    stages: Sequence[Stage] | None = None,
    records: Iterable[Sample | Reject] | None = None,
    progress: bool | None = None,
) -> BuildResult:
    """Run a build; every argument but ``config`` replaces what the config would construct.

    Args:
        config: the run configuration.
        out_dir: the output directory (default ``output.dir``); rerunning into it resumes.
        teacher: the teacher (default: from ``config.teacher``).
        tools: the operator provider (default: a ToolRunner from ``config.tools``/``config.search``).
        stages: the stages (default: :func:`mmat.stages.default_stages` under the config's ablation).
        records: the input records (default: the configured sources).
        progress: show the live panel (default: when writing to a terminal).
    """
    from mmat.engine import Engine
    from mmat.engine.runner import interruptible

    out = Path(out_dir or config.output.dir)
    out.mkdir(parents=True, exist_ok=True)
    tally = InputTally()
    inputs = tally.count(records if records is not None else iter_sources(config))
    own_teacher = teacher is None
    teacher = teacher or create_teacher(config)
    own_tools = tools is None
    if tools is None:
        from mmat.tools.runner import ToolRunner

        tools = ToolRunner(
            config, cache_dir=Path(config.engine.cache_dir) if config.engine.cache_dir else out / "cache"
        )
    chosen = list(stages) if stages is not None else default_stages(config)
    try:
        if config.executor == "ray":
            await _run_on_ray(config, inputs, out, teacher if not own_teacher else None, stages)
        else:
            engine = Engine(config, teacher, chosen, tools=tools, out_dir=out, progress=progress)
            if own_tools and teacher.supports_images:
                # The CCoT image_caption operator asks the teacher: give it the engine's cached, limited chat.
                tools.chat = engine.context.chat  # type: ignore[attr-defined]
            with interruptible(engine):
                await engine.run(inputs)
    finally:
        if own_tools and hasattr(tools, "aclose"):
            await tools.aclose()
        if own_teacher:
            await teacher.aclose()
    exports = run_exports(out, config)
    report = build_report(out, tally)
    report_json, report_md = write_report(out, report)
    return BuildResult(out, report, report_json, report_md, exports, report.get("engine", {}))


async def _run_on_ray(
    config: RunConfig,
    inputs: Iterable[Sample | Reject],
    out: Path,
    teacher: Teacher | None,
    stages: Sequence[Stage] | None,
) -> None:
    """The engine part of a build on Ray workers (:mod:`mmat.engine.ray_executor`).

    A teacher or stages passed in by the caller are shipped to the workers (they must pickle);
    otherwise each worker builds them from the config.
    """
    from mmat.engine.ray_executor import run_on_ray

    chosen = list(stages) if stages is not None else None
    await asyncio.to_thread(
        run_on_ray,
        config,
        inputs,
        out,
        teacher_factory=(lambda _config: teacher) if teacher is not None else None,
        stages_factory=(lambda _config: chosen) if chosen is not None else None,
    )


def build(config: RunConfig, **kwargs: Any) -> BuildResult:
    """Synchronous :func:`build_async`."""
    return asyncio.run(build_async(config, **kwargs))
