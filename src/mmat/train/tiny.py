"""A tiny randomly-initialised LLaVA-family VLM built offline, for tests, demos and CPU benchmarks.

Nothing is downloaded: the byte-level BPE tokenizer is trained with ``tokenizers`` on the texts given,
the image processor is transformers' PIL CLIP processor (no torchvision), and the model is a
LLaVA with a 2-layer CLIP vision tower and a 2-layer Llama language model built from configs. The saved
folder loads with ``AutoProcessor`` / ``AutoModelForImageTextToText`` like any checkpoint, so
``mmat train --model FOLDER`` exercises the real loading path.

Example:
    >>> build_tiny_llava(Path("out/tiny-llava"), texts=["<THOUGHT>...</THOUGHT>"])  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image>{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""A ChatML template: the same shape as Qwen's and InternVL's, with LLaVA's ``<image>`` token."""

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<image>", "<|im_start|>", "<|im_end|>")


def train_tokenizer(
    texts: Iterable[str],
    *,
    vocab_size: int = 512,
    special_tokens: Iterable[str] = SPECIAL_TOKENS,
    **named_tokens: Any,
) -> Any:
    """A byte-level BPE ``PreTrainedTokenizerFast`` trained on ``texts`` (offline, a second or less).

    ``named_tokens`` are passed to the tokenizer (``bos_token``, ``eos_token``, ``pad_token``,
    ``extra_special_tokens``...); the default is LLaVA's set.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(list(texts), trainer)
    names = named_tokens or {
        "bos_token": "<s>",
        "eos_token": "<|im_end|>",
        "pad_token": "<pad>",
        "extra_special_tokens": {"image_token": "<image>"},
    }
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **names)


def build_tiny_llava(
    out_dir: Path,
    *,
    texts: Iterable[str] = ("<THOUGHT>a</THOUGHT><SIGNAL>continue</SIGNAL>",),
    hidden_size: int = 32,
    layers: int = 2,
    image_size: int = 28,
    vocab_size: int = 512,
    seed: int = 0,
) -> Path:
    """Build, save and return the folder of a tiny random LLaVA with its processor.

    Args:
        out_dir: where the checkpoint goes (``config.json``, weights, tokenizer, processor files).
        texts: what the tokenizer is trained on (pass the training texts for short sequences).
        hidden_size, layers: size of both towers.
        image_size: the square input of the vision tower (patch size 14).
    """
    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tokenizer = train_tokenizer(texts, vocab_size=vocab_size)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=14,
        vision_feature_select_strategy="default",
        chat_template=CHAT_TEMPLATE,
        num_additional_image_tokens=1,
    )
    vision = CLIPVisionConfig(
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=14,
        projection_dim=hidden_size,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),  # type: ignore[arg-type]
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id,  # type: ignore[attr-defined]
        bos_token_id=tokenizer.bos_token_id,  # type: ignore[attr-defined]
        eos_token_id=tokenizer.eos_token_id,  # type: ignore[attr-defined]
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),  # type: ignore[attr-defined,call-arg]
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir))
    processor.save_pretrained(str(out_dir))
    return out_dir


QWEN_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""Qwen2-VL's ChatML layout with its vision tokens."""

QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)


def _token_id(tokenizer: Any, token: str) -> int:
    return int(tokenizer.convert_tokens_to_ids(token))


