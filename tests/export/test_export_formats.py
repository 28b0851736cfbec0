"""Round trips of every chat-format exporter: re-read the files and compare with the stored samples."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from mmat.cli import cli
from mmat.errors import ConfigError, UnknownPluginError
from mmat.export.conversation import (
    IMAGE_TOKEN,
    ImagePlaceholderError,
    place_image_tokens,
    sample_messages,
)
from mmat.export.example_build import example_sample, write_example_build
from mmat.export.llamafactory import DATASET_INFO
from mmat.export.llava import SYSTEM_CLOSE, SYSTEM_OPEN, fold_system, llava_to_messages, unfold_system
from mmat.export.release import read_release
from mmat.export.run import create_exporter, run_export
from mmat.registry import EXPORTERS
from mmat.schema import Sample
from mmat.store import iter_accepted
from mmat.wire import question_turn

N_SAMPLES = 10


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_example_build(tmp_path_factory.mktemp("build"), samples=N_SAMPLES, rejects=3)


@pytest.fixture(scope="module")
def samples(build: Path) -> list[Sample]:
    return list(iter_accepted(build))


def _jsonl_rows(paths: list[Path]) -> list[dict]:
    rows = []
    for path in sorted(p for p in paths if p.suffix == ".jsonl"):
        rows += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return rows


def _expected(sample: Sample, kind: str = "rr") -> list[tuple[str, str]]:
    return place_image_tokens(sample_messages(sample, kind), len(sample.images), sample_id=sample.id)  # type: ignore[arg-type]


def _check_images(sample: Sample, written: list[str], export_dir: Path) -> None:
    assert len(written) == len(sample.images)
    for ref, path in zip(sample.images, written, strict=True):
        assert Path(os.path.normpath(export_dir / path)) == Path(ref.root or "") / ref.path


def _check_placeholders(messages: list[tuple[str, str]], n_images: int) -> None:
    assert sum(content.count(IMAGE_TOKEN) for _, content in messages) == n_images
    first_user = next(content for role, content in messages if role == "user")
    assert first_user.startswith(f"{IMAGE_TOKEN}\n" * n_images)


def test_every_exporter_is_registered() -> None:
    assert {"swift", "llamafactory", "llava", "parquet", "mmat1m"} <= set(EXPORTERS.names())


def test_swift_round_trip(build: Path, samples: list[Sample], tmp_path: Path) -> None:
    out = tmp_path / "swift"
    written = run_export(build, "swift", dest=out)
    rows = _jsonl_rows(written)
    assert [row["id"] for row in rows] == [s.id for s in samples]
    for sample, row in zip(samples, rows, strict=True):
        messages = [(m["role"], m["content"]) for m in row["messages"]]
        expected = _expected(sample)
        assert len(messages) == len(expected) == 1 + sum(len(seg.turns) for seg in sample.trajectory.segments)  # type: ignore[union-attr]
        assert [r for r, _ in messages] == [r for r, _ in expected]
        assert messages == expected
        # operator observations stay user turns
        observations = [c for r, c in messages if c.startswith("Here are ")]
        assert observations and all(r == "user" for r, c in messages if c.startswith("Here are "))
        _check_placeholders(messages, len(sample.images))
        _check_images(sample, row["images"], out)
        assert row["license"] == sample.license and row["non_commercial"] == sample.non_commercial
        assert all("loss" not in m for m in row["messages"])


def test_swift_final_round_only_sets_loss_flags(build: Path, samples: list[Sample], tmp_path: Path) -> None:
    rows = _jsonl_rows(run_export(build, "swift", dest=tmp_path / "s", final_round_only=True))
    for sample, row in zip(samples, rows, strict=True):
        assistants = [m for m in row["messages"] if m["role"] == "assistant"]
        assert [m["loss"] for m in assistants] == [False] * (len(assistants) - 1) + [True]
        assert assistants[-1]["content"] == sample.qas[-1].answer
        assert all("loss" not in m for m in row["messages"] if m["role"] != "assistant")


def test_swift_orr_kind(build: Path, samples: list[Sample], tmp_path: Path) -> None:
    rows = _jsonl_rows(run_export(build, "swift", dest=tmp_path / "orr", kind="orr"))
    for sample, row in zip(samples, rows, strict=True):
        roles = [m["role"] for m in row["messages"]]
        assert roles == ["system"] + ["user", "assistant"] * len(sample.qas)
        assert "<ANSWER>The answer is: " in row["messages"][2]["content"]
        _check_placeholders([(m["role"], m["content"]) for m in row["messages"]], len(sample.images))


def test_llamafactory_round_trip_and_dataset_info(build: Path, samples: list[Sample], tmp_path: Path) -> None:
    out = tmp_path / "lf"
    written = run_export(build, "llamafactory", dest=out)
    info = json.loads((out / DATASET_INFO).read_text())
    entry = info["mmat_rr_train"]
    assert entry["formatting"] == "sharegpt"
    assert entry["columns"] == {"messages": "conversations", "system": "system", "images": "images"}
    assert entry["tags"]["user_tag"] == "human" and entry["tags"]["assistant_tag"] == "gpt"
    data_dir = out / entry["file_name"]
    assert data_dir.is_dir() and sorted(data_dir.glob("*.jsonl")) == sorted(
        p for p in written if p.suffix == ".jsonl"
    )
    rows = _jsonl_rows(written)
    for sample, row in zip(samples, rows, strict=True):
        expected = _expected(sample)
        assert row["system"] == expected[0][1]
        turns = [("user" if t["from"] == "human" else "assistant", t["value"]) for t in row["conversations"]]
        assert [("system", row["system"]), *turns] == expected
        assert [t["from"] for t in row["conversations"]] == ["human", "gpt"] * (len(turns) // 2)
        _check_placeholders(turns, len(sample.images))
        _check_images(sample, row["images"], out)


def test_llava_round_trip_unfolds_losslessly(build: Path, samples: list[Sample], tmp_path: Path) -> None:
    out = tmp_path / "llava"
    rows = _jsonl_rows(run_export(build, "llava", dest=out))
    for sample, row in zip(samples, rows, strict=True):
        first = row["conversations"][0]["value"]
        assert first.startswith(f"{IMAGE_TOKEN}\n" * len(sample.images) + SYSTEM_OPEN)
        assert llava_to_messages(row) == _expected(sample)
        images = [row["image"]] if isinstance(row["image"], str) else row["image"]
        assert isinstance(row["image"], str) == (len(sample.images) == 1)
        _check_images(sample, images, out)


@pytest.mark.parametrize(
    ("system", "first"),
    [
        ("Be careful.\nUse tools.", "<image>\nWhat is it? Please start your reasoning."),
        ("", "<image>\n<image>\nQ"),
        ("sys", "no placeholder at all"),
        ("sys", "<image>inline placeholder"),
        ("multi\n\nline\n", "<image>\n"),
    ],
)
def test_llava_fold_unfold_is_lossless(system: str, first: str) -> None:
    conversations = [{"from": "human", "value": first}, {"from": "gpt", "value": "answer"}]
    folded = fold_system(system, conversations)
    assert conversations[0]["value"] == first  # input untouched
    assert unfold_system(folded) == (system, conversations)
    if system:
        assert SYSTEM_OPEN in folded[0]["value"]


def test_llava_fold_refuses_ambiguous_input() -> None:
    with pytest.raises(Exception, match="fold marker"):
        fold_system("bad" + SYSTEM_CLOSE + "x", [{"from": "human", "value": "q"}])
    with pytest.raises(Exception, match="already starts with"):
        fold_system("", [{"from": "human", "value": SYSTEM_OPEN + "q"}])


def test_parquet_round_trip(build: Path, samples: list[Sample], tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "hf"
    written = run_export(build, "parquet", dest=out, shard_size=4)
    assert [p.name for p in written] == [f"train-{i:05d}-of-00003.parquet" for i in range(3)]
    rows = []
    for path in written:
        rows += pq.read_table(path).to_pylist()
    assert [r["id"] for r in rows] == [s.id for s in samples]
    for sample, row in zip(samples, rows, strict=True):
        messages = [(m["role"], m["content"]) for m in row["messages"]]
        assert messages == _expected(sample)
        _check_placeholders(messages, len(sample.images))
        _check_images(sample, row["images"], out)
        assert row["quality_score"] == pytest.approx(sample.quality.score)  # type: ignore[union-attr]
        assert row["license"] == sample.license


def test_sharding_splits_rows(build: Path, tmp_path: Path) -> None:
    written = run_export(build, "swift", dest=tmp_path / "sh", shard_size=3)
    assert [p.name for p in written] == [f"train-{i:05d}.jsonl" for i in range(4)]
    assert [len(p.read_text().splitlines()) for p in written] == [3, 3, 3, 1]


def test_image_modes_absolute_and_copy(build: Path, samples: list[Sample], tmp_path: Path) -> None:
    rows = _jsonl_rows(run_export(build, "swift", dest=tmp_path / "abs", image_paths="absolute"))
    for sample, row in zip(samples, rows, strict=True):
        assert all(Path(p).is_absolute() for p in row["images"])
        assert row["images"] == [str(Path(ref.root or "") / ref.path) for ref in sample.images]
    out = tmp_path / "copy"
    rows = _jsonl_rows(run_export(build, "swift", dest=out, image_paths="copy"))
    for sample, row in zip(samples, rows, strict=True):
        for ref, path in zip(sample.images, row["images"], strict=True):
            assert not Path(path).is_absolute() and path.startswith("images/")
            assert hashlib.sha256((out / path).read_bytes()).hexdigest() == ref.sha256


def test_placeholder_count_mismatch_is_a_clear_error(tmp_path: Path) -> None:
    sample = example_sample(0, tmp_path / "img")
    assert len(sample.images) == 1
    segment = sample.trajectory.segments[0]  # type: ignore[union-attr]
    segment.turns[0] = question_turn(sample.qas[0].templated_question, image_placeholders=2)
    with pytest.raises(
        ImagePlaceholderError, match=r"2 <image> placeholder\(s\) in the messages but 1 image"
    ):
        create_exporter("swift").export([sample], tmp_path / "out")


def test_placeholders_added_when_missing_and_kept_when_right() -> None:
    messages = [("system", "s"), ("user", "q"), ("assistant", "a")]
    assert place_image_tokens(messages, 2, sample_id="x")[1] == ("user", "<image>\n<image>\nq")
    kept = [("user", "<image>\nq"), ("assistant", "a")]
    assert place_image_tokens(kept, 1, sample_id="x") is kept
    with pytest.raises(ImagePlaceholderError, match="system prompt"):
        place_image_tokens([("system", "<image>"), ("user", "q")], 1, sample_id="x")


def test_mmat1m_reuses_the_release_layout(build: Path, samples: list[Sample], tmp_path: Path) -> None:
    written = run_export(build, "mmat1m", dest=tmp_path / "rel")
    names = sorted(p.name for p in written)
    assert names == ["dataset_qa_rr_train_all_ORR.jsonl", "dataset_qa_rr_train_all_RR_sys.jsonl"]
    back = [s for s in read_release(tmp_path / "rel" / names[1]) if isinstance(s, Sample)]
    assert len(back) == len(samples)
    assert [len(s.trajectory.segments) for s in back] == [len(s.trajectory.segments) for s in samples]  # type: ignore[union-attr]


def test_exporter_options_are_checked(build: Path, tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match="'mmat1m' does not take option\\(s\\) image_paths; it takes no options"
    ):
        run_export(build, "mmat1m", dest=tmp_path / "x", image_paths="copy")
    with pytest.raises(ConfigError, match="final_round_only"):
        create_exporter("llava", final_round_only=True)
    with pytest.raises(UnknownPluginError, match=r"valid names: .*llamafactory"):
        create_exporter("nope")
    with pytest.raises(ConfigError, match="use one of relative, absolute, copy"):
        create_exporter("swift", image_paths="symlink")
    with pytest.raises(ConfigError, match="has no accepted/ folder"):
        run_export(tmp_path, "swift")


def test_export_cli(build: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    dest = tmp_path / "cli"
    result = runner.invoke(
        cli,
        [
            "export",
            str(build),
            "--format",
            "swift",
            "--kind",
            "both",
            "--dest",
            str(dest),
            "--final-round-only",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "swift (rr): wrote 1 file(s)" in result.output
    assert (dest / "rr" / "train" / "train-00000.jsonl").is_file()
    assert (dest / "orr" / "train" / "train-00000.jsonl").is_file()
    result = runner.invoke(cli, ["export", str(build), "--format", "llava", "--images", "copy"])
    assert result.exit_code == 0, result.output
    assert (build / "exports" / "llava" / "train" / "train-00000.jsonl").is_file()


def test_samples_without_the_form_are_skipped_and_counted(tmp_path: Path) -> None:
    with_rr = example_sample(0, tmp_path / "img")
    orr_only = example_sample(1, tmp_path / "img").model_copy(update={"trajectory": None})
    exporter = create_exporter("swift")
    written = exporter.export([with_rr, orr_only], tmp_path / "out")
    assert len(_jsonl_rows(written)) == 1
    assert exporter.skipped == {"no_trajectory": 1}  # type: ignore[attr-defined]


def test_export_of_a_build_without_rr_says_to_use_orr(tmp_path: Path) -> None:
    build = write_example_build(tmp_path / "b", samples=2, rejects=0)
    shard = build / "accepted" / "shard-00000.jsonl"
    rows = [Sample.model_validate_json(line) for line in shard.read_text().splitlines()]
    shard.write_text(
        "".join(s.model_copy(update={"trajectory": None}).model_dump_json() + "\n" for s in rows)
    )
    with pytest.raises(ConfigError, match="export with kind='orr'"):
        run_export(build, "llava", dest=tmp_path / "x")
    assert len(_jsonl_rows(run_export(build, "llava", dest=tmp_path / "y", kind="orr"))) == 2


def test_create_exporter_lenient_drops_options_it_does_not_take() -> None:
    exporter = create_exporter("mmat1m", strict=False, image_paths="copy")
    assert type(exporter).__name__ == "ReleaseExporter"
    assert create_exporter("swift", strict=False, image_paths="copy").image_paths == "copy"  # type: ignore[attr-defined]


@pytest.mark.slow
def test_hf_datasets_loads_the_parquet_and_swift_exports(
    build: Path, samples: list[Sample], tmp_path: Path
) -> None:
    datasets = pytest.importorskip("datasets")
    run_export(build, "parquet", dest=tmp_path / "hf", shard_size=4)
    loaded = datasets.load_dataset(str(tmp_path / "hf"), cache_dir=str(tmp_path / "cache"))
    assert list(loaded) == ["train"] and loaded["train"].num_rows == len(samples)
    assert loaded["train"][3]["messages"][0]["role"] == "system"
    run_export(build, "swift", dest=tmp_path / "swift")
    rows = datasets.load_dataset(
        "json", data_dir=str(tmp_path / "swift" / "train"), cache_dir=str(tmp_path / "c2")
    )
    assert rows["train"]["id"] == [s.id for s in samples]
