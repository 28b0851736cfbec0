"""image_caption: the two CCoT teacher calls through ``chat``, the scene graph feeding label_bbox,
and the labelled fallback composed from the other operators."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mmat.config import RunConfig
from mmat.errors import TeacherError
from mmat.llm.base import ChatMessage, Completion, ImagePart
from mmat.tools.caption import FALLBACK_LABEL, parse_scene_graph
from mmat.tools.runner import ToolRunner

GRAPH = {
    "objects": [{"name": "woman", "attributes": ["smiling"]}, {"name": "uniform", "attributes": ["dark"]}],
    "relationships": [{"subject": "woman", "predicate": "wearing", "object": "uniform"}],
}


class ScriptedChat:
    """Stands in for StageContext.chat: records calls and answers by purpose."""

    def __init__(self, graph_reply: str | None = None, fail: bool = False) -> None:
        self.calls: list[dict[str, Any]] = []
        self.graph_reply = graph_reply or "```json\n" + json.dumps(GRAPH) + "\n```"
        self.fail = fail

    async def __call__(
        self, messages: list[ChatMessage], *, purpose: str, prompt_hash: str, params: Any = None
    ) -> Completion:
        self.calls.append(
            {"messages": messages, "purpose": purpose, "prompt_hash": prompt_hash, "params": params}
        )
        if self.fail:
            raise TeacherError("rate_limit", "teacher rate limit retries exhausted")
        if purpose.endswith("scene_graph"):
            return Completion(text=self.graph_reply)
        return Completion(text="A smiling woman  in a dark uniform poses for a portrait.")


def caption_only() -> RunConfig:
    return RunConfig.from_dict({"tools": {"enabled": ["image_caption", "ocr", "face_detection"]}})


async def test_ccot_asks_for_a_scene_graph_then_a_caption(grace_hopper) -> None:
    chat = ScriptedChat()
    async with ToolRunner(caption_only(), chat=chat) as runner:
        result = await runner.run("image_caption", [grace_hopper], question="Who is in the photo?")
    assert result.ok, result.error
    assert result.text == "A smiling woman in a dark uniform poses for a portrait."
    assert result.payload["mode"] == "ccot" and result.payload["scene_graph"] == GRAPH
    first, second = chat.calls
    assert first["purpose"] == "tool.image_caption.scene_graph" and first["params"].json_mode
    assert second["purpose"] == "tool.image_caption.caption" and first["prompt_hash"] != second["prompt_hash"]
    user = first["messages"][1].content
    assert isinstance(user[0], ImagePart) and user[0].image.sha256  # the image goes by reference, hashed
    assert "Who is in the photo?" in first["messages"][1].text()
    assert json.dumps(GRAPH) in second["messages"][1].text()


async def test_scene_graph_feeds_label_bbox_of_the_same_image(grace_hopper) -> None:
    seen: list[dict[str, Any]] = []

    def detector(images: list, **args: Any) -> str:
        seen.append(args)
        return repr({obj["name"]: [[0.1, 0.1, 0.5, 0.5]] for obj in args["scene_graph"]["objects"]})

    async with ToolRunner(caption_only(), chat=ScriptedChat()) as runner:
        runner.register("label_bbox", "detector", detector)
        await runner.run("image_caption", [grace_hopper], question="q")
        result = await runner.run("label_bbox", [grace_hopper])
    assert seen[0]["scene_graph"] == GRAPH
    assert result.text == "{'woman': [[0.1, 0.1, 0.5, 0.5]], 'uniform': [[0.1, 0.1, 0.5, 0.5]]}"


async def test_teacher_failures_become_errors(grace_hopper) -> None:
    async with ToolRunner(caption_only(), chat=ScriptedChat(fail=True)) as runner:
        failed = await runner.run("image_caption", [grace_hopper])
    assert failed.error == "TeacherError: teacher rate limit retries exhausted"
    async with ToolRunner(caption_only(), chat=ScriptedChat(graph_reply="I cannot do JSON")) as runner:
        bad = await runner.run("image_caption", [grace_hopper])
    assert bad.error is not None and "scene graph is not JSON" in bad.error


async def test_fallback_is_labelled_and_composed_from_operators(grace_hopper, rapid_ocr) -> None:
    async with ToolRunner(caption_only()) as runner:  # no teacher chat
        runner.add_tool(rapid_ocr)
        result = await runner.run("image_caption", [grace_hopper])
    assert result.ok, result.error
    lines = result.text.splitlines()
    assert lines[0] == FALLBACK_LABEL
    assert lines[1] == "A 512x600 image."
    assert lines[2].startswith("Faces: There is one face with a coordinate: [")
    assert lines[3].startswith("Text in the image:")
    assert result.payload == {
        "mode": "fallback",
        "scene_graph": None,
        "caption": None,
        "sources": ["face_detection", "ocr"],
    }


async def test_use_teacher_true_without_chat_is_an_error(grace_hopper) -> None:
    config = RunConfig.from_dict(
        {"tools": {"enabled": ["image_caption"], "options": {"image_caption": {"use_teacher": True}}}}
    )
    async with ToolRunner(config) as runner:
        result = await runner.run("image_caption", [grace_hopper])
    assert result.error is not None and "use_teacher=true" in result.error


def test_parse_scene_graph_tolerates_prose() -> None:
    assert parse_scene_graph('Here: {"objects": [{"name": "cat"}]} done')["relationships"] == []
    with pytest.raises(Exception, match="not valid JSON"):
        parse_scene_graph("{objects: [}")


async def test_label_bbox_waits_for_a_caption_running_in_the_same_step(grace_hopper) -> None:
    import asyncio

    seen: list[Any] = []

    def detector(images: list, **args: Any) -> str:
        seen.append(args.get("scene_graph"))
        return "{}"

    chat = ScriptedChat()
    async with ToolRunner(caption_only(), chat=chat) as runner:
        runner.register("label_bbox", "detector", detector)
        caption, boxes = await asyncio.gather(
            runner.run("image_caption", [grace_hopper], question="q"),
            runner.run("label_bbox", [grace_hopper]),
        )
    assert caption.ok and boxes.ok and seen == [GRAPH]
    assert len(chat.calls) == 2  # one caption, not a second one for the detector


async def test_label_bbox_alone_captions_first_to_get_queries(grace_hopper) -> None:
    seen: list[Any] = []

    def detector(images: list, **args: Any) -> str:
        seen.append(args.get("scene_graph"))
        return "{}"

    chat = ScriptedChat()
    async with ToolRunner(caption_only(), chat=chat) as runner:
        runner.register("label_bbox", "detector", detector)
        await runner.run("label_bbox", [grace_hopper])
        await runner.run("label_bbox", [grace_hopper], queries=["hat"])
    assert seen == [GRAPH, None] and [c["purpose"] for c in chat.calls] == [
        "tool.image_caption.scene_graph",
        "tool.image_caption.caption",
    ]