def build_tiny_qwen2_vl(
    out_dir: Path,
    *,
    texts: Iterable[str] = ("<THOUGHT>a</THOUGHT><SIGNAL>continue</SIGNAL>",),
    hidden_size: int = 32,
    layers: int = 2,
    vocab_size: int = 512,
    seed: int = 0,
) -> Path:
    """Build, save and return a tiny random Qwen2-VL with a torchvision-free processor.

    Images are resized to 4..16 patches of 28 x 28 pixels (1..4 tokens after the 2 x 2 merge).
    """
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from mmat.train.processors import QwenVLImageTokenProcessor

    tokenizer = train_tokenizer(
        texts,
        vocab_size=vocab_size,
        special_tokens=list(QWEN_SPECIAL_TOKENS),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16, patch_size=14, merge_size=2, temporal_patch_size=2
    )
    ids: dict[str, int] = {token: _token_id(tokenizer, token) for token in QWEN_SPECIAL_TOKENS}
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": hidden_size,
            "intermediate_size": 2 * hidden_size,
            "num_hidden_layers": layers,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
            "pad_token_id": ids["<|endoftext|>"],
            "bos_token_id": None,
            "eos_token_id": ids["<|im_end|>"],
        },
        vision_config={
            "depth": layers,
            "embed_dim": hidden_size,
            "hidden_size": hidden_size,
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "in_channels": 3,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir))
    QwenVLImageTokenProcessor(image_processor, tokenizer, QWEN_CHAT_TEMPLATE).save_pretrained(out_dir)
    return out_dir


INTERNVL_CHAT_TEMPLATE = CHAT_TEMPLATE.replace("<image>", "<IMG_CONTEXT>")
"""ChatML with InternVL's image context token (the processor wraps it in ``<img>``...``</img>``)."""

INTERNVL_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>")


def build_tiny_internvl(
    out_dir: Path,
    *,
    texts: Iterable[str] = ("<THOUGHT>a</THOUGHT><SIGNAL>continue</SIGNAL>",),
    hidden_size: int = 32,
    layers: int = 1,
    vocab_size: int = 512,
    seed: int = 0,
) -> Path:
    """Build, save and return a tiny random transformers-InternVL (Qwen2 language model).

    Tiles are 28 x 28 pixels, 1 to 3 crops plus a thumbnail per image, one token per tile after the
    pixel shuffle (``image_seq_length`` 1).
    """
    import torch
    from transformers import InternVLConfig, InternVLForConditionalGeneration
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

    from mmat.train.processors import InternVLImageTokenProcessor

    tokenizer = train_tokenizer(
        texts,
        vocab_size=vocab_size,
        special_tokens=list(INTERNVL_SPECIAL_TOKENS),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    image_processor = GotOcr2ImageProcessorPil(
        size={"height": 28, "width": 28}, crop_to_patches=True, min_patches=1, max_patches=3
    )
    config = InternVLConfig(
        vision_config={
            "hidden_size": hidden_size,
            "num_hidden_layers": layers,
            "num_attention_heads": 2,
            "intermediate_size": 2 * hidden_size,
            "image_size": 28,
            "patch_size": 14,
        },
        text_config={
            "model_type": "qwen2",
            "vocab_size": len(tokenizer),
            "hidden_size": hidden_size,
            "intermediate_size": 2 * hidden_size,
            "num_hidden_layers": layers,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "pad_token_id": _token_id(tokenizer, "<|endoftext|>"),
            "eos_token_id": _token_id(tokenizer, "<|im_end|>"),
        },
        image_token_id=_token_id(tokenizer, "<IMG_CONTEXT>"),
        image_seq_length=1,
    )
    torch.manual_seed(seed)
    model = InternVLForConditionalGeneration(config)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir))
    InternVLImageTokenProcessor(
        image_processor, tokenizer, INTERNVL_CHAT_TEMPLATE, image_seq_length=1
    ).save_pretrained(out_dir)
    return out_dir


MLLAMA_CHAT_TEMPLATE = (
    "{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<|image|>{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|eot_id|>{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
"""Llama-3's header layout with Mllama's single ``<|image|>`` token per image."""

MLLAMA_SPECIAL_TOKENS = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|eot_id|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|image|>",
    "<|finetune_right_pad_id|>",
    "<|python_tag|>",
)


