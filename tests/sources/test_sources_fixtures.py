"""LLaVA-CoT, The Cauldron, InfoSeek and generic data on fixtures built here, following the published schemas."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from mmat.config import SourceConfig
from mmat.schema import AnswerType, NumericRange, Reject, Sample
from mmat.sources import check_images, load


def png(color: str, size: tuple[int, int] = (8, 6)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def write_image(path: Path, color: str = "white") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png(color))


def jsonl(path: Path, rows: list[object]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def split(records: list[Sample | Reject]) -> tuple[list[Sample], list[Reject]]:
    return [r for r in records if isinstance(r, Sample)], [r for r in records if isinstance(r, Reject)]


# --------------------------------------------------------------------------------------------------
# LLaVA-CoT

GPT_1 = (
    "<SUMMARY> I will read the chart and compare the bars. </SUMMARY>\n\n"
    "<CAPTION> A bar chart of sales per year. </CAPTION>\n\n"
    "<REASONING> The 2019 bar is the tallest at 35. </REASONING>\n\n"
    "<CONCLUSION> 35 </CONCLUSION>"
)
GPT_2 = "<SUMMARY> s </SUMMARY><CAPTION> c </CAPTION><REASONING> r </REASONING><CONCLUSION> B </CONCLUSION>"


def test_llava_cot_every_pair_is_a_qa(tmp_path: Path) -> None:
    write_image(tmp_path / "chartqa/train/png/two_col_1.png")
    jsonl(
        tmp_path / "train.jsonl",
        [
            {
                "id": "two_col_1",
                "image": "chartqa/train/png/two_col_1.png",
                "conversations": [
                    {"from": "human", "value": "<image>\nWhat is the highest value?"},
                    {"from": "gpt", "value": GPT_1},
                    {"from": "human", "value": "Which bar is tallest?\nOptions: A. 2018 B. 2019"},
                    {"from": "gpt", "value": GPT_2},
                ],
            }
        ],
    )
    samples, rejects = split(list(load(SourceConfig(name="llava_cot", root=str(tmp_path)))))
    assert not rejects
    (sample,) = samples
    assert sample.id == "llava_cot/chartqa/two_col_1" and sample.subset == "chartqa"
    assert sample.license == "Apache-2.0"
    assert [qa.answer for qa in sample.qas] == ["35", "B"]
    assert [qa.qa_id for qa in sample.qas] == ["0", "1"]
    first = sample.qas[0]
    assert first.question == "What is the highest value?"  # <image> placeholder dropped
    assert first.metadata == {
        "summary": "I will read the chart and compare the bars.",
        "caption": "A bar chart of sales per year.",
        "reasoning": "The 2019 bar is the tallest at 35.",
    }
    assert first.answer_type is AnswerType.NUMBER
    assert first.templated_question == "What is the highest value?\nAnswer the question with a number."


def test_llava_cot_missing_conclusion_is_rejected(tmp_path: Path) -> None:
    write_image(tmp_path / "coco/a.jpg")
    jsonl(
        tmp_path / "train.jsonl",
        [
            {
                "id": "x1",
                "image": "coco/a.jpg",
                "conversations": [
                    {"from": "human", "value": "Q?"},
                    {"from": "gpt", "value": "<SUMMARY>s</SUMMARY>"},
                ],
            }
        ],
    )
    (reject,) = list(load(SourceConfig(name="llava_cot", root=str(tmp_path))))
    assert isinstance(reject, Reject)
    assert reject.reason == "missing_conclusion" and reject.id == "llava_cot/coco/x1"
    assert reject.location == f"{tmp_path / 'train.jsonl'}:1" and reject.stage == "foundation"


# --------------------------------------------------------------------------------------------------
# The Cauldron


def write_cauldron(path: Path, rows: list[dict[str, object]]) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    schema = pa.schema(
        [
            ("images", pa.list_(pa.struct([("bytes", pa.binary()), ("path", pa.string())]))),
            (
                "texts",
                pa.list_(
                    pa.struct([("user", pa.string()), ("assistant", pa.string()), ("source", pa.string())])
                ),
            ),
        ]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


def test_cauldron_images_go_once_to_a_content_addressed_store(tmp_path: Path) -> None:
    red, blue = png("red"), png("blue")
    write_cauldron(
        tmp_path / "data/iconqa/train-00000-of-00001.parquet",
        [
            {
                "images": [{"bytes": red, "path": None}],
                "texts": [
                    {"user": "How many shapes?\nAnswer briefly.", "assistant": "3", "source": "iconqa"},
                    {"user": "What color is it?", "assistant": "Red", "source": "iconqa"},
                ],
            },
            {
                "images": [{"bytes": red, "path": None}, {"bytes": blue, "path": None}],
                "texts": [{"user": "Same picture twice?", "assistant": "No", "source": "iconqa"}],
            },
        ],
    )
    write_cauldron(
        tmp_path / "data/screen2words/train-00000-of-00001.parquet",
        [
            {
                "images": [{"bytes": blue, "path": None}],
                "texts": [
                    {"user": "Summarize the screen.", "assistant": "a login page", "source": "screen2words"}
                ],
            }
        ],
    )
    store = tmp_path / "store"
    config = SourceConfig(name="cauldron", root=str(tmp_path / "data"), options={"image_store": str(store)})
    samples, rejects = split(list(load(config)))
    assert not rejects
    assert [s.id for s in samples] == [
        "cauldron/iconqa/train-00000-of-00001-0",
        "cauldron/iconqa/train-00000-of-00001-1",
        "cauldron/screen2words/train-00000-of-00001-0",
    ]
    first = samples[0]
    assert [qa.answer for qa in first.qas] == ["3", "Red"]
    assert first.qas[0].style_suffix == ""  # the prompt already says how to answer
    red_sha = hashlib.sha256(red).hexdigest()
    assert first.images[0].sha256 == red_sha
    assert first.images[0].path == f"{red_sha[:2]}/{red_sha}.png" and first.images[0].root == str(store)
    # the red image appears twice, the blue one twice: two files in the store
    assert sorted(p.name for p in store.rglob("*.png")) == sorted(
        [f"{red_sha}.png", f"{hashlib.sha256(blue).hexdigest()}.png"]
    )
    assert (store / first.images[0].path).read_bytes() == red
    assert samples[0].non_commercial is True  # iconqa is CC BY-NC-SA
    assert samples[2].non_commercial is False and samples[2].license == "CC-BY-4.0"
    assert "bytes" not in samples[0].model_dump_json()
    assert check_images(samples[1]).images[1].width == 8


# --------------------------------------------------------------------------------------------------
# InfoSeek


def test_infoseek_aliases_ranges_and_oven_paths(tmp_path: Path) -> None:
    write_image(tmp_path / "oven_images/05/oven_05050169.jpg")
    write_image(tmp_path / "oven_images/00/oven_00001234.jpg")
    jsonl(
        tmp_path / "infoseek_val.jsonl",
        [
            {
                "data_id": "infoseek_val_00000000",
                "image_id": "oven_05050169",
                "question": "which place is this building located in?",
                "answer": ["Fresno County", "Fresno"],
                "answer_eval": ["Fresno County", "Fresno", "County of Fresno"],
                "data_split": "val_unseen_question",
            },
            {
                "data_id": "infoseek_val_00000001",
                "image_id": "oven_00001234",
                "question": "In which year was this building constructed?",
                "answer": ["1890"],
                "answer_eval": [{"wikidata": 1890, "range": [1889, 1891]}],
                "data_split": "val_unseen_question",
            },
        ],
    )
    samples, rejects = split(list(load(SourceConfig(name="infoseek", root=str(tmp_path)))))
    assert not rejects
    place, year = samples
    assert place.id == "infoseek/val_unseen_question/infoseek_val_00000000"
    assert place.images[0].path == "oven_images/05/oven_05050169.jpg"
    assert place.qas[0].answer == "Fresno County"
    assert place.qas[0].aliases == ["Fresno", "County of Fresno"]
    assert year.qas[0].answer == "1890"
    assert year.qas[0].answer_ranges == [NumericRange(lo=1889, hi=1891)]
    assert year.qas[0].answer_type is AnswerType.NUMBER


def test_infoseek_image_root_and_mapping_file(tmp_path: Path) -> None:
    write_image(tmp_path / "images/custom/a.jpg")
    (tmp_path / "id2path.tsv").write_text("image_id\tpath\noven_05050169\tcustom/a.jpg\n", encoding="utf-8")
    jsonl(
        tmp_path / "infoseek_train.jsonl",
        [
            {
                "data_id": "d1",
                "image_id": "oven_05050169",
                "question": "what is this?",
                "answer": ["x"],
                "answer_eval": ["x"],
                "data_split": "train",
            },
            {
                "data_id": "d2",
                "image_id": "oven_09999999",
                "question": "what is this?",
                "answer": ["y"],
                "answer_eval": ["y"],
                "data_split": "train",
            },
        ],
    )
    config = SourceConfig(
        name="infoseek", root=str(tmp_path), options={"image_root": "images", "image_map": "id2path.tsv"}
    )
    (sample, reject) = list(load(config))
    assert isinstance(sample, Sample) and sample.images[0].path == "custom/a.jpg"
    assert sample.images[0].root == str(tmp_path / "images")
    assert (
        isinstance(reject, Reject)
        and reject.reason == "image_missing"
        and "not in the image_map" in reject.detail
    )


# --------------------------------------------------------------------------------------------------
# Generic


def test_generic_jsonl_with_field_mapping(tmp_path: Path) -> None:
    write_image(tmp_path / "imgs/1.png")
    jsonl(
        tmp_path / "mine.jsonl",
        [
            {
                "meta": {"qid": 7},
                "prompt": "Which animal?",
                "label": ["cat", "kitty"],
                "img": "imgs/1.png",
                "kind": "sw",
            }
        ],
    )
    config = SourceConfig(
        name="generic",
        root=str(tmp_path),
        options={
            "fields": {
                "id": "meta.qid",
                "question": "prompt",
                "answer": "label",
                "image": "img",
                "answer_type": "kind",
            },
            "answer_types": {"sw": "single_word"},
            "subset": "pets",
            "license": "CC-BY-4.0",
        },
    )
    (sample,) = list(load(config))
    assert isinstance(sample, Sample)
    assert sample.id == "generic/pets/7" and sample.license == "CC-BY-4.0"
    assert sample.qas[0].answer == "cat" and sample.qas[0].aliases == ["kitty"]
    assert sample.qas[0].answer_type is AnswerType.SINGLE_WORD


def test_generic_parquet_with_image_bytes(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.Table.from_pylist(
        [
            {
                "id": "r0",
                "question": "Color?",
                "answer": "green",
                "image": {"bytes": png("green"), "path": "g.png"},
            }
        ]
    )
    pq.write_table(table, tmp_path / "train.parquet")
    (sample,) = list(load(SourceConfig(name="generic", root=str(tmp_path))))
    assert isinstance(sample, Sample)
    assert sample.id == "generic/train/r0" and sample.qas[0].answer == "green"
    assert sample.images[0].root == str(tmp_path / "mmat_images")
    assert (tmp_path / "mmat_images" / sample.images[0].path).read_bytes() == png("green")


def test_generic_hf_datasets_folder(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    data = datasets.Dataset.from_dict(
        {
            "question": ["What is shown?", "How many?"],
            "answer": ["a square", "2"],
            "image": [Image.new("RGB", (5, 5)), Image.new("RGB", (6, 6), "red")],
        }
    ).cast_column("image", datasets.Image())
    datasets.DatasetDict({"train": data, "test": data.select([1])}).save_to_disk(str(tmp_path / "hf"))
    samples, rejects = split(
        list(load(SourceConfig(name="generic", root=str(tmp_path / "hf"), options={"subset": "toy"})))
    )
    assert not rejects
    assert [(s.split, s.qas[0].answer) for s in samples] == [
        ("train", "a square"),
        ("train", "2"),
        ("test", "2"),
    ]
    assert samples[1].qas[0].answer_type is AnswerType.NUMBER
    assert len({s.id for s in samples}) == 3
    assert samples[2].id == "generic/toy/test-data-00000-of-00001-0"
    assert check_images(samples[1]).images[0].width == 6


def test_generic_json_object_keyed_by_id(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png")
    (tmp_path / "qa.json").write_text(
        json.dumps({"k1": {"question": "Is it white?", "answer": "yes", "image": "a.png"}}), encoding="utf-8"
    )
    config = SourceConfig(name="generic", root=str(tmp_path), files=["qa.json"], options={"subset": "s"})
    (sample,) = list(load(config))
    assert isinstance(sample, Sample)
    assert sample.id == "generic/s/k1" and sample.qas[0].answer_type is AnswerType.YES_NO


def test_image_store_names_by_content(tmp_path: Path) -> None:
    from mmat.sources.image_store import ImageStore, image_extension

    assert image_extension(png("red")) == "png"
    buffer = io.BytesIO()
    Image.new("RGB", (3, 3)).save(buffer, format="JPEG")
    assert image_extension(buffer.getvalue()) == "jpg"
    assert image_extension(b"not an image") == "img"
    store = ImageStore(tmp_path / "s")
    first, again = store.put(png("red")), store.put(png("red"))
    assert first == again and (store.written, store.reused) == (1, 1)
    assert not list((tmp_path / "s").rglob("*.part"))
