"""``mmat sources`` and ``mmat foundation`` end to end on the shared sample data."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from mmat.cli import cli
from mmat.schema import Reject, Sample


def test_sources_lists_every_loader() -> None:
    result = CliRunner().invoke(cli, ["sources"])
    assert result.exit_code == 0, result.output
    for name in ("visual_cot", "llava_cot", "cauldron", "tabmwp", "infoseek", "generic"):
        assert name in result.output
    assert "non-commercial" in result.output


def test_foundation_writes_samples_rejects_and_stats(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "tab.jsonl"
    result = CliRunner().invoke(
        cli,
        [
            "foundation",
            "--source",
            "tabmwp",
            "--root",
            str(shared_data / "tabmwp"),
            "--out",
            str(out),
            "--sample",
            "7",
            "--seed",
            "5",
        ],
    )
    assert result.exit_code == 0, result.output
    samples = [Sample.model_validate_json(line) for line in out.read_text().splitlines()]
    assert len(samples) == 7 and all(s.non_commercial for s in samples)
    stats = json.loads((tmp_path / "tab.stats.json").read_text())
    assert stats["kept"] == 7 and stats["qa_per_entry"] == {"1": 7} and stats["rejected"] == 0
    assert (tmp_path / "tab.rejects.jsonl").read_text() == ""
    assert "kept samples" in result.output


def test_foundation_counts_rejects_by_reason(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "vc.jsonl"
    rejects = tmp_path / "bad.jsonl"
    result = CliRunner().invoke(
        cli,
        [
            "foundation",
            "--source",
            "visual_cot",
            "--root",
            str(shared_data / "visual_cot"),
            "--out",
            str(out),
            "--rejects",
            str(rejects),
            "--files",
            "cub_cot_train.head25.jsonl",
            "--limit",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    # the sample data has no images: with the default existence check every record is rejected
    lines = rejects.read_text().splitlines()
    assert len(lines) == 25 and Reject.model_validate_json(lines[0]).reason == "image_missing"
    assert "rejected: image_missing" in result.output
    ok = CliRunner().invoke(
        cli,
        [
            "foundation",
            "--source",
            "visual_cot",
            "--root",
            str(shared_data / "visual_cot"),
            "--out",
            str(out),
            "--files",
            "cub_cot_train.head25.jsonl",
            "--limit",
            "3",
            "-o",
            "check_images=none",
        ],
    )
    assert ok.exit_code == 0, ok.output
    assert len(out.read_text().splitlines()) == 3


def test_foundation_bad_option_is_a_config_error(shared_data: Path, tmp_path: Path) -> None:
    import pytest

    from mmat.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "foundation",
                "--source",
                "tabmwp",
                "--root",
                str(shared_data / "tabmwp"),
                "--out",
                str(tmp_path / "o.jsonl"),
                "-o",
                "bogus",
            ]
        )
    assert exit_info.value.code == 2
