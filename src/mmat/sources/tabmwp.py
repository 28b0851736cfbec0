"""TabMWP: math word problems over tables (lupantech/PromptPG)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mmat.errors import RecordError
from mmat.schema import AnswerType, Reject, Sample
from mmat.sources.base import FileSource, SourceOptions, require
from mmat.sources.streaming import iter_json_items

ANSWER_TYPES: dict[str, AnswerType | None] = {
    "integer_number": AnswerType.NUMBER,
    "decimal_number": AnswerType.NUMBER,
    "extractive_text": AnswerType.SHORT_PHRASE,
    "boolean_text": None,  # yes/no or a two-way label (linear/nonlinear): inferred from the answer
    "other_text": AnswerType.SHORT_PHRASE,
}
QUESTION_TYPES = ("free_text", "multi_choice")


class TabmwpOptions(SourceOptions):
    """TabMWP options.

    Attributes:
        tables_dir: folder of the table images, relative to the image root.
        keep_table_text: copy the table as text (``table``) into the QA metadata.
        keep_solution: copy the worked solution into the QA metadata.
    """

    tables_dir: str = "tables"
    keep_table_text: bool = True
    keep_solution: bool = True


class TabmwpSource(FileSource):
    """TabMWP ``problems_{train,dev,test}.json`` (one JSON object keyed by problem id).

    Each problem becomes one sample whose image is ``tables/{pid}.png``. Choices, unit, table title,
    ``ques_type``, ``ans_type`` and grade are kept; the file is streamed member by member, so the
    whole object is never in memory. Records carry CC BY-NC-SA 4.0 and ``non_commercial=True``.

    Example:
        ``mmat foundation --source tabmwp --root data/tabmwp --out tabmwp.jsonl``
    """

    name = "tabmwp"
    description = "TabMWP problems_*.json + tables/{pid}.png (CC BY-NC-SA 4.0, non-commercial)"
    license = "CC-BY-NC-SA-4.0"
    non_commercial = True
    Options = TabmwpOptions
    default_files = ("problems_*.json",)

    def iter_file(self, path: Path) -> Iterator[Sample | Reject]:
        split_from_name = path.stem.removeprefix("problems_").split("_")[0] or None
        for location, item in iter_json_items(path):
            if isinstance(item, RecordError):
                yield self.reject(item)
                continue
            pid, problem = item
            sample_id = self.sample_id(split_from_name, pid)
            try:
                yield self.convert(sample_id, pid, problem, location, split_from_name)
            except RecordError as error:
                yield self.reject(error, raw=problem, sample_id=sample_id)
            except ValidationError as error:
                bad = RecordError("bad_field", f"record does not fit the schema: {error}", location=location)
                yield self.reject(bad, raw=problem, sample_id=sample_id)

    def convert(
        self, sample_id: str, pid: str, problem: Any, location: str, default_split: str | None
    ) -> Sample:
        """One TabMWP problem as a sample (raises :class:`RecordError` on a bad problem)."""
        options: TabmwpOptions = self.options  # type: ignore[assignment]
        question = require(problem, "question", str, location=location)
        answer = require(problem, "answer", (str, int, float), location=location)
        answer = str(answer)
        ques_type = require(problem, "ques_type", str, location=location)
        ans_type = require(problem, "ans_type", str, location=location)
        if ans_type not in ANSWER_TYPES:
            raise RecordError(
                "unknown_answer_type",
                f"ans_type {ans_type!r} is not one of {sorted(ANSWER_TYPES)}; fix the record or force one "
                "with the answer_type option",
                location=location,
            )
        if ques_type not in QUESTION_TYPES:
            raise RecordError(
                "unknown_question_type",
                f"ques_type {ques_type!r} is not one of {list(QUESTION_TYPES)}",
                location=location,
            )
        choices = problem.get("choices") or []
        if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
            raise RecordError(
                "bad_field", "field 'choices' should be a list of strings or null", location=location
            )
        if ques_type == "multi_choice" and not choices:
            raise RecordError("missing_field", "a multi_choice problem has no 'choices'", location=location)
        unit = problem.get("unit") or None
        split = problem.get("split") or default_split
        table_title = problem.get("table_title")
        metadata: dict[str, Any] = {
            "ques_type": ques_type,
            "ans_type": ans_type,
            "table_title": table_title,
            "grade": problem.get("grade"),
        }
        if options.keep_table_text:
            metadata["table"] = problem.get("table")
        if options.keep_solution:
            metadata["solution"] = problem.get("solution")
        qa = self.make_qa(
            0,
            question,
            answer,
            choices=choices,
            unit=unit,
            answer_type=ANSWER_TYPES[ans_type],
            metadata=metadata,
        )
        image = self.image_ref(f"{options.tables_dir}/{pid}.png", location=location)
        return self.make_sample(
            sample_id,
            subset=default_split,
            split=split,
            images=[image],
            qas=[qa],
            metadata={"pid": pid, "location": location},
        )
