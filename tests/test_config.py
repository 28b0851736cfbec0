from __future__ import annotations

from pathlib import Path

import pytest

from mmat.config import RunConfig
from mmat.errors import ConfigError


def test_yaml_round_trip(tmp_path: Path) -> None:
    config = RunConfig.from_dict(
        {
            "sources": [{"name": "tabmwp", "root": "data/tabmwp"}],
            "teacher": {"kind": "openai", "model": "gpt-4o"},
        }
    )
    path = tmp_path / "run.yaml"
    path.write_text(config.to_yaml())
    assert RunConfig.from_yaml(path) == config
    assert RunConfig.from_yaml(path).fingerprint() == config.fingerprint()


def test_errors_name_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("teacher:\n  modle: gpt-4o\n")
    with pytest.raises(ConfigError, match=r"teacher.modle: Extra inputs are not permitted"):
        RunConfig.from_yaml(path)
    with pytest.raises(ConfigError, match="does not exist"):
        RunConfig.from_yaml(tmp_path / "missing.yaml")
    path.write_text("teacher: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        RunConfig.from_yaml(path)


def test_overrides() -> None:
    config = RunConfig().with_overrides({"teacher.model": "gpt-4o", "engine.rpm": 1200})
    assert config.teacher.model == "gpt-4o" and config.engine.rpm == 1200
    with pytest.raises(ConfigError, match="'model' is not a config section"):
        RunConfig().with_overrides({"teacher.model.x": 1})


def test_no_secret_fields() -> None:
    dumped = RunConfig().to_yaml()
    assert "api_key_env: OPENAI_API_KEY" in dumped
    assert "sk-" not in dumped
