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
