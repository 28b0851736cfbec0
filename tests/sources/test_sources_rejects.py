"""Each kind of bad input becomes a Reject with its reason and location; the run goes on."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from PIL import Image

from mmat.config import SourceConfig
from mmat.errors import ConfigError, ImageError, UnknownPluginError
from mmat.schema import ImageRef, Reject, Sample
from mmat.sources import check_images, check_images_or_reject, load

PROBLEM = {
    "question": "How many?",
    "choices": None,
    "answer": "3",
    "unit": None,
    "table_title": "T",
    "table": "a | 1",
    "table_for_pd": {},
    "solution": "s",
    "ques_type": "free_text",
    "ans_type": "integer_number",
    "grade": 3,
    "split": "train",
}


def tabmwp_root(
    tmp_path: Path, problems: dict[str, dict[str, object]], *, images: tuple[str, ...] = ()
) -> Path:
    (tmp_path / "tables").mkdir(parents=True, exist_ok=True)
    for pid in images:
        Image.new("RGB", (4, 4)).save(tmp_path / "tables" / f"{pid}.png")
    (tmp_path / "problems_train.json").write_text(json.dumps(problems), encoding="utf-8")
    return tmp_path


def run(config: SourceConfig) -> tuple[list[Sample], list[Reject]]:
    records = list(load(config))
    return [r for r in records if isinstance(r, Sample)], [r for r in records if isinstance(r, Reject)]


def test_bad_json_line_is_rejected_and_the_run_goes_on(tmp_path: Path) -> None:
    good = {
        "question": "Q?",
        "answer": "Yes",
        "image": "a.jpg",
        "width": 4,
        "height": 4,
        "bboxs": [[0, 0, 1, 1]],
        "dataset": "vsr",
        "split": "train",
    }
    (tmp_path / "vsr_cot_train.jsonl").write_text(
        json.dumps(good) + "\n{not json\n" + json.dumps(good) + "\n", encoding="utf-8"
    )
    samples, rejects = run(
        SourceConfig(name="visual_cot", root=str(tmp_path), options={"check_images": "none"})
    )
    assert [s.id for s in samples] == ["visual_cot/vsr/train-1", "visual_cot/vsr/train-3"]
    (reject,) = rejects
    assert reject.reason == "bad_json" and reject.stage == "foundation" and reject.source == "visual_cot"
    assert reject.location == f"{tmp_path / 'vsr_cot_train.jsonl'}:2"


def test_missing_field(tmp_path: Path) -> None:
    problem = {k: v for k, v in PROBLEM.items() if k != "answer"}
    samples, rejects = run(
        SourceConfig(
            name="tabmwp", root=str(tabmwp_root(tmp_path, {"1": problem, "2": PROBLEM}, images=("1", "2")))
        )
    )
    assert [s.id for s in samples] == ["tabmwp/train/2"]
    assert rejects[0].reason == "missing_field" and "'answer'" in rejects[0].detail
    assert rejects[0].id == "tabmwp/train/1"
    assert rejects[0].location and rejects[0].location.startswith(f"{tmp_path / 'problems_train.json'}@")


def test_unknown_answer_type(tmp_path: Path) -> None:
    problem = dict(PROBLEM, ans_type="roman_numeral")
    _, rejects = run(
        SourceConfig(name="tabmwp", root=str(tabmwp_root(tmp_path, {"1": problem}, images=("1",))))
    )
    assert rejects[0].reason == "unknown_answer_type" and "'roman_numeral'" in rejects[0].detail


def test_missing_image(tmp_path: Path) -> None:
    samples, rejects = run(
        SourceConfig(
            name="tabmwp", root=str(tabmwp_root(tmp_path, {"1": PROBLEM, "2": PROBLEM}, images=("2",)))
        )
    )
    assert [s.id for s in samples] == ["tabmwp/train/2"]
    assert rejects[0].reason == "image_missing" and "tables/1.png" in rejects[0].detail


@pytest.mark.parametrize("path", ["../outside.jpg", "/etc/passwd", "cot/../../x.jpg", "C:\\Windows\\x.jpg"])
def test_image_path_escaping_root_is_refused(tmp_path: Path, path: str) -> None:
    row = {
        "question": "Q?",
        "answer": "No",
        "image": path,
        "width": 4,
        "height": 4,
        "bboxs": [],
        "dataset": "vsr",
    }
    (tmp_path / "x_cot_train.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")
    _, rejects = run(
        SourceConfig(
            name="visual_cot",
            root=str(tmp_path),
            options={"check_images": "none", "image_template": "{image}"},
        )
    )
    assert rejects[0].reason == "image_outside_root"


def test_symlink_out_of_root_is_refused_by_the_lazy_check(tmp_path: Path) -> None:
    outside = tmp_path / "outside.png"
    Image.new("RGB", (4, 4)).save(outside)
    root = tabmwp_root(tmp_path / "root", {"1": PROBLEM})
    os.symlink(outside, root / "tables" / "1.png")
    (sample,), _ = run(SourceConfig(name="tabmwp", root=str(root)))
    reject = check_images_or_reject(sample)
    assert (
        isinstance(reject, Reject) and reject.reason == "image_outside_root" and reject.id == "tabmwp/train/1"
    )


def test_bad_image_rejects_only_its_sample(tmp_path: Path) -> None:
    root = tabmwp_root(tmp_path, {"1": PROBLEM, "2": PROBLEM}, images=("2",))
    (root / "tables" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    samples, rejects = run(SourceConfig(name="tabmwp", root=str(root)))
    assert len(samples) == 2 and not rejects  # the loader only checks that the file is there
    checked = [check_images_or_reject(s) for s in samples]
    assert isinstance(checked[0], Reject) and checked[0].reason == "image_undecodable"
    assert isinstance(checked[1], Sample) and checked[1].images[0].width == 4
    with pytest.raises(ImageError, match="cannot be decoded"):
        check_images(samples[0])


def test_decompression_bomb_guard(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.new("1", (4000, 4000)).save(buffer, format="PNG")  # tiny file, 16 M pixels
    (tmp_path / "big.png").write_bytes(buffer.getvalue())
    sample = Sample(
        id="x/y/z",
        source="x",
        license="l",
        images=[ImageRef(path="big.png", root=str(tmp_path))],
        qas=[{"qa_id": "0", "question": "q", "templated_question": "q", "answer": "a"}],
    )
    reject = check_images_or_reject(sample, max_pixels=1_000_000)
    assert isinstance(reject, Reject) and reject.reason == "image_too_large" and "4000x4000" in reject.detail
    assert isinstance(check_images_or_reject(sample), Sample)


def test_broken_json_document_rejects_the_rest_and_says_where(tmp_path: Path) -> None:
    root = tabmwp_root(tmp_path, {}, images=("1",))
    text = json.dumps({"1": PROBLEM, "2": PROBLEM})
    (root / "problems_train.json").write_text(text[: text.index('"2"') + 10] + "}}", encoding="utf-8")
    samples, rejects = run(SourceConfig(name="tabmwp", root=str(root)))
    assert [s.id for s in samples] == ["tabmwp/train/1"]
    assert rejects[0].reason == "bad_json" and "1 members before it were read" in rejects[0].detail


def test_bad_options_and_unknown_source_fail_before_reading() -> None:
    with pytest.raises(ConfigError, match=r"bad options .*nonsense.*valid options: .*check_images"):
        load(SourceConfig(name="tabmwp", root=".", options={"nonsense": 1}))
    with pytest.raises(UnknownPluginError, match=r"valid names: .*tabmwp"):
        load(SourceConfig(name="tabmwpp", root="."))
    with pytest.raises(ConfigError, match="is not a directory"):
        load(SourceConfig(name="tabmwp", root="/no/such/dir"))


def test_no_matching_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no files match \['problems_\*.json'\]"):
        list(load(SourceConfig(name="tabmwp", root=str(tmp_path))))
