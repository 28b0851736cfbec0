"""The operator interface: ``Tool.run(images, **args) -> ToolResult``.

A tool declares its operator ``name`` as it appears in MMAT data, a one-line ``description`` offered
to the teacher, a ``version`` that is part of its cache key, and whether it can run here
(:meth:`Tool.availability`). Weights load lazily in :meth:`Tool.setup`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from mmat.schema import ImageRef, ToolResult


@dataclass(frozen=True)
class Availability:
    """Whether a tool can run here, and if not, why and how to fix it."""

    ok: bool
    reason: str = ""


class Tool(ABC):
    """One operator backend.

    Subclasses set ``name`` (the operator name in the data), ``description`` and ``version``, and
    implement :meth:`run`. :meth:`run` never raises for bad images or backend failures: it returns a
    :class:`~mmat.schema.ToolResult` with ``error`` set.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    version: ClassVar[str] = "0"

    def availability(self) -> Availability:
        """Report whether the tool can run (extras installed, weights present)."""
        return Availability(True)

    def setup(self) -> None:  # noqa: B027 - optional hook
        """Load weights; called once before the first :meth:`run`."""

    @abstractmethod
    def run(self, images: Sequence[ImageRef], **args: Any) -> ToolResult:
        """Run on the sample's images and return the structured payload and the rendered text."""


class ToolProvider(Protocol):
    """What the engine and the agent runtime need from the tool layer (``mmat.tools.runner.ToolRunner``).

    Results are cached by (image sha256, tool, version, normalised args); errors come back inside the
    :class:`~mmat.schema.ToolResult`, never as exceptions.
    """

    async def run(self, name: str, images: Sequence[ImageRef], **args: Any) -> ToolResult:
        """Run one operator by its name in the data (``ocr``, ``label_bbox``...)."""
        ...

    async def search(self, query: str, *, k: int | None = None) -> ToolResult:
        """RAG search: the top-k snippets, rendered as the observation text."""
        ...

    def available(self) -> dict[str, str]:
        """Operator name -> one-line description, for operators that can run here."""
        ...


class ToolContext(Protocol):
    """What a tool that needs the teacher or other operators gets from the runner (:class:`AsyncTool`)."""

    chat: Any
    """The engine's ``StageContext.chat``-shaped async callable, or ``None`` without a teacher."""

    async def run(self, name: str, images: Sequence[ImageRef], **args: Any) -> ToolResult:
        """Run another operator (cached and de-duplicated like any call)."""
        ...

    def available(self) -> dict[str, str]:
        """Operators that can run here."""
        ...


class AsyncTool(Tool):
    """A tool that awaits the teacher or other operators (the CCoT caption) instead of computing itself.

    The runner awaits :meth:`arun` on the event loop rather than sending :meth:`run` to the worker pool.
    """

    def run(self, images: Sequence[ImageRef], **args: Any) -> ToolResult:
        raise TypeError(f"{type(self).__name__} runs through ToolRunner; await arun(images, ctx, ...)")

    @abstractmethod
    async def arun(self, images: Sequence[ImageRef], ctx: ToolContext, **args: Any) -> ToolResult:
        """Compute the result, asking ``ctx`` for teacher calls and other operators."""


class BatchTool(Tool):
    """A tool whose backend gains from running several calls at once (a detector on a GPU).

    The runner groups concurrent calls up to ``max_batch`` and hands them to :meth:`run_batch`.
    """

    max_batch: ClassVar[int] = 8

    def run_batch(self, calls: Sequence[tuple[Sequence[ImageRef], dict[str, Any]]]) -> list[ToolResult]:
        """Run several calls; the default runs them one by one."""
        return [self.run(images, **args) for images, args in calls]
