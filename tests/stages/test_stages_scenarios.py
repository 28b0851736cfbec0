"""Scenario tests: the four stages against the mock teacher server with scripted replies.

Each scenario asserts the exact RR (and where it matters ORR) text mmat produces.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from stage_fakes import engine_context, step, tabmwp_sample

from mmat.config import RunConfig
from mmat.errors import SampleRejected
from mmat.llm.mock_server import MockTeacherServer
from mmat.schema import QA, AnswerType, ReflectionKind, Sample
from mmat.stages import default_stages
from mmat.wire import ORR_SYSTEM_PROMPT, render_rr_messages, render_rr_system

QUESTION = "<image>\nHow much did she spend? Answer with a number. Please start your reasoning."
SUMMARIZE = "Based on the above information, please summarize and give the answer to the initial question: How much did she spend?"
OCR_TEXT = "guacamole | $2 per pound"
NO_CHEAT = json.dumps({"cheating": False, "reason": "", "trigger": "", "corrected_thought": ""})
NO_GAP = json.dumps({"gap": False, "reason": "", "trigger": "", "supplement": ""})


@pytest.fixture(scope="module")
def server() -> Iterator[MockTeacherServer]:
    with MockTeacherServer() as running:
        yield running


class Ctx:
    """The engine context of one scenario, with the call log the assertions read."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.config = engine.config
        self.teacher = engine.teacher
        self.calls: list[tuple[str, Any]] = []
        self.tool_calls: list[str] = engine.tools.calls

    async def chat(self, messages: Any, *, purpose: str, prompt_hash: str, params: Any = None) -> Any:
        self.calls.append((purpose, messages))
        return await self.engine.chat(messages, purpose=purpose, prompt_hash=prompt_hash, params=params)

    async def tool(self, name: str, images: Any, **args: Any) -> Any:
        return await self.engine.tool(name, images, **args)

    async def search(self, query: str, *, k: int | None = None) -> Any:
        return await self.engine.search(query, k=k)

    def available_tools(self) -> dict[str, str]:
        return self.engine.available_tools()


def config(**stages: object) -> RunConfig:
    base: dict[str, object] = {"general_reflection": False, "math_reflection": False, "quality": False}
    base.update(stages)
    return RunConfig.from_dict({"stages": base})


async def run(
    server: MockTeacherServer,
    replies: Sequence[str],
    *,
    sample: Sample | None = None,
    tools: dict[str, str] | None = None,
    cfg: RunConfig | None = None,
) -> tuple[Sample, Ctx]:
    server.reset()
    server.script(replies)
    ctx = Ctx(engine_context(server.base_url, cfg or config(), tools))
    current = sample or tabmwp_sample()
    try:
        for stage in default_stages(ctx.config):
            current = await stage.run(current, ctx)
    finally:
        await ctx.teacher.aclose()
    assert server.pending == 0, "every scripted reply must be used"
    return current, ctx


def rr(sample: Sample) -> list[tuple[str, str]]:
    assert sample.trajectory is not None
    return render_rr_messages(sample.trajectory)


async def test_ocr_step(server: MockTeacherServer) -> None:
    sample, ctx = await run(
        server,
        [
            step("I need the price of guacamole from the table.", ["ocr"]),
            step("Guacamole costs $2 per pound, so 2 x 4.4 = 8.80.", final=True),
            "The answer is: $8.80.",
        ],
    )
    assert rr(sample) == [
        ("system", render_rr_system([("ocr", "the ocr operator")], rag=True)),
        ("user", QUESTION),
        (
            "assistant",
            "<THOUGHT>I need the price of guacamole from the table.</THOUGHT><OPERATOR>ocr</OPERATOR><SIGNAL>continue</SIGNAL>",
        ),
        ("user", f"Here are ocr results from the previous step: {OCR_TEXT} Please continue your reasoning."),
        (
            "assistant",
            "<THOUGHT>Guacamole costs $2 per pound, so 2 x 4.4 = 8.80.</THOUGHT><SIGNAL>end</SIGNAL>",
        ),
        ("user", SUMMARIZE),
        ("assistant", "8.80"),
    ]
    assert ctx.tool_calls == ["ocr"]
    assert sample.trajectory is not None and sample.trajectory.segments[0].verified
    # The teacher saw the image, the gold answer as a target and the offered operators.
    first = server.requests[0].body["messages"]
    assert "- ocr: the ocr operator" in first[0]["content"]
    assert first[1]["content"][0]["type"] == "image_url"
    assert "Target answer (for you only" in first[1]["content"][1]["text"]
    assert "8.80" in first[1]["content"][1]["text"]
    assert server.requests[0].body["response_format"] == {"type": "json_object"}
    # The observation goes back to the teacher as the RR user turn plus the next-step request.
    assert server.requests[1].body["messages"][-1]["content"] == (
        f"Here are ocr results from the previous step: {OCR_TEXT} Please continue your reasoning.\nWrite step 2 as JSON."
    )