def build_tiny_mllama(
    out_dir: Path,
    *,
    texts: Iterable[str] = ("<THOUGHT>a</THOUGHT><SIGNAL>continue</SIGNAL>",),
    hidden_size: int = 32,
    vocab_size: int = 512,
    seed: int = 0,
) -> Path:
    """Build, save and return a tiny random Mllama (Llama-3.2-Vision family): 28 px tiles, up to 4."""
    import torch
    from transformers import (
        MllamaConfig,
        MllamaForConditionalGeneration,
        MllamaProcessor,
    )
    from transformers.models.mllama.image_processing_pil_mllama import MllamaImageProcessorPil

    tokenizer = train_tokenizer(
        texts,
        vocab_size=vocab_size,
        special_tokens=list(MLLAMA_SPECIAL_TOKENS),
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        pad_token="<|finetune_right_pad_id|>",
    )
    processor = MllamaProcessor(
        image_processor=MllamaImageProcessorPil(size={"height": 28, "width": 28}, max_image_tiles=4),
        tokenizer=tokenizer,
        chat_template=MLLAMA_CHAT_TEMPLATE,
    )
    config = MllamaConfig(
        vision_config={
            "hidden_size": hidden_size,
            "num_hidden_layers": 2,
            "num_global_layers": 1,
            "attention_heads": 2,
            "intermediate_size": 2 * hidden_size,
            "image_size": 28,
            "patch_size": 14,
            "max_num_tiles": 4,
            "vision_output_dim": 2 * hidden_size,
            "intermediate_layers_indices": [0],
        },
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": hidden_size,
            "intermediate_size": 2 * hidden_size,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "cross_attention_layers": [1],
            "pad_token_id": _token_id(tokenizer, "<|finetune_right_pad_id|>"),
            "bos_token_id": _token_id(tokenizer, "<|begin_of_text|>"),
            "eos_token_id": _token_id(tokenizer, "<|eot_id|>"),
        },
        image_token_index=_token_id(tokenizer, "<|image|>"),
    )
    torch.manual_seed(seed)
    model = MllamaForConditionalGeneration(config)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir))
    processor.save_pretrained(str(out_dir))
    return out_dir


IDEFICS3_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}:"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image>{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant:{% endif %}"
)
"""Idefics3's ``User:``/``Assistant:`` layout with its image token (the processor adds tile tokens)."""


def build_tiny_idefics3(
    out_dir: Path,
    *,
    texts: Iterable[str] = ("<THOUGHT>a</THOUGHT><SIGNAL>continue</SIGNAL>",),
    hidden_size: int = 32,
    vocab_size: int = 512,
    seed: int = 0,
) -> Path:
    """Build, save and return a tiny random Idefics3: images split into 28 px crops plus a global view."""
    import torch
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3Processor,
    )
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    specials = ["<|endoftext|>", "<|im_start|>", "<end_of_utterance>", "<image>", "<fake_token_around_image>"]
    specials += ["<global-img>"] + [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]
    tokenizer = train_tokenizer(
        texts,
        vocab_size=vocab_size,
        special_tokens=specials,
        bos_token="<|im_start|>",
        eos_token="<end_of_utterance>",
        pad_token="<|endoftext|>",
        extra_special_tokens={
            "image_token": "<image>",
            "fake_image_token": "<fake_token_around_image>",
            "global_image_token": "<global-img>",
            "end_of_utterance_token": "<end_of_utterance>",
        },
    )
    processor = Idefics3Processor(
        image_processor=Idefics3ImageProcessorPil(
            size={"longest_edge": 56}, max_image_size={"longest_edge": 28}
        ),
        tokenizer=tokenizer,
        chat_template=IDEFICS3_CHAT_TEMPLATE,
        image_seq_len=1,
    )
    config = Idefics3Config(
        vision_config={
            "hidden_size": hidden_size,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 2 * hidden_size,
            "image_size": 28,
            "patch_size": 14,
        },
        text_config={
            "model_type": "llama",
            "vocab_size": len(tokenizer),
            "hidden_size": hidden_size,
            "intermediate_size": 2 * hidden_size,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "pad_token_id": _token_id(tokenizer, "<|endoftext|>"),
        },
        image_token_id=_token_id(tokenizer, "<image>"),
        scale_factor=2,
    )
    torch.manual_seed(seed)
    model = Idefics3ForConditionalGeneration(config)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir))
    processor.save_pretrained(str(out_dir))
    return out_dir
