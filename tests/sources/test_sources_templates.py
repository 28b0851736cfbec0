"""Question templates are data: style suffix per answer type, options rendered one way, gold kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmat.errors import ConfigError
from mmat.schema import AnswerType
from mmat.sources.templates import QuestionTemplates, infer_answer_type


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Yes", AnswerType.YES_NO),
        ("no", AnswerType.YES_NO),
        ("2,825.35", AnswerType.NUMBER),
        ("-3", AnswerType.NUMBER),
        ("45%", AnswerType.NUMBER),
        ("couch", AnswerType.SINGLE_WORD),
        ("teddy bear", AnswerType.SHORT_PHRASE),
        (
            "The bird is standing on a branch because it is resting after a long flight home.",
            AnswerType.FREE_FORM,
        ),
    ],
)
def test_infer_answer_type(answer: str, expected: AnswerType) -> None:
    assert infer_answer_type(answer) is expected


def test_option_letter_needs_choices() -> None:
    assert infer_answer_type("B", ["x", "y"]) is AnswerType.OPTION_LETTER
    assert infer_answer_type("C", ["x", "y"]) is AnswerType.SINGLE_WORD  # no option C
    assert infer_answer_type("B") is AnswerType.SINGLE_WORD


def test_suffix_per_answer_type() -> None:
    templates = QuestionTemplates.load()
    expected = {
        AnswerType.SHORT_PHRASE: "Answer the question using a single word or phrase.",
        AnswerType.SINGLE_WORD: "Answer the question using a single word.",
        AnswerType.NUMBER: "Answer the question with a number.",
        AnswerType.YES_NO: "Answer the question with yes or no.",
        AnswerType.FREE_FORM: "",
    }
    for kind, suffix in expected.items():
        rendered = templates.render("What is it?", kind)
        assert rendered.suffix == suffix
        assert rendered.text == ("What is it?\n" + suffix if suffix else "What is it?")
    assert templates.render("How much?", AnswerType.NUMBER, unit="kg").suffix == (
        "Answer the question with a number; the unit is kg."
    )


def test_multiple_choice_rendering_is_consistent() -> None:
    templates = QuestionTemplates.load()
    letter = templates.render("Pick one.", AnswerType.OPTION_LETTER, choices=["red", "blue"], answer="B")
    assert letter.text == (
        "Pick one.\nOptions:\nA. red\nB. blue\nAnswer with the option's letter from the given choices directly."
    )
    text = templates.render("Pick one.", AnswerType.SHORT_PHRASE, choices=["red", "blue"], answer="blue")
    assert text.text.startswith("Pick one.\nOptions:\nA. red\nB. blue\n")
    assert text.style == "option_text"


def test_question_that_already_says_how_to_answer_gets_no_second_suffix() -> None:
    templates = QuestionTemplates.load()
    rendered = templates.render(
        "What is it? Answer the question using a single word or phrase.", AnswerType.SINGLE_WORD
    )
    assert (
        rendered.suffix == ""
        and rendered.text == "What is it? Answer the question using a single word or phrase."
    )


def test_per_source_and_user_overrides(tmp_path: Path) -> None:
    assert QuestionTemplates.load("cauldron").render("Q?", AnswerType.SHORT_PHRASE).suffix == ""
    assert (
        QuestionTemplates.load("visual_cot").render("Q?", AnswerType.SHORT_PHRASE).suffix.startswith("Answer")
    )
    styled = QuestionTemplates.load("visual_cot", styles={"short_phrase": "Give a short answer."})
    assert styled.render("Q?", AnswerType.SHORT_PHRASE).text == "Q?\nGive a short answer."
    custom = tmp_path / "t.yaml"
    custom.write_text(
        "options: {header: '', line: '({letter}) {text}'}\nsources: {tabmwp: {suffixes: {yes_no: 'Yes or no?'}}}\n",
        encoding="utf-8",
    )
    mine = QuestionTemplates.load("tabmwp", file=custom)
    assert (
        mine.render("Q?", AnswerType.YES_NO, choices=["yes", "no"], answer="no").text
        == "Q?\n(A) yes\n(B) no\nYes or no?"
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("sufixes: {}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"unknown template keys \['sufixes'\]"):
        QuestionTemplates.load(file=bad)