async def test_integration_matches_hand_written_orr(server: MockTeacherServer) -> None:
    sample, _ = await run(
        server,
        [
            step("I need the price of guacamole from the table.", ["ocr"]),
            step("Guacamole costs $2 per pound, so 2 x 4.4 = 8.80.", final=True),
            "8.80",
        ],
    )
    assert sample.orr is not None
    assert sample.orr.system == ORR_SYSTEM_PROMPT
    assert [(s.user, s.assistant) for s in sample.orr.segments] == [
        (
            "How much did she spend? Answer with a number.\n"
            "Use the following API outputs to help answer the question:\n"
            "<|begin_api_invoke|>ocr<|end_api_invoke|><|begin_result_of_api|>guacamole | $2 per pound<|end_result_of_api|>",
            "<THOUGHT>I need the price of guacamole from the table. Guacamole costs $2 per pound, so 2 x 4.4 = 8.80."
            "</THOUGHT><ANSWER>The answer is: 8.80</ANSWER>",
        )
    ]


async def test_several_operators_in_one_step(server: MockTeacherServer) -> None:
    tools = {
        "ocr": OCR_TEXT,
        "image_caption": "A table of dip prices.",
        "label_bbox": "{'table': [[0.0, 0.0, 1.0, 1.0]]}",
    }
    sample, ctx = await run(
        server,
        [
            step("I need the table's text and layout.", ["ocr", "image_caption"]),
            step("Guacamole is $2 per pound: 2 x 4.4 = 8.80.", final=True),
            "8.80",
        ],
        tools=tools,
    )
    messages = rr(sample)
    assert messages[2] == (
        "assistant",
        "<THOUGHT>I need the table's text and layout.</THOUGHT><OPERATOR>ocr, image_caption</OPERATOR><SIGNAL>continue</SIGNAL>",
    )
    assert messages[3] == (
        "user",
        "Here are ocr, image_caption results from the previous step:\n"
        f"-ocr information: {OCR_TEXT}\n-image_caption information: A table of dip prices.\n"
        "Please continue your reasoning.",
    )
    assert sorted(ctx.tool_calls) == ["image_caption", "ocr"]
    assert sample.orr is not None
    assert sample.orr.segments[0].user.endswith(
        "<|begin_api_invoke|>ocr<|end_api_invoke|><|begin_result_of_api|>guacamole | $2 per pound<|end_result_of_api|>\n"
        "<|begin_api_invoke|>image_caption<|end_api_invoke|><|begin_result_of_api|>A table of dip prices.<|end_result_of_api|>"
    )


async def test_rag_step_is_left_out_of_orr(server: MockTeacherServer) -> None:
    sample, ctx = await run(
        server,
        [
            step("I should check what guacamole is.", query="guacamole dip"),
            step("Guacamole is a dip sold by the pound here, and 2 x 4.4 = 8.80.", final=True),
            "8.80",
        ],
    )
    messages = rr(sample)
    assert messages[2] == (
        "assistant",
        "<THOUGHT>I should check what guacamole is.</THOUGHT><RAG>guacamole dip</RAG><SIGNAL>continue</SIGNAL>",
    )
    assert messages[3] == (
        "user",
        "Here are rag results from the previous step: snippet one; snippet two Please continue your reasoning.",
    )
    assert ctx.tool_calls == ["rag:guacamole dip"]
    assert sample.orr is not None
    assert sample.orr.segments[0].user == "How much did she spend? Answer with a number."


