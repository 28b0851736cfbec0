"""The ``image_caption`` operator: compositional chain-of-thought captioning (CCoT) by the teacher.

Step 1 asks the teacher (through the engine's ``chat``, so calls are cached and rate-limited) for a
scene graph of the objects, attributes and relationships relevant to the question, as JSON; step 2
asks for a concise caption written from that graph. The caption is the rendered text; the payload
keeps ``{"mode": "ccot", "scene_graph": {...}, "caption": "...", "question": "..."}`` and the
runner feeds the graph's object names to ``label_bbox`` on the same image.

Without a teacher that sees images (no ``chat``, or ``use_teacher: false``) a clearly labelled
fallback is composed from the other operators that can run here (OCR, face detection)::

    [Fallback caption composed from operator outputs; no image-capable teacher was used]
    A 512x600 image. Faces: There is one face with a coordinate: [182.0, 121.0, 353.0, 332.0]
    Text in the image: none detected.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any, ClassVar

import yaml

from mmat.errors import ToolError
from mmat.schema import ImageRef, ToolResult
from mmat.tools.base import AsyncTool, ToolContext

FALLBACK_LABEL = "[Fallback caption composed from operator outputs; no image-capable teacher was used]"
NO_QUESTION = "(no question given; describe the main content)"


@cache
def ccot_prompts() -> dict[str, dict[str, str]]:
    text = resources.files("mmat.tools").joinpath("prompts/ccot.yaml").read_text(encoding="utf-8")
    data: dict[str, dict[str, str]] = yaml.safe_load(text)
    return data


def prompt_hash(prompt: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(prompt, sort_keys=True).encode()).hexdigest()[:16]


def parse_scene_graph(text: str) -> dict[str, Any]:
    """The JSON object in a teacher reply (code fences and prose around it tolerated)."""
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    body = fenced.group(1) if fenced else text
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end <= start:
        raise ToolError(f"the teacher's scene graph is not JSON: {text[:200]!r}")
    try:
        graph = json.loads(body[start : end + 1])
    except json.JSONDecodeError as error:
        raise ToolError(f"the teacher's scene graph is not valid JSON ({error}): {text[:200]!r}") from None
    if not isinstance(graph, dict):
        raise ToolError("the teacher's scene graph is not a JSON object")
    graph.setdefault("objects", [])
    graph.setdefault("relationships", [])
    return graph


class CcotCaptionTool(AsyncTool):
    """Two-step CCoT captioning through the teacher, with a labelled operator-composed fallback.

    Args:
        use_teacher: ``None`` (default) asks the teacher when the runner has ``chat``; ``False`` always
            uses the fallback (a text-only teacher); ``True`` fails when there is no ``chat``.
        max_tokens: decoding budget of each of the two teacher calls.

    Call arguments: ``question`` (the QA's question; the graph keeps what matters for it).
    """

    name: ClassVar[str] = "image_caption"
    description: ClassVar[str] = (
        "Describes the image: the objects relevant to the question, their attributes and relationships, "
        "as a concise caption."
    )
    version: ClassVar[str] = "ccot-1"
    cacheable: ClassVar[bool] = False  # the teacher calls are cached by the engine, keyed by the teacher

    def __init__(self, *, use_teacher: bool | None = None, max_tokens: int = 512) -> None:
        self.use_teacher = use_teacher
        self.max_tokens = max_tokens

    async def arun(self, images: Sequence[ImageRef], ctx: ToolContext, **args: Any) -> ToolResult:
        question = str(args.get("question") or NO_QUESTION)
        chat = getattr(ctx, "chat", None)
        if self.use_teacher is True and chat is None:
            raise ToolError(
                "image_caption is set to use_teacher=true but the runner was given no teacher chat"
            )
        if chat is not None and self.use_teacher is not False:
            return await self.ccot(images, chat, question)
        return await self.fallback(images, ctx)

    async def ccot(self, images: Sequence[ImageRef], chat: Any, question: str) -> ToolResult:
        from mmat.llm.base import ChatMessage, DecodingParams, ImagePart, TextPart

        prompts = ccot_prompts()
        image_parts: list[ImagePart | TextPart] = [ImagePart(image=ref) for ref in images]
        graph_prompt = prompts["scene_graph"]
        reply = await chat(
            [
                ChatMessage(role="system", content=graph_prompt["system"]),
                ChatMessage(
                    role="user",
                    content=[*image_parts, TextPart(text=graph_prompt["user"].format(question=question))],
                ),
            ],
            purpose="tool.image_caption.scene_graph",
            prompt_hash=prompt_hash(graph_prompt),
            params=DecodingParams(max_tokens=self.max_tokens, json_mode=True),
        )
        graph = parse_scene_graph(reply.text)
        caption_prompt = prompts["caption"]
        graph_json = json.dumps(graph, ensure_ascii=False)
        reply = await chat(
            [
                ChatMessage(role="system", content=caption_prompt["system"]),
                ChatMessage(
                    role="user",
                    content=[
                        *image_parts,
                        TextPart(
                            text=caption_prompt["user"].format(question=question, scene_graph=graph_json)
                        ),
                    ],
                ),
            ],
            purpose="tool.image_caption.caption",
            prompt_hash=prompt_hash(caption_prompt),
            params=DecodingParams(max_tokens=self.max_tokens),
        )
        caption = " ".join(reply.text.split())
        if not caption:
            raise ToolError("the teacher returned an empty caption")
        return ToolResult(
            tool=self.name,
            payload={"mode": "ccot", "scene_graph": graph, "caption": caption, "question": question},
            text=caption,
        )

    async def fallback(self, images: Sequence[ImageRef], ctx: ToolContext) -> ToolResult:
        from mmat.images import load_image

        available = ctx.available()
        parts = [FALLBACK_LABEL]
        sources: dict[str, Any] = {}
        try:
            image = load_image(images[0])
            parts.append(f"A {image.width}x{image.height} image.")
        except Exception as error:
            raise ToolError(f"cannot read the image for the fallback caption: {error}") from None
        if "face_detection" in available:
            faces = await ctx.run("face_detection", images)
            if faces.ok:
                parts.append(f"Faces: {faces.text}")
                sources["face_detection"] = faces.payload
        if "ocr" in available:
            ocr = await ctx.run("ocr", images)
            if ocr.ok:
                lines = [row for row in (ocr.payload or {}).get("rows", [])]
                shown = "; ".join(lines)
                parts.append(
                    f"Text in the image: {shown[:600]}" if shown else "Text in the image: none detected."
                )
                sources["ocr"] = ocr.payload
        return ToolResult(
            tool=self.name,
            payload={"mode": "fallback", "scene_graph": None, "caption": None, "sources": sorted(sources)},
            text="\n".join(parts),
        )
