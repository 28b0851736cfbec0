"""The dataset card: provenance, statistics (report or computed), licences and the NC warning."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from mmat.cli import cli
from mmat.export.card import NON_COMMERCIAL_HEADING, render_card, write_card
from mmat.export.example_build import write_example_build
from mmat.export.stats import collect_stats


def test_card_with_non_commercial_source_warns_prominently(tmp_path: Path) -> None:
    build = write_example_build(tmp_path / "b", samples=6, rejects=3)
    card = render_card(build)
    head, _, body = card.partition("\n---\n")
    assert head.startswith("---\n") and "license: other" in head and "- non-commercial" in head
    # the warning comes before any other section
    warning_at = body.index(NON_COMMERCIAL_HEADING)
    assert warning_at < body.index("## How it was built")
    assert "> [!WARNING]" in body
    assert (
        "2 of 6 samples come from sources licensed for non-commercial use only: tabmwp (CC BY-NC-SA 4.0)"
        in body
    )
    assert "| tabmwp | CC BY-NC-SA 4.0 | 2 | **NO (non-commercial)** |" in body
    assert "| visual_cot | Apache-2.0 | 2 | yes |" in body


def test_card_without_non_commercial_source_has_no_warning(tmp_path: Path) -> None:
    build = write_example_build(tmp_path / "b", samples=1, rejects=0)
    card = render_card(build)
    assert NON_COMMERCIAL_HEADING not in card and "[!WARNING]" not in card
    assert "license: apache-2.0" in card


def test_card_shows_provenance_and_computed_statistics(tmp_path: Path) -> None:
    build = write_example_build(tmp_path / "b", samples=6, rejects=3)
    card = render_card(build)
    assert "| openai/example-teacher | 6 |" in card
    assert "| rationale | sha256:1111111111111111 | 6 |" in card
    assert "| label_bbox | owlv2-1 | 6 |" in card
    assert "Computed from the stored records" in card
    stats = collect_stats(build)
    assert stats.accepted == 6 and stats.rejected == 3
    assert f"| face_detection | {stats.operator_calls['face_detection']} | 6 |" in card
    assert "| reasoning_cheating | 1 |" in card
    assert sum(stats.steps_histogram.values()) == stats.qas


def test_card_uses_report_json_when_present(tmp_path: Path) -> None:
    build = write_example_build(tmp_path / "b", samples=3, rejects=0)
    (build / "report.json").write_text(json.dumps({"dialogues": 3, "operator_calls": {"ocr": 7}}))
    card = render_card(build)
    assert "From the build's statistics report (`report.json`)" in card
    assert "| dialogues | 3 |" in card and "| ocr | 7 |" in card


def test_card_cli_writes_readme(tmp_path: Path) -> None:
    build = write_example_build(tmp_path / "b", samples=3, rejects=1)
    result = CliRunner().invoke(cli, ["card", str(build), "--title", "My MMAT data"])
    assert result.exit_code == 0, result.output
    text = (build / "README.md").read_text()
    assert "# My MMAT data" in text and NON_COMMERCIAL_HEADING in text
    assert write_card(build, tmp_path / "elsewhere" / "README.md").is_file()


def test_card_embeds_report_md_under_statistics_and_flags_plumbing_teachers(tmp_path: Path) -> None:
    from mmat.export.example_build import example_sample
    from mmat.store import shard_file

    build = tmp_path / "b"
    sample = example_sample(0, build / "img")
    sample.trajectory.provenance = sample.trajectory.provenance.model_copy(
        update={"teacher_grade": "plumbing"}
    )  # type: ignore[union-attr]
    path = shard_file(build, "accepted", 0)
    path.parent.mkdir(parents=True)
    path.write_text(sample.model_dump_json() + "\n")
    (build / "report.md").write_text("# mmat build report\n\n## Reflection\n\n| general |\n|---|\n| 0 |\n")
    card = render_card(build)
    assert "### mmat build report" in card and "#### Reflection" in card
    assert "\n# mmat build report" not in card
    assert card.index("## Statistics") < card.index("### mmat build report")
    assert "> [!CAUTION]" in card and "1 sample(s) were written by a plumbing-grade teacher" in card


def test_card_points_hf_configs_at_the_parquet_export(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from mmat.export.run import run_export

    build = write_example_build(tmp_path / "b", samples=3, rejects=0)
    run_export(build, "parquet")
    monkeypatch.chdir(tmp_path)
    path = write_card("b")  # a relative OUT_DIR, card beside it
    text = path.read_text()
    assert "  - split: train\n    path: exports/parquet/data/train-*.parquet" in text
