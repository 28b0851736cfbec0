"""label_bbox with a tiny random Grounding DINO built from a config: real processor, tokenizer,
forward pass and post-processing; output format, scene-graph queries, batching, availability."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import pytest

from mmat.config import RunConfig
from mmat.tools.detection import match_query, normalise_box, queries_from
from mmat.tools.runner import ToolRunner

pytestmark = pytest.mark.heavy


@pytest.fixture(scope="module")
def tiny_dino(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from mmat.tools.tiny import build_tiny_grounding_dino

    return build_tiny_grounding_dino(tmp_path_factory.mktemp("dino") / "tiny-grounding-dino")


def dino_config(checkpoint: Path) -> RunConfig:
    return RunConfig.from_dict(
        {
            "tools": {
                "enabled": ["label_bbox"],
                "options": {
                    "label_bbox": {"checkpoint": str(checkpoint), "box_threshold": 0.0, "text_threshold": 0.0}
                },
            }
        }
    )


def assert_label_bbox_format(text: str, queries: list[str]) -> dict:
    boxes = ast.literal_eval(text)
    assert isinstance(boxes, dict) and boxes and set(boxes) <= set(queries)
    for label_boxes in boxes.values():
        for box in label_boxes:
            assert len(box) == 4 and all(0.0 <= v <= 1.0 and round(v, 2) == v for v in box)
            assert box[0] <= box[2] and box[1] <= box[3]
    assert text == repr(boxes)
    return boxes


def test_tiny_checkpoint_is_a_real_grounding_dino(tiny_dino: Path) -> None:
    from transformers import AutoConfig, AutoProcessor

    config = AutoConfig.from_pretrained(tiny_dino)
    assert config.model_type == "grounding-dino" and config.decoder_layers >= 2
    tokens = AutoProcessor.from_pretrained(tiny_dino).tokenizer.tokenize("A person. A flag.")
    assert tokens == ["a", "person", ".", "a", "flag", "."]


async def test_label_bbox_through_the_runner(tiny_dino: Path, grace_hopper) -> None:
    async with ToolRunner(dino_config(tiny_dino)) as runner:
        assert "label_bbox" in runner.available()
        result = await runner.run("label_bbox", [grace_hopper], queries=["person", "flag"])
        again = await runner.run("label_bbox", [grace_hopper], queries="person. flag.")
    assert result.ok, result.error
    boxes = assert_label_bbox_format(result.text, ["person", "flag"])
    assert result.payload["boxes"] == boxes and result.payload["queries"] == ["person", "flag"]
    assert again.text == result.text  # same queries spelled differently: same detections


async def test_concurrent_calls_run_as_one_batch(tiny_dino: Path, grace_hopper, skimage_photos) -> None:
    from mmat.images import image_sha256

    hashed = {  # hashed up front so the three calls reach the batcher together
        name: ref.model_copy(update={"sha256": image_sha256(ref)})
        for name, ref in [("grace", grace_hopper), *skimage_photos.items()]
    }
    async with ToolRunner(dino_config(tiny_dino)) as runner:
        single = await runner.run("label_bbox", [hashed["astronaut"]], queries=["person"])
        results = await asyncio.gather(
            runner.run("label_bbox", [hashed["grace"]], queries=["person"]),
            runner.run("label_bbox", [hashed["coffee"]], queries=["cup", "spoon"]),
            runner.run("label_bbox", [hashed["chelsea"]], queries=["cat"]),
        )
        assert runner.stats["batches"] == 2  # the single call, then the three together
    assert single.ok and all(r.ok for r in results)
    assert_label_bbox_format(results[1].text, ["cup", "spoon"])


async def test_queries_come_from_the_caption_scene_graph(tiny_dino: Path, grace_hopper) -> None:
    async with ToolRunner(dino_config(tiny_dino)) as runner:
        missing = await runner.run("label_bbox", [grace_hopper])
        assert missing.error is not None and missing.error.startswith("no_queries")
        graph = {
            "objects": [{"name": "Person", "attributes": ["smiling"]}, {"name": "flag"}],
            "relationships": [],
        }
        result = await runner.run("label_bbox", [grace_hopper], scene_graph=graph)
    assert result.payload["queries"] == ["person", "flag"]
    assert_label_bbox_format(result.text, ["person", "flag"])


def test_unavailable_without_a_checkpoint() -> None:
    runner = ToolRunner(RunConfig.from_dict({"tools": {"enabled": ["label_bbox"]}}))
    assert "label_bbox" not in runner.available()
    assert "set tools.options.label_bbox.checkpoint" in runner.unavailable()["label_bbox"]


def test_query_parsing_and_box_normalisation() -> None:
    assert queries_from({"queries": "A dog. red frisbee, dog"}) == ["dog", "red frisbee"]
    assert queries_from({"scene_graph": {"objects": ["cat", {"label": "Mat"}, {"x": 1}]}}) == ["cat", "mat"]
    assert match_query("a red frisbee", ["dog", "red frisbee"]) == "red frisbee"
    assert match_query("[SEP]", ["dog"]) is None
    assert normalise_box([-5, 10, 250, 400], 200, 400) == [0.0, 0.03, 1.0, 1.0]


def test_owlv2_backend_with_a_tiny_random_checkpoint(tmp_path: Path, grace_hopper, skimage_photos) -> None:
    from mmat.tools.detection import Owlv2Tool
    from mmat.tools.tiny import build_tiny_owlv2

    tool = Owlv2Tool(checkpoint=str(build_tiny_owlv2(tmp_path / "owl")), box_threshold=0.0)
    assert tool.availability().ok
    person, cup = tool.run_batch(
        [([grace_hopper], {"queries": ["person", "flag"]}), ([skimage_photos["coffee"]], {"queries": "cup."})]
    )
    assert_label_bbox_format(person.text, ["person", "flag"])
    assert set(ast.literal_eval(cup.text)) == {"cup"}
