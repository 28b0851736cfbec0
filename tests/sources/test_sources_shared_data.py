"""Every file of ../shared/data that is a Foundation source, read by its loader; real values asserted."""

from __future__ import annotations

import json
from pathlib import Path

from mmat.config import SourceConfig
from mmat.schema import AnswerType, Reject, Sample
from mmat.sources import check_images, check_images_or_reject, load


def _samples(config: SourceConfig) -> list[Sample]:
    records = list(load(config))
    rejects = [r for r in records if isinstance(r, Reject)]
    assert not rejects, rejects[:3]
    return [r for r in records if isinstance(r, Sample)]


def test_visual_cot_raw_files(shared_data: Path) -> None:
    root = shared_data / "visual_cot"
    for subset in ("cub", "sroie", "vsr", "dude"):
        config = SourceConfig(
            name="visual_cot",
            root=str(root),
            files=[f"{subset}_cot_train.head25.jsonl"],
            options={"check_images": "none"},
        )
        samples = _samples(config)
        raw = [json.loads(line) for line in (root / f"{subset}_cot_train.head25.jsonl").open()]
        assert len(samples) == len(raw) == 25
        for number, (sample, row) in enumerate(zip(samples, raw, strict=True), start=1):
            assert sample.id == f"visual_cot/{subset}/train-{number}"
            assert sample.subset == subset and sample.split == "train" and sample.license == "Apache-2.0"
            qa = sample.qas[0]
            assert qa.answer == row["answer"]  # gold never changed
            assert qa.question == row["question"]
            assert qa.metadata["bboxes"] == [[float(v) for v in box] for box in row["bboxs"]]
            assert sample.images[0].path == f"cot/{subset}/{row['image']}"
            assert sample.images[0].root == str(root)
            assert (sample.images[0].width, sample.images[0].height) == (row["width"], row["height"])

    cub = _samples(
        SourceConfig(name="visual_cot", root=str(root), files=["cub_*"], options={"check_images": "none"})
    )
    first = cub[0].qas[0]
    assert first.answer == "Yes" and first.answer_type is AnswerType.YES_NO
    assert first.templated_question == (
        "Does the bird in the picture have grey forehead and grey throat?\nAnswer the question with yes or no."
    )
    assert first.metadata["bboxes"] == [[139.0, 30.0, 292.0, 294.0]]


def test_visual_cot_out_of_image_boxes_are_kept_and_flagged(shared_data: Path) -> None:
    config = SourceConfig(
        name="visual_cot",
        root=str(shared_data / "visual_cot"),
        files=["dude_cot_train.head25.jsonl"],
        options={"check_images": "none"},
    )
    samples = {s.id: s for s in _samples(config)}
    line9 = samples["visual_cot/dude/train-9"].qas[0]
    assert line9.answer == "SGT.JOHN CRUDO#1694"
    assert line9.metadata["bboxes"] == [[1299.0, 1036.0, 2252.0, 1221.0]]  # x2 > width 1700: kept
    assert line9.metadata["bboxes_out_of_image"] is True
    assert line9.metadata["bboxes_clipped"] == [[1299.0, 1036.0, 1700.0, 1221.0]]
    assert samples["visual_cot/dude/train-18"].qas[0].metadata["bboxes_out_of_image"] is True
    flagged = [s.id for s in samples.values() if s.qas[0].metadata["bboxes_out_of_image"]]
    assert sorted(flagged) == ["visual_cot/dude/train-18", "visual_cot/dude/train-9"]
    # Real answers with no mojibake stay byte-identical.
    assert samples["visual_cot/dude/train-16"].qas[0].answer == "5000'"
    assert "answer_original" not in samples["visual_cot/dude/train-16"].qas[0].metadata


def test_visual_cot_llava_layout(shared_data: Path) -> None:
    config = SourceConfig(
        name="visual_cot",
        root=str(shared_data / "visual_cot"),
        files=["benchmark_sroie.head10.json"],
        options={"check_images": "none"},
    )
    samples = _samples(config)
    assert len(samples) == 10
    first = samples[0]
    assert first.id == "visual_cot/sroie/val-q0"
    assert first.images[0].path == "cot/sroie/X51005675104.jpg"
    qa = first.qas[0]
    assert qa.question == "What is the company in the invoice shown in the picture?"
    assert qa.answer == "SYARIKAT PERNIAGAAN GIN KEE"
    assert qa.metadata["bboxes"] == [[86.0, 208.0, 840.0, 257.0]]
    assert qa.metadata["bbox_normalized"] == [0.297, 0.111, 0.7, 0.137]
    assert samples[3].qas[0].answer == "15/01/2019"


