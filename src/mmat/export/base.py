"""The exporter interface: stream accepted samples into files of one training format."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar

from mmat.schema import Sample


class Exporter(ABC):
    """Writes accepted samples under ``out_dir``; returns the files it wrote."""

    name: ClassVar[str]
    description: ClassVar[str] = ""

    @abstractmethod
    def export(self, samples: Iterable[Sample], out_dir: Path) -> list[Path]:
        """Write ``samples`` (streamed, never all in memory) and return the written paths."""
