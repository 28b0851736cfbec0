"""`mmat tools` and `mmat index` commands."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from mmat.cli import cli


def test_tools_list_reports_available_and_unavailable() -> None:
    result = CliRunner().invoke(cli, ["tools", "list"])
    assert result.exit_code == 0, result.output
    assert "ok    face_detection   yuface:" in result.output
    assert "no    label_bbox       no detector checkpoint" in result.output


def test_tools_run_face_detection(grace_hopper) -> None:
    result = CliRunner().invoke(cli, ["tools", "run", "face detection", grace_hopper.path])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("There is one face with a coordinate: [")


def test_tools_run_reports_errors(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["tools", "run", "ocr", str(tmp_path / "absent.png")])
    assert result.exit_code == 1
    assert "image_missing" in result.output


def test_index_build_then_search(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    rows = [
        {"id": "a", "title": "Tea", "text": "Tea is an aromatic beverage."},
        {"id": "b", "title": "Rock", "text": "Granite is a rock."},
    ]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    runner = CliRunner()
    built = runner.invoke(cli, ["index", "build", str(corpus), "--out", str(tmp_path / "idx")])
    assert built.exit_code == 0, built.output
    assert built.output.startswith(f"indexed 2 documents (bm25) into {tmp_path / 'idx'}")
    found = runner.invoke(
        cli, ["index", "search", "aromatic beverage", "--index", str(tmp_path / "idx"), "-k", "1"]
    )
    assert found.exit_code == 0, found.output
    assert found.output.splitlines()[1] == "[1] Tea: Tea is an aromatic beverage."
