"""Loading a checkpoint's processor, with torchvision-free stand-ins where transformers needs it.

transformers' Qwen2-VL, Qwen2.5-VL and InternVL processors bundle a *video* processor that imports
torchvision, so ``AutoProcessor.from_pretrained`` fails where torchvision cannot be installed (as
beside this project's CPU torch). Training on images needs none of it: :class:`ImageTokenProcessor`
builds the same inputs from the checkpoint's PIL image processor and tokenizer, expanding each image
placeholder into the number of tokens the vision tower produces, exactly as the transformers processor
does (``tests/train`` checks the result against the model). LLaVA, Idefics3 and Mllama processors
have no video part and load normally.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, ClassVar

import torch

from mmat.errors import ConfigError


class ImageTokenProcessor:
    """A minimal multimodal processor: chat template, PIL image processor, tokenizer, token expansion.

    Subclasses set :attr:`model_types` and implement :meth:`expand` (the text of image ``i``).
    The interface is the part of a transformers processor that mmat's encoder uses:
    ``apply_chat_template(..., tokenize=False)`` and ``__call__(text=[...], images=[...])``.
    """

    model_types: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self, image_processor: Any, tokenizer: Any, chat_template: str | None, **options: Any
    ) -> None:
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.chat_template = chat_template or getattr(tokenizer, "chat_template", None)
        self.options = options

    image_token: str = ""

    @property
    def image_token_id(self) -> int:
        return int(self.tokenizer.convert_tokens_to_ids(self.image_token))

    @classmethod
    def from_pretrained(cls, path: str | Path) -> ImageTokenProcessor:
        from transformers import AutoImageProcessor, AutoTokenizer

        folder = Path(path)
        template = None
        if (folder / "chat_template.jinja").is_file():
            template = (folder / "chat_template.jinja").read_text(encoding="utf-8")
        elif (folder / "chat_template.json").is_file():
            template = json.loads((folder / "chat_template.json").read_text(encoding="utf-8")).get(
                "chat_template"
            )
        options: dict[str, Any] = {}
        if (folder / "processor_config.json").is_file():
            options = json.loads((folder / "processor_config.json").read_text(encoding="utf-8"))
        return cls(
            AutoImageProcessor.from_pretrained(str(folder)),
            AutoTokenizer.from_pretrained(str(folder)),
            template,
            **options,
        )

    def save_pretrained(self, path: str | Path) -> None:
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(str(folder))
        self.image_processor.save_pretrained(str(folder))
        if self.chat_template:
            (folder / "chat_template.jinja").write_text(self.chat_template, encoding="utf-8")
        if self.options:
            (folder / "processor_config.json").write_text(
                json.dumps(self.options, indent=2), encoding="utf-8"
            )

    def apply_chat_template(
        self,
        conversation: list[dict[str, Any]],
        *,
        tokenize: bool = False,
        add_generation_prompt: bool = False,
    ) -> str:
        if tokenize:
            raise ValueError("ImageTokenProcessor renders text only; call it on the text to tokenise")
        text = self.tokenizer.apply_chat_template(
            conversation,
            chat_template=self.chat_template,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
        )
        return str(text)

    def expand(self, image_inputs: dict[str, Any], index: int) -> str:
        """The text that replaces the ``index``-th image placeholder."""
        raise NotImplementedError

    def extra_inputs(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        return {}

    def image_inputs(self, images: list[Any]) -> dict[str, Any]:
        return dict(self.image_processor(images=images, return_tensors="pt"))

    def __call__(
        self,
        text: str | list[str],
        images: list[Any] | None = None,
        return_tensors: str = "pt",
        add_special_tokens: bool = False,
        **_: Any,
    ) -> dict[str, Any]:
        texts = [text] if isinstance(text, str) else list(text)
        image_inputs = self.image_inputs(images) if images else {}
        count = 0
        expanded = []
        marker = "\0mmat-image\0"
        for sample in texts:
            pieces = sample.split(self.image_token)
            out = [pieces[0]]
            for piece in pieces[1:]:
                if not image_inputs:
                    raise ConfigError("the text holds an image placeholder but no image was given")
                out += [marker + str(count) + marker, piece]
                count += 1
            joined = "".join(out)
            expanded.append(
                re.sub(
                    re.escape(marker) + r"(\d+)" + re.escape(marker),
                    lambda m: self.expand(image_inputs, int(m.group(1))),
                    joined,
                )
            )
        if image_inputs and count != self.image_count(image_inputs):
            raise ConfigError(
                f"{count} image placeholders in the text but {self.image_count(image_inputs)} images"
            )
        encoded = self.tokenizer(
            expanded, return_tensors=return_tensors, add_special_tokens=add_special_tokens
        )
        result: dict[str, Any] = dict(encoded)
        result.update(self.extra_inputs(result["input_ids"]))
        result.update({k: v for k, v in image_inputs.items() if k not in self.dropped_keys})
        return result

    dropped_keys: ClassVar[frozenset[str]] = frozenset()

    def image_count(self, image_inputs: dict[str, Any]) -> int:
        raise NotImplementedError


class QwenVLImageTokenProcessor(ImageTokenProcessor):
    """Qwen2-VL / Qwen2.5-VL: ``<|image_pad|>`` repeated ``t*h*w / merge_size^2`` times per image."""

    model_types = ("qwen2_vl", "qwen2_5_vl")
    image_token = "<|image_pad|>"

    def expand(self, image_inputs: dict[str, Any], index: int) -> str:
        merge = int(self.image_processor.merge_size) ** 2
        return self.image_token * int(image_inputs["image_grid_thw"][index].prod() // merge)

    def image_count(self, image_inputs: dict[str, Any]) -> int:
        return int(image_inputs["image_grid_thw"].shape[0])

    def extra_inputs(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        # M-RoPE needs to know which tokens are image tokens (1), as the transformers processor says
        return {"mm_token_type_ids": (input_ids == self.image_token_id).to(torch.int64)}


class InternVLImageTokenProcessor(ImageTokenProcessor):
    """transformers' InternVL: ``<img>`` + ``<IMG_CONTEXT>`` x (image_seq_length x tiles) + ``</img>``."""

    model_types = ("internvl",)
    image_token = "<IMG_CONTEXT>"
    dropped_keys = frozenset({"num_patches"})

    def expand(self, image_inputs: dict[str, Any], index: int) -> str:
        tiles = int(image_inputs["num_patches"][index])
        length = int(self.options.get("image_seq_length", 256))
        start = getattr(self.tokenizer, "start_image_token", None) or "<img>"
        end = getattr(self.tokenizer, "end_image_token", None) or "</img>"
        return start + self.image_token * (length * tiles) + end

    def image_count(self, image_inputs: dict[str, Any]) -> int:
        return len(image_inputs["num_patches"])


LITE_PROCESSORS: dict[str, type[ImageTokenProcessor]] = {
    model_type: cls
    for cls in (QwenVLImageTokenProcessor, InternVLImageTokenProcessor)
    for model_type in cls.model_types
}


def load_processor(path: str, model_type: str) -> Any:
    """The checkpoint's processor; a torchvision-free :class:`ImageTokenProcessor` where needed."""
    from transformers import AutoProcessor, AutoTokenizer

    try:
        return AutoProcessor.from_pretrained(path)
    except (ImportError, OSError, ValueError, TypeError, AttributeError) as error:
        if model_type in LITE_PROCESSORS:
            return LITE_PROCESSORS[model_type].from_pretrained(path)
        try:
            return AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError) as second:
            raise ConfigError(
                f"--model {path}: no processor or tokenizer could be loaded ({error}; {second}). "
                "Fix: the checkpoint folder needs its tokenizer (and processor) files"
            ) from None
