"""User-declared operators: a name, a description and a Python callable (zero-shot tools).

Example:
    >>> runner.register("face_recognition", "Names the celebrities whose faces are visible.",
    ...                 lambda images, **args: "Ada Lovelace")
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from mmat.errors import ConfigError
from mmat.schema import ImageRef, ToolResult
from mmat.tools.base import AsyncTool, ToolContext


class FunctionTool(AsyncTool):
    """Wraps ``fn(images, **args)`` returning a string, a dict (payload with a ``text`` key) or a
    :class:`~mmat.schema.ToolResult`; ``fn`` may be sync (sent to the worker pool) or ``async``.

    Results of declared operators are not cached on disk (the callable has no version to key on).
    """

    version = "fn"
    cacheable = False
    requires_image = False

    def __init__(self, name: str, description: str, fn: Callable[..., Any]) -> None:
        if not name or not name.replace("_", "").isalnum():
            raise ConfigError(
                f"operator name {name!r} must be letters, digits and underscores (e.g. 'face_recognition')"
            )
        if not callable(fn):
            raise ConfigError(f"operator {name!r}: {fn!r} is not callable; pass fn(images, **args) -> str")
        self.name = name  # type: ignore[misc]
        self.description = description  # type: ignore[misc]
        self.fn = fn

    async def arun(self, images: Sequence[ImageRef], ctx: ToolContext, **args: Any) -> ToolResult:
        import asyncio

        if inspect.iscoroutinefunction(self.fn):
            value = await self.fn(list(images), **args)
        else:
            loop = asyncio.get_running_loop()
            value = await loop.run_in_executor(None, lambda: self.fn(list(images), **args))
        return self.to_result(value)

    def to_result(self, value: Any) -> ToolResult:
        if isinstance(value, ToolResult):
            return value
        if isinstance(value, str):
            return ToolResult(tool=self.name, payload={"text": value}, text=value)
        if isinstance(value, dict) and isinstance(value.get("text"), str):
            return ToolResult(tool=self.name, payload=value, text=value["text"])
        return ToolResult(tool=self.name, payload=value, text=str(value))
