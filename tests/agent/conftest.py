"""Fixtures of the agent runtime tests: the mock model server and a real TabMWP table image."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mmat.llm.mock_server import MockTeacherServer
from mmat.schema import ImageRef

TABLE_PID = "10131"


@pytest.fixture
def mock_server() -> Iterator[MockTeacherServer]:
    with MockTeacherServer(log_images=True) as server:
        yield server


@pytest.fixture
def table_image(shared_data: Path) -> ImageRef:
    """A real TabMWP table image (CC BY-NC-SA 4.0), referenced relative to its root."""
    root = shared_data / "tabmwp" / "tables"
    return ImageRef(path=f"{TABLE_PID}.png", root=str(root))
