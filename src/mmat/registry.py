"""Plugin registries: a name maps to a lazy ``"module:Class"`` string.

Built-ins register through the same path as third parties: entry points in ``pyproject.toml``
(groups ``mmat.sources``, ``mmat.tools``, ``mmat.teachers``, ``mmat.exporters``). Nothing is imported
until a name is asked for, so ``import mmat`` never pulls torch, onnxruntime or ray.

Example:
    >>> from mmat.registry import TOOLS
    >>> TOOLS.register("face_recognition", "my_pkg.tools:FaceRecognitionTool")
    >>> tool_class = TOOLS.get("face_recognition")  # imported now
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from mmat.errors import UnknownPluginError

T = TypeVar("T")


class Registry(Generic[T]):
    """Names -> plugin classes for one family, filled lazily from entry points and ``register``."""

    def __init__(self, family: str, group: str) -> None:
        self.family = family
        self.group = group
        self._targets: dict[str, str | type[T]] = {}
        self._loaded_entry_points = False

    def _load_entry_points(self) -> None:
        if self._loaded_entry_points:
            return
        self._loaded_entry_points = True
        for ep in entry_points(group=self.group):
            self._targets.setdefault(ep.name, ep.value)

    def register(self, name: str, target: str | type[T], *, replace: bool = False) -> None:
        """Register ``target`` (a class or a ``"module:Class"`` string) under ``name``."""
        self._load_entry_points()
        if isinstance(target, str) and ":" not in target:
            raise UnknownPluginError(
                f"{self.family} {name!r}: target {target!r} must look like 'package.module:ClassName'"
            )
        if name in self._targets and not replace and self._targets[name] != target:
            raise UnknownPluginError(
                f"{self.family} {name!r} is already registered as {self._targets[name]!r}; "
                "pass replace=True to override it"
            )
        self._targets[name] = target

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        self._load_entry_points()
        return sorted(self._targets)

    def target(self, name: str) -> str:
        """The ``"module:Class"`` string of ``name`` without importing it."""
        found = self._lookup(name)
        return found if isinstance(found, str) else f"{found.__module__}:{found.__qualname__}"

    def _lookup(self, name: str) -> str | type[T]:
        self._load_entry_points()
        if name not in self._targets:
            valid = ", ".join(self.names()) or "(none registered)"
            raise UnknownPluginError(f"unknown {self.family} {name!r}; valid names: {valid}")
        return self._targets[name]

    def get(self, name: str) -> type[T]:
        """Import and return the class registered as ``name``."""
        found = self._lookup(name)
        if not isinstance(found, str):
            return found
        module_name, _, attr = found.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise UnknownPluginError(
                f"{self.family} {name!r} points to {found!r}, whose module cannot be imported: {error}"
            ) from error
        try:
            cls: type[T] = getattr(module, attr)
        except AttributeError:
            raise UnknownPluginError(
                f"{self.family} {name!r}: module {module_name!r} has no {attr!r}"
            ) from None
        self._targets[name] = cls
        return cls

    def create(self, name: str, **kwargs: Any) -> T:
        """Instantiate the plugin registered as ``name`` with ``kwargs``."""
        return self.get(name)(**kwargs)


SOURCES: Registry[Any] = Registry("source", "mmat.sources")
TOOLS: Registry[Any] = Registry("tool", "mmat.tools")
TEACHERS: Registry[Any] = Registry("teacher", "mmat.teachers")
EXPORTERS: Registry[Any] = Registry("exporter", "mmat.exporters")
