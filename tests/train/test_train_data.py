"""Export rows -> token ids with labels only on assistant tokens, on a tiny LLaVA's processor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from mmat.errors import ConfigError, RecordError  # noqa: E402
from mmat.train.data import (  # noqa: E402
    IGNORE_INDEX,
    ChatTemplateError,
    ConversationEncoder,
    TrainRow,
    export_files,
    parse_row,
    read_rows,
)

pytestmark = pytest.mark.heavy


@pytest.fixture(scope="module")
def processor(tiny_llava: Path):  # type: ignore[no-untyped-def]
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_llava)


def _labelled_text(processor, encoded) -> str:  # type: ignore[no-untyped-def]
    ids = encoded.inputs["input_ids"][0]
    labels = encoded.inputs["labels"][0]
    return processor.tokenizer.decode(ids[labels != IGNORE_INDEX])


def test_exported_rows_are_read_with_their_images(train_export: Path) -> None:
    rows = list(read_rows(train_export))
    assert len(rows) == 4
    assert all(len(row.images) == 1 and row.images[0].is_file() for row in rows)
    roles = [role for role, _, _ in rows[0].messages]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user", "assistant"]
    assert export_files(train_export) == export_files(next(train_export.rglob("*.jsonl")).parent)


def test_only_assistant_tokens_are_labelled(processor, train_export: Path) -> None:  # type: ignore[no-untyped-def]
    row = next(read_rows(train_export))
    encoded = ConversationEncoder(processor, max_length=4096).encode(row)
    labels = encoded.inputs["labels"][0]
    ids = encoded.inputs["input_ids"][0]
    assert labels.shape == ids.shape
    assistant = [content for role, content, _ in row.messages if role == "assistant"]
    expected = "".join(content + "<|im_end|>" for content in assistant)
    assert _labelled_text(processor, encoded) == expected
    # nothing of the system prompt, question, observation or summarise turn is a target
    image_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    assert not bool(((labels != IGNORE_INDEX) & (ids == image_id)).any())
    assert encoded.trained_tokens == int((labels != IGNORE_INDEX).sum())
    labelled = _labelled_text(processor, encoded)
    for role, content, _ in row.messages:
        if role != "assistant":
            assert content.replace("<image>", "").strip()[:30] not in labelled
    # the image placeholder was expanded into the vision tower's tokens
    assert int((ids == image_id).sum()) == 4 and encoded.inputs["pixel_values"].shape[0] == 1


def test_an_assistant_message_with_loss_false_is_context(processor, train_export: Path) -> None:  # type: ignore[no-untyped-def]
    line = next(train_export.rglob("*.jsonl")).read_text(encoding="utf-8").splitlines()[0]
    raw = json.loads(line)
    assistants = [m for m in raw["messages"] if m["role"] == "assistant"]
    for message in assistants[:-1]:
        message["loss"] = False
    row = parse_row(raw, bases=[train_export])
    encoded = ConversationEncoder(processor, max_length=4096).encode(row)
    assert _labelled_text(processor, encoded) == assistants[-1]["content"] + "<|im_end|>"


def test_an_assistant_turn_before_a_later_image_is_aligned(processor, train_export: Path) -> None:  # type: ignore[no-untyped-def]
    first = next(read_rows(train_export))
    image = first.images[0]
    row = TrainRow(
        messages=[
            ("user", "<image>\nWhat is this? Please start your reasoning.", False),
            ("assistant", "<THOUGHT>a stop sign</THOUGHT><SIGNAL>end</SIGNAL>", True),
            ("user", "<image>\nAnd this one?", False),
            ("assistant", "red", True),
        ],
        images=[image, image],
    )
    encoded = ConversationEncoder(processor, max_length=4096).encode(row)
    assert _labelled_text(processor, encoded) == (
        "<THOUGHT>a stop sign</THOUGHT><SIGNAL>end</SIGNAL><|im_end|>red<|im_end|>"
    )
    assert encoded.inputs["pixel_values"].shape[0] == 2


def test_too_long_rows_are_cut_but_never_inside_images(processor, train_export: Path) -> None:  # type: ignore[no-untyped-def]
    row = next(read_rows(train_export))
    full = ConversationEncoder(processor, max_length=4096).encode(row)
    length = full.inputs["input_ids"].shape[1]
    cut = ConversationEncoder(processor, max_length=length - 3).encode(row)
    assert cut.inputs["input_ids"].shape[1] == length - 3
    assert cut.inputs["labels"].shape[1] == length - 3
    assert cut.inputs["attention_mask"].shape[1] == length - 3
    with pytest.raises(RecordError, match="raise --max-length"):
        ConversationEncoder(processor, max_length=16).encode(row)


def test_bad_rows_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match="2 <image> placeholders but 1 images"):
        parse_row(
            {
                "messages": [
                    {"role": "user", "content": "<image><image>"},
                    {"role": "assistant", "content": "x"},
                ],
                "images": ["a.png"],
            }
        )
    with pytest.raises(RecordError, match="no assistant message"):
        parse_row({"messages": [{"role": "user", "content": "hi"}]})
    with pytest.raises(RecordError, match="not found"):
        parse_row(
            {
                "messages": [{"role": "user", "content": "<image>"}, {"role": "assistant", "content": "x"}],
                "images": ["nope.png"],
            },
            bases=[tmp_path],
        )
    with pytest.raises(ConfigError, match="no JSONL rows found"):
        export_files(tmp_path)


def test_a_processor_without_chat_template_is_refused(processor) -> None:  # type: ignore[no-untyped-def]
    class NoTemplate:
        chat_template = None
        tokenizer = type("T", (), {"chat_template": None})()

    with pytest.raises(ChatTemplateError, match="no chat template"):
        ConversationEncoder(NoTemplate())


def test_rows_are_indexed_and_bad_ones_skipped_when_read(
    processor, train_export: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from mmat.train.data import ExportRows
    from mmat.train.trainer import EncodedDataset

    lines = next(train_export.rglob("*.jsonl")).read_text(encoding="utf-8").splitlines()
    mixed = tmp_path / "export" / "train.jsonl"
    mixed.parent.mkdir()
    bad_images = json.dumps(
        {
            "messages": [{"role": "user", "content": "<image>"}, {"role": "assistant", "content": "x"}],
            "images": [],
        }
    )
    mixed.write_text("\n".join([lines[0], "{not json", "", bad_images, lines[1]]) + "\n", encoding="utf-8")
    for image in train_export.parent.rglob("*.png"):  # keep the images where the relative paths point
        target = tmp_path / image.relative_to(train_export.parent)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(image.read_bytes())
    rows = ExportRows(mixed)
    assert len(rows) == 4  # the blank line is not a row
    assert rows[0].messages == next(read_rows(train_export)).messages
    with pytest.raises(RecordError, match="not JSON"):
        rows[1]
    with pytest.raises(RecordError, match="1 <image> placeholders but 0 images"):
        rows[2]
    dataset = EncodedDataset(rows, ConversationEncoder(processor, max_length=4096))
    second = dataset[1]  # rows 1 and 2 are bad: the dataset serves row 3 instead
    assert torch.equal(
        second["input_ids"],
        ConversationEncoder(processor, max_length=4096).encode(rows[3]).inputs["input_ids"],
    )
    assert dataset.skipped == {1, 2}
