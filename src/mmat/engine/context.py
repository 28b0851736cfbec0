"""What a stage sees of the engine: :class:`EngineContext`, the :class:`~mmat.stages.base.StageContext`.

How a stage uses it (the stage never retries, sleeps, caches or counts; the context does)::

    class CaptionStage(Stage):
        name = "caption"

        async def run(self, sample: Sample, ctx: StageContext) -> Sample:
            messages = [ChatMessage(role="user", content=[
                TextPart(text="Describe the image."), ImagePart(image=sample.images[0])])]
            completion = await ctx.chat(messages, purpose="caption", prompt_hash=PROMPT_HASH)
            ocr = await ctx.tool("ocr", sample.images)        # errors come back in ocr.error
            if not completion.text.strip():
                raise SampleRejected("empty_caption", "the teacher wrote nothing")
            sample.metadata["caption"] = completion.text
            return sample

``chat`` looks the call up in the content-addressed cache, joins an identical call already in flight,
and otherwise sends it through the :class:`~mmat.engine.limits.RequestLimiter` (concurrency, RPM,
TPM, Retry-After), retrying with exponential backoff and jitter until the error class's budget
(``EngineConfig.max_retries``) is spent; then it raises :class:`~mmat.errors.TeacherError` and the
engine writes the sample to the rejects with reason ``teacher_<kind>``.
``tool``/``search``/``available_tools`` delegate to the :class:`~mmat.tools.base.ToolProvider` given
to the engine; without one no operator is available and a call returns a result with ``error`` set.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmat.config import RunConfig
from mmat.engine.cache import CallCache, call_key
from mmat.engine.limits import RequestLimiter, backoff_delay
from mmat.engine.stats import RunStats
from mmat.errors import TeacherError
from mmat.images import resolve_image
from mmat.llm.base import ChatMessage, Completion, DecodingParams, ImagePart, Teacher
from mmat.llm.tokens import estimate_request_tokens
from mmat.schema import ImageRef, ToolResult
from mmat.tools.base import ToolProvider

logger = logging.getLogger(__name__)

NO_TOOLS = "no operators are configured for this run (the engine was given no tool provider)"


class DeferredCall(Exception):
    """Raised inside batch mode's collecting pass: the call is queued for the Batch API."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class EngineContext:
    """The engine's :class:`~mmat.stages.base.StageContext`: cached, limited, retried teacher calls.

    Args:
        config: the run configuration (``engine`` section: limits, retries, backoff).
        teacher: the teacher that answers ``chat``.
        tools: the operator provider, or None for a run without operators.
        cache: the call cache, or None to call the teacher every time.
        limiter: the request gate (one per engine; shared by every sample).
        stats: the counters this context adds to.
    """

    def __init__(
        self,
        config: RunConfig,
        teacher: Teacher,
        *,
        tools: ToolProvider | None = None,
        cache: CallCache | None = None,
        limiter: RequestLimiter | None = None,
        stats: RunStats | None = None,
        seed: int = 0,
    ) -> None:
        engine = config.engine
        self.config = config
        self.teacher = teacher
        self.tools = tools
        self.cache = cache
        self.limiter = limiter or RequestLimiter(
            engine.max_concurrent_requests, rpm=engine.rpm, tpm=engine.tpm, adaptive=engine.adaptive
        )
        self.stats = stats or RunStats()
        self.defer: dict[str, tuple[list[ChatMessage], DecodingParams, str]] | None = None
        self.batch_failed: dict[str, TeacherError] = {}
        self._rng = random.Random(seed)
        self._in_flight: dict[str, asyncio.Future[Completion]] = {}
        self._sha_memo: dict[tuple[str, str | None, float, int], str] = {}
        self._resolved: dict[tuple[str | None, str], Path] = {}

    # -- teacher calls ------------------------------------------------------------------------------

    def default_params(self) -> DecodingParams:
        return DecodingParams(
            temperature=self.config.teacher.temperature, max_tokens=self.config.teacher.max_tokens
        )

    def _with_hashes(self, messages: list[ChatMessage]) -> list[ChatMessage]:
        """Fill missing image sha256 so the cache keys on content, not on paths."""
        out = []
        for message in messages:
            if isinstance(message.content, list) and any(
                isinstance(p, ImagePart) and not p.image.sha256 for p in message.content
            ):
                parts = [
                    p.model_copy(update={"image": p.image.model_copy(update={"sha256": self._sha(p.image)})})
                    if isinstance(p, ImagePart) and not p.image.sha256
                    else p
                    for p in message.content
                ]
                message = message.model_copy(update={"content": parts})
            out.append(message)
        return out

    def _sha(self, ref: ImageRef) -> str | None:
        if ref.is_url:
            return None
        where = (ref.root, ref.path)
        try:
            path = self._resolved.get(where)
            if path is None:
                path = resolve_image(ref)
                if len(self._resolved) > 100_000:
                    self._resolved.clear()
                self._resolved[where] = path
            stat = os.stat(path)
        except Exception:  # the client reports a bad image when it sends the request
            return None
        memo_key = (str(path), None, stat.st_mtime, stat.st_size)
        found = self._sha_memo.get(memo_key)
        if found is None:
            found = hashlib.sha256(path.read_bytes()).hexdigest()
            if len(self._sha_memo) > 100_000:
                self._sha_memo.clear()
            self._sha_memo[memo_key] = found
        return found

    def key_of(self, messages: list[ChatMessage], params: DecodingParams, prompt_hash: str) -> str:
        return call_key(self.teacher.fingerprint(), self.teacher.model, params, prompt_hash, messages)

    async def chat(
        self,
        messages: list[ChatMessage],
        *,
        purpose: str,
        prompt_hash: str,
        params: DecodingParams | None = None,
    ) -> Completion:
        """One teacher call: from the cache, joined with an identical call in flight, or sent with retries.

        Raises:
            TeacherError: when the error class's retry budget is spent (``kind`` says which).
        """
        params = params or self.default_params()
        hashed = self._with_hashes(messages)
        key = self.key_of(hashed, params, prompt_hash)
        self.stats.calls += 1
        self.stats.calls_by_purpose[purpose] += 1
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                self.stats.cache_hits += 1
                return hit
        running = self._in_flight.get(key)
        if running is not None:
            self.stats.joined_in_flight += 1
            return (await asyncio.shield(running)).model_copy(update={"cached": True})
        if self.defer is not None:
            failed = self.batch_failed.get(key)
            if failed is not None:
                raise failed
            self.defer[key] = (messages, params, purpose)
            raise DeferredCall(key)
        future: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            completion = await self._send(messages, params, purpose)
        except BaseException as error:
            if not future.done():
                if isinstance(error, asyncio.CancelledError):
                    future.cancel()
                else:
                    future.set_exception(error)
                    future.exception()  # joined callers see it; nobody else must
            raise
        else:
            future.set_result(completion)
            if self.cache is not None:
                self.cache.put(key, completion, purpose=purpose)
            return completion
        finally:
            self._in_flight.pop(key, None)

    def record_usage(self, completion: Completion) -> None:
        self.stats.prompt_tokens += completion.usage.prompt_tokens
        self.stats.completion_tokens += completion.usage.completion_tokens
        self.stats.image_tokens += completion.usage.image_tokens
        self.stats.cost_usd += completion.cost_usd

    async def _send(self, messages: list[ChatMessage], params: DecodingParams, purpose: str) -> Completion:
        engine = self.config.engine
        estimate = estimate_request_tokens(messages, params, self.config.teacher.image_detail)
        used: dict[str, int] = {}
        attempt = 0
        while True:
            attempt += 1
            await self.limiter.acquire(estimate)
            self.stats.requests += 1
            self.stats.in_flight_requests = self.limiter.in_flight
            try:
                completion = await self.teacher.complete(messages, params)
            except TeacherError as error:
                kind = error.kind
                overloaded = kind == "rate_limit" or (kind == "server" and error.status == 503)
                await self.limiter.release(
                    ok=False,
                    error_kind="overloaded" if overloaded and kind != "rate_limit" else kind,
                    retry_after=error.retry_after if kind == "rate_limit" else None,
                )
                self.stats.errors[kind] += 1
                used[kind] = used.get(kind, 0) + 1
                budget = engine.max_retries.get(kind, 0)
                if used[kind] > budget:
                    raise TeacherError(
                        kind,
                        f"{purpose}: gave up after {used[kind]} {kind} error(s) (budget "
                        f"engine.max_retries.{kind}={budget}); last: {error}",
                        retry_after=error.retry_after,
                    ) from None
                self.stats.retries[kind] += 1
                # the server's Retry-After is honoured; a request refused a third time backs off
                # exponentially too, so a rate-limited client does not hammer the server
                delay = backoff_delay(used[kind], engine.backoff_base_s, engine.backoff_max_s, self._rng)
                if error.retry_after is not None:
                    # jittered, so that a herd refused together does not come back together
                    honoured = min(error.retry_after * (1.0 + 0.5 * self._rng.random()), engine.backoff_max_s)
                    delay = honoured if used[kind] <= 2 else max(delay, honoured)
                logger.debug("%s: %s error, retry %d in %.2f s: %s", purpose, kind, used[kind], delay, error)
                await asyncio.sleep(delay)
                continue
            except BaseException:
                await self.limiter.release(ok=False, error_kind="cancelled")
                raise
            await self.limiter.release(
                ok=True,
                latency_s=completion.latency_s,
                used_tokens=completion.usage.total_tokens or None,
                estimated_tokens=estimate,
            )
            self.stats.concurrency_limit = self.limiter.limit
            self.record_usage(completion)
            return completion

    # -- operators ------------------------------------------------------------------------------------

    async def tool(self, name: str, images: Sequence[ImageRef], **args: Any) -> ToolResult:
        """One operator result from the tool provider (errors inside the result, never raised)."""
        self.stats.tool_calls[name] += 1
        if self.tools is None:
            return ToolResult(tool=name, error=NO_TOOLS, text=f"The {name} operator is not available.")
        return await self.tools.run(name, images, **args)

    async def search(self, query: str, *, k: int | None = None) -> ToolResult:
        """RAG search through the tool provider."""
        self.stats.tool_calls["rag"] += 1
        if self.tools is None:
            return ToolResult(tool="rag", error=NO_TOOLS, text="Search is not available.")
        return await self.tools.search(query, k=k if k is not None else self.config.search.top_k)

    def available_tools(self) -> dict[str, str]:
        """Operators that can run here (none without a tool provider)."""
        return {} if self.tools is None else dict(self.tools.available())
