"""The stage interface and the context the engine gives a stage.

A stage takes a sample and returns a sample (enriched), or raises
:class:`~mmat.errors.SampleRejected`. It never reads input files, writes outputs, retries or sleeps:
it asks the :class:`StageContext` for teacher calls and operator results and gets a value back (the
engine owns concurrency, rate limits, retries and caches).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Protocol

from mmat.config import RunConfig
from mmat.llm.base import ChatMessage, Completion, DecodingParams
from mmat.schema import ImageRef, Sample, ToolResult


class StageContext(Protocol):
    """What the engine offers a running stage."""

    config: RunConfig

    async def chat(
        self,
        messages: list[ChatMessage],
        *,
        purpose: str,
        prompt_hash: str,
        params: DecodingParams | None = None,
    ) -> Completion:
        """One teacher call, cached by content; raises TeacherError when retries are exhausted."""
        ...

    async def tool(self, name: str, images: Sequence[ImageRef], **args: Any) -> ToolResult:
        """One operator result, cached by (image sha256, tool, version, args); errors are in the result."""
        ...

    async def search(self, query: str, *, k: int | None = None) -> ToolResult:
        """RAG search, top-k snippets rendered as text."""
        ...

    def available_tools(self) -> dict[str, str]:
        """Operator name -> one-line description, only for operators that can run."""
        ...


class Stage(ABC):
    """One step of the data engine. ``name`` keys stats and prompt hashes."""

    name: str = "stage"

    def enabled(self, config: RunConfig) -> bool:
        """Whether this stage runs under ``config`` (ablation switches)."""
        return True

    @abstractmethod
    async def run(self, sample: Sample, ctx: StageContext) -> Sample:
        """Return the enriched sample or raise SampleRejected."""
