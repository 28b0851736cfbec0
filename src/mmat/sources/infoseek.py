"""InfoSeek (open-domain visual information seeking on OVEN images)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mmat.errors import ConfigError, RecordError
from mmat.schema import NumericRange, Reject, Sample
from mmat.sources.base import FileSource, SourceOptions, require
from mmat.sources.streaming import iter_jsonl


class InfoseekOptions(SourceOptions):
    """InfoSeek options.

    Attributes:
        image_template: image path under the image root; ``{image_id}`` and ``{shard}``
            (``image_id[5:7]``, the OVEN folder scheme) are filled in.
        image_map: optional file mapping image ids to paths (relative to the image root), used
            instead of the template: JSON Lines with ``image_id`` and ``image_path`` (or ``path``)
            keys, or a two-column TSV/CSV. It is read into memory once.
    """

    image_template: str = "oven_images/{shard}/{image_id}.jpg"
    image_map: str | None = None


def parse_answer_eval(values: list[Any], *, location: str) -> tuple[list[str], list[NumericRange]]:
    """Split InfoSeek ``answer_eval`` into string aliases and ``{"range": [lo, hi]}`` ranges."""
    aliases: list[str] = []
    ranges: list[NumericRange] = []
    for value in values:
        if isinstance(value, dict) and "range" in value:
            bounds = value["range"]
            try:
                low, high = (float(b) for b in bounds)
                ranges.append(NumericRange(lo=low, hi=high))
            except (TypeError, ValueError, ValidationError):
                raise RecordError(
                    "bad_field",
                    f"answer_eval range {bounds!r} should be [low, high] numbers",
                    location=location,
                ) from None
        elif isinstance(value, str | int | float) and not isinstance(value, bool):
            aliases.append(str(value))
        else:
            raise RecordError(
                "bad_field", f"answer_eval entry {value!r} is neither text nor a range", location=location
            )
    return aliases, ranges


class InfoseekSource(FileSource):
    """InfoSeek ``infoseek_{train,val}.jsonl``: ``{data_id, image_id, question, answer, answer_eval,
    data_split}`` with images at ``oven_images/{image_id[5:7]}/{image_id}.jpg``.

    The gold answer is ``answer[0]``; the other answers and the text ``answer_eval`` entries become
    aliases, and ``{"range": [lo, hi]}`` entries become ``QA.answer_ranges``. Image root and an
    id -> path mapping file are configurable (``image_root``, ``image_map``).

    Example:
        ``mmat foundation --source infoseek --root infoseek --out infoseek.jsonl -o image_root=/data/oven``
    """

    name = "infoseek"
    description = (
        "InfoSeek jsonl + oven_images/{xx}/{image_id}.jpg; answer_eval aliases and ranges (Apache-2.0)"
    )
    license = "Apache-2.0"
    Options = InfoseekOptions
    default_files = ("infoseek_*.jsonl",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.image_map = self._read_map(self.options.image_map) if self.options.image_map else None  # type: ignore[attr-defined]

    def _read_map(self, name: str) -> dict[str, str]:
        path = Path(name) if Path(name).is_absolute() else self.root / name
        if not path.is_file():
            raise ConfigError(f"infoseek image_map {path} does not exist; give a path relative to the root")
        mapping: dict[str, str] = {}
        if path.suffix == ".jsonl":
            for location, row in iter_jsonl(path):
                if isinstance(row, RecordError) or not isinstance(row, dict) or "image_id" not in row:
                    raise ConfigError(
                        f"image_map {location}: expected a JSON object with image_id and image_path"
                    )
                mapping[str(row["image_id"])] = str(row.get("image_path") or row.get("path"))
        else:
            with path.open(encoding="utf-8", newline="") as handle:
                delimiter = "\t" if path.suffix in (".tsv", ".txt") else ","
                for row in csv.reader(handle, delimiter=delimiter):
                    if len(row) >= 2 and row[0] != "image_id":
                        mapping[row[0]] = row[1]
        return mapping

    def iter_file(self, path: Path) -> Iterator[Sample | Reject]:
        for location, record in iter_jsonl(path):
            if isinstance(record, RecordError):
                yield self.reject(record)
                continue
            try:
                yield self.convert(record, location)
            except RecordError as error:
                yield self.reject(error, raw=json.dumps(record))
            except ValidationError as error:
                yield self.reject(
                    RecordError("bad_field", f"record does not fit the schema: {error}", location=location),
                    raw=json.dumps(record),
                )

    def image_path(self, image_id: str, location: str) -> str:
        if self.image_map is not None:
            if image_id not in self.image_map:
                raise RecordError(
                    "image_missing", f"image id {image_id!r} is not in the image_map file", location=location
                )
            return self.image_map[image_id]
        return self.options.image_template.format(image_id=image_id, shard=image_id[5:7])  # type: ignore[attr-defined]

    def convert(self, record: Any, location: str) -> Sample:
        """One InfoSeek record (raises :class:`RecordError` when it is bad)."""
        data_id = require(record, "data_id", (str, int), location=location)
        split = record.get("data_split") if isinstance(record, dict) else None
        sample_id = self.sample_id(split, data_id)
        try:
            image_id = require(record, "image_id", str, location=location)
            question = require(record, "question", str, location=location)
            answers = require(record, "answer", (list, str), location=location)
            answers = [answers] if isinstance(answers, str) else [str(a) for a in answers if str(a).strip()]
            if not answers:
                raise RecordError("missing_field", "field 'answer' is an empty list", location=location)
            evals = record.get("answer_eval") or []
            if not isinstance(evals, list):
                evals = [evals]
            aliases, ranges = parse_answer_eval(evals, location=location)
            gold = answers[0]
            aliases = list(dict.fromkeys(a for a in [*answers[1:], *aliases] if a != gold))
            qa = self.make_qa(
                0,
                question,
                gold,
                aliases=aliases,
                answer_ranges=ranges,
                metadata={k: record[k] for k in ("entity_id", "entity_text", "question_type") if k in record},
            )
            image = self.image_ref(self.image_path(image_id, location), location=location)
        except RecordError as error:
            error.record_id = sample_id
            raise
        return self.make_sample(
            sample_id,
            subset=split,
            split=split,
            images=[image],
            qas=[qa],
            metadata={"image_id": image_id, "location": location},
        )