async def test_unavailable_operator_is_re_asked(server: MockTeacherServer) -> None:
    sample, ctx = await run(
        server,
        [
            step("Let me find faces.", ["face_detection"]),
            step("I need the table text.", ["ocr"]),
            step("2 x 4.4 = 8.80.", final=True),
            "8.80",
        ],
    )
    assert rr(sample)[2] == (
        "assistant",
        "<THOUGHT>I need the table text.</THOUGHT><OPERATOR>ocr</OPERATOR><SIGNAL>continue</SIGNAL>",
    )
    assert server.requests[1].body["messages"][-1]["content"] == (
        "You asked for face_detection, which cannot run here. Available operators: ocr. "
        "Write step 1 again as JSON, using only available operators."
    )
    assert ctx.tool_calls == ["ocr"]


async def test_unavailable_operator_insisted_on_is_dropped(server: MockTeacherServer) -> None:
    sample, ctx = await run(
        server,
        [step("Let me find faces.", ["face_detection"]), step("2 x 4.4 = 8.80.", final=True), "8.80"],
        cfg=config(json_retries=0),
    )
    assert rr(sample)[2:4] == [
        ("assistant", "<THOUGHT>Let me find faces.</THOUGHT><SIGNAL>continue</SIGNAL>"),
        (
            "user",
            "No additional operator or rag results were selected in the previous step. Please continue your reasoning.",
        ),
    ]
    assert ctx.tool_calls == []


async def test_wrong_final_answer_is_retried_with_feedback_then_rejected(server: MockTeacherServer) -> None:
    wrong = [step("Guacamole is $2 per pound: 2 x 4.5 = 9.00.", final=True), "9.00"]
    with pytest.raises(SampleRejected) as caught:
        await run(server, wrong + wrong, cfg=config(answer_retries=1))
    assert caught.value.reason == "answer_mismatch"
    assert caught.value.detail == (
        "qa 0: the final answer did not match the gold answer in 2 attempt(s); last: the number differs; "
        "expected '8.80' (number), got '9.00'"
    )
    retry_prompt = server.requests[2].body["messages"][1]["content"][1]["text"]
    assert 'Note: a previous attempt ended with the answer "9.00", which is wrong' in retry_prompt


async def test_wrong_answer_then_right_keeps_the_second_attempt(server: MockTeacherServer) -> None:
    sample, _ = await run(
        server,
        [
            step("2 x 4.5 = 9.00.", final=True),
            "9.00",
            step("Guacamole is $2 per pound and she bought 4.4 pounds: 2 x 4.4 = 8.80.", final=True),
            "8.8",
        ],
    )
    assert rr(sample)[2:] == [
        (
            "assistant",
            "<THOUGHT>Guacamole is $2 per pound and she bought 4.4 pounds: 2 x 4.4 = 8.80.</THOUGHT><SIGNAL>end</SIGNAL>",
        ),
        ("user", SUMMARIZE),
        ("assistant", "8.80"),
    ]


async def test_malformed_json_is_repaired_or_re_asked(server: MockTeacherServer) -> None:
    sample, _ = await run(
        server,
        [
            "Sure! ```json\n{'thought': 'I need the table text.', 'operators': ['OCR'], 'next_action': 'continue',}\n```",
            "I would now multiply the numbers.",
            step("2 x 4.4 = 8.80.", final=True),
            "8.80",
        ],
    )
    assert rr(sample)[2] == (
        "assistant",
        "<THOUGHT>I need the table text.</THOUGHT><OPERATOR>ocr</OPERATOR><SIGNAL>continue</SIGNAL>",
    )
    assert rr(sample)[4] == ("assistant", "<THOUGHT>2 x 4.4 = 8.80.</THOUGHT><SIGNAL>end</SIGNAL>")
    reask = server.requests[2].body["messages"][-1]["content"]
    assert reask.startswith("Your reply could not be used: no JSON object found")
    assert server.requests[2].body["messages"][-2]["content"] == "I would now multiply the numbers."
    # The repaired exchange does not stay in the conversation: the next call sees the clean step.
    assert len(server.requests[3].body["messages"]) == 6


