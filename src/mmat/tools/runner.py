"""``ToolRunner``: the operators as one cached, de-duplicated, non-blocking service.

The engine (through ``StageContext.tool``/``search``) and the agent runtime call the operators only
through this class. It

- picks a backend per operator from :class:`~mmat.config.ToolsConfig` (``backends``), via the
  ``mmat.tools`` registry, and reports honestly which operators can run here (:meth:`available`);
- keys every result by (image sha256, operator, backend version, normalised args) in a SQLite cache
  (``<cache_dir>/tools.sqlite``), and lets concurrent identical calls share one execution;
- runs CPU/GPU-bound tools in a worker pool off the event loop (one call at a time per tool instance,
  different tools in parallel), batching concurrent calls for tools that support it;
- turns a corrupt, huge or missing image, a timeout or a backend crash into ``ToolResult.error``;
  it never raises for those.

Example:
    >>> runner = ToolRunner(RunConfig(), cache_dir=Path("cache"))
    >>> result = await runner.run("ocr", [ImageRef(path="table.png", root="data")])
    >>> result.text
    'Name | Score\\nAda | 10'
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mmat.config import RunConfig
from mmat.errors import ConfigError, MmatError
from mmat.images import image_sha256
from mmat.registry import TOOLS
from mmat.schema import ImageRef, ToolResult
from mmat.tools.base import AsyncTool, Availability, BatchTool, Tool
from mmat.tools.cache import CACHE_FILE, ToolCache, tool_cache_key
from mmat.tools.function import FunctionTool
from mmat.wire import canonical_operator

logger = logging.getLogger(__name__)

DEFAULT_BACKENDS: dict[str, str] = {
    "ocr": "rapidocr",
    "face_detection": "yuface",
    "label_bbox": "grounding_dino",
    "image_caption": "ccot_caption",
}
"""Operator name in the data -> registered backend used when ``tools.backends`` does not say."""

SEARCH_PREFIX = "search."
BATCH_WINDOW_S = 0.01

ChatFn = Callable[..., Awaitable[Any]]


def _refs_key(images: Sequence[ImageRef]) -> tuple[tuple[str, str], ...]:
    return tuple((ref.root or "", ref.path) for ref in images)


def failure(tool: str, version: str, code: str, message: str) -> ToolResult:
    """A ToolResult that carries an error, with text written for the model."""
    return ToolResult(
        tool=tool,
        version=version,
        error=f"{code}: {message}",
        text=f"The {tool} operator returned no result ({code}).",
    )


class _Batcher:
    """Collects concurrent calls of one BatchTool for a few milliseconds and runs them together."""

    def __init__(self, runner: ToolRunner, tool: BatchTool) -> None:
        self.runner = runner
        self.tool = tool
        self.pending: list[tuple[Sequence[ImageRef], dict[str, Any], asyncio.Future[ToolResult]]] = []
        self.flush_handle: asyncio.TimerHandle | None = None

    def submit(self, images: Sequence[ImageRef], args: dict[str, Any]) -> asyncio.Future[ToolResult]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ToolResult] = loop.create_future()
        self.pending.append((images, args, future))
        if len(self.pending) >= max(1, self.tool.max_batch):
            self._flush()
        elif self.flush_handle is None:
            self.flush_handle = loop.call_later(BATCH_WINDOW_S, self._flush)
        return future

    def _flush(self) -> None:
        if self.flush_handle is not None:
            self.flush_handle.cancel()
            self.flush_handle = None
        batch, self.pending = self.pending, []
        if batch:
            asyncio.get_running_loop().create_task(self._run(batch))

    async def _run(
        self, batch: list[tuple[Sequence[ImageRef], dict[str, Any], asyncio.Future[ToolResult]]]
    ) -> None:
        calls = [(images, args) for images, args, _ in batch]
        try:
            results = await self.runner._in_pool(self.tool, lambda: self.tool.run_batch(calls))
            if len(results) != len(batch):
                raise RuntimeError(f"run_batch returned {len(results)} results for {len(batch)} calls")
        except BaseException as error:  # a crash fails every call of the batch, as data
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, _, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
        self.runner.stats["batches"] += 1


class ToolRunner:
    """Runs operators by their name in the data; implements :class:`~mmat.tools.base.ToolProvider`.

    Args:
        config: the run config; ``config.tools`` picks backends, options, workers and the timeout,
            ``config.search`` the RAG backend.
        chat: the engine's ``StageContext.chat``-shaped async callable; the CCoT caption asks the
            teacher through it (so those calls are cached and rate-limited by the engine). Without it
            ``image_caption`` falls back to a caption composed from the other operators.
        cache_dir: where ``tools.sqlite`` lives; defaults to ``config.engine.cache_dir``; ``None`` in
            both keeps the cache in memory.
        tools: ready tool instances by operator name, replacing the configured backends (tests,
            embedding applications).
    """

    def __init__(
        self,
        config: RunConfig | None = None,
        *,
        chat: ChatFn | None = None,
        cache_dir: Path | None = None,
        tools: dict[str, Tool] | None = None,
    ) -> None:
        self.config = config or RunConfig()
        self.chat = chat
        settings = self.config.tools
        if cache_dir is None and self.config.engine.cache_dir:
            cache_dir = Path(self.config.engine.cache_dir)
        self.cache = ToolCache(cache_dir / CACHE_FILE if cache_dir is not None else None)
        self.stats: Counter[str] = Counter()
        self.timeout_s = settings.timeout_s
        self._pool = ThreadPoolExecutor(max_workers=max(1, settings.workers), thread_name_prefix="mmat-tool")
        self._tools: dict[str, Tool] = {}
        self._missing: dict[str, str] = {}
        self._backend_names: dict[str, str] = {}
        for operator in settings.enabled:
            op = canonical_operator(operator)
            backend = settings.backends.get(op, DEFAULT_BACKENDS.get(op, op))
            options = {**settings.options.get(op, {}), **settings.options.get(backend, {})}
            if op not in settings.backends and backend not in TOOLS.names():
                # a default backend whose plugin is not installed: report it, do not fail the run
                self._missing[op] = (
                    f"no tool backend {backend!r} is registered for {op!r}; set tools.backends.{op}"
                )
                continue
            self._tools[op] = self._create(op, backend, options)
            self._backend_names[op] = backend
        for op, tool in (tools or {}).items():
            self._tools[canonical_operator(op)] = tool
            self._backend_names[canonical_operator(op)] = type(tool).__name__
        self._availability: dict[str, Availability] = {}
        self._setup_done: set[str] = set()
        self._setup_lock = threading.Lock()
        self._tool_locks: dict[int, threading.Lock] = {}
        self._inflight: dict[str, asyncio.Future[ToolResult]] = {}
        self._batchers: dict[str, _Batcher] = {}
        # keyed by the images' (root, path): known before any await, unlike their sha256
        self._scene_graphs: dict[tuple[tuple[str, str], ...], Any] = {}
        self._captions_in_flight: dict[tuple[tuple[str, str], ...], asyncio.Future[None]] = {}
        self._search: Any = None

    # ----------------------------------------------------------------------------------------------
    # construction

    @staticmethod
    def _create(operator: str, backend: str, options: dict[str, Any]) -> Tool:
        cls = TOOLS.get(backend)
        try:
            tool = cls(**options)
        except TypeError as error:
            raise ConfigError(
                f"tools.options for {operator!r} ({backend}) are not accepted by {cls.__name__}: {error}"
            ) from None
        if not isinstance(tool, Tool):
            raise ConfigError(f"tool backend {backend!r} ({cls!r}) is not an mmat.tools.base.Tool")
        if canonical_operator(tool.name) != operator:
            raise ConfigError(
                f"tools.backends maps operator {operator!r} to {backend!r}, which implements "
                f"{tool.name!r}; pick a backend of {operator!r}"
            )
        return tool

    def register(self, name: str, description: str, fn: Callable[..., Any]) -> None:
        """Declare an extra operator (zero-shot tools): ``fn(images, **args)`` returns text or a ToolResult."""
        op = canonical_operator(name)
        self.add_tool(FunctionTool(op, description, fn))

    def add_tool(self, tool: Tool) -> None:
        """Add or replace a ready tool instance under its ``name``."""
        op = canonical_operator(tool.name)
        self._tools[op] = tool
        self._backend_names[op] = type(tool).__name__
        self._availability.pop(op, None)
        self._setup_done.discard(op)

    # ----------------------------------------------------------------------------------------------
    # what can run

    def tool(self, name: str) -> Tool | None:
        """The tool instance serving operator ``name`` (``None`` when it is not configured)."""
        return self._tools.get(canonical_operator(name))

    def availability(self, name: str) -> Availability:
        op = canonical_operator(name)
        if op not in self._tools:
            known = ", ".join(sorted(self._tools)) or "(none)"
            return Availability(False, f"operator {name!r} is not enabled; enabled operators: {known}")
        if op not in self._availability:
            try:
                self._availability[op] = self._tools[op].availability()
            except Exception as error:  # an availability probe must not take the runner down
                self._availability[op] = Availability(False, f"availability check failed: {error}")
        return self._availability[op]

    def available(self) -> dict[str, str]:
        """Operator name -> one-line description, only for operators that can run here."""
        out: dict[str, str] = {}
        for op, tool in self._tools.items():
            if self.availability(op).ok:
                out[op] = tool.description
        return out

    def unavailable(self) -> dict[str, str]:
        """Operator name -> why it cannot run and how to fix it."""
        out = {op: self.availability(op).reason for op in self._tools if not self.availability(op).ok}
        return {**self._missing, **out}

    def versions(self) -> dict[str, str]:
        """Operator name -> ``backend:version`` (part of every cache key), plus ``rag``."""
        out = {op: f"{self._backend_names[op]}:{tool.version}" for op, tool in self._tools.items()}
        out["rag"] = f"{SEARCH_PREFIX}{self.config.search.backend}"
        return out

    # ----------------------------------------------------------------------------------------------
    # running

    async def run(self, name: str, images: Sequence[ImageRef], **args: Any) -> ToolResult:
        """Run operator ``name`` on ``images``; failures come back in ``ToolResult.error``."""
        op = canonical_operator(name)
        if op != "image_caption":
            return await self._run(op, name, images, **args)
        # Mark the caption as running before the first await, so that a label_bbox of the same step,
        # scheduled right after it, waits for its scene graph instead of captioning a second time.
        key = _refs_key(images)
        marker: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._captions_in_flight.setdefault(key, marker)
        try:
            result = await self._run(op, name, images, **args)
            if (
                result.error is None
                and isinstance(result.payload, dict)
                and result.payload.get("scene_graph")
            ):
                self._scene_graphs[key] = result.payload["scene_graph"]
            return result
        finally:
            if self._captions_in_flight.get(key) is marker:
                del self._captions_in_flight[key]
            marker.set_result(None)

    async def _run(self, op: str, name: str, images: Sequence[ImageRef], **args: Any) -> ToolResult:
        self.stats["requests"] += 1
        tool = self._tools.get(op)
        if tool is None and op in self._missing:
            self.stats["errors"] += 1
            return failure(op, "", "unavailable", self._missing[op])
        if tool is None:
            known = ", ".join(sorted(self._tools)) or "(none)"
            self.stats["errors"] += 1
            return failure(op, "", "unknown_operator", f"no operator {name!r}; available: {known}")
        version = f"{self._backend_names[op]}:{tool.version}"
        availability = self.availability(op)
        if not availability.ok:
            self.stats["errors"] += 1
            return failure(op, version, "unavailable", availability.reason)
        if not images and getattr(tool, "requires_image", True):
            self.stats["errors"] += 1
            return failure(op, version, "no_image", f"{op} needs at least one image; the call gave none")
        started = time.perf_counter()
        try:
            hashed = await self._hash_images(images)
        except MmatError as error:
            self.stats["errors"] += 1
            code = getattr(error, "reason", "image_error")
            return failure(op, version, code, str(error))
        shas = tuple(ref.sha256 or "" for ref in hashed)
        if op == "label_bbox" and not any(args.get(k) for k in ("queries", "labels", "query", "scene_graph")):
            graph = await self._scene_graph_for(images)
            if graph is not None:
                args = {**args, "scene_graph": graph}
        key = tool_cache_key(shas, op, version, args)
        cacheable = getattr(tool, "cacheable", True)
        if cacheable:
            hit = await asyncio.get_running_loop().run_in_executor(None, self.cache.get, key)
            if hit is not None:
                self.stats["cache_hits"] += 1
                return hit.model_copy(update={"cached": True, "elapsed_s": time.perf_counter() - started})
        shared = self._inflight.get(key)
        if shared is not None:
            self.stats["shared"] += 1
            try:
                result = await asyncio.shield(shared)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if shared.cancelled() and task is not None and not task.cancelling():
                    # the caller that owned the execution was cancelled, not us: run it ourselves
                    return await self.run(name, images, **args)
                raise
            return result.model_copy(update={"cached": True, "elapsed_s": time.perf_counter() - started})
        future: asyncio.Future[ToolResult] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            result = await self._execute(op, tool, version, hashed, args)
            result = result.model_copy(
                update={
                    "tool": op,
                    "version": version,
                    "cache_key": key,
                    "elapsed_s": time.perf_counter() - started,
                }
            )
            if result.error is None:
                if cacheable:
                    await asyncio.get_running_loop().run_in_executor(None, self.cache.put, key, result)
            else:
                self.stats["errors"] += 1
            future.set_result(result)
            return result
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            self._inflight.pop(key, None)

    async def _scene_graph_for(self, images: Sequence[ImageRef]) -> Any:
        """The scene graph of these images for label_bbox queries: from a finished caption, from one
        still running (a step that asked for both operators at once), or by captioning now."""
        key = _refs_key(images)
        if key in self._scene_graphs:
            return self._scene_graphs[key]
        pending = self._captions_in_flight.get(key)
        if pending is not None:
            await asyncio.wait([pending])  # never raises the caption's failure: its own caller sees it
        elif (
            self.chat is not None and "image_caption" in self._tools and self.availability("image_caption").ok
        ):
            # only a teacher caption has a scene graph; the fallback caption would cost OCR for nothing
            await self.run("image_caption", images)
        return self._scene_graphs.get(key)

    async def _hash_images(self, images: Sequence[ImageRef]) -> list[ImageRef]:
        def work() -> list[ImageRef]:
            return [
                ref if ref.sha256 else ref.model_copy(update={"sha256": image_sha256(ref)}) for ref in images
            ]

        if all(ref.sha256 for ref in images):
            return list(images)
        # the default executor, not the tool pool: hashing must not queue behind slow OCR jobs
        return await asyncio.get_running_loop().run_in_executor(None, work)

    async def _execute(
        self, op: str, tool: Tool, version: str, images: Sequence[ImageRef], args: dict[str, Any]
    ) -> ToolResult:
        self.stats["executions"] += 1
        self.stats[f"executions.{op}"] += 1
        try:
            if isinstance(tool, AsyncTool):
                result = await asyncio.wait_for(tool.arun(images, self, **args), self.timeout_s)
            elif isinstance(tool, BatchTool) and tool.max_batch > 1:
                if op not in self._setup_done:
                    await self._in_pool(tool, lambda: self._ensure_setup(op, tool), setup=True)
                batcher = self._batchers.setdefault(op, _Batcher(self, tool))
                result = await asyncio.wait_for(batcher.submit(images, dict(args)), self.timeout_s)
            else:
                result = await asyncio.wait_for(
                    self._in_pool(tool, lambda: self._setup_and_run(op, tool, images, args)), self.timeout_s
                )
        except TimeoutError:
            return failure(
                op, version, "timeout", f"{op} took longer than {self.timeout_s:g} s (tools.timeout_s)"
            )
        except MmatError as error:
            return failure(op, version, getattr(error, "reason", type(error).__name__), str(error))
        except Exception as error:
            logger.warning("operator %s crashed: %r", op, error)
            return failure(op, version, "crash", f"{type(error).__name__}: {error}")
        if not isinstance(result, ToolResult):
            return failure(op, version, "crash", f"{type(tool).__name__} returned {type(result).__name__}")
        return result

    def _ensure_setup(self, op: str, tool: Tool) -> None:
        if op in self._setup_done:
            return
        with self._setup_lock:
            if op not in self._setup_done:
                tool.setup()
                self._setup_done.add(op)

    def _setup_and_run(
        self, op: str, tool: Tool, images: Sequence[ImageRef], args: dict[str, Any]
    ) -> ToolResult:
        self._ensure_setup(op, tool)
        return tool.run(images, **args)

    async def _in_pool(self, tool: Tool, work: Callable[[], Any], *, setup: bool = False) -> Any:
        lock = self._tool_locks.setdefault(id(tool), threading.Lock())
        thread_safe = getattr(tool, "thread_safe", False)

        def guarded() -> Any:
            if thread_safe or setup:
                return work()
            with lock:
                return work()

        return await asyncio.get_running_loop().run_in_executor(self._pool, guarded)

    # ----------------------------------------------------------------------------------------------
    # RAG

    def _search_backend(self) -> Any:
        if self._search is None:
            from mmat.tools.search import create_search_backend

            self._search = create_search_backend(self.config.search)
        return self._search

    async def search(self, query: str, *, k: int | None = None) -> ToolResult:
        """RAG search: the top-k snippets (default ``search.top_k``), rendered as a marked observation."""
        from mmat.tools.search import run_search

        self.stats["search_requests"] += 1
        top_k = k or self.config.search.top_k
        try:
            backend = self._search_backend()
        except MmatError as error:
            return failure("rag", "", "unavailable", str(error))
        version = f"{SEARCH_PREFIX}{self.config.search.backend}:{getattr(backend, 'version', '0')}"
        key = tool_cache_key((), "rag", version, {"query": " ".join(query.split()), "k": top_k})
        hit = self.cache.get(key)
        if hit is not None:
            self.stats["cache_hits"] += 1
            return hit.model_copy(update={"cached": True})
        shared = self._inflight.get(key)
        if shared is not None:
            self.stats["shared"] += 1
            return (await asyncio.shield(shared)).model_copy(update={"cached": True})
        future: asyncio.Future[ToolResult] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            started = time.perf_counter()
            self.stats["search_executions"] += 1
            try:
                result = await asyncio.wait_for(
                    run_search(backend, query, top_k, self.config.search.max_chars, self._pool),
                    self.timeout_s,
                )
            except TimeoutError:
                result = failure("rag", version, "timeout", f"search took longer than {self.timeout_s:g} s")
            except MmatError as error:
                result = failure("rag", version, getattr(error, "reason", "search_error"), str(error))
            except Exception as error:
                logger.warning("search backend crashed: %r", error)
                result = failure("rag", version, "crash", f"{type(error).__name__}: {error}")
            result = result.model_copy(
                update={"version": version, "cache_key": key, "elapsed_s": time.perf_counter() - started}
            )
            self.cache.put(key, result)
            future.set_result(result)
            return result
        except BaseException as error:
            future.set_exception(error)
            future.exception()
            raise
        finally:
            self._inflight.pop(key, None)

    async def aclose(self) -> None:
        """Release the worker pool, HTTP clients and the cache file."""
        if self._search is not None and hasattr(self._search, "aclose"):
            await self._search.aclose()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.cache.close()

    async def __aenter__(self) -> ToolRunner:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
