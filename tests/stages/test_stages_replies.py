from __future__ import annotations

import pytest

from mmat.stages.prompts import load_prompt, parse_prompt, prompt_hashes
from mmat.stages.replies import ReplyFormatError, clean_final_answer, extract_json_object, parse_step_reply


def test_extract_repairs_fences_prose_quotes_and_trailing_commas() -> None:
    assert extract_json_object('Sure!\n```json\n{"a": 1,}\n```') == {"a": 1}
    assert extract_json_object("{'thought': 'x', 'ok': True}") == {"thought": "x", "ok": True}
    assert extract_json_object('step: {"t": "a {b}"} done') == {"t": "a {b}"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("no json here", "no JSON object found"),
        ('{"thought": "x"', "not closed"),
        ('{"thought": ""}', '"thought" must be a non-empty string'),
        ('{"thought": "x", "operators": 3}', '"operators" must be a list'),
        ('{"thought": "x", "rag": {"needed": true}}', 'has no "query"'),
        ('{"thought": "x", "next_action": "ponder"}', 'it must be "continue" or "final_answer"'),
        ('{"thought": "<THOUGHT>x</THOUGHT>"}', "without <THOUGHT>"),
    ],
)
def test_step_errors_tell_the_teacher_what_to_fix(text: str, message: str) -> None:
    with pytest.raises(ReplyFormatError, match=message):
        parse_step_reply(text)


def test_step_normalises_operator_names_and_rag() -> None:
    step = parse_step_reply(
        '{"thought": " read  it ", "operators": "OCR, face detection", "rag": "capital of France", "next_action": "final"}'
    )
    assert step.thought == "read it"
    assert step.operators == ["ocr", "face_detection"]
    assert step.rag_query == "capital of France"
    assert step.final


@pytest.mark.parametrize(
    ("reply", "answer"),
    [
        ("The answer is: 8.80.", "8.80"),
        ("<ANSWER>C</ANSWER>", "C"),
        ('"california"', "california"),
        ("U.S.", "U.S."),
    ],
)
def test_clean_final_answer(reply: str, answer: str) -> None:
    assert clean_final_answer(reply) == answer


def test_prompts_are_versioned_and_hashed() -> None:
    prompt = load_prompt("rationale")
    assert prompt.hash.startswith("rationale@1:")
    assert set(prompt_hashes()) == {"rationale", "general_reflection", "math_reflection", "repair", "quality"}
    edited = parse_prompt(
        "name: rationale\nversion: '1'\nsystem: s\ntemplates: {first: 'Q: $question'}\n", origin="x.yaml"
    )
    assert edited.hash != prompt.hash
    with pytest.raises(Exception, match=r"template 'first' needs \$question"):
        edited.render("first")
