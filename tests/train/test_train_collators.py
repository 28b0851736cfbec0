"""Collation per model family, checked against a tiny Qwen2-VL's own loss, and the registry."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from mmat.errors import UnknownPluginError  # noqa: E402
from mmat.train.collators import (  # noqa: E402
    COLLATORS,
    CollationError,
    Idefics3Collator,
    MllamaCollator,
    TextCollator,
    collator_for,
)
from mmat.train.data import IGNORE_INDEX, ConversationEncoder, TrainRow, read_rows  # noqa: E402

pytestmark = pytest.mark.heavy


def test_every_family_of_the_issue_has_a_collator() -> None:
    for model_type in ("qwen2_vl", "qwen2_5_vl", "internvl", "mllama", "llava", "idefics3"):
        assert model_type in COLLATORS
    with pytest.raises(UnknownPluginError, match=r"no collator for model_type 'blip'; known: .*qwen2_vl"):
        collator_for("blip", 0)
    assert isinstance(collator_for("llama", 0, multimodal=False), TextCollator)


def test_tokens_are_right_padded_with_the_right_values() -> None:
    rows = [
        {"input_ids": torch.tensor([[5, 6, 7]]), "attention_mask": torch.ones(1, 3, dtype=torch.long),
         "labels": torch.tensor([[-100, 6, 7]])},
        {"input_ids": torch.tensor([[8]]), "attention_mask": torch.ones(1, 1, dtype=torch.long),
         "labels": torch.tensor([[8]])},
    ]  # fmt: skip
    batch = TextCollator(pad_token_id=0)(rows)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, IGNORE_INDEX, IGNORE_INDEX]]
    with pytest.raises(CollationError, match=r"does not know how to batch 'pixel_values'.*--batch-size 1"):
        TextCollator(0)([{**rows[0], "pixel_values": torch.zeros(1, 3)}])


def test_mllama_tiles_and_cross_attention_mask_are_padded_per_axis() -> None:
    def row(length: int, images: int) -> dict[str, torch.Tensor]:
        return {
            "input_ids": torch.ones(1, length, dtype=torch.long),
            "attention_mask": torch.ones(1, length, dtype=torch.long),
            "labels": torch.ones(1, length, dtype=torch.long),
            "pixel_values": torch.ones(1, images, 4, 3, 8, 8),
            "aspect_ratio_ids": torch.ones(1, images, dtype=torch.long),
            "aspect_ratio_mask": torch.ones(1, images, 4, dtype=torch.long),
            "cross_attention_mask": torch.ones(1, length, images, 4, dtype=torch.long),
        }

    batch = MllamaCollator(0)([row(5, 1), row(3, 2)])
    assert batch["pixel_values"].shape == (2, 2, 4, 3, 8, 8)
    assert float(batch["pixel_values"][0, 1].abs().sum()) == 0.0  # the missing image is zeros
    assert batch["cross_attention_mask"].shape == (2, 5, 2, 4)  # token axis follows the padded tokens
    assert int(batch["cross_attention_mask"][1, 3:].sum()) == 0
    assert batch["aspect_ratio_mask"].shape == (2, 2, 4)


def test_idefics3_images_are_padded_with_their_pixel_mask() -> None:
    def row(images: int) -> dict[str, torch.Tensor]:
        return {
            "input_ids": torch.ones(1, 4, dtype=torch.long),
            "attention_mask": torch.ones(1, 4, dtype=torch.long),
            "pixel_values": torch.ones(1, images, 3, 6, 6),
            "pixel_attention_mask": torch.ones(1, images, 6, 6, dtype=torch.bool),
        }

    batch = Idefics3Collator(0)([row(3), row(1)])
    assert batch["pixel_values"].shape == (2, 3, 3, 6, 6)
    assert batch["pixel_attention_mask"].shape == (2, 3, 6, 6)
    assert not bool(batch["pixel_attention_mask"][1, 1:].any())


@pytest.mark.parametrize(
    ("family", "model_type", "processor_class"),
    [
        ("tiny_qwen2_vl", "qwen2_vl", "QwenVLImageTokenProcessor"),
        ("tiny_internvl", "internvl", "InternVLImageTokenProcessor"),
        ("tiny_llava", "llava", "LlavaProcessor"),
        ("tiny_mllama", "mllama", "MllamaProcessor"),
        ("tiny_idefics3", "idefics3", "Idefics3Processor"),
    ],
)
def test_a_batch_gives_the_loss_of_its_rows(
    family: str, model_type: str, processor_class: str, train_export: Path, request: pytest.FixtureRequest
) -> None:
    """A one-image row and a longer two-image row: the batch must give the token-weighted loss."""
    from PIL import Image
    from transformers import AutoModelForImageTextToText

    from mmat.train.processors import load_processor

    checkpoint: Path = request.getfixturevalue(family)
    processor = load_processor(str(checkpoint), model_type)
    # Qwen2-VL and InternVL get mmat's stand-in: transformers' processors need torchvision for video
    assert type(processor).__name__ == processor_class
    model = AutoModelForImageTextToText.from_pretrained(checkpoint).eval()
    assert model.config.model_type == model_type
    encoder = ConversationEncoder(processor, max_length=4096)
    base = next(read_rows(train_export))
    wide = train_export.parent / "wide.png"
    Image.new("RGB", (112, 40), (10, 200, 30)).save(wide)
    messages = list(base.messages)
    first_user = next(i for i, (role, _, _) in enumerate(messages) if role == "user")
    role, content, trained = messages[first_user]
    messages[first_user] = (role, "<image>\n" + content, trained)
    rows = [base, TrainRow(messages=messages, images=[wide, base.images[0]])]
    encoded = [encoder.encode(row).inputs for row in rows]
    assert encoded[0]["input_ids"].shape[1] < encoded[1]["input_ids"].shape[1]
    batch = collator_for(model_type, processor.tokenizer.pad_token_id)(encoded)
    with torch.no_grad():
        batched = float(model(**batch).loss)
        per_row = [float(model(**e).loss) for e in encoded]
    counts = [int((e["labels"][0, 1:] != IGNORE_INDEX).sum()) for e in encoded]
    expected = sum(loss * n for loss, n in zip(per_row, counts, strict=True)) / sum(counts)
    assert batched == pytest.approx(expected, rel=1e-4)
