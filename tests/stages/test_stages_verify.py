from __future__ import annotations

import pytest

from mmat.schema import QA, AnswerType, NumericRange
from mmat.stages.verify import check_answer, parse_number


def qa(answer: str, kind: AnswerType = AnswerType.FREE_FORM, **extra: object) -> QA:
    return QA(qa_id="0", question="q", templated_question="q", answer=answer, answer_type=kind, **extra)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("predicted", "gold", "unit"),
    [
        ("8.8", "8.80", "$"),
        ("$8.80", "8.80", "$"),
        ("8.80 dollars", "8.80", None),
        ("1,250", "1250", None),
        ("3/4", "0.75", None),
        ("0.75", "3/4", None),
        ("1 1/2", "1.5", None),
        ("0.33", "1/3", None),
        ("25%", "25", "%"),
        ("seven", "7", None),
        ("7 hours", "7", "hours"),
    ],
)
def test_numbers_match_with_units_fractions_and_tolerance(
    predicted: str, gold: str, unit: str | None
) -> None:
    assert check_answer(predicted, qa(gold, AnswerType.NUMBER, unit=unit)).ok


def test_number_mismatch_names_both_values() -> None:
    check = check_answer("9.1", qa("8.80", AnswerType.NUMBER, unit="$"))
    assert not check.ok
    assert check.reason == "answer_mismatch"
    assert check.detail == "the number differs; expected '8.80' (number), got '9.1'"


def test_parse_number_refuses_two_numbers() -> None:
    assert parse_number("between 3 and 4") is None
    assert parse_number("-2.5") == -2.5


@pytest.mark.parametrize("predicted", ["B", "(B)", "b", "B. dill dip", "dill dip", "Dill dip."])
def test_option_letter_or_text(predicted: str) -> None:
    choices = ["hummus", "dill dip", "guacamole"]
    assert check_answer(predicted, qa("B", AnswerType.OPTION_LETTER, choices=choices)).ok
    assert check_answer(predicted, qa("dill dip", AnswerType.SHORT_PHRASE, choices=choices)).ok


def test_wrong_option_says_which() -> None:
    check = check_answer(
        "C", qa("dill dip", AnswerType.SHORT_PHRASE, choices=["hummus", "dill dip", "guacamole"])
    )
    assert not check.ok
    assert "chose option C ('guacamole') but the answer is option B ('dill dip')" in check.detail


@pytest.mark.parametrize(
    ("predicted", "ok"), [("Yes.", True), ("yes, it is", True), ("True", True), ("no", False)]
)
def test_yes_no(predicted: str, ok: bool) -> None:
    assert check_answer(predicted, qa("yes", AnswerType.YES_NO)).ok is ok


def test_aliases_ranges_and_text_normalisation() -> None:
    infoseek = qa("United States", aliases=["USA", "the US"])
    assert check_answer("usa", infoseek).ok
    assert check_answer("The United States.", infoseek).ok
    assert not check_answer("Canada", infoseek).ok
    height = qa("1200", AnswerType.NUMBER, answer_ranges=[NumericRange(lo=1100, hi=1300)])
    assert check_answer("1250", height).ok
    assert not check_answer("1400", height).ok


def test_empty_answer_is_its_own_reason() -> None:
    assert check_answer("  ", qa("8")).reason == "empty_answer"
