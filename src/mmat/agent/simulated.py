"""A tool layer with fixed outputs and realistic latencies, for latency benchmarks and loop tests.

:class:`SimulatedToolProvider` implements :class:`~mmat.tools.base.ToolProvider`. It does not look at
the image: each operator returns the text it was given after sleeping its latency (without blocking
the event loop, like the real :class:`~mmat.tools.runner.ToolRunner`, which runs tools in a worker
pool). Use the real runner to answer questions; use this one to measure what the agent loop itself
costs, or to drive the loop with known observations.

Example:
    >>> tools = SimulatedToolProvider(
    ...     {"ocr": "Name | Score\\nAda | 10"}, latencies_s={"ocr": 0.3}, search_text="1. ...", search_latency_s=0.5
    ... )
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

from mmat.schema import ImageRef, ToolResult
from mmat.wire import OPERATOR_DESCRIPTIONS

PAPER_LIKE_LATENCIES_S: dict[str, float] = {
    "image_caption": 1.2,
    "label_bbox": 0.45,
    "ocr": 0.35,
    "face_detection": 0.05,
    "rag": 0.8,
}
"""Per-operator latencies used by the benchmark: a VLM caption call, Grounding DINO and PP-OCR on a
GPU, a small face detector, a web search round trip (orders of magnitude, not measurements)."""


class SimulatedToolProvider:
    """Fixed operator outputs after fixed delays; records every call.

    Args:
        outputs: operator name -> the text it returns.
        latencies_s: operator name (and ``"rag"``) -> seconds each call takes; missing names take 0.
        search_text: what RAG returns (``None``: RAG reports it found nothing).
        descriptions: operator name -> description offered to the model (defaults: the paper's).

    Attributes:
        calls: ``(name, started_at, finished_at)`` per call, ``name`` is ``"rag"`` for searches.
        queries: ``(query, k)`` per RAG search.
    """

    def __init__(
        self,
        outputs: Mapping[str, str],
        *,
        latencies_s: Mapping[str, float] | None = None,
        search_text: str | None = None,
        descriptions: Mapping[str, str] | None = None,
    ) -> None:
        self.outputs = dict(outputs)
        self.latencies_s = dict(latencies_s or {})
        self.search_text = search_text
        self.descriptions = {
            name: (descriptions or {}).get(name) or OPERATOR_DESCRIPTIONS.get(name, f"the {name} operator")
            for name in self.outputs
        }
        self.calls: list[tuple[str, float, float]] = []
        self.queries: list[tuple[str, int | None]] = []

    def available(self) -> dict[str, str]:
        return dict(self.descriptions)

    async def run(self, name: str, images: Sequence[ImageRef], **args: Any) -> ToolResult:
        started = time.perf_counter()
        await asyncio.sleep(self.latencies_s.get(name, 0.0))
        finished = time.perf_counter()
        self.calls.append((name, started, finished))
        if name not in self.outputs:
            return ToolResult(
                tool=name, error="not_enabled", text=f"The {name} operator returned no result (not_enabled)."
            )
        return ToolResult(
            tool=name, version="simulated", text=self.outputs[name], elapsed_s=finished - started
        )

    async def search(self, query: str, *, k: int | None = None) -> ToolResult:
        started = time.perf_counter()
        await asyncio.sleep(self.latencies_s.get("rag", 0.0))
        finished = time.perf_counter()
        self.calls.append(("rag", started, finished))
        self.queries.append((query, k))
        if self.search_text is None:
            return ToolResult(tool="rag", error="no_results", text="The search found nothing.")
        return ToolResult(
            tool="rag", version="simulated", text=self.search_text, elapsed_s=finished - started
        )
