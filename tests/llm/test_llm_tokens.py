"""Token estimates used by the TPM limit: text by characters, images by OpenAI's tiling rule."""

from __future__ import annotations

from mmat.llm.base import ChatMessage, DecodingParams, ImagePart, TextPart
from mmat.llm.tokens import estimate_image_tokens, estimate_prompt_tokens, estimate_request_tokens
from mmat.schema import ImageRef


def test_image_tokens_follow_the_tiling_rule() -> None:
    assert estimate_image_tokens(4000, 3000, "low") == 85
    assert estimate_image_tokens(512, 512, "high") == 255  # one tile
    assert estimate_image_tokens(1024, 1024, "high") == 765  # 768x768: four tiles
    assert estimate_image_tokens(2048, 4096, "high") == 1105  # 768x1536: six tiles
    assert estimate_image_tokens(None, None, "auto") == 765  # unknown size counts as 1024x1024


def test_request_tokens_count_text_images_and_max_tokens() -> None:
    image = ImageRef(path="a.png", width=512, height=512)
    messages = [
        ChatMessage(role="system", content="x" * 40),
        ChatMessage(role="user", content=[TextPart(text="y" * 8), ImagePart(image=image, detail="high")]),
    ]
    assert estimate_prompt_tokens(messages) == (4 + 10 + 4 + 2, 255)
    assert estimate_prompt_tokens(messages, "low") == (20, 255)  # an explicit detail wins
    assert estimate_request_tokens(messages, DecodingParams(max_tokens=100)) == 20 + 255 + 100
