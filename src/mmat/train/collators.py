"""Batch collation per model family, found by the checkpoint's ``config.model_type``.

Every row is encoded on its own (batch dimension 1); a collator merges rows into one batch. Tokens
(``input_ids``, ``attention_mask``, ``labels`` and other per-token tensors) are right-padded. Vision
tensors follow the family's layout:

- concatenated along the first dimension where the processor flattens all images of a batch
  (Qwen2-VL / Qwen2.5-VL patches and ``image_grid_thw``, LLaVA images, InternVL tiles);
- padded in every dimension then stacked where the processor keeps a per-row image axis
  (Idefics3 ``pixel_values`` and ``pixel_attention_mask``, Mllama tiles, aspect ratios and the
  cross-attention mask, whose token axis is padded like the tokens).

A tensor the family does not declare is an error rather than a silent drop. New families register a
subclass with :func:`register_collator`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from mmat.errors import UnknownPluginError
from mmat.train.data import IGNORE_INDEX


class CollationError(UnknownPluginError):
    """A row holds a tensor the collator of its model family does not know how to batch."""


class Collator:
    """Right-pads token tensors and batches the family's vision tensors.

    Args:
        pad_token_id: the id used to pad ``input_ids``.
    """

    model_types: ClassVar[tuple[str, ...]] = ()
    token_keys: ClassVar[dict[str, int | None]] = {
        "input_ids": None,  # the tokenizer's pad id
        "attention_mask": 0,
        "labels": IGNORE_INDEX,
        "token_type_ids": 0,
        "mm_token_type_ids": 0,
    }
    concat_keys: ClassVar[frozenset[str]] = frozenset()
    padded_keys: ClassVar[dict[str, int | float]] = {}
    # Padded keys whose dimension 1 is the token axis (kept aligned with the tokens' padding).
    token_axis_keys: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, pad_token_id: int | None) -> None:
        self.pad_token_id = 0 if pad_token_id is None else int(pad_token_id)

    def __call__(self, rows: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        if not rows:
            raise ValueError("cannot collate an empty batch")
        keys = set().union(*(row.keys() for row in rows))
        batch: dict[str, torch.Tensor] = {}
        length = max(row["input_ids"].shape[-1] for row in rows)
        for key in sorted(keys):
            present = [row[key] for row in rows if key in row]
            if key in self.token_keys:
                pad = self.token_keys[key]
                value = self.pad_token_id if pad is None else pad
                batch[key] = torch.cat([_pad_to(t, {1: length}, value) for t in present])
            elif key in self.concat_keys:
                batch[key] = torch.cat(present)
            elif key in self.padded_keys:
                batch[key] = self._pad_stack(key, present, length)
            else:
                raise CollationError(
                    f"the {type(self).__name__} does not know how to batch {key!r} "
                    f"(model types {', '.join(self.model_types) or 'text-only'}); "
                    "Fix: train with --batch-size 1, or register a collator for this family with "
                    "mmat.train.collators.register_collator"
                )
        return batch

    def _pad_stack(self, key: str, tensors: list[torch.Tensor], length: int) -> torch.Tensor:
        dims = tensors[0].dim()
        sizes = {d: max(t.shape[d] for t in tensors) for d in range(1, dims)}
        if key in self.token_axis_keys:
            sizes[1] = length
        return torch.cat([_pad_to(t, sizes, self.padded_keys[key]) for t in tensors])


def _pad_to(tensor: torch.Tensor, sizes: dict[int, int], value: float) -> torch.Tensor:
    """Pad ``tensor`` at the end of each dimension ``d`` up to ``sizes[d]``."""
    pad: list[int] = []
    for dim in reversed(range(tensor.dim())):
        pad += [0, max(0, sizes.get(dim, tensor.shape[dim]) - tensor.shape[dim])]
    if not any(pad):
        return tensor
    return torch.nn.functional.pad(tensor, pad, value=value)


class TextCollator(Collator):
    """Text-only causal language models."""


class QwenVLCollator(Collator):
    """Qwen2-VL and Qwen2.5-VL: flattened patches and one ``(t, h, w)`` grid row per image."""

    model_types = ("qwen2_vl", "qwen2_5_vl")
    concat_keys = frozenset({"pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw"})


class LlavaCollator(Collator):
    """LLaVA (and LLaVA-NeXT): one pixel tensor per image, concatenated; sizes per image."""

    model_types = ("llava", "llava_next")
    concat_keys = frozenset({"pixel_values", "image_sizes"})


class InternVLCollator(Collator):
    """transformers' InternVL: image tiles of all images concatenated along the first dimension."""

    model_types = ("internvl",)
    concat_keys = frozenset({"pixel_values", "image_num_patches"})


class Idefics3Collator(Collator):
    """Idefics3 / SmolVLM: ``(batch, images, C, H, W)`` padded on the image axis, with its mask."""

    model_types = ("idefics3", "smolvlm")
    padded_keys: ClassVar[dict[str, int | float]] = {"pixel_values": 0.0, "pixel_attention_mask": 0}


class MllamaCollator(Collator):
    """Mllama (Llama-3.2-Vision): tiles per image, aspect ratios and a token x image cross-attention mask."""

    model_types = ("mllama",)
    padded_keys: ClassVar[dict[str, int | float]] = {
        "pixel_values": 0.0,
        "aspect_ratio_ids": 0,
        "aspect_ratio_mask": 0,
        "cross_attention_mask": 0,
    }
    token_axis_keys = frozenset({"cross_attention_mask"})


COLLATORS: dict[str, type[Collator]] = {}


def register_collator(collator: type[Collator]) -> type[Collator]:
    """Register a collator class for each of its ``model_types`` (usable as a decorator)."""
    for model_type in collator.model_types:
        COLLATORS[model_type] = collator
    return collator


for _builtin in (QwenVLCollator, LlavaCollator, InternVLCollator, Idefics3Collator, MllamaCollator):
    register_collator(_builtin)


def collator_for(model_type: str, pad_token_id: int | None, *, multimodal: bool = True) -> Collator:
    """The collator of a model family; text-only models get :class:`TextCollator`.

    Raises:
        UnknownPluginError: a multimodal ``model_type`` with no registered collator (lists the known ones).
    """
    if model_type in COLLATORS:
        return COLLATORS[model_type](pad_token_id)
    if not multimodal:
        return TextCollator(pad_token_id)
    raise UnknownPluginError(
        f"no collator for model_type {model_type!r}; known: {', '.join(sorted(COLLATORS))}. "
        "Fix: use one of those families or register one with mmat.train.collators.register_collator"
    )


def describe_collators() -> dict[str, Any]:
    """``model_type -> collator class name`` (for ``mmat train --help`` and docs)."""
    return {name: cls.__name__ for name, cls in sorted(COLLATORS.items())}
