"""Streaming readers, ids, shards, --limit and --sample, mojibake repair."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmat.config import SourceConfig
from mmat.errors import ConfigError, RecordError
from mmat.schema import Sample
from mmat.sources import load, make_sample_id, shard_of
from mmat.sources.mojibake import repair_mojibake
from mmat.sources.streaming import iter_json_items, iter_jsonl


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 1 << 20])
def test_json_object_streams_identically_at_any_chunk_size(tmp_path: Path, chunk: int) -> None:
    data = {
        str(i): {
            "q": f'question {i} with "quotes" and \\ slashes',
            "n": 12345.678 * i,
            "list": [1, [2, {"x": None}]],
            "u": "é✓",
        }
        for i in range(40)
    }
    path = tmp_path / "doc.json"
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
    items = [value for _, value in iter_json_items(path, chunk_chars=chunk)]
    assert items == list(data.items())


def test_json_array_streams(tmp_path: Path) -> None:
    path = tmp_path / "doc.json"
    path.write_text(json.dumps([1, 22, 333, "x", {"a": 1}]), encoding="utf-8")
    assert [v for _, v in iter_json_items(path, chunk_chars=2)] == [1, 22, 333, "x", {"a": 1}]
    (tmp_path / "empty.json").write_text("  {}  ", encoding="utf-8")
    assert list(iter_json_items(tmp_path / "empty.json")) == []


def test_json_not_a_container(tmp_path: Path) -> None:
    (tmp_path / "n.json").write_text("42", encoding="utf-8")
    ((_, error),) = list(iter_json_items(tmp_path / "n.json"))
    assert isinstance(error, RecordError) and "one JSON object or array" in error.detail


def test_jsonl_skips_blank_lines_and_reports_bad_utf8(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"a": 1}\n\n"\xff"\n')
    items = list(iter_jsonl(path))
    assert items[0] == (f"{path}:1", {"a": 1})
    assert isinstance(items[1][1], RecordError) and items[1][0] == f"{path}:3"


def test_ids_and_shards_are_deterministic() -> None:
    assert make_sample_id("visual_cot", "cub", "train-1") == "visual_cot/cub/train-1"
    assert make_sample_id("generic", None, "a b") == "generic/default/a_b"
    # Fixed values: the shard of an id must never change between versions, machines or runs.
    assert [shard_of(f"tabmwp/train/{i}", 8) for i in range(8)] == [
        shard_of(f"tabmwp/train/{i}", 8) for i in range(8)
    ]
    assert shard_of("tabmwp/dev/22084", 1) == 0
    counts = [0] * 4
    for i in range(4000):
        counts[shard_of(f"s/x/{i}", 4)] += 1
    assert min(counts) > 900  # roughly balanced
    with pytest.raises(ConfigError, match="at least 1"):
        shard_of("x", 0)


def test_shard_values_are_stable_across_processes() -> None:
    import subprocess
    import sys

    code = "from mmat.sources import shard_of; print([shard_of(f'a/b/{i}', 7) for i in range(20)])"
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert first.strip() == str([shard_of(f"a/b/{i}", 7) for i in range(20)])


def test_limit_and_reproducible_sample(shared_data: Path) -> None:
    root = str(shared_data / "tabmwp")
    limited = list(load(SourceConfig(name="tabmwp", root=root, limit=5)))
    assert len(limited) == 5
    everything = [s.id for s in load(SourceConfig(name="tabmwp", root=root))]
    assert [s.id for s in limited] == everything[:5]

    def pick(seed: int) -> list[str]:
        return [s.id for s in load(SourceConfig(name="tabmwp", root=root, sample=10, seed=seed))]

    first = pick(1)
    assert len(first) == 10 and first == pick(1) and first != pick(2)
    assert first == [i for i in everything if i in first]  # input order kept
    both = list(load(SourceConfig(name="tabmwp", root=root, sample=10, seed=1, limit=3)))
    assert [s.id for s in both] == first[:3]
    assert all(isinstance(s, Sample) for s in both)


def test_mojibake_is_repaired_only_when_safe(tmp_path: Path) -> None:
    assert repair_mojibake("donâ€™t") == "don’t"
    assert repair_mojibake("NaÃ¯ve rÃ©sumÃ©") == "Naïve résumé"
    for clean in ("café", "Zürich 5°C", "plain", "Straße", "Â"):
        assert repair_mojibake(clean) is None
    row = {
        "question": "Whatâ€™s the title?",
        "answer": "CafÃ© del Mar",
        "image": "a.jpg",
        "width": 9,
        "height": 9,
        "bboxs": [[0, 0, 1, 1]],
        "dataset": "dude",
    }
    (tmp_path / "dude_cot_train.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")
    (sample,) = list(
        load(SourceConfig(name="visual_cot", root=str(tmp_path), options={"check_images": "none"}))
    )
    assert isinstance(sample, Sample)
    qa = sample.qas[0]
    assert qa.answer == "Café del Mar" and qa.metadata["answer_original"] == "CafÃ© del Mar"
    assert qa.question == "What’s the title?" and qa.metadata["mojibake_repaired"] is True
    kept = list(
        load(
            SourceConfig(
                name="visual_cot",
                root=str(tmp_path),
                options={"check_images": "none", "repair_mojibake": False},
            )
        )
    )
    assert kept[0].qas[0].answer == "CafÃ© del Mar"  # type: ignore[union-attr]


def test_loaders_import_no_heavy_module() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from mmat.registry import SOURCES\n"
        "[SOURCES.get(n) for n in SOURCES.names()]\n"
        "import mmat.sources.cli\n"
        "print(','.join(m for m in ('pyarrow', 'datasets', 'numpy', 'torch', 'PIL') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
