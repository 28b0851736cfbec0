"""The engine: streams records through the stages, one coroutine per sample, and writes the outcome.

``Engine(config, teacher, stages, tools=..., out_dir=...).run_sync(records)`` reads records lazily,
keeps at most ``engine.max_samples_in_flight`` samples in flight, runs each sample through the enabled
stages with an :class:`~mmat.engine.context.EngineContext`, and appends the result to its shard
(accepted or rejects, layout of :mod:`mmat.store`). Loader rejects pass straight to the rejects.

Failure handling: a stage raising :class:`~mmat.errors.SampleRejected` rejects the sample with the
stage's reason; a teacher call that spends its retry budget rejects it with ``teacher_<kind>``; a bad
image (:class:`~mmat.errors.RecordError`) with the image's reason; an unexpected exception in a stage
with ``stage_crashed`` (logged with its traceback). The run always goes on.

Resume: rerunning the same command skips the records already in the output (the completion index,
see :mod:`mmat.engine.output`) and finds the teacher calls of the samples that were in flight in the
call cache. Ctrl-C once: stop reading input and finish the samples in flight; twice: abandon them
(they were never written, so the next run does them again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from mmat import __version__
from mmat.config import RunConfig
from mmat.engine.cache import CallCache
from mmat.engine.context import DeferredCall, EngineContext
from mmat.engine.limits import RequestLimiter
from mmat.engine.output import ShardStore, record_key
from mmat.engine.stats import ProgressPanel, RunStats
from mmat.errors import RecordError, SampleRejected, TeacherError
from mmat.llm.base import Teacher
from mmat.schema import Reject, Sample
from mmat.stages.base import Stage
from mmat.store import STATS_FILE
from mmat.tools.base import ToolProvider

logger = logging.getLogger(__name__)

CACHE_DIRNAME = "cache"


class Engine:
    """Runs stages over a stream of records with a teacher, operators, a call cache and a store.

    Args:
        config: the run configuration (``engine`` section: limits, retries, cache, shards, batch).
        teacher: the teacher answering ``ctx.chat``.
        stages: the stages, in order; disabled ones (``stage.enabled(config)`` false) are skipped.
        tools: the operator provider (None: no operators).
        out_dir: the output directory (``accepted/``, ``rejects/``, ``stats.json``).
        progress: show the rich live panel (default: when stderr is a terminal).
        cache: the call cache (default: ``engine.cache_dir`` or ``OUT_DIR/cache``).

    Example:
        >>> engine = Engine(RunConfig(), teacher, [RationaleStage()], tools=None, out_dir=Path("out"))  # doctest: +SKIP
        >>> stats = engine.run_sync(records)
    """

    def __init__(
        self,
        config: RunConfig,
        teacher: Teacher,
        stages: list[Stage],
        *,
        tools: ToolProvider | None = None,
        out_dir: Path,
        progress: bool | None = None,
        cache: CallCache | None = None,
    ) -> None:
        self.config = config
        self.teacher = teacher
        self.stages = [stage for stage in stages if stage.enabled(config)]
        self.tools = tools
        self.out_dir = Path(out_dir)
        self.cache = cache or CallCache(Path(config.engine.cache_dir or self.out_dir / CACHE_DIRNAME))
        self.store = ShardStore(self.out_dir, config.engine.shards)
        self.stats = RunStats(teacher=teacher.fingerprint(), teacher_grade=teacher.grade)
        self.progress = ProgressPanel(
            self.stats, enabled=sys.stderr.isatty() if progress is None else progress
        )
        self._stopping = False
        self._context: EngineContext | None = None
        if teacher.grade == "plumbing":
            logger.warning(
                "teacher %s is plumbing-grade: its output exercises the pipeline but is not training data",
                teacher.fingerprint(),
            )

    @property
    def context(self) -> EngineContext:
        """The one context of this engine: every teacher call, the stages' and the caption operator's,
        goes through its cache, limiter and retry budgets."""
        if self._context is None:
            self._context = self.make_context()
        return self._context

    def make_context(self) -> EngineContext:
        engine = self.config.engine
        limiter = RequestLimiter(
            engine.max_concurrent_requests, rpm=engine.rpm, tpm=engine.tpm, adaptive=engine.adaptive
        )
        return EngineContext(
            self.config,
            self.teacher,
            tools=self.tools,
            cache=self.cache,
            limiter=limiter,
            stats=self.stats,
            seed=self.config.seed,
        )

    def stop(self) -> None:
        """Stop reading input; samples in flight finish (the first Ctrl-C)."""
        self._stopping = True

    # -- one sample ---------------------------------------------------------------------------------

    def _fill_provenance(self, sample: Sample) -> Sample:
        if sample.trajectory is not None:
            provenance = sample.trajectory.provenance
            provenance.mmat_version = provenance.mmat_version or __version__
            provenance.teacher = provenance.teacher or self.teacher.name
            provenance.teacher_model = provenance.teacher_model or self.teacher.model
            provenance.teacher_grade = provenance.teacher_grade or self.teacher.grade
            provenance.config_hash = provenance.config_hash or self.config.fingerprint()
        return sample

    async def process(self, sample: Sample, ctx: EngineContext) -> Sample | Reject:
        """Run one sample through the stages; return it enriched or its reject."""
        current = sample
        for stage in self.stages:
            try:
                current = await stage.run(current, ctx)
            except DeferredCall:
                raise
            except SampleRejected as error:
                return self._reject(sample, stage.name, error.reason, error.detail)
            except TeacherError as error:
                return self._reject(sample, stage.name, f"teacher_{error.kind}", str(error))
            except RecordError as error:
                return self._reject(sample, stage.name, error.reason, error.detail)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                logger.exception("stage %s crashed on sample %s", stage.name, sample.id)
                return self._reject(sample, stage.name, "stage_crashed", f"{type(error).__name__}: {error}")
        return self._fill_provenance(current)

    def _reject(self, sample: Sample, stage: str, reason: str, detail: str) -> Reject:
        return Reject(id=sample.id, source=sample.source, stage=stage, reason=reason, detail=detail)

    def pending(self, records: Iterable[Sample | Reject]) -> Iterator[Sample]:
        """The samples of ``records`` still to process: finished and repeated ones are skipped, loader
        rejects are written at once, and reading stops when :meth:`stop` was called."""
        seen: set[str] = set()
        for record in records:
            if self._stopping:
                break
            self.stats.samples_seen += 1
            key = record_key(record)
            if key in self.store.done:
                self.stats.skipped_done += 1
                continue
            if key in seen:
                self.stats.skipped_duplicate += 1
                continue
            seen.add(key)
            if isinstance(record, Reject):
                self._write(record)
                continue
            yield record

    def _write(self, record: Sample | Reject) -> None:
        if isinstance(record, Sample):
            # QAs dropped from a kept dialogue go to the rejects file too, before the dialogue itself:
            # a kill in between reruns the dialogue, and the keys already written are not written again.
            for dropped in record.metadata.get("rejected_qas", []):
                reject = Reject(
                    id=record.id,
                    source=record.source,
                    qa_id=str(dropped["qa_id"]),
                    stage=dropped["stage"],
                    reason=dropped["reason"],
                    detail=dropped.get("detail", ""),
                )
                if record_key(reject) not in self.store.done:
                    self.store.write(reject)
                    self.stats.rejects_by_reason[reject.reason] += 1
        self.store.write(record)
        if isinstance(record, Sample):
            self.stats.accepted += 1
        else:
            self.stats.rejected += 1
            self.stats.rejects_by_reason[record.reason] += 1

    # -- the run ------------------------------------------------------------------------------------

    async def run(self, records: Iterable[Sample | Reject], *, total: int | None = None) -> dict[str, Any]:
        """Process every record not yet in the output; returns the stats (also in ``stats.json``)."""
        if total is None and hasattr(records, "__len__"):
            total = len(records)  # type: ignore[arg-type]
        self.stats.total = total
        self.store.load()
        if self.config.engine.batch:
            from mmat.engine.batch import run_batched

            try:
                return await run_batched(self, records)
            finally:
                self._finish()
        ctx = self.context
        slots = asyncio.Semaphore(max(1, self.config.engine.max_samples_in_flight))
        tasks: set[asyncio.Task[None]] = set()
        ticker = asyncio.get_running_loop().create_task(self._tick())
        self.progress.start()

        async def one(sample: Sample) -> None:
            try:
                self._write(await self.process(sample, ctx))
            finally:
                self.stats.in_flight_samples -= 1
                slots.release()

        try:
            for record in self.pending(records):
                await slots.acquire()
                self.stats.in_flight_samples += 1
                task = asyncio.get_running_loop().create_task(one(record))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.gather(*list(tasks))
            self.stats.finished = not self._stopping
        except asyncio.CancelledError:
            self.stats.interrupted = True
            for task in list(tasks):
                task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.gather(*list(tasks), return_exceptions=True)
            raise
        finally:
            if self._stopping:
                self.stats.interrupted = True
            ticker.cancel()
            self._finish()
        return self.stats.to_dict()

    def _finish(self) -> None:
        self.store.close()
        self.stats.write(self.out_dir / STATS_FILE)
        self.progress.stop()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            self.progress.refresh()
            self.stats.write(self.out_dir / STATS_FILE)

    def run_sync(self, records: Iterable[Sample | Reject], *, total: int | None = None) -> dict[str, Any]:
        """Run in a fresh event loop; Ctrl-C once drains, twice abandons the samples in flight."""
        return asyncio.run(self._run_with_signals(records, total))

    async def _run_with_signals(
        self, records: Iterable[Sample | Reject], total: int | None
    ) -> dict[str, Any]:
        try:
            with interruptible(self):
                return await self.run(records, total=total)
        except asyncio.CancelledError:
            return self.stats.to_dict()
        finally:
            await self.teacher.aclose()


@contextlib.contextmanager
def interruptible(engine: Engine) -> Iterator[None]:
    """Within a running event loop: Ctrl-C once stops reading input and finishes the samples in
    flight; twice cancels the current task (the samples in flight are abandoned, never written)."""
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    presses = 0

    def on_interrupt() -> None:
        nonlocal presses
        presses += 1
        if presses == 1:
            logger.warning("Ctrl-C: finishing the samples in flight (press again to abandon them)")
            engine.stop()
        elif main is not None:
            main.cancel()

    installed = False
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGINT, on_interrupt)
        installed = True
    try:
        yield
    finally:
        if installed:
            loop.remove_signal_handler(signal.SIGINT)
