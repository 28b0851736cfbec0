"""LLaVA-CoT (PKU-YuanGroup/LLaVA-CoT-100k): staged reasoning whose CONCLUSION is the answer."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mmat.errors import RecordError
from mmat.schema import QA, Reject, Sample
from mmat.sources.base import FileSource, require
from mmat.sources.streaming import iter_jsonl

TAGS = ("SUMMARY", "CAPTION", "REASONING", "CONCLUSION")
_TAG = {tag: re.compile(rf"<{tag}>(.*?)</{tag}>", re.DOTALL) for tag in TAGS}


def split_tags(text: str) -> dict[str, str]:
    """The content of each ``<SUMMARY>``/``<CAPTION>``/``<REASONING>``/``<CONCLUSION>`` block present.

    Example:
        >>> split_tags("<SUMMARY> s </SUMMARY><CONCLUSION> B </CONCLUSION>")
        {'summary': 's', 'conclusion': 'B'}
    """
    found: dict[str, str] = {}
    for tag, pattern in _TAG.items():
        match = pattern.search(text)
        if match:
            found[tag.lower()] = match.group(1).strip()
    return found


class LlavaCotSource(FileSource):
    """LLaVA-CoT ``train.jsonl``: ``{id, image, conversations:[{from, value}, ...]}``.

    Every human/gpt pair of an entry becomes one QA of the same sample (entries often hold several).
    The gold answer is the ``<CONCLUSION>`` content; summary, caption and reasoning are kept in the
    QA metadata. The subset is the first folder of the image path (``chartqa``, ``coco``...).

    Example:
        ``mmat foundation --source llava_cot --root LLaVA-CoT-100k --out llava_cot.jsonl``
    """

    name = "llava_cot"
    description = "LLaVA-CoT train.jsonl, one QA per human/gpt pair, answer = <CONCLUSION> (Apache-2.0)"
    license = "Apache-2.0"
    default_files = ("train.jsonl",)

    def iter_file(self, path: Path) -> Iterator[Sample | Reject]:
        for location, record in iter_jsonl(path):
            if isinstance(record, RecordError):
                yield self.reject(record)
                continue
            try:
                yield self.convert(record, location)
            except RecordError as error:
                yield self.reject(error, raw=record)
            except ValidationError as error:
                yield self.reject(
                    RecordError("bad_field", f"record does not fit the schema: {error}", location=location),
                    raw=record,
                )

    def convert(self, record: Any, location: str) -> Sample:
        """One LLaVA-CoT entry (raises :class:`RecordError` when it is bad)."""
        original_id = require(record, "id", (str, int), location=location)
        image = require(record, "image", (str, list), location=location)
        paths = [image] if isinstance(image, str) else image
        if not paths or not all(isinstance(p, str) and p for p in paths):
            raise RecordError(
                "bad_field", f"'image' should be a path or a list of paths, got {image!r}", location=location
            )
        subset = paths[0].split("/", 1)[0] if "/" in paths[0] else None
        sample_id = self.sample_id(subset, original_id)
        turns = require(record, "conversations", list, location=location)
        qas: list[QA] = []
        question: str | None = None
        try:
            for number, turn in enumerate(turns):
                if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
                    raise RecordError(
                        "bad_field",
                        f"conversation turn {number} should be {{from, value}}",
                        location=location,
                    )
                speaker = turn.get("from")
                if speaker == "human":
                    question = turn["value"]
                elif speaker == "gpt":
                    if question is None:
                        raise RecordError(
                            "bad_field",
                            f"turn {number} is a gpt turn without a human question before it",
                            location=location,
                        )
                    parts = split_tags(turn["value"])
                    answer = parts.pop("conclusion", "")
                    if not answer:
                        raise RecordError(
                            "missing_conclusion",
                            f"gpt turn {number} has no <CONCLUSION>...</CONCLUSION>; the gold answer is read "
                            "from it",
                            location=location,
                        )
                    qas.append(self.make_qa(len(qas), question, answer, metadata=parts))
                    question = None
                else:
                    raise RecordError(
                        "bad_field",
                        f"turn {number} is from {speaker!r}; expected 'human' or 'gpt'",
                        location=location,
                    )
            if not qas:
                raise RecordError(
                    "missing_field", "the conversation holds no human/gpt pair", location=location
                )
            images = [self.image_ref(p, location=location) for p in paths]
        except RecordError as error:
            error.record_id = sample_id
            raise
        return self.make_sample(
            sample_id, subset=subset, split="train", images=images, qas=qas, metadata={"location": location}
        )
