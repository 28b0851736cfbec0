"""Every shipped run config parses and names registered plugins."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmat.config import RunConfig
from mmat.registry import EXPORTERS, SOURCES, TEACHERS

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_is_valid(path: Path) -> None:
    config = RunConfig.from_yaml(path)
    assert config.sources, f"{path.name} lists no sources"
    for source in config.sources:
        assert source.name in SOURCES.names()
    assert config.teacher.kind in TEACHERS.names()
    for name in config.output.exports:
        assert name in EXPORTERS.names()


def test_configs_exist() -> None:
    assert {p.name for p in CONFIGS} >= {"demo.yaml", "openai.yaml"}