async def test_malformed_json_every_time_rejects(server: MockTeacherServer) -> None:
    with pytest.raises(
        SampleRejected, match=r"step 1: the teacher's reply was not a valid JSON step after 2 tries"
    ):
        await run(server, ["not json", "still not json"], cfg=config(json_retries=1))


async def test_cheating_caught_by_the_gate_is_repaired_with_reflection_turns(
    server: MockTeacherServer,
) -> None:
    sample, ctx = await run(
        server,
        [
            step("She spent $8.80; let me read the table to confirm.", ["ocr"]),
            step("Yes, that matches the table.", final=True),
            "8.80",
            json.dumps(
                {
                    "trigger": "Wait, I stated the total before reading the prices.",
                    "corrected_thought": "The table shows guacamole at $2 per pound, so 2 x 4.4 = 8.80.",
                }
            ),
        ],
        cfg=config(general_reflection=True),
    )
    assert [purpose for purpose, _ in ctx.calls][-1] == "reflection.repair"  # the gate used no judge call
    assert rr(sample)[5:] == [
        (
            "user",
            "No additional operator or rag results were selected in the previous step. Please continue your reasoning.",
        ),
        (
            "assistant",
            "<THOUGHT>Wait, I stated the total before reading the prices.</THOUGHT><SIGNAL>reflection</SIGNAL>",
        ),
        (
            "user",
            "No additional operator or rag results were selected in the previous step. Please make a reflection.",
        ),
        (
            "assistant",
            "<THOUGHT>The table shows guacamole at $2 per pound, so 2 x 4.4 = 8.80.</THOUGHT><SIGNAL>end</SIGNAL>",
        ),
        ("user", SUMMARIZE),
        ("assistant", "8.80"),
    ]
    assert rr(sample)[4] == (
        "assistant",
        "<THOUGHT>Yes, that matches the table.</THOUGHT><SIGNAL>continue</SIGNAL>",
    )
    segment = sample.trajectory.segments[0]  # type: ignore[union-attr]
    assert segment.reflections[0].kind is ReflectionKind.GATE
    assert segment.reflections[0].reason == (
        "step 1 states the answer '8.80' before any operator output or derivation supports it"
    )
    assert sample.orr is not None
    assert sample.orr.segments[0].assistant == (
        "<THOUGHT>She spent $8.80; let me read the table to confirm. Yes, that matches the table. "
        "Wait, I stated the total before reading the prices. "
        "The table shows guacamole at $2 per pound, so 2 x 4.4 = 8.80.</THOUGHT><ANSWER>The answer is: 8.80</ANSWER>"
    )


async def test_talk_of_a_given_answer_is_rejected_by_the_gate(server: MockTeacherServer) -> None:
    with pytest.raises(SampleRejected) as caught:
        await run(
            server,
            [step("The standard answer is 8.80, so 2 x 4.4 = 8.80.", final=True), "8.80"],
        )
    assert caught.value.reason == "answer_leak"
    assert caught.value.detail == "qa 0: step 1 refers to an answer given in advance ('standard answer')"


async def test_cheating_caught_by_general_reflection(server: MockTeacherServer) -> None:
    sample, ctx = await run(
        server,
        [
            step("I need the prices.", ["ocr"]),
            step("Guacamole costs $2 per pound, so 2 x 4.4 = 8.80.", final=True),
            "8.80",
            json.dumps(
                {
                    "cheating": True,
                    "reason": "the OCR output does not show the price of guacamole",
                    "trigger": "Wait, the price I used is not in the OCR result.",
                    "corrected_thought": "The caption lists guacamole at $2 per pound in the second row; 2 x 4.4 = 8.80.",
                }
            ),
        ],
        tools={"ocr": "hummus | $4 per pound"},
        cfg=config(general_reflection=True),
    )
    assert [purpose for purpose, _ in ctx.calls][-1] == "reflection.general_reflection"
    judge = server.requests[-1].body["messages"][1]["content"][-1]["text"]
    assert (
        "user: Here are ocr results from the previous step: hummus | $4 per pound Please continue your reasoning."
        in judge
    )
    assert SUMMARIZE not in judge and "assistant: 8.80" not in judge
    assert rr(sample)[6:9] == [
        (
            "assistant",
            "<THOUGHT>Wait, the price I used is not in the OCR result.</THOUGHT><SIGNAL>reflection</SIGNAL>",
        ),
        (
            "user",
            "No additional operator or rag results were selected in the previous step. Please make a reflection.",
        ),
        (
            "assistant",
            "<THOUGHT>The caption lists guacamole at $2 per pound in the second row; 2 x 4.4 = 8.80.</THOUGHT><SIGNAL>end</SIGNAL>",
        ),
    ]
    reflection = sample.trajectory.segments[0].reflections[0]  # type: ignore[union-attr]
    assert (reflection.kind, reflection.reason, reflection.trigger_turn) == (
        ReflectionKind.GENERAL,
        "the OCR output does not show the price of guacamole",
        5,
    )


