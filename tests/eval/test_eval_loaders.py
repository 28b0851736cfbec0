"""VLMEvalKit TSV loading: inline base64 images, row references, image lists, paths, and errors."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
from pathlib import Path

import pytest
from PIL import Image

from mmat.errors import ConfigError, ImageError, RecordError
from mmat.eval.benchmarks import get_benchmark, load_items, mcq_prompt
from mmat.images import resolve_image


def png_bytes(color: str, size: tuple[int, int] = (8, 6)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def write_tsv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_mcq_tsv_with_inline_images_and_references(tmp_path: Path) -> None:
    red, blue = png_bytes("red"), png_bytes("blue")
    tsv = write_tsv(
        tmp_path / "MMStar.tsv",
        ["index", "question", "A", "B", "C", "D", "answer", "category", "l2-category", "hint", "image"],
        [
            ["0", "What colour?", "red", "blue", "", "", "A", "perception", "colour", "", b64(red)],
            # VLMEvalKit writes a repeated image as the index of the row that holds it
            ["1", "Is it warm?", "yes", "no", "maybe", "", "a", "reasoning", "temp", "Think.", "0"],
            ["2", "Which?", "x", "y", "z", "w", "D", "perception", "colour", "", b64(blue)],
        ],
    )
    items = load_items(get_benchmark("mmstar"), tsv, cache_dir=tmp_path / "cache")
    assert [i.index for i in items] == ["0", "1", "2"]
    assert items[0].choices == {"A": "red", "B": "blue"}
    assert items[1].answer == "A" and items[1].choices == {"A": "yes", "B": "no", "C": "maybe"}
    assert items[0].category == "perception" and items[0].l2_category == "colour"
    # the image is decoded once, content-addressed, and shared by the referring row
    digest = hashlib.sha256(red).hexdigest()
    ref = items[0].images[0]
    assert (ref.path, ref.root) == (f"{digest[:2]}/{digest}.png", str((tmp_path / "cache").resolve()))
    assert items[0].images[0].sha256 == digest
    assert items[1].images == items[0].images
    assert resolve_image(items[2].images[0]).read_bytes() == blue
    # VLMEvalKit's prompt plus the MMAT style suffix
    assert items[1].prompt == (
        "Hint: Think.\nQuestion: Is it warm?\nOptions:\nA. yes\nB. no\nC. maybe\n"
        "Please select the correct answer from the options above.\n"
        "Answer with the option's letter from the given choices directly."
    )
    plain = load_items(get_benchmark("MMStar"), tsv, cache_dir=tmp_path / "cache", prompt_style="vlmevalkit")
    assert plain[0].prompt == mcq_prompt("What colour?", {"A": "red", "B": "blue"})


def test_multi_image_list_and_image_path(tmp_path: Path) -> None:
    red, blue = png_bytes("red"), png_bytes("blue")
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(red)
    tsv = write_tsv(
        tmp_path / "MMMU_DEV_VAL.tsv",
        ["index", "question", "A", "B", "answer", "split", "image", "image_path"],
        [
            [
                "m1",
                "Compare <image 1> and <image 2>",
                "same",
                "different",
                "B",
                "dev",
                str([b64(red), b64(blue)]),
                "",
            ],
            ["m2", "What is 1+1?", "", "", "2", "validation", "", "imgs/a.png"],
        ],
    )
    items = load_items(get_benchmark("MMMU"), tsv, cache_dir=tmp_path / "cache")
    assert len(items[0].images) == 2 and items[0].split == "dev" and items[0].choices
    assert items[1].choices == {} and items[1].answers == ["2"]
    assert items[1].images[0].path == str((tmp_path / "imgs" / "a.png").resolve())
    assert items[1].prompt.endswith("Answer the question using a single word or phrase.")


def test_mathvista_and_ocrbench_columns(tmp_path: Path) -> None:
    img = b64(png_bytes("green"))
    tsv = write_tsv(
        tmp_path / "MathVista_MINI.tsv",
        [
            "index",
            "question",
            "answer",
            "choices",
            "question_type",
            "answer_type",
            "precision",
            "answer_option",
            "task",
            "skills",
            "image",
        ],
        [
            [
                "1",
                "Which?",
                "8/11",
                "['3/11', '8/11']",
                "multi_choice",
                "text",
                "",
                "B",
                "FQA",
                "['arithmetic']",
                img,
            ]
        ],
    )
    item = load_items(get_benchmark("MathVista"), tsv, cache_dir=tmp_path / "c")[0]
    assert item.choices == {"A": "3/11", "B": "8/11"}
    assert item.meta["answer_option"] == "B" and item.meta["skills"] == ["arithmetic"]
    ocr = write_tsv(
        tmp_path / "OCRBench.tsv",
        ["index", "question", "answer", "category", "image"],
        [["0", "what is written?", "['STOP', 'stop sign']", "Regular Text Recognition", img]],
    )
    item = load_items(get_benchmark("OCRBench"), ocr, cache_dir=tmp_path / "c")[0]
    assert item.answers == ["STOP", "stop sign"]


def test_loader_errors_say_what_to_fix(tmp_path: Path) -> None:
    bench = get_benchmark("MMStar")
    with pytest.raises(ConfigError, match=r"does not exist.*--data"):
        load_items(bench, tmp_path / "missing.tsv", cache_dir=tmp_path)
    not_tsv = write_tsv(tmp_path / "x.tsv", ["id", "question"], [["1", "q"]])
    with pytest.raises(RecordError, match="starts with an 'index' column"):
        load_items(bench, not_tsv, cache_dir=tmp_path)
    dangling = write_tsv(
        tmp_path / "d.tsv", ["index", "question", "A", "answer", "image"], [["5", "q", "a", "A", "3"]]
    )
    with pytest.raises(ImageError, match=r"d.tsv:2 \(index 5\).*refers to index 3"):
        load_items(bench, dangling, cache_dir=tmp_path)
    garbage = write_tsv(
        tmp_path / "g.tsv", ["index", "question", "A", "answer", "image"], [["5", "q", "a", "A", "x" * 100]]
    )
    with pytest.raises(ImageError, match="no known image format"):
        load_items(bench, garbage, cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="unknown benchmark 'MMBench'; valid names: MMStar"):
        get_benchmark("MMBench")