def test_tabmwp_dev_sample(shared_data: Path) -> None:
    root = shared_data / "tabmwp"
    samples = _samples(SourceConfig(name="tabmwp", root=str(root)))
    raw = json.loads((root / "problems_dev_sample.json").read_text())
    assert [s.id for s in samples] == [f"tabmwp/dev/{pid}" for pid in raw]
    by_pid = {s.id.rsplit("/", 1)[1]: s for s in samples}
    for pid, problem in raw.items():
        sample = by_pid[pid]
        qa = sample.qas[0]
        assert qa.answer == problem["answer"]
        assert qa.choices == (problem["choices"] or [])
        assert qa.unit == problem["unit"]
        assert qa.metadata["ques_type"] == problem["ques_type"]
        assert qa.metadata["ans_type"] == problem["ans_type"]
        assert qa.metadata["table_title"] == problem["table_title"]
        assert sample.images[0].path == f"tables/{pid}.png"
        assert sample.license == "CC-BY-NC-SA-4.0" and sample.non_commercial is True

    money = by_pid["22084"].qas[0]
    assert money.answer == "8.80" and money.unit == "$" and money.answer_type is AnswerType.NUMBER
    assert money.templated_question.endswith("Answer the question with a number; the unit is $.")

    choice = by_pid["31531"].qas[0]
    assert choice.answer == "Douglas Elementary"
    assert choice.choices == [
        "Eastside Elementary",
        "Douglas Elementary",
        "West Elementary",
        "North River Elementary",
    ]
    assert choice.metadata["answer_option_letter"] == "B"
    assert choice.metadata["table_title"] == "Elementary school attendance"
    assert (
        "Options:\nA. Eastside Elementary\nB. Douglas Elementary\nC. West Elementary\nD. North River Elementary"
        in (choice.templated_question)
    )

    yes_no = by_pid["10536"].qas[0]
    assert yes_no.answer == "no" and yes_no.answer_type is AnswerType.YES_NO

    # The real table images decode under the lazy check.
    checked = check_images(by_pid["22084"])
    assert checked.images[0].width and checked.images[0].height and len(checked.images[0].sha256 or "") == 64


def test_dynvqa_files_through_the_generic_loader(shared_data: Path) -> None:
    """Dyn-VQA is an evaluation set (eval/ reads it); the generic loader maps it as image-QA data too."""
    root = shared_data / "dynvqa"
    for name, count in (
        ("DynVQA_en.202406.head60.jsonl", 60),
        ("DynVQA_zh.202406.head30.jsonl", 30),
        ("DynVQA_en.202502.head20.jsonl", 20),
    ):
        config = SourceConfig(
            name="generic",
            root=str(root),
            files=[name],
            options={
                "fields": {"id": "question_id", "image": "image_url"},
                "subset": "dynvqa",
                "license": "see Alibaba-NLP/OmniSearch",
            },
        )
        samples = _samples(config)
        raw = [json.loads(line) for line in (root / name).open(encoding="utf-8")]
        assert len(samples) == len(raw) == count
        for sample, row in zip(samples, raw, strict=True):
            assert sample.id == f"generic/dynvqa/{row['question_id']}"
            # some answers are JSON numbers (e.g. 0); aliases are kept as text
            assert sample.qas[0].answer == str(row["answer"][0])
            assert sample.qas[0].aliases == [str(a) for a in row["answer"][1:]]
            assert sample.images[0].path == row["image_url"] and sample.images[0].is_url
    first = _samples(
        SourceConfig(
            name="generic",
            root=str(root),
            files=["DynVQA_en.202406.head60.jsonl"],
            limit=1,
            options={"fields": {"id": "question_id", "image": "image_url"}, "subset": "dynvqa"},
        )
    )[0]
    assert first.qas[0].answer == "莱昂纳多·迪卡普里奥没有任何孩子。"
    assert first.qas[0].aliases == ["Leonardo DiCaprio does not have any children."]
    rejected = check_images_or_reject(first)
    assert isinstance(rejected, Reject) and rejected.reason == "image_is_url"
