from __future__ import annotations

import pytest
from pydantic import ValidationError

from mmat.schema import QA, SCHEMA_VERSION, ImageRef, NumericRange, Sample


def _sample(**overrides: object) -> Sample:
    data: dict[str, object] = {
        "id": "tabmwp/dev/22084",
        "source": "tabmwp",
        "license": "CC BY-NC-SA 4.0",
        "images": [{"path": "tables/22084.png"}],
        "qas": [
            {
                "qa_id": "0",
                "question": "How much?",
                "templated_question": "How much? Answer with a number.",
                "answer": "8.80",
            }
        ],
    }
    data.update(overrides)
    return Sample.model_validate(data)


def test_sample_defaults_and_json_round_trip() -> None:
    sample = _sample()
    assert sample.schema_version == SCHEMA_VERSION
    assert Sample.model_validate_json(sample.model_dump_json()) == sample


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        _sample(colour="red")


def test_a_sample_needs_an_image_and_a_qa() -> None:
    with pytest.raises(ValidationError, match="at least 1 item"):
        _sample(images=[])
    with pytest.raises(ValidationError, match="at least 1 item"):
        _sample(qas=[])


def test_image_path_and_range_validation() -> None:
    with pytest.raises(ValidationError, match="image path is empty"):
        ImageRef(path=" ")
    with pytest.raises(ValidationError, match="write \\[low, high\\]"):
        NumericRange(lo=5, hi=1)
    assert ImageRef(path="https://x/y.jpg").is_url


def test_sample_id_is_one_line() -> None:
    with pytest.raises(ValidationError, match="single line"):
        _sample(id="a\nb")


def test_qa_keeps_gold_answer_verbatim() -> None:
    qa = QA(qa_id="0", question="q", templated_question="q", answer="  8.80 ")
    assert qa.answer == "  8.80 "
