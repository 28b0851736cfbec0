from __future__ import annotations

from stage_fakes import tabmwp_sample

from mmat.schema import QA, AnswerType, Segment, Signal, Step
from mmat.stages.gate import check_segment, mentions_answer
from mmat.wire import observation_turn, question_turn, step_turn, summarize_turn


def segment(*parts: tuple[str, list[str]] | str, qa: QA | None = None) -> Segment:
    qa = qa or tabmwp_sample().qas[0]
    turns = [question_turn(qa.templated_question)]
    for part in parts:
        if isinstance(part, str):
            turns.append(observation_turn([("ocr", part)]))
        else:
            thought, ops = part
            turns.append(step_turn(Step(thought=thought, operators=ops, signal=Signal.CONTINUE)))
    turns.append(summarize_turn(qa.question))
    return Segment(qa_id=qa.qa_id, turns=turns)


def test_derived_or_observed_answers_pass() -> None:
    qa = tabmwp_sample().qas[0]
    assert (
        check_segment(segment(("Read the table.", ["ocr"]), "guacamole | $2", ("2 x 4.4 = 8.80", [])), qa)
        == []
    )
    assert (
        check_segment(segment(("Read it.", ["ocr"]), "total: $8.80", ("The total is $8.80.", [])), qa) == []
    )
    assert check_segment(segment(("The product of 2 and 4.4 equals 8.8.", [])), qa) == []


def test_premature_answer_is_flagged_with_the_step_number() -> None:
    qa = tabmwp_sample().qas[0]
    findings = check_segment(
        segment(("Read it.", ["ocr"]), "guacamole | $2", ("She pays $8.80 in total.", [])), qa
    )
    assert [(f.kind, f.step, f.turn) for f in findings] == [("unsupported_answer", 2, 3)]
    assert (
        findings[0].reason
        == "step 2 states the answer '8.80' before any operator output or derivation supports it"
    )


def test_meta_leak_phrases() -> None:
    qa = tabmwp_sample().qas[0]
    for text in (
        "Matching the given answer, the cost is high.",
        "The ground truth says so.",
        "I know the reference answer.",
    ):
        assert [f.kind for f in check_segment(segment((text, [])), qa)] == ["meta_leak"], text
    assert check_segment(segment(("Let me find the correct answer from the table.", ["ocr"])), qa) == []


def test_text_and_option_answers() -> None:
    qa = QA(
        qa_id="0",
        question="Which city?",
        templated_question="Which city is shown?",
        answer="B",
        choices=["Paris", "New York"],
        answer_type=AnswerType.OPTION_LETTER,
    )
    assert [f.kind for f in check_segment(segment(("This is New York.", [])), qa)] == ["unsupported_answer"]
    assert (
        check_segment(segment(("Read signs.", ["ocr"]), "Welcome to New York", ("It is New York.", [])), qa)
        == []
    )
    assert mentions_answer("Maybe new york?", qa)
    assert not mentions_answer("Wait, let me check the signs.", qa)


def test_step_and_row_numbers_are_not_answers() -> None:
    qa = QA(
        qa_id="0",
        question="How many?",
        templated_question="How many?",
        answer="2",
        answer_type=AnswerType.NUMBER,
    )
    assert check_segment(segment(("Step 2: read row 2 of the table.", ["ocr"])), qa) == []
    assert [f.kind for f in check_segment(segment(("There are 2 of them.", [])), qa)] == [
        "unsupported_answer"
    ]
