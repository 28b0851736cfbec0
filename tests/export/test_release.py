"""MMAT-1M release layout: detection of key layouts and byte-exact import/export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmat.errors import RecordError
from mmat.export.release import ReleaseExporter, read_release, sample_to_row, write_release
from mmat.schema import Sample

RELEASE = Path(__file__).resolve().parents[1] / "fixtures" / "release"


@pytest.mark.parametrize("name", ["dataset_qa_rr_val_all_RR_sys.jsonl", "dataset_qa_rr_val_all_ORR.jsonl"])
def test_import_then_export_is_byte_exact(name: str, tmp_path: Path) -> None:
    source = RELEASE / name
    samples = [s for s in read_release(source)]
    assert all(isinstance(s, Sample) for s in samples)
    kind = "orr" if name.endswith("ORR.jsonl") else "rr"
    out = tmp_path / name
    write_release([s for s in samples if isinstance(s, Sample)], out, kind)
    assert out.read_bytes() == source.read_bytes()


def test_layouts_are_detected() -> None:
    first, second, third = [s for s in read_release(RELEASE / "dataset_qa_rr_val_all_RR_sys.jsonl")]
    assert isinstance(first, Sample) and isinstance(second, Sample) and isinstance(third, Sample)
    assert first.metadata["release"]["layout"]["messages_key"] == "messages"
    assert second.metadata["release"]["layout"]["role_key"] == "from"
    assert second.metadata["release"]["layout"]["role_names"]["assistant"] == "gpt"
    assert second.metadata["release"]["layout"]["images_as_list"] is False
    assert [i.path for i in third.images] == ["a.jpg", "b.jpg"]
    assert first.id == "tabmwp_22084" and second.id == "7"
    assert first.trajectory is not None and len(first.trajectory.segments) == 2
    assert [qa.answer for qa in first.qas] == ["8.80", "yes"]
    assert first.qas[0].question == "How much did she spend?"
    assert first.qas[0].templated_question == "How much did she spend? Answer with a number."


def test_orr_rows_are_parsed() -> None:
    first, second = [s for s in read_release(RELEASE / "dataset_qa_rr_val_all_ORR.jsonl")]
    assert isinstance(first, Sample) and first.orr is not None
    segment = first.orr.segments[0]
    assert segment.answer == "8.80" and segment.thought == "2 x 4.4 = 8.8"
    assert [b.tool for b in segment.api_blocks] == ["ocr"]
    assert isinstance(second, Sample) and second.orr is not None and second.orr.system == ""


def test_bad_rows_become_errors_not_crashes(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    good = (RELEASE / "dataset_qa_rr_val_all_ORR.jsonl").read_text().splitlines()[0]
    path.write_text(
        "\n".join(
            [
                "{not json",
                json.dumps({"rows": []}),
                json.dumps({"messages": [{"role": "wizard", "content": "x"}]}),
                json.dumps(
                    {
                        "messages": [
                            {"role": "user", "content": "Q? Please start your reasoning."},
                            {"role": "assistant", "content": "no tags"},
                        ]
                    }
                ),
                good,
            ]
        )
    )
    items = list(read_release(path))
    errors = [i for i in items if isinstance(i, RecordError)]
    assert [e.reason for e in errors] == ["bad_json", "missing_field", "bad_role", "bad_wire_format"]
    assert "bad.jsonl:1" in str(errors[0])
    assert "looked for messages, conversations" in str(errors[1])
    assert "must start with <THOUGHT>" in str(errors[3])
    assert isinstance(items[-1], Sample)


def test_exporter_writes_release_files(tmp_path: Path) -> None:
    samples = [
        s for s in read_release(RELEASE / "dataset_qa_rr_val_all_RR_sys.jsonl") if isinstance(s, Sample)
    ]
    written = ReleaseExporter().export(samples, tmp_path)
    assert [p.name for p in written] == ["dataset_qa_rr_train_all_RR_sys.jsonl"]
    assert len(written[0].read_text().splitlines()) == 3


def test_export_without_trajectory_names_the_fix() -> None:
    sample = next(
        s for s in read_release(RELEASE / "dataset_qa_rr_val_all_ORR.jsonl") if isinstance(s, Sample)
    )
    with pytest.raises(RecordError, match="no RR trajectory"):
        sample_to_row(sample, "rr")