async def test_math_gap_filled(server: MockTeacherServer) -> None:
    sample, ctx = await run(
        server,
        [
            step("I need the prices.", ["ocr"]),
            step("At $2 per pound for 4.4 pounds she pays 2 x 4.4, which is 8.80.", final=True),
            "8.80",
            json.dumps(
                {
                    "gap": True,
                    "reason": "the product 2 x 4.4 is not worked out",
                    "trigger": "",
                    "supplement": "2 x 4.4 = 2 x 4 + 2 x 0.4 = 8 + 0.8 = 8.8, which is $8.80.",
                }
            ),
            json.dumps({"quality_score": 0.85, "scoring_reason": "clear", "criteria": {"coherence": 0.9}}),
        ],
        cfg=config(math_reflection=True, quality=True),
    )
    assert [purpose for purpose, _ in ctx.calls][-2:] == ["reflection.math_reflection", "quality"]
    messages = rr(sample)
    assert messages[6][1] in {
        f"<THOUGHT>{t}</THOUGHT><SIGNAL>reflection</SIGNAL>"
        for t in (
            "Wait, my reasoning could use more math; let me write out the calculation.",
            "Wait, I skipped part of the calculation; let me go through it step by step.",
            "Wait, let me double-check the arithmetic explicitly.",
        )
    }
    assert messages[8] == (
        "assistant",
        "<THOUGHT>2 x 4.4 = 2 x 4 + 2 x 0.4 = 8 + 0.8 = 8.8, which is $8.80.</THOUGHT><SIGNAL>end</SIGNAL>",
    )
    assert sample.quality is not None
    assert (sample.quality.score, sample.quality.reason, sample.quality.passed) == (0.85, "clear", True)
    assert set(sample.trajectory.provenance.prompt_hashes) == {  # type: ignore[union-attr]
        "rationale",
        "general_reflection",
        "math_reflection",
        "repair",
        "quality",
    }


async def test_low_quality_is_rejected_with_the_score(server: MockTeacherServer) -> None:
    with pytest.raises(SampleRejected) as caught:
        await run(
            server,
            [
                step("2 x 4.4 = 8.80.", final=True),
                "8.80",
                json.dumps({"quality_score": 0.2, "scoring_reason": "too thin"}),
            ],
            cfg=config(quality=True),
        )
    assert caught.value.reason == "low_quality"
    assert caught.value.detail == "quality score 0.20 is below the threshold 0.5: too thin"


async def test_multi_qa_dialogue_gives_one_segment_per_qa(server: MockTeacherServer) -> None:
    cheap = QA(
        qa_id="1",
        question="Is guacamole cheaper than hummus?",
        templated_question="Is guacamole cheaper than hummus? Answer yes or no.",
        answer="yes",
        answer_type=AnswerType.YES_NO,
    )
    first = tabmwp_sample().qas[0]
    sample, _ = await run(
        server,
        [
            step("I need the prices.", ["ocr"]),
            step("2 x 4.4 = 8.80.", final=True),
            "8.80",
            step("Guacamole costs $2 per pound and hummus $4 per pound, and 2 < 4.", final=True),
            "Yes.",
        ],
        sample=tabmwp_sample(first, cheap),
        tools={"ocr": "guacamole | $2 per pound\nhummus | $4 per pound"},
    )
    messages = rr(sample)
    assert messages[7:] == [
        ("user", "Is guacamole cheaper than hummus? Answer yes or no. Please start your reasoning."),
        (
            "assistant",
            "<THOUGHT>Guacamole costs $2 per pound and hummus $4 per pound, and 2 < 4.</THOUGHT><SIGNAL>end</SIGNAL>",
        ),
        (
            "user",
            "Based on the above information, please summarize and give the answer to the initial question: "
            "Is guacamole cheaper than hummus?",
        ),
        ("assistant", "yes"),
    ]
    assert [s.qa_id for s in sample.orr.segments] == ["0", "1"]  # type: ignore[union-attr]
    assert sample.orr.segments[1].user == "Is guacamole cheaper than hummus? Answer yes or no."  # type: ignore[union-attr]


