"""The Foundation source interface: stream :class:`~mmat.schema.Sample` records or rejects.

A source iterates lazily over its files and yields either a ``Sample`` or a ``Reject`` (bad JSON
line, missing field, missing image...), so one bad record never stops the run and is never dropped.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import ClassVar

from mmat.config import SourceConfig
from mmat.schema import Reject, Sample


class Source(ABC):
    """One dataset loader. ``name`` is its registry name; ``license`` the default record licence."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    license: ClassVar[str] = "unknown"
    non_commercial: ClassVar[bool] = False

    def __init__(self, config: SourceConfig) -> None:
        self.config = config

    @abstractmethod
    def iter_records(self) -> Iterator[Sample | Reject]:
        """Yield samples and rejects in a deterministic order."""
