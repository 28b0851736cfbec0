"""Token estimates made before a request is sent (for TPM limits and projected cost).

Text is counted at about four characters per token, which is what OpenAI documents as the rule of
thumb for English; images follow OpenAI's published tiling rule for GPT-4o class models: ``low``
detail costs a flat 85 tokens, ``high`` (and ``auto``, priced as high to stay on the safe side)
scales the image into 2048x2048, then its short side to 768, and costs 170 per 512-pixel tile plus 85.
"""

from __future__ import annotations

import math

from mmat.llm.base import ChatMessage, DecodingParams, ImagePart, TextPart

LOW_DETAIL_TOKENS = 85
TILE_TOKENS = 170
UNKNOWN_SIZE = (1024, 1024)


def estimate_text_tokens(text: str) -> int:
    """About four characters per token, at least one for non-empty text."""
    return (len(text) + 3) // 4


def estimate_image_tokens(width: int | None, height: int | None, detail: str = "auto") -> int:
    """Image tokens by OpenAI's tiling rule; an unknown size counts as 1024x1024."""
    if detail == "low":
        return LOW_DETAIL_TOKENS
    w, h = (
        (float(width), float(height))
        if width and height
        else (float(UNKNOWN_SIZE[0]), float(UNKNOWN_SIZE[1]))
    )
    scale = min(1.0, 2048 / max(w, h))
    w, h = w * scale, h * scale
    scale = min(1.0, 768 / min(w, h))
    w, h = w * scale, h * scale
    tiles = math.ceil(w / 512) * math.ceil(h / 512)
    return TILE_TOKENS * tiles + LOW_DETAIL_TOKENS


def estimate_prompt_tokens(messages: list[ChatMessage], default_detail: str = "auto") -> tuple[int, int]:
    """``(text_tokens, image_tokens)`` of a request's messages (4 tokens of framing per message)."""
    text = image = 0
    for message in messages:
        text += 4
        if isinstance(message.content, str):
            text += estimate_text_tokens(message.content)
            continue
        for part in message.content:
            if isinstance(part, TextPart):
                text += estimate_text_tokens(part.text)
            elif isinstance(part, ImagePart):
                detail = default_detail if part.detail == "auto" else part.detail
                image += estimate_image_tokens(part.image.width, part.image.height, detail)
    return text, image


def estimate_request_tokens(
    messages: list[ChatMessage], params: DecodingParams, default_detail: str = "auto"
) -> int:
    """What a request may cost against a TPM limit: prompt (text + images) plus ``max_tokens``."""
    text, image = estimate_prompt_tokens(messages, default_detail)
    return text + image + params.max_tokens