async def test_multi_qa_keeps_the_good_qa_and_records_the_rejected_one(server: MockTeacherServer) -> None:
    cheap = QA(
        qa_id="1",
        question="Is guacamole cheaper than hummus?",
        templated_question="Is guacamole cheaper than hummus? Answer yes or no.",
        answer="yes",
        answer_type=AnswerType.YES_NO,
    )
    sample, _ = await run(
        server,
        [
            step("2 x 4.5 = 9.00.", final=True),
            "9.00",
            step("2 < 4, so guacamole is cheaper.", final=True),
            "yes",
        ],
        sample=tabmwp_sample(tabmwp_sample().qas[0], cheap),
        cfg=config(answer_retries=0),
    )
    assert [s.qa_id for s in sample.trajectory.segments] == ["1"]  # type: ignore[union-attr]
    assert rr(sample)[1] == (
        "user",
        "<image>\nIs guacamole cheaper than hummus? Answer yes or no. Please start your reasoning.",
    )
    assert sample.metadata["rejected_qas"] == [
        {
            "qa_id": "0",
            "stage": "rationale",
            "reason": "answer_mismatch",
            "detail": "qa 0: the final answer did not match the gold answer in 1 attempt(s); last: the number "
            "differs; expected '8.80' (number), got '9.00'",
        }
    ]


async def test_step_limit_forces_the_last_step(server: MockTeacherServer) -> None:
    sample, _ = await run(
        server,
        [step("I need the prices.", ["ocr"]), step("2 x 4.4 = 8.80, let me also caption.", ["ocr"]), "8.80"],
        cfg=config(max_steps=2),
    )
    assert rr(sample)[4] == (
        "assistant",
        "<THOUGHT>2 x 4.4 = 8.80, let me also caption.</THOUGHT><SIGNAL>end</SIGNAL>",
    )
    assert "This is your last step" in server.requests[1].body["messages"][-1]["content"]


async def test_ablations_no_operators_and_no_rag(server: MockTeacherServer) -> None:
    sample, ctx = await run(
        server,
        [
            step("Read it.", ["ocr"], query="guacamole"),
            step("I will search instead.", query="guacamole"),
            step("2 x 4.4 = 8.80.", final=True),
            "8.80",
        ],
        cfg=RunConfig.from_dict(
            {
                "ablation": "no_operators",
                "stages": {"general_reflection": False, "math_reflection": False, "quality": False},
            }
        ),
    )
    assert ctx.tool_calls == ["rag:guacamole"]
    assert rr(sample)[0][1] == render_rr_system([], rag=True)
    assert rr(sample)[2] == (
        "assistant",
        "<THOUGHT>I will search instead.</THOUGHT><RAG>guacamole</RAG><SIGNAL>continue</SIGNAL>",
    )
    sample, ctx = await run(
        server,
        [step("Read it.", ["ocr"], query="guacamole"), step("2 x 4.4 = 8.80.", final=True), "8.80"],
        cfg=RunConfig.from_dict(
            {
                "ablation": "no_rag",
                "stages": {"general_reflection": False, "math_reflection": False, "quality": False},
            }
        ),
    )
    assert ctx.tool_calls == ["ocr"]
    assert rr(sample)[2] == (
        "assistant",
        "<THOUGHT>Read it.</THOUGHT><OPERATOR>ocr</OPERATOR><SIGNAL>continue</SIGNAL>",
    )
    assert "RAG is not available" in server.requests[0].body["messages"][0]["content"]
