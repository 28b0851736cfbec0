"""Batch mode: the engine's teacher calls go through the OpenAI Batch API instead of online requests.

Each chunk of samples runs in passes. In a pass every sample runs through the stages with a context
that *defers* each call not yet in the cache (:class:`~mmat.engine.context.DeferredCall`); the
samples that finish are written, the deferred calls go out as one batch (resubmitting failed and
expired requests), their replies land in the call cache, and the deferred samples run again from
their original state. A single-call stage needs one batch; a stage with k sequential calls needs k.
A call the batch could not answer makes its sample a reject (``teacher_<kind>``) on the next pass.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from mmat.engine.context import DeferredCall, EngineContext
from mmat.errors import ConfigError
from mmat.schema import Reject, Sample

if TYPE_CHECKING:
    from mmat.engine.runner import Engine

logger = logging.getLogger(__name__)

CHUNK_SAMPLES = 10_000


def _chunks(engine: Engine, records: Iterable[Sample | Reject], size: int) -> Iterator[list[Sample]]:
    chunk: list[Sample] = []
    for sample in engine.pending(records):
        chunk.append(sample)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def _pass(engine: Engine, ctx: EngineContext, samples: list[Sample]) -> list[Sample]:
    """Run every sample once; write the finished ones; return those waiting on deferred calls."""
    slots = asyncio.Semaphore(max(1, engine.config.engine.max_samples_in_flight))

    async def one(sample: Sample) -> Sample | None:
        async with slots:
            try:
                outcome = await engine.process(sample.model_copy(deep=True), ctx)
            except DeferredCall:
                return sample
            engine._write(outcome)
            return None

    waiting = await asyncio.gather(*(one(sample) for sample in samples))
    return [sample for sample in waiting if sample is not None]


async def run_batched(engine: Engine, records: Iterable[Sample | Reject]) -> dict[str, Any]:
    """Process ``records`` with every uncached teacher call sent through the Batch API."""
    from mmat.llm.batch import BatchClient
    from mmat.llm.openai_client import OpenAITeacher

    if not isinstance(engine.teacher, OpenAITeacher):
        raise ConfigError(
            f"engine.batch needs an OpenAI-compatible teacher (teacher.kind=openai), not {engine.teacher.name!r}; "
            "set engine.batch=false to call this teacher online"
        )
    config = engine.config.engine
    client = BatchClient(
        engine.teacher,
        poll_interval_s=config.batch_poll_s,
        max_requests=config.batch_max_requests,
        resubmits=config.batch_resubmits,
    )
    ctx = engine.make_context()
    for chunk in _chunks(engine, records, CHUNK_SAMPLES):
        pending = chunk
        while pending:
            ctx.defer = {}
            pending = await _pass(engine, ctx, pending)
            deferred, ctx.defer = ctx.defer, None
            if not pending:
                break
            if not deferred:  # cannot happen: a waiting sample always deferred a call
                raise RuntimeError("samples wait on deferred calls but none were recorded")
            requests = {key: (messages, params) for key, (messages, params, _) in deferred.items()}
            done, failed = await client.run(requests)
            for key, completion in done.items():
                engine.cache.put(key, completion, purpose=deferred[key][2])
                ctx.record_usage(completion)
            ctx.batch_failed.update(failed)
            engine.stats.requests = client.stats["requests"]
            engine.stats.batch = dict(client.stats)
            engine.stats.errors.update(error.kind for error in failed.values())
            engine.progress.refresh()
    engine.stats.finished = not engine._stopping
    engine.stats.interrupted = engine._stopping
    return engine.stats.to_dict()
