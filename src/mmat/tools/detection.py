"""The ``label_bbox`` operator: open-vocabulary detection with Grounding DINO (the paper's detector)
or OWLv2, through ``transformers`` from a checkpoint folder or hub id.

Queries come from the call (``queries=["dog", "frisbee"]`` or ``"dog. frisbee."``) or from the
caption's scene graph (``scene_graph={"objects": [{"name": "dog"}, ...]}``). When a call gives
neither, the runner supplies the graph of the ``image_caption`` of the same image: a finished one,
one still running (a step that asked for both operators), or, with a teacher connected, a caption it
runs first. Without any, the result is the error ``no_queries``. The rendered
text is the Python repr of ``label -> list of normalised [x1, y1, x2, y2]`` with two decimals, best
box first, as in MMAT data::

    {'dog': [[0.12, 0.3, 0.55, 0.91]], 'frisbee': [[0.6, 0.1, 0.72, 0.2]]}

No package ships detector weights, so offline the operator is unavailable until
``tools.options.label_bbox.checkpoint`` names a local folder (or a hub id that is cached or can be
downloaded). Concurrent calls are batched into one forward pass (up to ``max_batch``).
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from mmat.errors import MissingDependencyError, ToolError
from mmat.images import load_image
from mmat.schema import ImageRef, ToolResult
from mmat.tools.base import Availability, BatchTool

ARTICLES = {"a", "an", "the"}


def queries_from(args: dict[str, Any], *, limit: int = 16) -> list[str]:
    """The text queries of a call: ``queries``/``labels`` (list or ``"a. b."`` string), else the objects
    of ``scene_graph`` (strings or dicts with ``name``/``label``/``object``)."""
    raw: Any = args.get("queries") or args.get("labels") or args.get("query")
    items: list[Any] = []
    if isinstance(raw, str):
        items = re.split(r"[.,;\n]", raw)
    elif isinstance(raw, list | tuple):
        items = list(raw)
    else:
        graph = args.get("scene_graph")
        if isinstance(graph, dict):
            objects = graph.get("objects") or []
            for obj in objects if isinstance(objects, list) else []:
                if isinstance(obj, dict):
                    items.append(obj.get("name") or obj.get("label") or obj.get("object") or "")
                else:
                    items.append(obj)
    out: list[str] = []
    for item in items:
        tokens = str(item).lower().replace(".", " ").split()
        while len(tokens) > 1 and tokens[0] in ARTICLES:  # "a dog" and "dog" are one label
            tokens = tokens[1:]
        text = " ".join(tokens)
        if text and text not in out:
            out.append(text)
    return out[:limit]


def words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in ARTICLES}


def match_query(label: str, queries: Sequence[str]) -> str | None:
    """The query a decoded phrase belongs to (most shared words; ``None`` when none is shared)."""
    if label in queries:
        return label
    found = words(label)
    best, best_overlap = None, 0
    for query in queries:
        overlap = len(found & words(query))
        if overlap > best_overlap:
            best, best_overlap = query, overlap
    return best


def normalise_box(box: Sequence[float], width: int, height: int) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    clamp = lambda v: min(1.0, max(0.0, v))  # noqa: E731
    return [
        round(clamp(x1 / width), 2),
        round(clamp(y1 / height), 2),
        round(clamp(x2 / width), 2),
        round(clamp(y2 / height), 2),
    ]


def render_boxes(boxes: dict[str, list[list[float]]]) -> str:
    """The label_bbox observation: the Python repr of the label -> boxes dict."""
    return repr(boxes)


class OpenVocabularyDetector(BatchTool):
    """Checkpoint handling, query parsing, batching and rendering shared by the detectors."""

    name: ClassVar[str] = "label_bbox"
    description: ClassVar[str] = (
        "Finds the named objects in the image (open vocabulary) and returns their normalised boxes "
        "[x1, y1, x2, y2] per label."
    )
    max_batch: ClassVar[int] = 4
    default_checkpoint_hint: ClassVar[str] = ""

    def __init__(
        self,
        *,
        checkpoint: str | None = None,
        box_threshold: float = 0.35,
        text_threshold: float = 0.25,
        device: str = "auto",
        max_boxes_per_label: int = 5,
        max_queries: int = 16,
    ) -> None:
        self.checkpoint = checkpoint
        self.box_threshold = box_threshold
        self.text_threshold = text_threshold
        self.device = device
        self.max_boxes_per_label = max_boxes_per_label
        self.max_queries = max_queries
        self._model: Any = None
        self._processor: Any = None

    def availability(self) -> Availability:
        for module in ("torch", "transformers"):
            if importlib.util.find_spec(module) is None:
                return Availability(False, f"{module} is not installed. Fix: pip install 'mmat[detect]'")
        if not self.checkpoint:
            return Availability(
                False,
                f"no detector checkpoint: set tools.options.label_bbox.checkpoint to a local folder or a hub "
                f"id such as {self.default_checkpoint_hint!r} (no package ships detector weights)",
            )
        if Path(self.checkpoint).is_dir():
            if not (Path(self.checkpoint) / "config.json").is_file():
                return Availability(False, f"checkpoint folder {self.checkpoint} has no config.json")
            return Availability(True)
        if os.environ.get("HF_HUB_OFFLINE") == "1" and not self._cached_on_hub():
            return Availability(
                False,
                f"checkpoint {self.checkpoint!r} is not a local folder nor in the Hugging Face cache (HF_HUB_OFFLINE=1)",
            )
        return Availability(True)

    def _cached_on_hub(self) -> bool:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            return False
        return isinstance(try_to_load_from_cache(str(self.checkpoint), "config.json"), str)

    def _device(self) -> str:
        import torch

        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device

    def load(self) -> tuple[Any, Any]:
        """(processor, model) of the checkpoint."""
        raise NotImplementedError

    def setup(self) -> None:
        if self._model is not None:
            return
        if not self.checkpoint:
            raise ToolError(self.availability().reason)
        try:
            import torch  # noqa: F401
            import transformers  # noqa: F401
        except ImportError as error:
            raise MissingDependencyError("torch and transformers", "detect", error) from None
        self._processor, model = self.load()
        self._model = model.eval().to(self._device())

    def detect(
        self, images: list[Any], queries: list[list[str]]
    ) -> list[list[tuple[str, list[float], float]]]:
        """Per image: (query, pixel xyxy box, score) for every kept detection."""
        raise NotImplementedError

    def run(self, images: Sequence[ImageRef], **args: Any) -> ToolResult:
        return self.run_batch([(images, args)])[0]

    def run_batch(self, calls: Sequence[tuple[Sequence[ImageRef], dict[str, Any]]]) -> list[ToolResult]:
        self.setup()
        results: list[ToolResult | None] = [None] * len(calls)
        work: list[tuple[int, Any, list[str]]] = []
        for index, (refs, args) in enumerate(calls):
            queries = queries_from(args, limit=self.max_queries)
            if not queries:
                results[index] = ToolResult(
                    tool=self.name,
                    error="no_queries: label_bbox needs queries=[...] or the scene graph of an image_caption call",
                    text="The label_bbox operator needs object names to look for.",
                )
                continue
            work.append((index, load_image(refs[0]), queries))
        if work:
            detections = self.detect([image for _, image, _ in work], [queries for _, _, queries in work])
            for (index, image, queries), found in zip(work, detections, strict=True):
                boxes: dict[str, list[list[float]]] = {}
                scored: dict[str, list[tuple[float, list[float]]]] = {}
                for label, box, score in sorted(found, key=lambda item: -item[2]):
                    scored.setdefault(label, []).append(
                        (score, normalise_box(box, image.width, image.height))
                    )
                for label in queries:  # query order, best box first
                    if label in scored:
                        boxes[label] = [box for _, box in scored[label][: self.max_boxes_per_label]]
                results[index] = ToolResult(
                    tool=self.name,
                    version=self.version,
                    payload={
                        "boxes": boxes,
                        "scores": {
                            label: [round(s, 3) for s, _ in scored[label][: self.max_boxes_per_label]]
                            for label in boxes
                        },
                        "queries": queries,
                    },
                    text=render_boxes(boxes),
                )
        return [result for result in results if result is not None]


class GroundingDinoTool(OpenVocabularyDetector):
    """Grounding DINO through ``transformers`` (``AutoModelForZeroShotObjectDetection``).

    Example (run config)::

        tools:
          options:
            label_bbox: {checkpoint: IDEA-Research/grounding-dino-tiny, box_threshold: 0.35}
    """

    version: ClassVar[str] = "grounding-dino-1"
    default_checkpoint_hint: ClassVar[str] = "IDEA-Research/grounding-dino-tiny"

    def load(self) -> tuple[Any, Any]:
        from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

        checkpoint = str(self.checkpoint)
        return AutoProcessor.from_pretrained(checkpoint), AutoModelForZeroShotObjectDetection.from_pretrained(
            checkpoint
        )

    def detect(
        self, images: list[Any], queries: list[list[str]]
    ) -> list[list[tuple[str, list[float], float]]]:
        import torch

        texts = [". ".join(q) + "." for q in queries]
        inputs = self._processor(images=images, text=texts, padding=True, return_tensors="pt").to(
            self._model.device
        )
        with torch.inference_mode():
            outputs = self._model(**inputs)
        processed = self._processor.post_process_grounded_object_detection(
            outputs,
            inputs["input_ids"],
            threshold=self.box_threshold,
            text_threshold=self.text_threshold,
            target_sizes=[(image.height, image.width) for image in images],
        )
        out: list[list[tuple[str, list[float], float]]] = []
        for result, query_list in zip(processed, queries, strict=True):
            labels = result.get("text_labels", result.get("labels"))
            found = []
            for label, box, score in zip(
                labels, result["boxes"].tolist(), result["scores"].tolist(), strict=True
            ):
                query = match_query(str(label), query_list)
                if query is not None:
                    found.append((query, box, float(score)))
            out.append(found)
        return out


class Owlv2Tool(OpenVocabularyDetector):
    """OWLv2 through ``transformers`` (``Owlv2ForObjectDetection``), e.g. ``google/owlv2-base-patch16-ensemble``.

    OWLv2 pads images to a square, so boxes are post-processed against the padded square and then
    normalised by the original width and height.
    """

    version: ClassVar[str] = "owlv2-1"
    default_checkpoint_hint: ClassVar[str] = "google/owlv2-base-patch16-ensemble"

    def __init__(self, *, box_threshold: float = 0.2, **kwargs: Any) -> None:
        super().__init__(box_threshold=box_threshold, **kwargs)

    def load(self) -> tuple[Any, Any]:
        from transformers import Owlv2ForObjectDetection, Owlv2Processor

        return Owlv2Processor.from_pretrained(str(self.checkpoint)), Owlv2ForObjectDetection.from_pretrained(
            self.checkpoint
        )

    def detect(
        self, images: list[Any], queries: list[list[str]]
    ) -> list[list[tuple[str, list[float], float]]]:
        import torch

        width = max(len(q) for q in queries)
        padded = [q + [""] * (width - len(q)) for q in queries]  # one text list per image, same length
        inputs = self._processor(
            text=padded, images=images, padding="max_length", truncation=True, return_tensors="pt"
        ).to(self._model.device)
        with torch.inference_mode():
            outputs = self._model(**inputs)
        sides = [(max(image.size), max(image.size)) for image in images]
        processed = self._processor.post_process_grounded_object_detection(
            outputs=outputs, threshold=self.box_threshold, target_sizes=sides, text_labels=padded
        )
        out: list[list[tuple[str, list[float], float]]] = []
        for result, query_list in zip(processed, queries, strict=True):
            found = []
            for label, box, score in zip(
                result["labels"].tolist(), result["boxes"].tolist(), result["scores"].tolist(), strict=True
            ):
                if 0 <= int(label) < len(query_list):
                    found.append((query_list[int(label)], box, float(score)))
            out.append(found)
        return out
