"""ToolRunner: cache keys, single flight, worker pool, batching, errors as data."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

from mmat.config import RunConfig
from mmat.errors import ConfigError, UnknownPluginError
from mmat.schema import ImageRef, ToolResult
from mmat.tools.base import Availability, BatchTool, Tool
from mmat.tools.cache import normalise_args, tool_cache_key
from mmat.tools.runner import ToolRunner, canonical_operator


class CountingTool(Tool):
    """Returns the image size; counts executions; optionally slow or crashing."""

    name: ClassVar[str] = "ocr"
    description: ClassVar[str] = "counts"
    version: ClassVar[str] = "t1"

    def __init__(self, delay: float = 0.0, crash: bool = False) -> None:
        self.calls = 0
        self.delay = delay
        self.crash = crash
        self.threads: set[str] = set()

    def run(self, images: Sequence[ImageRef], **args: Any) -> ToolResult:
        from mmat.images import load_image

        self.calls += 1
        self.threads.add(threading.current_thread().name)
        if self.crash:
            raise RuntimeError("backend exploded")
        time.sleep(self.delay)
        size = load_image(images[0]).size
        return ToolResult(tool=self.name, payload={"size": size, "args": args}, text=f"{size[0]}x{size[1]}")


def no_tools() -> RunConfig:
    return RunConfig.from_dict({"tools": {"enabled": []}})


@pytest.fixture
def images(tmp_path: Path) -> list[ImageRef]:
    from PIL import Image

    refs = []
    for index in range(5):
        path = tmp_path / f"img{index}.png"
        Image.new("RGB", (20 + index, 10), (index * 40, 0, 0)).save(path)
        refs.append(ImageRef(path=path.name, root=str(tmp_path)))
    return refs


async def test_result_is_cached_on_disk_across_runners(images, tmp_path) -> None:
    tool = CountingTool()
    async with ToolRunner(no_tools(), cache_dir=tmp_path / "cache", tools={"ocr": tool}) as runner:
        first = await runner.run("ocr", images[:1])
        second = await runner.run("ocr", images[:1])
    assert first.text == "20x10" and not first.cached and second.cached and tool.calls == 1
    assert first.cache_key == second.cache_key and first.version == "CountingTool:t1"
    other = CountingTool()
    async with ToolRunner(no_tools(), cache_dir=tmp_path / "cache", tools={"ocr": other}) as runner:
        third = await runner.run("ocr", images[:1])
    assert third.cached and third.text == "20x10" and other.calls == 0


async def test_args_are_part_of_the_key_but_not_their_order(images) -> None:
    tool = CountingTool()
    async with ToolRunner(no_tools(), tools={"ocr": tool}) as runner:
        await runner.run("ocr", images[:1], a=1, b=[1, 2])
        again = await runner.run("ocr", images[:1], b=[1, 2], a=1.0)
        await runner.run("ocr", images[:1], a=2, b=[1, 2])
    assert again.cached and tool.calls == 2
    assert normalise_args({"b": 1, "a": None}) == '{"b":1}'
    assert tool_cache_key(["x"], "ocr", "v1", {}) != tool_cache_key(["x"], "ocr", "v2", {})


async def test_concurrent_identical_calls_share_one_execution(images) -> None:
    tool = CountingTool(delay=0.2)
    async with ToolRunner(no_tools(), tools={"ocr": tool}) as runner:
        requests = [images[i % 2] for i in range(10)]
        results = await asyncio.gather(*(runner.run("ocr", [ref]) for ref in requests))
        assert tool.calls == 2
        assert runner.stats["executions"] == 2 and runner.stats["shared"] == 8
    assert [r.text for r in results] == ["20x10", "21x10"] * 5
    assert all(name.startswith("mmat-tool") for name in tool.threads)  # off the event loop


async def test_event_loop_stays_responsive_while_a_tool_runs(images) -> None:
    tool = CountingTool(delay=0.3)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        for _ in range(10):
            await asyncio.sleep(0.01)
            ticks += 1

    async with ToolRunner(no_tools(), tools={"ocr": tool}) as runner:
        await asyncio.gather(runner.run("ocr", images[:1]), ticker())
    assert ticks == 10


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda d: ImageRef(path="absent.png", root=str(d)), "image_missing"),
        (lambda d: ImageRef(path="../escape.png", root=str(d)), "image_outside_root"),
        (lambda d: ImageRef(path=str(d / "corrupt.png")), "image_undecodable"),
        (lambda d: ImageRef(path=str(d / "bomb.png")), "image_too_large"),
    ],
)
async def test_bad_images_become_errors(make, code, tmp_path) -> None:
    from PIL import Image

    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    Image.new("1", (12000, 9000)).save(tmp_path / "bomb.png")
    async with ToolRunner(no_tools(), tools={"ocr": CountingTool()}) as runner:
        result = await runner.run("ocr", [make(tmp_path)])
    assert not result.ok and result.error.startswith(code), result.error
    assert result.text == f"The ocr operator returned no result ({code})."


async def test_crash_and_timeout_become_errors_and_are_not_cached(images) -> None:
    config = RunConfig.from_dict({"tools": {"enabled": [], "timeout_s": 0.1}})
    async with ToolRunner(config, tools={"ocr": CountingTool(crash=True)}) as runner:
        crashed = await runner.run("ocr", images[:1])
        assert crashed.error == "crash: RuntimeError: backend exploded"
        assert len(runner.cache) == 0
    async with ToolRunner(config, tools={"ocr": CountingTool(delay=0.5)}) as runner:
        slow = await runner.run("ocr", images[:1])
    assert slow.error is not None and slow.error.startswith("timeout: ocr took longer than 0.1 s")


async def test_unknown_and_unavailable_operators(images) -> None:
    class Missing(CountingTool):
        name: ClassVar[str] = "face_detection"

        def availability(self) -> Availability:
            return Availability(False, "yuface is not installed. Fix: pip install 'mmat[face]'")

    async with ToolRunner(no_tools(), tools={"ocr": CountingTool(), "face_detection": Missing()}) as runner:
        assert runner.available() == {"ocr": "counts"}
        assert runner.unavailable() == {
            "face_detection": "yuface is not installed. Fix: pip install 'mmat[face]'"
        }
        result = await runner.run("face detection", images[:1])
        assert result.error == "unavailable: yuface is not installed. Fix: pip install 'mmat[face]'"
        unknown = await runner.run("sketch", images[:1])
        assert unknown.error is not None and "available: face_detection, ocr" in unknown.error
    assert canonical_operator(" Face  Detection ") == "face_detection"


async def test_registered_user_operator(images) -> None:
    async def recognise(refs: list[ImageRef], **args: Any) -> str:
        return f"{len(refs)} image(s), hint={args.get('hint')}"

    async with ToolRunner(no_tools()) as runner:
        runner.register("face_recognition", "Names the people in the image.", recognise)
        runner.register(
            "counter", "Counts images.", lambda refs, **_: {"text": str(len(refs)), "n": len(refs)}
        )
        assert runner.available() == {
            "face_recognition": "Names the people in the image.",
            "counter": "Counts images.",
        }
        named = await runner.run("face_recognition", images[:2], hint="x")
        counted = await runner.run("counter", images[:3])
    assert named.text == "2 image(s), hint=x" and named.tool == "face_recognition"
    assert counted.text == "3" and counted.payload["n"] == 3
    with pytest.raises(ConfigError, match="letters, digits and underscores"):
        runner.register("face-recognition!", "x", lambda refs: "")


def test_config_picks_registered_backends_and_validates_them() -> None:
    runner = ToolRunner(RunConfig.from_dict({"tools": {"enabled": ["ocr"]}}))
    assert type(runner.tool("ocr")).__name__ == "RapidOcrTool"
    assert runner.versions()["ocr"].startswith("rapidocr:")
    with pytest.raises(UnknownPluginError, match=r"unknown tool 'nope'; valid names: .*rapidocr"):
        ToolRunner(RunConfig.from_dict({"tools": {"enabled": ["ocr"], "backends": {"ocr": "nope"}}}))
    with pytest.raises(ConfigError, match="are not accepted by RapidOcrTool"):
        ToolRunner(RunConfig.from_dict({"tools": {"enabled": ["ocr"], "options": {"ocr": {"bogus": 1}}}}))


class SizeBatchTool(BatchTool):
    name: ClassVar[str] = "label_bbox"
    version: ClassVar[str] = "b1"
    max_batch = 4

    def __init__(self) -> None:
        self.batches: list[int] = []

    def run(self, images: Sequence[ImageRef], **args: Any) -> ToolResult:
        return self.run_batch([(images, args)])[0]

    def run_batch(self, calls: Sequence[tuple[Sequence[ImageRef], dict[str, Any]]]) -> list[ToolResult]:
        self.batches.append(len(calls))
        return [ToolResult(tool=self.name, text=images[0].path) for images, _ in calls]


async def test_concurrent_calls_of_a_batch_tool_run_together(images) -> None:
    from mmat.images import image_sha256

    images = [ref.model_copy(update={"sha256": image_sha256(ref)}) for ref in images]  # no hashing delay
    tool = SizeBatchTool()
    async with ToolRunner(no_tools(), tools={"label_bbox": tool}) as runner:
        results = await asyncio.gather(*(runner.run("label_bbox", [ref]) for ref in images))
        assert runner.stats["batches"] == 2
    assert [r.text for r in results] == [ref.path for ref in images]
    assert sorted(tool.batches) == [1, 4]


async def test_no_image_is_an_error_but_declared_tools_may_take_none() -> None:
    async with ToolRunner(no_tools(), tools={"ocr": CountingTool()}) as runner:
        runner.register("clock", "Says the time.", lambda refs, **_: "noon")
        missing = await runner.run("ocr", [])
        clock = await runner.run("clock", [])
    assert missing.error == "no_image: ocr needs at least one image; the call gave none"
    assert clock.text == "noon"


async def test_cancelled_owner_does_not_fail_the_callers_sharing_its_execution(images) -> None:
    tool = CountingTool(delay=0.3)
    async with ToolRunner(no_tools(), tools={"ocr": tool}) as runner:
        owner = asyncio.create_task(runner.run("ocr", images[:1]))
        await asyncio.sleep(0.05)
        follower = asyncio.create_task(runner.run("ocr", images[:1]))
        await asyncio.sleep(0.05)
        owner.cancel()
        result = await follower
    assert owner.cancelled() and result.ok and result.text == "20x10"


def test_optional_backends_report_why_they_cannot_run() -> None:
    from mmat.tools.face import DeepFaceTool
    from mmat.tools.ocr import PaddleOcrTool, TesseractOcrTool

    for tool, needle in (
        (PaddleOcrTool(), "paddle"),
        (TesseractOcrTool(), "tesseract"),
        (DeepFaceTool(), "deepface"),
    ):
        availability = tool.availability()
        if not availability.ok:
            assert needle in availability.reason and "Fix:" in availability.reason
