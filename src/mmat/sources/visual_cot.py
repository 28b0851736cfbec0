"""Visual CoT (deepcs233/Visual-CoT): question, answer and the box of the region that answers it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mmat.errors import RecordError
from mmat.schema import Reject, Sample
from mmat.sources.base import FileSource, SourceOptions, require
from mmat.sources.mojibake import repair_mojibake
from mmat.sources.streaming import iter_json_items, iter_jsonl

_BOX_REQUEST = re.compile(
    r"\s*Please provide the bounding box coordinate of the region that can help you answer the question better\.?",
    re.IGNORECASE,
)
_COT_PATH = re.compile(r"(?:^|/)cot/([^/]+)/")


class VisualCotOptions(SourceOptions):
    """Visual CoT options.

    Attributes:
        image_template: where a raw record's image lives under the image root; ``{dataset}`` and
            ``{image}`` are filled from the record (the released image archives unpack to
            ``cot/<dataset>/``).
        repair_mojibake: repair answers/questions decoded with the wrong codec (original kept).
    """

    image_template: str = "cot/{dataset}/{image}"
    repair_mojibake: bool = True


def _parse_box(value: Any, *, location: str) -> list[float]:
    if (
        not isinstance(value, list)
        or len(value) != 4
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        raise RecordError(
            "bad_field", f"a box must be [x1, y1, x2, y2] numbers, got {value!r}", location=location
        )
    return [float(v) for v in value]


class VisualCotSource(FileSource):
    """Visual CoT in both published layouts.

    - raw ``viscot_dataset/*_cot_train.jsonl``: ``{question, answer, image, width, height, bboxs,
      dataset, split}``;
    - the LLaVA conversation layout (``viscot_363k.json``, ``viscot_benchmark/benchmark/*.json``):
      ``image: [path, "path###[x1, y1, x2, y2]"]`` with a human/gpt conversation whose last gpt turn
      is the answer.

    Boxes are kept in the QA metadata (``bboxes``, pixel xyxy; ``bbox_normalized`` when the
    conversation gives it); boxes that leave the image are kept and flagged (``bboxes_out_of_image``).
    Mojibake in answers is repaired when safe and the original kept in ``answer_original``.

    Example:
        ``mmat foundation --source visual_cot --root viscot --out viscot.jsonl``
    """

    name = "visual_cot"
    description = "Visual CoT *_cot_train.jsonl and the LLaVA-layout JSON (Apache-2.0)"
    license = "Apache-2.0"
    Options = VisualCotOptions
    default_files = ("**/*_cot_train*.jsonl", "**/*.json")

    def iter_file(self, path: Path) -> Iterator[Sample | Reject]:
        items = iter_jsonl(path) if path.suffix == ".jsonl" else iter_json_items(path)
        for index, (location, record) in enumerate(items):
            if isinstance(record, RecordError):
                yield self.reject(record)
                continue
            try:
                if isinstance(record, dict) and "conversations" in record:
                    yield self.convert_conversation(record, location, path, index)
                else:
                    yield self.convert_raw(record, location)
            except RecordError as error:
                yield self.reject(error, raw=record)
            except ValidationError as error:
                yield self.reject(
                    RecordError("bad_field", f"record does not fit the schema: {error}", location=location),
                    raw=record,
                )

    def _text(self, value: str, key: str, meta: dict[str, Any]) -> str:
        if not self.options.repair_mojibake:  # type: ignore[attr-defined]
            return value
        fixed = repair_mojibake(value)
        if fixed is None:
            return value
        meta[f"{key}_original"] = value
        meta["mojibake_repaired"] = True
        return fixed

    def convert_raw(self, record: Any, location: str) -> Sample:
        """One raw ``*_cot_train.jsonl`` record."""
        options: VisualCotOptions = self.options  # type: ignore[assignment]
        question = require(record, "question", str, location=location)
        answer = str(require(record, "answer", (str, int, float), location=location))
        image = require(record, "image", str, location=location)
        dataset = require(record, "dataset", str, location=location)
        split = record.get("split") or "train"
        width, height = record.get("width"), record.get("height")
        if not (isinstance(width, int) and isinstance(height, int)):
            width = height = None
        boxes = [_parse_box(b, location=location) for b in require(record, "bboxs", list, location=location)]
        meta: dict[str, Any] = {}
        question = self._text(question, "question", meta)
        answer = self._text(answer, "answer", meta)
        meta.update(_box_metadata(boxes, width, height))
        line = location.rsplit(":", 1)[-1]
        sample_id = self.sample_id(dataset, f"{split}-{line}")
        try:
            ref = self.image_ref(
                options.image_template.format(dataset=dataset, image=image),
                location=location,
                width=width,
                height=height,
            )
            qa = self.make_qa(0, question, answer, metadata=meta)
        except RecordError as error:
            error.record_id = sample_id
            raise
        return self.make_sample(
            sample_id,
            subset=dataset,
            split=split,
            images=[ref],
            qas=[qa],
            metadata={"original_image": image, "location": location},
        )

    def convert_conversation(self, record: dict[str, Any], location: str, path: Path, index: int) -> Sample:
        """One record of the LLaVA conversation layout."""
        images = require(record, "image", (list, str), location=location)
        images = [images] if isinstance(images, str) else images
        if not images or not all(isinstance(i, str) for i in images):
            raise RecordError(
                "bad_field", f"'image' should be a list of paths, got {images!r}", location=location
            )
        image_path = images[0].split("###")[0]
        boxes: list[list[float]] = []
        for item in images[1:]:
            if "###" in item:
                _, _, box_text = item.partition("###")
                try:
                    box = [float(v) for v in box_text.strip().strip("[]").split(",")]
                except ValueError:
                    raise RecordError(
                        "bad_field",
                        f"cannot read the box in {item!r}; expected 'path###[x1, y1, x2, y2]'",
                        location=location,
                    ) from None
                boxes.append(_parse_box(box, location=location))
        turns = require(record, "conversations", list, location=location)
        humans = [t.get("value", "") for t in turns if isinstance(t, dict) and t.get("from") == "human"]
        gpts = [t.get("value", "") for t in turns if isinstance(t, dict) and t.get("from") == "gpt"]
        if not humans or not gpts or not str(gpts[-1]).strip():
            raise RecordError(
                "missing_field", "the conversation needs a human question and a gpt answer", location=location
            )
        question = _BOX_REQUEST.sub("", str(humans[0]))
        answer = str(gpts[-1]).strip()
        match = _COT_PATH.search(image_path)
        dataset = record.get("dataset") or (match.group(1) if match else None)
        split = record.get("split")
        original = record.get("question_id", record.get("id"))
        original_id = f"{split or path.stem}-q{original}" if original is not None else f"{path.stem}-{index}"
        sample_id = self.sample_id(dataset, original_id)
        meta: dict[str, Any] = {}
        question = self._text(question, "question", meta)
        answer = self._text(answer, "answer", meta)
        meta.update(_box_metadata(boxes, None, None))
        if len(gpts) > 1:
            try:
                meta["bbox_normalized"] = _parse_box(
                    [float(v) for v in str(gpts[0]).strip().strip("[]").split(",")], location=location
                )
            except (ValueError, RecordError):
                meta["first_answer"] = gpts[0]
        try:
            ref = self.image_ref(image_path, location=location)
            qa = self.make_qa(0, question, answer, metadata=meta)
        except RecordError as error:
            error.record_id = sample_id
            raise
        return self.make_sample(
            sample_id, subset=dataset, split=split, images=[ref], qas=[qa], metadata={"location": location}
        )


def _box_metadata(boxes: list[list[float]], width: int | None, height: int | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"bboxes": boxes}
    if width and height:
        outside = [b for b in boxes if b[0] < 0 or b[1] < 0 or b[2] > width or b[3] > height]
        meta["bboxes_out_of_image"] = bool(outside)
        if outside:
            meta["bboxes_clipped"] = [
                [max(0.0, b[0]), max(0.0, b[1]), min(float(width), b[2]), min(float(height), b[3])]
                for b in boxes
            ]
    return meta
