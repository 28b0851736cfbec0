"""Tiny randomly-initialised detectors for tests and offline demos (no download).

:func:`build_tiny_grounding_dino` writes a real Grounding DINO checkpoint folder (config, weights,
image processor and a BERT word-piece tokenizer built from a small vocabulary) that
``GroundingDinoTool(checkpoint=folder)`` loads like a hub checkpoint. Its boxes are random: it
exercises the processor, the forward pass and the post-processing, not detection quality.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TINY_WORDS = [
    "a",
    "an",
    "the",
    "and",
    "of",
    "in",
    "on",
    "with",
    "person",
    "man",
    "woman",
    "people",
    "face",
    "cat",
    "dog",
    "car",
    "bus",
    "tree",
    "table",
    "chair",
    "cup",
    "coffee",
    "bowl",
    "plate",
    "spoon",
    "rocket",
    "astronaut",
    "flag",
    "helmet",
    "suit",
    "book",
    "text",
    "sign",
    "word",
    "number",
    "red",
    "blue",
    "green",
    "white",
    "black",
    "small",
    "large",
    "left",
    "right",
    "top",
    "bottom",
]


def build_bert_tokenizer(folder: Path, words: list[str] | tuple[str, ...] = TINY_WORDS) -> object:
    """A lower-casing BERT word-piece tokenizer over ``words`` plus punctuation, saved to ``folder``."""
    import transformers

    tokenizer_class: Any = transformers.BertTokenizerFast  # type: ignore[attr-defined]

    folder.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    punctuation = list(".,;:!?'\"()[]-_/")
    vocab = (
        specials
        + punctuation
        + sorted(set(words))
        + [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"]
        + list("abcdefghijklmnopqrstuvwxyz0123456789")
    )
    seen: dict[str, None] = dict.fromkeys(vocab)
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(seen) + "\n", encoding="utf-8")
    try:  # transformers >= 5 takes the vocabulary itself, 4.x a vocab.txt file
        tokenizer = tokenizer_class(vocab={token: i for i, token in enumerate(seen)}, do_lower_case=True)
    except TypeError:
        tokenizer = None
    if tokenizer is None or len(tokenizer) < len(seen):
        tokenizer = tokenizer_class(vocab_file=str(vocab_file), do_lower_case=True)
    return tokenizer


def build_tiny_grounding_dino(folder: Path, *, decoder_layers: int = 2, seed: int = 0) -> Path:
    """Write a tiny random Grounding DINO (Swin backbone, 1-layer BERT) with its processor to ``folder``."""
    import torch
    from transformers import (
        BertConfig,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_bert_tokenizer(folder / "_vocab")
    backbone = SwinConfig(
        image_size=64,
        patch_size=4,
        embed_dim=8,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 1, 1],
        window_size=2,
        out_features=["stage2", "stage3", "stage4"],  # type: ignore[call-arg]
    )
    text = BertConfig(
        vocab_size=len(tokenizer),  # type: ignore[arg-type]
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=128,
    )
    config = GroundingDinoConfig(
        backbone_config=backbone,
        text_config=text,
        d_model=32,
        num_queries=10,
        encoder_layers=1,
        decoder_layers=decoder_layers,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_n_points=2,
        decoder_n_points=2,
        num_feature_levels=4,
        max_text_len=64,
    )
    model = GroundingDinoForObjectDetection(config).eval()
    import transformers

    # transformers >= 5 without torchvision: name the PIL image processor to avoid its fallback warning
    image_processor_class: Any = getattr(
        transformers, "GroundingDinoImageProcessorPil", GroundingDinoImageProcessor
    )
    image_processor = image_processor_class(size={"shortest_edge": 128, "longest_edge": 192})
    processor = GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer)
    processor.save_pretrained(str(folder))
    model.save_pretrained(str(folder))
    return folder


def build_clip_tokenizer(words: list[str] | tuple[str, ...] = TINY_WORDS) -> Any:
    """A CLIP BPE tokenizer whose vocabulary is every word of ``words`` (plus single letters)."""
    import transformers

    tokenizer_class: Any = transformers.CLIPTokenizer  # type: ignore[attr-defined]
    letters = list("abcdefghijklmnopqrstuvwxyz0123456789.,")
    vocab: dict[str, int] = {}
    # OWL models treat a query whose first id is 0 as padding, so the specials must not come first
    for token in [*letters, *(f"{c}</w>" for c in letters), "<|startoftext|>", "<|endoftext|>"]:
        vocab.setdefault(token, len(vocab))
    merges: list[tuple[str, str]] = []
    for word in sorted(set(words)):
        # merge left to right: w o r d</w> -> wo r d</w> -> wor d</w> -> word</w>
        pieces = [*word[:-1], word[-1] + "</w>"]
        while len(pieces) > 1:
            merged = pieces[0] + pieces[1]
            rule = (pieces[0], pieces[1])
            if rule not in merges:
                merges.append(rule)
            vocab.setdefault(merged, len(vocab))
            pieces = [merged, *pieces[2:]]
    tokenizer = tokenizer_class(vocab=vocab, merges=merges)
    tokenizer.model_max_length = 16  # OWL-ViT/OWLv2 text queries are padded to 16 tokens
    return tokenizer


def build_tiny_owlv2(folder: Path, *, seed: int = 0) -> Path:
    """Write a tiny random OWLv2 (ViT and text transformer of 1 layer each) with its processor."""
    import torch
    import transformers
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2Processor

    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_clip_tokenizer()
    config = Owlv2Config(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "max_position_embeddings": 16,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 64,
            "patch_size": 16,
        },
        projection_dim=32,
    )
    model = Owlv2ForObjectDetection(config).eval()
    image_processor_class: Any = getattr(
        transformers, "Owlv2ImageProcessorPil", transformers.Owlv2ImageProcessor
    )
    image_processor = image_processor_class(size={"height": 64, "width": 64})
    Owlv2Processor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(str(folder))
    model.save_pretrained(str(folder))
    return folder
